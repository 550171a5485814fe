"""What the console asks of the system: the one interface both of its sources implement.

The console reads and acts through a :class:`ConsoleSource`. Two implement it:

* :class:`orchcore.Orch`, the engine over the database (``orch console`` on a host that
  holds the database's credentials, and ``orch demo``);
* :class:`orchcore.client.RemoteOrch`, the daemon's HTTP API under a token
  (``orch console --api URL``): no database driver, the token's role decides what it
  may do, and changes come as server-sent events instead of LISTEN.

No pane knows which one it has: a pane's fetch takes a ConsoleSource, a mutation calls
one of its concerns. The protocols list exactly what the panes use, so a method the
console starts using must be given to both (mypy checks each against this module).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

if TYPE_CHECKING:
    from orchcore.bus.models import (
        DeadLetter,
        DeadLetterActionResponse,
        DepthSample,
        GetQueueMessagesResponse,
        MessageQueue,
        QueueMetrics,
    )
    from orchcore.mesh.models import MeshPolicy
    from orchcore.mesh.store import ApplyPolicyResponse, GetMeshPoliciesResponse
    from orchcore.overview import SystemOverview
    from orchcore.registry.models import Instance, InstanceStateEvent, Service
    from orchcore.resilience.breaker_metrics import GetCircuitBreakerMetricsResponse
    from orchcore.resilience.breakers import Breaker, BreakerTransition
    from orchcore.saga.views import GetWorkflowsResponse, GetWorkflowStatusResponse, WorkflowDetail
    from orchcore.tracing.models import GetTraceDetailsResponse, GetTracesResponse
    from orchcore.tracing.servicemap_models import GetServiceMapResponse


class SourceClock(Protocol):
    def now(self) -> datetime: ...


class SourceSettings(Protocol):
    @property
    def environment(self) -> str: ...


class ChangeFeed(Protocol):
    """What changed, as it happens: the engine's LISTEN connection, or the daemon's event
    stream. Handlers get each notification's payload (a dict naming its ``topic``)."""

    connected: bool
    last_error: str | None

    def subscribe(self, handler: Callable[[dict[str, Any]], None]) -> None: ...

    def unsubscribe(self, handler: Callable[[dict[str, Any]], None]) -> None: ...

    def on_connection_state(self, handler: Callable[[bool], None]) -> None: ...

    def remove_connection_state_handler(self, handler: Callable[[bool], None]) -> None: ...


class RegistrySource(Protocol):
    async def list_services(self) -> list[Service]: ...

    async def get_service(self, key: str) -> Service: ...

    async def list_instances(self, service: str) -> list[Instance]: ...

    async def service_events(
        self, service: str, *, limit: int = ...
    ) -> list[InstanceStateEvent]: ...

    # What the two actions answer differs by source and the console reads none of it.
    async def deregister_instance(
        self, service: str, instance_id: str, *, actor: str, reason: str | None = ...
    ) -> object: ...

    async def deactivate_service(
        self, key: str, *, actor: str, reason: str | None = ...
    ) -> object: ...


class BreakersSource(Protocol):
    async def list_breakers(self) -> list[Breaker]: ...

    async def get(self, breaker_id: UUID) -> Breaker: ...

    async def history(self, breaker_id: UUID, *, limit: int = ...) -> list[BreakerTransition]: ...

    async def metrics(self, breaker: Breaker) -> GetCircuitBreakerMetricsResponse: ...

    async def reset(self, breaker_id: UUID, *, actor: str, reason: str) -> Breaker: ...

    async def force_open(self, breaker_id: UUID, *, actor: str, reason: str) -> Breaker: ...

    async def disable(self, breaker_id: UUID, *, actor: str, reason: str) -> Breaker: ...


class WorkflowsSource(Protocol):
    async def list_workflows(
        self, *, status: list[str] | None = ..., limit: int = ...
    ) -> GetWorkflowsResponse: ...

    async def status(self, workflow_id: UUID) -> GetWorkflowStatusResponse: ...

    async def retry(
        self, workflow_id: UUID, request: dict[str, Any], *, actor: str
    ) -> WorkflowDetail: ...

    async def compensate(
        self, workflow_id: UUID, request: dict[str, Any], *, actor: str
    ) -> WorkflowDetail: ...

    async def pause(
        self, workflow_id: UUID, *, actor: str, reason: str | None = ...
    ) -> WorkflowDetail: ...

    async def resume(
        self, workflow_id: UUID, *, actor: str, reason: str | None = ...
    ) -> WorkflowDetail: ...

    async def cancel(
        self, workflow_id: UUID, *, actor: str, reason: str | None = ...
    ) -> WorkflowDetail: ...

    async def skip_step(
        self,
        workflow_id: UUID,
        step_name: str,
        *,
        output: dict[str, Any] | None,
        actor: str,
        reason: str,
    ) -> WorkflowDetail: ...

    async def retry_compensation(
        self, workflow_id: UUID, *, actor: str, reason: str | None = ...
    ) -> WorkflowDetail: ...

    async def mark_compensated(
        self, workflow_id: UUID, step_name: str | None = ..., *, actor: str, note: str
    ) -> WorkflowDetail: ...


class BusSource(Protocol):
    async def list_queues(self) -> list[MessageQueue]: ...

    async def all_metrics(self) -> dict[str, QueueMetrics]: ...

    async def depth_history(self, queue_name: str, *, since: datetime) -> list[DepthSample]: ...

    async def get_queue(self, name: str) -> MessageQueue: ...

    async def queue_messages(
        self, queue_name: str, *, limit: int = ...
    ) -> GetQueueMessagesResponse: ...

    async def dead_letters(self, queue_name: str, *, limit: int = ...) -> list[DeadLetter]: ...

    async def redrive(
        self, queue_name: str, request: dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse: ...

    async def purge_dead_letters(
        self, queue_name: str, request: dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse: ...


class MeshSource(Protocol):
    async def overview(self) -> GetMeshPoliciesResponse: ...

    async def get(self, key: UUID) -> MeshPolicy: ...

    async def set_enabled(
        self, key: UUID, enabled: bool, *, actor: str, reason: str | None = ...
    ) -> MeshPolicy: ...

    async def apply(
        self, key: UUID, *, actor: str, reason: str | None = ...
    ) -> ApplyPolicyResponse: ...


class TracingSource(Protocol):
    async def trace(self, trace_id: str) -> GetTraceDetailsResponse: ...

    async def recent(
        self,
        *,
        limit: int = ...,
        service: str | None = ...,
        errors_only: bool = ...,
        min_duration_ms: float | None = ...,
    ) -> GetTracesResponse: ...

    async def trace_of_workflow(self, workflow: str) -> str: ...


class ConsoleSource(Protocol):
    """Everything the console reads and does, whichever way it reaches the system."""

    @property
    def clock(self) -> SourceClock: ...

    @property
    def settings(self) -> SourceSettings: ...

    @property
    def listener(self) -> ChangeFeed | None: ...

    @property
    def database_label(self) -> str: ...

    @property
    def registry(self) -> RegistrySource: ...

    @property
    def breakers(self) -> BreakersSource: ...

    @property
    def workflows(self) -> WorkflowsSource: ...

    @property
    def bus(self) -> BusSource: ...

    @property
    def mesh(self) -> MeshSource: ...

    @property
    def tracing(self) -> TracingSource: ...

    async def overview(self) -> SystemOverview: ...

    async def service_map(self) -> GetServiceMapResponse: ...

    async def close(self) -> None: ...
