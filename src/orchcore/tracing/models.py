"""The tracing API's shapes (the seed's GetTracesResponse, GetTraceDetailsResponse,
SearchTracesRequest), with the workflow a trace belongs to where there is one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class TraceSummary(BaseModel):
    trace_id: str
    root_service: str
    operation_name: str
    start_time: datetime
    duration_ms: float
    span_count: int
    service_count: int
    error_count: int
    status: str
    tags: dict[str, str] = Field(default_factory=dict)
    services: list[str] = Field(default_factory=list)


class TraceStats(BaseModel):
    total_traces: int
    avg_duration_ms: float
    error_rate: float
    services_involved: list[str]


class GetTracesResponse(BaseModel):
    traces: list[TraceSummary]
    trace_stats: TraceStats


class SpanLog(BaseModel):
    timestamp: datetime
    level: str
    message: str
    fields: dict[str, Any] = Field(default_factory=dict)


class SpanView(BaseModel):
    span_id: str
    parent_span_id: str | None = None
    operation_name: str
    service_name: str
    span_kind: str
    start_time: datetime
    end_time: datetime | None = None
    duration_microseconds: int
    status_code: str
    tags: dict[str, Any] = Field(default_factory=dict)
    logs: list[SpanLog] = Field(default_factory=list)
    children: list[str] = Field(default_factory=list)
    #: depth in the tree (0: a root), for waterfalls
    depth: int = 0


class TraceHeader(BaseModel):
    trace_id: str
    total_duration_ms: float
    span_count: int
    service_count: int
    start_time: datetime
    end_time: datetime
    root_operation: str
    status: str
    error_message: str | None = None
    workflow_id: str | None = None
    correlation_id: str | None = None


class ServiceMapEdge(BaseModel):
    source_service: str
    target_service: str
    request_count: int
    error_count: int
    avg_duration_ms: float


class GetTraceDetailsResponse(BaseModel):
    trace: TraceHeader
    #: depth first, children in start order
    spans: list[SpanView]
    service_map: list[ServiceMapEdge]
    #: span ids of the critical path (the chain of spans that decided the end time)
    critical_path: list[str] = Field(default_factory=list)


class SearchTracesRequest(BaseModel):
    service_name: str | None = None
    operation_name: str | None = None
    tags: dict[str, str] | None = None
    duration_min_ms: float | None = Field(default=None, ge=0)
    duration_max_ms: float | None = Field(default=None, ge=0)
    start_time: datetime | None = None
    end_time: datetime | None = None
    has_errors: bool = False
    limit: int = Field(default=20, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=100_000)
