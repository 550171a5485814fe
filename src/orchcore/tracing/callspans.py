"""The span of one call attempt, as OpenTelemetry's HTTP client conventions name it.

Tag names: ``http.request.method``, ``url.path``, ``server.address``, ``server.port``,
``http.response.status_code``, ``error.type``, ``http.request.resend_count`` (the
retry number, as the conventions define it) and ``peer.service``; orch's own under
``orch.``: the attempt, the breaker's state when it admitted the call, the
idempotency key, the instance. Events: ``retry scheduled`` and ``breaker rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchcore.tracing.spans import Span, SpanEvent


@dataclass(slots=True)
class AttemptFacts:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    source: str
    target: str
    method: str
    endpoint: str
    attempt: int
    started: datetime
    ended: datetime
    status_code: int | None = None
    error: str | None = None
    error_kind: str | None = None
    host: str | None = None
    port: int | None = None
    instance_id: str | None = None
    breaker_state: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    events: list[SpanEvent] = field(default_factory=list)


def attempt_span(facts: AttemptFacts) -> Span:
    tags: dict[str, Any] = {
        "http.request.method": facts.method,
        "url.path": facts.endpoint.split("?", 1)[0],
        "peer.service": facts.target,
        "orch.call.attempt": facts.attempt,
    }
    if facts.attempt > 1:
        tags["http.request.resend_count"] = facts.attempt - 1
    optional = {
        "server.address": facts.host,
        "server.port": facts.port,
        "http.response.status_code": facts.status_code,
        "orch.instance_id": facts.instance_id,
        "orch.breaker.state": facts.breaker_state,
        "orch.idempotency_key": facts.idempotency_key,
        "orch.correlation_id": facts.correlation_id,
    }
    tags.update({k: v for k, v in optional.items() if v is not None})
    failed = facts.status_code is None or facts.status_code >= 500
    if failed:
        kind = facts.error_kind or (str(facts.status_code) if facts.status_code else "error")
        tags["error.type"] = kind
    return Span(
        trace_id=facts.trace_id,
        span_id=facts.span_id,
        parent_span_id=facts.parent_span_id,
        # The conventions' "{method} {target}" with the path as the target: ids and all,
        # since what an on-call engineer reads in a waterfall is which call it was.
        operation_name=f"{facts.method} {tags['url.path']}",
        service_name=facts.source,
        start_time=facts.started,
        end_time=facts.ended,
        span_kind="client",
        status_code="error" if failed else "unset",
        status_message=facts.error if failed else None,
        tags=tags,
        events=facts.events,
    )
