"""One guarded call through the API (what `orch call` does): refusals keep their status,
e.g. 429 for a rate limit, 503 for an open breaker or no healthy instance, 403 for a
mesh authorization deny."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from orchcore.api.auth import Caller, Engine, allowed
from orchcore.auth import Action

router = APIRouter(prefix="/api/orchestration", tags=["calls"])


class CallRequest(BaseModel):
    endpoint: str = Field(pattern=r"^/")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    body: Any = None
    source: str = Field(default="orch-api", min_length=1)
    idempotency_key: str | None = None
    correlation_id: str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)


@router.post("/services/{service}/call", dependencies=[allowed(Action.WRITE)])
async def call_service(
    service: str, request: CallRequest, orch: Engine, caller: Caller
) -> dict[str, Any]:
    call_path = await orch.caller()
    result = await call_path.call(
        request.source,
        service,
        request.endpoint,
        method=request.method,
        json=request.body if request.method != "GET" else None,
        idempotency_key=request.idempotency_key,
        correlation_id=request.correlation_id,
        timeout=request.timeout_seconds,
    )
    return result.as_dict()
