"""What discovery hands out: a routable, healthy instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: UUID
    instance_id: str
    service_name: str
    host: str
    port: int
    version: str
    scheme: str = "http"
    weight: int = 1
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"
