"""The service map's shapes: the seed's GetServiceMapResponse, with two additions of
orch's (whether a connection is declared, and when the map was made)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Position(BaseModel):
    x: float
    y: float


class ServiceNode(BaseModel):
    service_name: str
    #: the registry's type (api, worker, scheduler, gateway); "orchestrator" for orch's own
    #: identities, "unregistered" for a name seen only in traffic or a declaration
    service_type: str
    #: live instances (starting, healthy, unhealthy, critical), as GET services counts them
    instance_count: int
    #: healthy, degraded or unhealthy as the registry says; "unknown" when not registered
    health_status: str
    #: requests into the service over the window, per minute
    request_rate_per_minute: float
    #: failed share of those requests, 0..1
    error_rate: float
    avg_response_time_ms: float
    #: the seed's layout hint; orch leaves layout to the face that draws the map
    position: Position | None = None


class Connection(BaseModel):
    source_service: str
    target_service: str
    request_count_1h: int
    error_count_1h: int
    avg_latency_ms: float
    #: 1-100: requests relative to the busiest connection (a declared, unused one is 1)
    connection_strength: int
    #: http or https, from the target's base_url
    protocol: str
    #: the source declares the target among its dependencies (orch's addition)
    declared: bool = False


class CriticalPath(BaseModel):
    path: list[str]
    #: 0-100, see orchcore.tracing.servicemap.critical_paths
    failure_impact_score: float


class DependencyGraph(BaseModel):
    critical_paths: list[CriticalPath] = Field(default_factory=list)
    #: every elementary cycle, each starting at its smallest service, sorted
    circular_dependencies: list[list[str]] = Field(default_factory=list)


class GetServiceMapResponse(BaseModel):
    services: list[ServiceNode]
    connections: list[Connection]
    dependency_graph: DependencyGraph
    #: the end of the window the figures cover (orch's addition)
    generated_at: datetime
