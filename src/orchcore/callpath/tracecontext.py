"""W3C trace context (``traceparent``) for calls orch makes."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    sampled: bool = True

    @classmethod
    def new(cls, *, sampled: bool = True) -> TraceContext:
        return cls(secrets.token_hex(16), secrets.token_hex(8), None, sampled)

    @classmethod
    def parse(cls, header: str | None) -> TraceContext | None:
        """The context a traceparent header carries, or None if absent or malformed."""
        if not header:
            return None
        match = _TRACEPARENT.match(header.strip().lower())
        if not match or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
            return None
        return cls(match.group(1), match.group(2), None, int(match.group(3), 16) & 1 == 1)

    def child(self) -> TraceContext:
        """A new span in the same trace, whose parent is this span."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.span_id, self.sampled)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"
