"""orch.tracing: the span recorder, the OTLP ingest, and the reads behind the traces
API, the CLI and the console (recent traces, one trace as a tree, search)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.errors import NotFoundError, OrchError, ValidationFailed
from orchcore.tracing.forwarder import OtlpForwarder
from orchcore.tracing.models import (
    GetTraceDetailsResponse,
    GetTracesResponse,
    SearchTracesRequest,
    ServiceMapEdge,
    SpanLog,
    SpanView,
    TraceHeader,
    TraceStats,
    TraceSummary,
)
from orchcore.tracing.otlp import DecodedExport, decode_request
from orchcore.tracing.recorder import SpanRecorder
from orchcore.tracing.spans import valid_trace_id
from orchcore.tracing.tree import Node, build_tree, critical_path, depth_first, service_edges

Q = Queries("orchcore.tracing")
#: The largest OTLP export taken (inflated): an SDK's batch of 512 spans is far below it.
MAX_EXPORT_BYTES = 8 * 1024 * 1024
#: Past this many spans waiting to be written, exports are answered 503 (OTLP: retry).
MAX_PENDING_INGEST = 40_000
#: A trace shows at most this many spans (a runaway trace must not take the console).
MAX_SPANS = 10_000
#: How far back the list of recent traces looks by default.
RECENT = timedelta(hours=1)


class Overloaded(OrchError):
    """Spans arrive faster than they are written: the exporter should retry later."""

    http_status = 503


class Tracing:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        enabled: bool = True,
        forwarder: OtlpForwarder | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        #: False: orch records no spans of its own (ingested ones are still stored)
        self.enabled = enabled
        self.recorder = SpanRecorder(db)
        #: where every span also goes, when ORCH_OTLP_EXPORT_ENDPOINT names a collector
        self.forwarder = forwarder
        if forwarder is not None:
            self.recorder.tap = forwarder.forward

    async def start(self) -> None:
        await self.recorder.start()

    async def stop(self) -> None:
        await self.recorder.stop()
        if self.forwarder is not None:
            await self.forwarder.stop()

    async def flush(self) -> None:
        """Write what is buffered now (tests, and before a process exits)."""
        await self.recorder.flush()

    def ingest(self, body: bytes, content_type: str, content_encoding: str | None) -> DecodedExport:
        """An OTLP/HTTP export: decoded, its good spans buffered for writing; returns the
        DecodedExport (what was rejected and why). Raises an OtlpError for a body that
        cannot be read, and Overloaded while too many spans wait to be written."""
        if self.recorder.pending >= MAX_PENDING_INGEST:
            raise Overloaded(
                f"{self.recorder.pending} spans are waiting to be written; try again shortly"
            )
        decoded = decode_request(body, content_type, content_encoding, max_bytes=MAX_EXPORT_BYTES)
        self.recorder.ensure_running()
        self.recorder.ingest(decoded.spans)
        return decoded

    # -- reads ----------------------------------------------------------------------------

    async def recent(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        service: str | None = None,
        errors_only: bool = False,
        min_duration_ms: float | None = None,
        since: datetime | None = None,
    ) -> GetTracesResponse:
        now = self._clock.now()
        rows = await self._db.fetch(
            Q.recent_traces,
            since or now - RECENT,
            now + timedelta(minutes=1),  # a service's clock may run a little ahead
            service,
            errors_only,
            int(min_duration_ms * 1000) if min_duration_ms is not None else None,
            limit,
            offset,
            None,
        )
        traces = [_summary(row) for row in rows]
        return GetTracesResponse(traces=traces, trace_stats=_stats(traces))

    async def trace(self, trace_id: str) -> GetTraceDetailsResponse:
        trace_id = _trace_id(trace_id)
        rows = await self._db.fetch(Q.trace_spans, trace_id, MAX_SPANS)
        if not rows:
            raise NotFoundError("trace", trace_id)
        nodes = [_node(row) for row in rows]
        roots = build_tree(nodes)
        ordered = depth_first(roots)
        logs = _logs(rows)
        views = [_view(node, logs) for node in ordered]
        workflow = await self._db.fetchrow(Q.workflow_of_trace, trace_id)
        return GetTraceDetailsResponse(
            trace=_header(trace_id, ordered, roots, workflow),
            spans=views,
            service_map=[
                ServiceMapEdge(
                    source_service=e.source,
                    target_service=e.target,
                    request_count=e.count,
                    error_count=e.errors,
                    avg_duration_ms=round(e.avg_ms, 3),
                )
                for e in service_edges(ordered)
            ],
            critical_path=critical_path(roots),
        )

    async def search(self, request: SearchTracesRequest | dict[str, Any]) -> GetTracesResponse:
        req = (
            request if isinstance(request, SearchTracesRequest) else SearchTracesRequest(**request)
        )
        now = self._clock.now()
        start = req.start_time or now - timedelta(days=1)
        end = req.end_time or now + timedelta(minutes=1)
        if end <= start:
            raise ValidationFailed("end_time", "must be after start_time")
        rows = await self._db.fetch(
            Q.search_spans,
            req.service_name,
            req.operation_name,
            req.tags or None,  # the pool's jsonb codec encodes it
            _micros(req.duration_min_ms),
            _micros(req.duration_max_ms),
            start,
            end,
            req.has_errors,
            req.limit,
            req.offset,
        )
        found = [row["trace_id"] for row in rows]
        if not found:
            return GetTracesResponse(traces=[], trace_stats=_stats([]))
        # The findings summarised as the list of recent traces summarises them, in one
        # statement; in the order the search ranked them (latest match first).
        summaries = await self._db.fetch(
            Q.recent_traces, start, end, None, False, None, len(found), 0, found
        )
        by_id = {row["trace_id"]: _summary(row) for row in summaries}
        traces = [by_id[trace_id] for trace_id in found if trace_id in by_id]
        return GetTracesResponse(traces=traces, trace_stats=_stats(traces))

    async def trace_of_workflow(self, workflow: str) -> str:
        """The trace id of a workflow, named by its id or its correlation id."""
        row = await self._db.fetchrow(Q.trace_of_workflow, workflow)
        if row is None or not row["trace_id"]:
            raise NotFoundError("workflow", workflow)
        return str(row["trace_id"])

    async def trim(self, *, older_than: timedelta, batch: int = 5000) -> int:
        """Remove spans older than the retention, one batch (how many went)."""
        status = await self._db.execute(Q.trim_spans, self._clock.now() - older_than, batch)
        return int(status.split()[-1])


def _trace_id(value: str) -> str:
    trace_id = value.strip().lower()
    if not valid_trace_id(trace_id):
        raise ValidationFailed("trace_id", "expected 32 lowercase hex digits, not all zero")
    return trace_id


def _micros(ms: float | None) -> int | None:
    return None if ms is None else int(ms * 1000)


def _node(row: Any) -> Node:
    start = row["start_time"]
    end = row["end_time"] or start
    return Node(
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        service_name=row["service_name"],
        operation_name=row["operation_name"],
        span_kind=row["span_kind"] or "internal",
        status_code=row["status_code"] or "unset",
        start_time=start,
        end_time=max(end, start),
        tags=row["tags"] if isinstance(row["tags"], dict) else {},
    )


def _logs(rows: list[Any]) -> dict[str, list[Any]]:
    return {row["span_id"]: row["logs"] if isinstance(row["logs"], list) else [] for row in rows}


def _view(node: Node, logs: dict[str, list[Any]]) -> SpanView:
    return SpanView(
        span_id=node.span_id,
        parent_span_id=node.parent_span_id,
        operation_name=node.operation_name,
        service_name=node.service_name,
        span_kind=node.span_kind,
        start_time=node.start_time,
        end_time=node.end_time,
        duration_microseconds=int((node.end_time - node.start_time).total_seconds() * 1e6),
        status_code=node.status_code,
        tags=node.tags,
        logs=[_span_log(event) for event in logs.get(node.span_id, []) if isinstance(event, dict)],
        children=[child.span_id for child in node.children],
        depth=node.depth,
    )


def _span_log(event: dict[str, Any]) -> SpanLog:
    attributes = event.get("attributes")
    fields = attributes if isinstance(attributes, dict) else {}
    name = str(event.get("name", ""))
    level = "error" if name == "exception" or "reject" in name else "info"
    return SpanLog(timestamp=event.get("timestamp"), level=level, message=name, fields=fields)


def _header(trace_id: str, ordered: list[Node], roots: list[Node], workflow: Any) -> TraceHeader:
    start = min(n.start_time for n in ordered)
    end = max(n.end_time for n in ordered)
    errors = [n for n in ordered if n.is_error]
    first_error = errors[0].tags.get("otel.status_description") if errors else None
    return TraceHeader(
        trace_id=trace_id,
        total_duration_ms=round((end - start).total_seconds() * 1000, 3),
        span_count=len(ordered),
        service_count=len({n.service_name for n in ordered}),
        start_time=start,
        end_time=end,
        root_operation=roots[0].operation_name,
        status="error" if errors else "ok",
        error_message=str(first_error) if first_error else None,
        workflow_id=str(workflow["id"]) if workflow else None,
        correlation_id=workflow["correlation_id"] if workflow else None,
    )


def _summary(row: Any) -> TraceSummary:
    return TraceSummary(
        trace_id=row["trace_id"],
        root_service=row["root_service"],
        operation_name=row["root_operation"],
        start_time=row["start_time"],
        duration_ms=round(float(row["duration_ms"]), 3),
        span_count=row["span_count"],
        service_count=row["service_count"],
        error_count=row["error_count"],
        status="error" if row["error_count"] else "ok",
        tags=_string_tags(row["root_tags"]),
        services=sorted(row["services"] or []),
    )


def _string_tags(tags: Any) -> dict[str, str]:
    if not isinstance(tags, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()}


def _stats(traces: list[TraceSummary]) -> TraceStats:
    count = len(traces)
    return TraceStats(
        total_traces=count,
        avg_duration_ms=round(sum(t.duration_ms for t in traces) / count, 3) if count else 0.0,
        error_rate=round(sum(1 for t in traces if t.error_count) / count, 4) if count else 0.0,
        services_involved=sorted({s for t in traces for s in t.services}),
    )
