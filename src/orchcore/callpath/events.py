"""Recording call attempts in service_events, in batches off the hot path.

Each attempt is one row, buffered and written with COPY (orchcore.db.copybuffer), so
recording costs a call no database round trip. A crash loses at most the last
interval's rows: these are observations, not state (breaker transitions, which are
state, are written before they take effect).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchcore.db import Database
from orchcore.db.copybuffer import CopyBuffer

_COLUMNS = (
    "id", "event_type", "trace_id", "span_id", "parent_span_id", "source_service",
    "target_service", "method", "endpoint", "status_code", "duration_ms", "error_message",
    "correlation_id", "headers", "created_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CallEvent:
    event_type: str  # response | error | timeout | rejected
    trace_id: str
    span_id: str
    parent_span_id: str | None
    source: str
    target: str
    method: str
    endpoint: str
    status_code: int | None
    duration_ms: int | None
    error: str | None
    correlation_id: str | None
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> tuple[Any, ...]:
        return (
            uuid.uuid4(),
            self.event_type,
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.source,
            self.target,
            self.method,
            self.endpoint,
            self.status_code,
            self.duration_ms,
            self.error,
            self.correlation_id,
            self.details,
            self.at,
        )


class ServiceEventRecorder(CopyBuffer[CallEvent]):
    def __init__(
        self, db: Database, *, flush_interval: float = 0.2, max_buffer: int = 1000
    ) -> None:
        super().__init__(
            db,
            table="service_events",
            columns=_COLUMNS,
            to_record=CallEvent.as_record,
            what="call events",
            flush_interval=flush_interval,
            max_buffer=max_buffer,
        )
