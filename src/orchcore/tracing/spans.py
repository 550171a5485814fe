"""A span as orch stores it: one row of the seed's ``distributed_traces``.

Everything that records spans (orch's own workflow, step, call and message spans, and
the OTLP ingest of services' spans) produces :class:`Span` values; the recorder writes
them in batches. Ids are W3C's: 32 lowercase hex digits for a trace, 16 for a span.
Tag names follow OpenTelemetry's semantic conventions (``http.request.method``,
``http.response.status_code``, ``server.address``, ...) plus orch's own under ``orch.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
SpanStatus = Literal["unset", "ok", "error"]
SPAN_KINDS: tuple[SpanKind, ...] = ("internal", "server", "client", "producer", "consumer")

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
#: Longest operation or service name kept (longer ones are cut, never refused).
MAX_NAME = 512


def valid_trace_id(value: str) -> bool:
    return bool(TRACE_ID.match(value)) and value != "0" * 32


def valid_span_id(value: str) -> bool:
    return bool(SPAN_ID.match(value)) and value != "0" * 16


@dataclass(slots=True)
class SpanEvent:
    """A timestamped event on a span (OTLP's Span.Event): retry scheduled, breaker
    rejected, lease lost, an exception..."""

    name: str
    at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "timestamp": self.at.isoformat(), "attributes": self.attributes}


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    operation_name: str
    service_name: str
    start_time: datetime
    end_time: datetime
    span_kind: SpanKind = "internal"
    status_code: SpanStatus = "unset"
    #: the status's description (OTLP Status.message), kept as the tag ``otel.status_description``
    status_message: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    baggage: dict[str, str] = field(default_factory=dict)

    @property
    def duration_microseconds(self) -> int:
        return max(int((self.end_time - self.start_time).total_seconds() * 1_000_000), 0)

    @property
    def is_error(self) -> bool:
        return self.status_code == "error"
