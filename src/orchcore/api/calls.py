"""One guarded call through the API (what `orch call` does): refusals keep their status,
e.g. 429 for a rate limit, 503 for an open breaker or no healthy instance, 403 for a
mesh authorization deny or a source the token may not speak for, 422 for an endpoint
with no single meaning (``/a/../b``).

The source comes from the token: a service token calls as its own service; an
operator token may name one (audited with the token's actor), else calls as orch-api.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, Field

from orchcore.api.auth import Caller, Engine, allowed
from orchcore.api.contract import ContractRoute
from orchcore.auth import Action
from orchcore.callpath.endpoints import MAX_ENDPOINT_LENGTH
from orchcore.callpath.headers import MAX_VALUE_LENGTH
from orchcore.callpath.identity import API_SOURCE, record_call_as
from orchcore.textrules import HEADER_VALUE_PATTERN

router = APIRouter(prefix="/api/orchestration", tags=["calls"], route_class=ContractRoute)


class CallRequest(BaseModel):
    endpoint: str = Field(
        pattern=r"^/",
        max_length=MAX_ENDPOINT_LENGTH,
        # What the call path refuses outright (control characters, a backslash, '#'),
        # said in the schema; the call path checks the rest (see the contract test).
        json_schema_extra={"pattern": "^/[^\\u0000-\\u001f\\u007f-\\u009f\\\\#]*$"},
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    body: Any = None
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="calling service; a service token's own service (or absent)",
    )
    # Sent as headers: what a header value may hold (the call path checks it).
    idempotency_key: str | None = Field(
        default=None,
        max_length=MAX_VALUE_LENGTH,
        json_schema_extra={"pattern": HEADER_VALUE_PATTERN},
    )
    correlation_id: str | None = Field(
        default=None,
        max_length=MAX_VALUE_LENGTH,
        json_schema_extra={"pattern": HEADER_VALUE_PATTERN},
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)


@router.post("/services/{service}/call", dependencies=[allowed(Action.CALL)])
async def call_service(
    service: str,
    request: CallRequest,
    orch: Engine,
    caller: Caller,
    traceparent: Annotated[str | None, Header()] = None,
    tracestate: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    source = caller.acting_as(request.source, default=API_SOURCE)
    correlation_id = request.correlation_id or str(uuid.uuid4())
    if caller.audits_acting_as(request.source):
        await record_call_as(
            orch.db,
            orch.clock,
            actor=caller.actor,
            source=source,
            target=service,
            method=request.method,
            endpoint=request.endpoint,
            correlation_id=correlation_id,
        )
    call_path = await orch.caller()
    result = await call_path.call(
        source,
        service,
        request.endpoint,
        method=request.method,
        json=request.body if request.method != "GET" else None,
        idempotency_key=request.idempotency_key,
        correlation_id=correlation_id,
        timeout=request.timeout_seconds,
        # a request that arrives in a trace makes its call in it (W3C trace context)
        traceparent=traceparent,
        tracestate=tracestate,
    )
    return result.as_dict()
