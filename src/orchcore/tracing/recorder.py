"""Spans written in batches with COPY, never inside a step's commit.

Sampling is decided at a trace's root and travels in the W3C trace flags: a span of an
unsampled trace is dropped, except that an error keeps its trace. An error span is
always recorded, and from then on this process records the rest of that trace (a
bounded memory of such traces); spans of it that ended before the error are gone,
which is the price of deciding without holding every unsampled trace in memory.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from orchcore.db import Database
from orchcore.db.copybuffer import CopyBuffer
from orchcore.storable import storable_text, storable_value
from orchcore.tracing.spans import Span

COLUMNS = (
    "id", "trace_id", "span_id", "parent_span_id", "operation_name", "service_name",
    "span_kind", "status_code", "start_time", "end_time", "duration_microseconds", "tags",
    "logs", "baggage", "created_at",
)  # fmt: skip
#: Unsampled traces kept because of an error, remembered per process.
KEPT_TRACES = 10_000


def span_record(span: Span) -> tuple[Any, ...]:
    tags = span.tags
    if span.status_message:
        tags = {**tags, "otel.status_description": span.status_message}
    return (
        uuid.uuid4(),
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        storable_text(span.operation_name),
        storable_text(span.service_name),
        span.span_kind,
        span.status_code,
        span.start_time,
        span.end_time,
        min(span.duration_microseconds, 2**31 - 1),  # the seed's INTEGER column
        storable_value(tags),
        storable_value([event.as_json() for event in span.events]),
        storable_value(span.baggage),
        span.end_time,
    )


class SpanRecorder(CopyBuffer[Span]):
    def __init__(
        self, db: Database, *, flush_interval: float = 0.5, max_buffer: int = 5000
    ) -> None:
        super().__init__(
            db,
            table="distributed_traces",
            columns=COLUMNS,
            to_record=span_record,
            what="spans",
            flush_interval=flush_interval,
            max_buffer=max_buffer,
        )
        self._kept: OrderedDict[str, None] = OrderedDict()
        self.unsampled = 0
        #: also given every span recorded (the OTLP forwarder, when one is configured)
        self.tap: Callable[[list[Span]], None] | None = None

    def finish(self, span: Span, *, sampled: bool) -> None:
        """Record a span orch made, if its trace is sampled or an error keeps it."""
        if sampled or span.is_error or span.trace_id in self._kept:
            if span.is_error and not sampled:
                self._keep(span.trace_id)
            self.record(span)
            if self.tap is not None:
                self.tap([span])
        else:
            self.unsampled += 1

    def ingest(self, spans: Iterable[Span]) -> None:
        """Spans a service sent over OTLP: its SDK has sampled them already."""
        batch = list(spans)
        self.record_many(batch)
        if self.tap is not None:
            self.tap(batch)

    def _keep(self, trace_id: str) -> None:
        self._kept[trace_id] = None
        self._kept.move_to_end(trace_id)
        while len(self._kept) > KEPT_TRACES:
            self._kept.popitem(last=False)
