"""RemoteOrch: what the console reads and does, through the daemon's HTTP API.

The same concerns, methods and models the engine gives a face (``orch.registry``,
``orch.breakers``, ``orch.workflows``, ``orch.bus``, ``orch.mesh``, ``orch.tracing``),
answered by the daemon under a token: no database driver, no credentials but the token,
the token's role deciding what may be done, and every action audited under the token's
name on the daemon's side (the ``actor`` a caller passes is not sent: identity comes from
the token). Changes arrive as the daemon's server-sent events
(:class:`~orchcore.client.events.EventStream`) instead of LISTEN.

Refusals come back as the engine's errors: 404 is a :class:`~orchcore.errors.NotFoundError`,
any other refusal an :class:`ApiRefused` carrying the daemon's own message; a daemon that
cannot be reached (or that cannot reach its database: 503) is :class:`DaemonUnreachable`,
which the console shows in its connection banner and recovers from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import TypeAdapter

from orchcore.client.identity import DaemonUnreachable, Identity, whoami
from orchcore.errors import NotFoundError, OrchError

if TYPE_CHECKING:
    from orchcore.bus.models import (
        DeadLetter,
        DeadLetterActionResponse,
        DepthSample,
        GetQueueMessagesResponse,
        MessageQueue,
        QueueMetrics,
    )
    from orchcore.client.credentials import ApiCredentials
    from orchcore.client.events import EventStream
    from orchcore.mesh.models import MeshPolicy
    from orchcore.mesh.store import ApplyPolicyResponse, GetMeshPoliciesResponse
    from orchcore.overview import SystemOverview
    from orchcore.registry.models import Instance, InstanceStateEvent, Service
    from orchcore.resilience.breaker_metrics import GetCircuitBreakerMetricsResponse
    from orchcore.resilience.breakers import Breaker, BreakerTransition
    from orchcore.saga.views import GetWorkflowsResponse, GetWorkflowStatusResponse, WorkflowDetail
    from orchcore.tracing.models import GetTraceDetailsResponse, GetTracesResponse
    from orchcore.tracing.servicemap_models import GetServiceMapResponse

T = TypeVar("T")

API = "/api/orchestration"
#: The header the daemon stamps every answer with: the engine's time (api/guards.py).
NOW_HEADER = "orch-now"
#: What an operator's reason says when the console asked for none (the API wants one).
NO_REASON = "no reason given"


class ApiRefused(OrchError):
    """The daemon refused the request; the message is the daemon's own."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.http_status = status
        self.error = error


class RemoteNotFound(NotFoundError):
    """A 404 from the daemon, with its message (``workflow '…' not found``)."""

    def __init__(self, message: str) -> None:
        OrchError.__init__(self, message)
        self.kind = "resource"
        self.key = ""


class ServerClock:
    """The daemon's clock as its answers tell it: the last ``Orch-Now`` seen, moved on by
    the local monotonic clock since. Ages on screen are measured against the engine's
    time, as a console on the database measures them, whatever the laptop's clock says."""

    def __init__(self) -> None:
        self._server: datetime | None = None
        self._seen_at = 0.0

    async def observe_response(self, response: httpx.Response) -> None:
        """An httpx response hook: every answer moves the clock, the first (whoami) too."""
        self.observe(response.headers.get(NOW_HEADER))

    def observe(self, stamp: str | None) -> None:
        if not stamp:
            return
        try:
            server = datetime.fromisoformat(stamp)
        except ValueError:
            return
        if server.tzinfo is None:
            server = server.replace(tzinfo=UTC)
        self._server, self._seen_at = server, time.monotonic()

    def now(self) -> datetime:
        if self._server is None:
            return datetime.now(UTC)
        return self._server + timedelta(seconds=time.monotonic() - self._seen_at)


@dataclass(frozen=True)
class RemoteSettings:
    environment: str


@cache
def _cached_adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _adapter(kind: type[T]) -> TypeAdapter[T]:
    # Made once a kind: building a TypeAdapter costs more than the answer's parsing.
    adapter: TypeAdapter[T] = _cached_adapter(cast(Hashable, kind))
    return adapter


def _segment(value: object) -> str:
    """One path segment, whatever it holds (a slash or ``..`` in a name stays a name)."""
    return quote(str(value), safe="")


class _Api:
    """The HTTP exchange every concern shares: errors mapped to the engine's, and one
    request for identical GETs in flight together (the Overview and Queues panes ask for
    the queue listing twice at once: for the queues and for their figures)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._reading: dict[tuple[str, tuple[tuple[str, Any], ...]], asyncio.Task[bytes]] = {}

    async def get(self, kind: type[T], path: str, **params: Any) -> T:
        query = _query(params)
        key = (path, tuple(sorted(query.items())))
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._exchange("GET", path, query, None))
            self._reading[key] = reading
            reading.add_done_callback(lambda _done: self._reading.pop(key, None))
        # Shielded: one reader going away (a pane's fetch cancelled) leaves the others theirs.
        content = await asyncio.shield(reading)
        parsed: T = _adapter(kind).validate_json(content)
        return parsed

    async def call(
        self,
        kind: type[T],
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> T:
        content = await self._exchange(method, path, _query(params or {}), body)
        parsed: T = _adapter(kind).validate_json(content)
        return parsed

    async def _exchange(self, method: str, path: str, query: dict[str, Any], body: Any) -> bytes:
        try:
            answer = await self.http.request(method, API + path, params=query or None, json=body)
        except httpx.TransportError as exc:
            raise DaemonUnreachable(_transport_failure(exc)) from exc
        if answer.status_code >= 400:
            raise _refusal(answer)
        return answer.content


def _query(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _transport_failure(exc: httpx.TransportError) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"the daemon does not answer: {text}"


def _refusal(answer: httpx.Response) -> OrchError:
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or body.get("detail") or answer.reason_phrase)
    error = str(body.get("error") or answer.reason_phrase)
    status = answer.status_code
    if status == 404:
        return RemoteNotFound(message)
    if status == 503:
        return DaemonUnreachable(f"the daemon cannot serve: {message}")
    if status == 401:
        message = f"the daemon refused the token: {message}"
    return ApiRefused(status, error, message)


class RemoteRegistry:
    def __init__(self, api: _Api) -> None:
        self._api = api

    async def list_services(self) -> list[Service]:
        from orchcore.registry.models import Service

        return await self._api.get(list[Service], "/registry/services")

    async def get_service(self, key: str) -> Service:
        from orchcore.registry.models import Service

        return await self._api.get(Service, f"/services/{_segment(key)}")

    async def list_instances(self, service: str) -> list[Instance]:
        from orchcore.registry.models import Instance

        return await self._api.get(
            list[Instance], f"/registry/services/{_segment(service)}/instances"
        )

    async def service_events(self, service: str, *, limit: int = 50) -> list[InstanceStateEvent]:
        from orchcore.registry.models import InstanceStateEvent

        return await self._api.get(
            list[InstanceStateEvent], f"/services/{_segment(service)}/events", limit=limit
        )

    async def deregister_instance(
        self, service: str, instance_id: str, *, actor: str, reason: str | None = None
    ) -> dict[str, Any]:
        path = f"/services/{_segment(service)}/instances/{_segment(instance_id)}"
        return await self._api.call(dict[str, Any], "DELETE", path, params={"reason": reason})

    async def deactivate_service(
        self, key: str, *, actor: str, reason: str | None = None
    ) -> Service:
        from orchcore.registry.models import Service

        return await self._api.call(
            Service,
            "POST",
            f"/services/{_segment(key)}/deactivate",
            body={"reason": reason or NO_REASON},
        )


class RemoteBreakers:
    def __init__(self, api: _Api) -> None:
        self._api = api

    async def list_breakers(self) -> list[Breaker]:
        from orchcore.resilience.breakers import Breaker

        found = await self._api.get(dict[str, Any], "/circuit-breakers")
        return _adapter(list[Breaker]).validate_python(found["circuit_breakers"])

    async def get(self, breaker_id: UUID) -> Breaker:
        from orchcore.resilience.breakers import Breaker

        return await self._api.get(Breaker, f"/circuit-breakers/{breaker_id}")

    async def history(self, breaker_id: UUID, *, limit: int = 100) -> list[BreakerTransition]:
        from orchcore.resilience.breakers import BreakerTransition

        return await self._api.get(
            list[BreakerTransition], f"/circuit-breakers/{breaker_id}/history", limit=limit
        )

    async def metrics(self, breaker: Breaker) -> GetCircuitBreakerMetricsResponse:
        from orchcore.resilience.breaker_metrics import GetCircuitBreakerMetricsResponse

        return await self._api.get(
            GetCircuitBreakerMetricsResponse, f"/circuit-breakers/{breaker.id}/metrics"
        )

    async def reset(self, breaker_id: UUID, *, actor: str, reason: str) -> Breaker:
        return await self._put_state(breaker_id, "reset", reason)

    async def force_open(self, breaker_id: UUID, *, actor: str, reason: str) -> Breaker:
        return await self._put_state(breaker_id, "force-open", reason)

    async def disable(self, breaker_id: UUID, *, actor: str, reason: str) -> Breaker:
        return await self._put_state(breaker_id, "disable", reason)

    async def _put_state(self, breaker_id: UUID, verb: str, reason: str) -> Breaker:
        from orchcore.resilience.breakers import Breaker

        return await self._api.call(
            Breaker, "PUT", f"/circuit-breakers/{breaker_id}/{verb}", body={"reason": reason}
        )


class RemoteWorkflows:
    def __init__(self, api: _Api) -> None:
        self._api = api

    async def list_workflows(
        self, *, status: list[str] | None = None, limit: int = 50
    ) -> GetWorkflowsResponse:
        from orchcore.saga.views import GetWorkflowsResponse

        statuses = ",".join(status) if status else None
        return await self._api.get(GetWorkflowsResponse, "/workflows", status=statuses, limit=limit)

    async def status(self, workflow_id: UUID) -> GetWorkflowStatusResponse:
        from orchcore.saga.views import GetWorkflowStatusResponse

        return await self._api.get(GetWorkflowStatusResponse, f"/workflows/{workflow_id}/status")

    async def retry(
        self, workflow_id: UUID, request: dict[str, Any], *, actor: str
    ) -> WorkflowDetail:
        return await self._act(workflow_id, "retry", request)

    async def compensate(
        self, workflow_id: UUID, request: dict[str, Any], *, actor: str
    ) -> WorkflowDetail:
        return await self._act(workflow_id, "compensate", request)

    async def pause(
        self, workflow_id: UUID, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        return await self._act(workflow_id, "pause", {"reason": reason})

    async def resume(
        self, workflow_id: UUID, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        return await self._act(workflow_id, "resume", {"reason": reason})

    async def cancel(
        self, workflow_id: UUID, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        return await self._act(workflow_id, "cancel", {"reason": reason})

    async def skip_step(
        self,
        workflow_id: UUID,
        step_name: str,
        *,
        output: dict[str, Any] | None,
        actor: str,
        reason: str,
    ) -> WorkflowDetail:
        return await self._act(
            workflow_id,
            f"steps/{_segment(step_name)}/skip",
            {"output": output or {}, "reason": reason},
        )

    async def retry_compensation(
        self, workflow_id: UUID, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        return await self._act(workflow_id, "compensation/retry", {"reason": reason})

    async def mark_compensated(
        self, workflow_id: UUID, step_name: str | None = None, *, actor: str, note: str
    ) -> WorkflowDetail:
        return await self._act(
            workflow_id, "compensation/mark-done", {"step_name": step_name, "note": note}
        )

    async def _act(self, workflow_id: UUID, verb: str, body: dict[str, Any]) -> WorkflowDetail:
        from orchcore.saga.views import WorkflowDetail

        return await self._api.call(
            WorkflowDetail, "POST", f"/workflows/{workflow_id}/{verb}", body=body
        )


class RemoteBus:
    def __init__(self, api: _Api) -> None:
        self._api = api

    async def list_queues(self) -> list[MessageQueue]:
        from orchcore.bus.models import MessageQueue

        listing = await self._api.get(dict[str, Any], "/messages/queues")
        return _adapter(list[MessageQueue]).validate_python(listing["queues"])

    async def all_metrics(self) -> dict[str, QueueMetrics]:
        from orchcore.bus.models import QueueMetrics

        listing = await self._api.get(dict[str, Any], "/messages/queues")
        read = _adapter(QueueMetrics).validate_python
        return {
            q["queue_name"]: read(q["queue_metrics"])
            for q in listing["queues"]
            if q["queue_metrics"]
        }

    async def depth_history(self, queue_name: str, *, since: datetime) -> list[DepthSample]:
        from orchcore.bus.models import DepthSample

        return await self._api.get(
            list[DepthSample],
            f"/messages/queues/{_segment(queue_name)}/depth",
            since=since.isoformat(),
        )

    async def get_queue(self, name: str) -> MessageQueue:
        from orchcore.bus.models import MessageQueue

        detail = await self._api.get(dict[str, Any], f"/messages/queues/{_segment(name)}")
        return _adapter(MessageQueue).validate_python(detail["queue"])

    async def queue_messages(
        self, queue_name: str, *, limit: int = 100
    ) -> GetQueueMessagesResponse:
        from orchcore.bus.models import GetQueueMessagesResponse

        return await self._api.get(
            GetQueueMessagesResponse,
            f"/messages/queues/{_segment(queue_name)}/messages",
            limit=limit,
        )

    async def dead_letters(self, queue_name: str, *, limit: int = 100) -> list[DeadLetter]:
        from orchcore.bus.models import DeadLetter

        found = await self._api.get(
            dict[str, Any], f"/messages/queues/{_segment(queue_name)}/dead-letters", limit=limit
        )
        return _adapter(list[DeadLetter]).validate_python(found["dead_letters"])

    async def redrive(
        self, queue_name: str, request: dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse:
        return await self._dead_letter_action(queue_name, "redrive", request)

    async def purge_dead_letters(
        self, queue_name: str, request: dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse:
        return await self._dead_letter_action(queue_name, "purge", request)

    async def _dead_letter_action(
        self, queue_name: str, verb: str, request: dict[str, Any]
    ) -> DeadLetterActionResponse:
        from orchcore.bus.models import DeadLetterActionResponse

        return await self._api.call(
            DeadLetterActionResponse,
            "POST",
            f"/messages/queues/{_segment(queue_name)}/dead-letters/{verb}",
            body=request,
        )


class RemoteMesh:
    def __init__(self, api: _Api) -> None:
        self._api = api

    async def overview(self) -> GetMeshPoliciesResponse:
        from orchcore.mesh.store import GetMeshPoliciesResponse

        return await self._api.get(GetMeshPoliciesResponse, "/mesh/policies")

    async def get(self, key: UUID) -> MeshPolicy:
        from orchcore.mesh.models import MeshPolicy

        return await self._api.get(MeshPolicy, f"/mesh/policies/{key}")

    async def set_enabled(
        self, key: UUID, enabled: bool, *, actor: str, reason: str | None = None
    ) -> MeshPolicy:
        from orchcore.mesh.models import MeshPolicy

        verb = "enable" if enabled else "disable"
        return await self._api.call(
            MeshPolicy, "POST", f"/mesh/policies/{key}/{verb}", body={"reason": reason or NO_REASON}
        )

    async def apply(
        self, key: UUID, *, actor: str, reason: str | None = None
    ) -> ApplyPolicyResponse:
        from orchcore.mesh.store import ApplyPolicyResponse

        return await self._api.call(ApplyPolicyResponse, "POST", f"/mesh/policies/{key}/apply")


class RemoteTracing:
    def __init__(self, api: _Api) -> None:
        self._api = api

    async def trace(self, trace_id: str) -> GetTraceDetailsResponse:
        from orchcore.tracing.models import GetTraceDetailsResponse

        return await self._api.get(GetTraceDetailsResponse, f"/traces/{_segment(trace_id)}")

    async def recent(
        self,
        *,
        limit: int = 50,
        service: str | None = None,
        errors_only: bool = False,
        min_duration_ms: float | None = None,
    ) -> GetTracesResponse:
        from orchcore.tracing.models import GetTracesResponse

        return await self._api.get(
            GetTracesResponse,
            "/traces",
            limit=limit,
            service=service,
            errors_only=errors_only or None,
            min_duration_ms=min_duration_ms,
        )

    async def trace_of_workflow(self, workflow: str) -> str:
        found = await self._api.get(dict[str, Any], f"/workflows/{_segment(workflow)}/trace-id")
        return str(found["trace_id"])


class RemoteOrch:
    """The console's source over the daemon's API (see the module's docstring)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        label: str,
        identity: Identity,
        listener: EventStream | None = None,
        clock: ServerClock | None = None,
    ) -> None:
        self.clock = clock or ServerClock()
        self._api = _Api(http)
        self._http = http
        self.identity = identity
        #: how the daemon's audit log names whoever acts through this source
        self.actor = f"token:{identity.name}"
        self.listener = listener
        self.settings = RemoteSettings(environment=identity.environment or "–")
        self.database_label = label
        self.registry = RemoteRegistry(self._api)
        self.breakers = RemoteBreakers(self._api)
        self.workflows = RemoteWorkflows(self._api)
        self.bus = RemoteBus(self._api)
        self.mesh = RemoteMesh(self._api)
        self.tracing = RemoteTracing(self._api)

    @classmethod
    async def connect(cls, credentials: ApiCredentials, *, follow: bool = True) -> RemoteOrch:
        """Ask the daemon who the token is (refused or unreachable: the error says so),
        then follow its event stream (``follow``)."""
        from orchcore.client.credentials import http_client

        http = http_client(credentials)
        clock = ServerClock()
        http.event_hooks["response"].append(clock.observe_response)
        try:
            identity = await whoami(http)
            listener = None
            if follow:
                from orchcore.client.events import EventStream

                listener = EventStream(http)
                await listener.start()
        except BaseException:
            await http.aclose()
            raise
        label = f"{credentials.url} as {identity.name} ({identity.role})"
        return cls(http, label=label, identity=identity, listener=listener, clock=clock)

    async def overview(self) -> SystemOverview:
        from orchcore.overview import SystemOverview

        return await self._api.get(SystemOverview, "/overview")

    async def service_map(self) -> GetServiceMapResponse:
        from orchcore.tracing.servicemap_models import GetServiceMapResponse

        return await self._api.get(GetServiceMapResponse, "/observability/service-map")

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        await self._http.aclose()
