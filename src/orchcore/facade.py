"""Orch: the one object every face holds.

It owns the pool, the clock, the settings and (unless told otherwise) the
notification listener, and exposes each concern's API as an attribute.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from datetime import timedelta
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg

from orchcore.clock import Clock, SystemClock
from orchcore.db import Database, Queries
from orchcore.db.embedded import EmbeddedPostgres
from orchcore.db.listen import NotificationListener
from orchcore.db.migrate import SchemaMode, check_schema, migrate
from orchcore.db.pool import connect
from orchcore.errors import OrchError
from orchcore.settings import Settings

if TYPE_CHECKING:
    from orchcore.alerts import AlertStore
    from orchcore.auth.tokens import TokenStore
    from orchcore.bus.bus import MessageBus
    from orchcore.callpath.caller import ServiceCaller
    from orchcore.callpath.events import ServiceEventRecorder
    from orchcore.membership import DaemonMembership
    from orchcore.mesh.store import MeshPolicies
    from orchcore.overview import SystemOverview
    from orchcore.registry.discovery import ServiceDiscovery
    from orchcore.registry.health import InstanceHealthChecker
    from orchcore.registry.store import ServiceRegistry
    from orchcore.resilience.breakers import CircuitBreakers
    from orchcore.resilience.ratelimit import RateLimiter
    from orchcore.retention import History, HistoryRetention
    from orchcore.saga.definitions import DefinitionStore
    from orchcore.saga.store import WorkflowStore
    from orchcore.tracing.servicemap_models import GetServiceMapResponse
    from orchcore.tracing.tracing import Tracing

Q = Queries("orchcore")


def _process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DatabaseUnavailable(OrchError):
    http_status = 503


def describe_dsn(dsn: str) -> str:
    """host:port/database without credentials, for headers and error messages."""
    parts = urlsplit(dsn)
    query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
    host = parts.hostname or query.get("host", "localhost")
    port = parts.port or query.get("port", "5432")
    database = parts.path.lstrip("/") or "postgres"
    if host.startswith("/"):
        return f"unix:{host}/{database}"
    return f"{host}:{port}/{database}"


class Orch:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        *,
        listener: NotificationListener | None = None,
        embedded: EmbeddedPostgres | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.listener = listener
        self._embedded = embedded
        self._trace_rng = random.Random()
        self._caller: ServiceCaller | None = None
        self._caller_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        dsn: str | None = None,
        clock: Clock | None = None,
        schema: SchemaMode = SchemaMode.CHECK,
        listen: bool = True,
        start_discovery: bool = True,
    ) -> Orch:
        """Connect (starting the embedded server if no DSN is given) and get ready.

        ``schema``: by default the database must hold exactly this orch's schema
        (:class:`~orchcore.db.migrate.SchemaMismatch` says what to do otherwise); only
        the daemon and the demo ask to migrate it."""
        settings = settings or Settings.from_env()
        embedded: EmbeddedPostgres | None = None
        dsn = dsn or settings.database_url
        if dsn is None:
            embedded = EmbeddedPostgres(settings.data_dir)
            dsn = await asyncio.to_thread(embedded.acquire)
        try:
            db = await _open_pool(dsn, settings)
        except BaseException:
            if embedded is not None:
                await asyncio.to_thread(embedded.release)
            raise
        clock = clock or SystemClock()
        listener = NotificationListener(dsn) if listen else None
        orch = cls(db, clock, settings, listener=listener, embedded=embedded)
        try:
            await orch._prepare(schema=schema, start_discovery=start_discovery)
        except BaseException:
            await orch.close()
            raise
        return orch

    async def _prepare(self, *, schema: SchemaMode, start_discovery: bool) -> None:
        if isinstance(self.clock, SystemClock):
            await self._calibrate_clock(self.clock)
        if schema is SchemaMode.MIGRATE:
            # A connection of its own: the pool's statement timeout must not cut a
            # migration short on a large table.
            conn = await connect(self.db.dsn)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        elif schema is SchemaMode.CHECK:
            async with self.db.pool.acquire() as lent:
                await check_schema(lent)
        if self.listener is not None:
            await self.listener.start()
        if start_discovery:
            await self.discovery.start()

    async def _calibrate_clock(self, clock: SystemClock) -> None:
        started = time.perf_counter()
        server_now = await self.db.fetchval(Q.server_now)
        clock.calibrate(server_now, time.perf_counter() - started)

    async def caller(self) -> ServiceCaller:
        """The guarded call path, started on first use (its caches load then)."""
        if self._caller is not None:
            return self._caller
        # Sagas starting together all ask at once; one of them makes it.
        async with self._caller_lock:
            if self._caller is None:
                self._caller = await self._start_caller()
        return self._caller

    async def _start_caller(self) -> ServiceCaller:
        from orchcore.callpath.caller import ServiceCaller

        await self.breakers.start()
        await self.mesh.start()
        await self.events.start()
        await self.tracing.start()
        return ServiceCaller(
            discovery=self.discovery,
            breakers=self.breakers,
            mesh=self.mesh,
            rate_limiter=self.rate_limiter,
            recorder=self.events,
            clock=self.clock,
            spans=self.tracing.recorder if self.tracing.enabled else None,
            tls=self.settings.tls(),
        )

    async def close(self) -> None:
        if self._caller is not None:
            await self._caller.close()
            await self.events.stop()
            await self.mesh.stop()
            self._caller = None
        # Only what was made has anything to stop; asking now would make it.
        if (tracing := self._made("tracing")) is not None:
            await tracing.stop()
        if (discovery := self._made("discovery")) is not None:
            await discovery.stop()
        if (bus := self._made("bus")) is not None:
            await bus.close()
        if self.listener is not None:
            await self.listener.stop()
        await self.db.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.release)
            self._embedded = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- each concern's API, made when a face first asks for it ------------------------
    # A CLI verb uses one or two of them: making every one would import the whole engine
    # (httpx, protobuf, every model) before the verb could answer.

    @cached_property
    def registry(self) -> ServiceRegistry:
        from orchcore.registry.store import ServiceRegistry

        return ServiceRegistry(self.db, self.clock)

    @cached_property
    def discovery(self) -> ServiceDiscovery:
        from orchcore.registry.discovery import ServiceDiscovery

        return ServiceDiscovery(self.db, self.clock, self.listener)

    @cached_property
    def tokens(self) -> TokenStore:
        from orchcore.auth.tokens import TokenStore

        return TokenStore(self.db, self.clock, self.listener)

    @cached_property
    def daemons(self) -> DaemonMembership:
        from orchcore.membership import DaemonMembership

        return DaemonMembership(self.db, self.clock)

    @cached_property
    def breakers(self) -> CircuitBreakers:
        from orchcore.resilience.breakers import CircuitBreakers

        return CircuitBreakers(self.db, self.clock, self.listener, holder=_process_identity())

    @cached_property
    def mesh(self) -> MeshPolicies:
        from orchcore.mesh.store import MeshPolicies

        return MeshPolicies(self.db, self.clock, self.listener)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from orchcore.resilience.ratelimit import RateLimiter

        return RateLimiter(self.db, self.clock)

    @cached_property
    def events(self) -> ServiceEventRecorder:
        from orchcore.callpath.events import ServiceEventRecorder

        return ServiceEventRecorder(self.db)

    @cached_property
    def tracing(self) -> Tracing:
        from orchcore.tracing.tracing import Tracing

        settings = self.settings
        forwarder = None
        if settings.otlp_export_endpoint:
            from orchcore.tracing.forwarder import OtlpForwarder

            forwarder = OtlpForwarder(
                settings.otlp_export_endpoint, headers=settings.otlp_export_headers
            )
        return Tracing(self.db, self.clock, enabled=settings.tracing, forwarder=forwarder)

    @cached_property
    def alerts(self) -> AlertStore:
        from orchcore.alerts import AlertStore

        return AlertStore(self.db, self.clock)

    @cached_property
    def workflow_definitions(self) -> DefinitionStore:
        from orchcore.saga.definitions import DefinitionStore

        return DefinitionStore(self.db, self.clock)

    @cached_property
    def workflows(self) -> WorkflowStore:
        from orchcore.saga.store import WorkflowStore

        return WorkflowStore(
            self.db,
            self.clock,
            self.workflow_definitions,
            known_source=self.is_known_source,
            sampler=self._sample_trace,
        )

    @cached_property
    def bus(self) -> MessageBus:
        from orchcore.bus.bus import MessageBus

        return MessageBus(self.db, self.clock, self.listener)

    @cached_property
    def retention(self) -> HistoryRetention:
        from orchcore.retention import HistoryRetention

        return HistoryRetention(self.db, self.clock, _history_windows(self.settings))

    def _made(self, name: str) -> Any:
        """The concern ``name`` if a face asked for it (cached_property keeps it here)."""
        return self.__dict__.get(name)

    # -- conveniences the faces share ------------------------------------------------

    @property
    def database_label(self) -> str:
        label = describe_dsn(self.db.dsn)
        return f"embedded {label}" if self._embedded is not None else label

    @property
    def embedded(self) -> EmbeddedPostgres | None:
        return self._embedded

    async def _sample_trace(self, source: str, target: str | None) -> bool:
        """A new workflow's trace is recorded at the rate of the observability policy
        between its initiator and its first call's service (all of them without one)."""
        if target is None:
            return True
        policy = await self.mesh.effective(source, target)
        if policy.tracing is None:
            return True
        return self._trace_rng.random() < policy.tracing.sampling_rate

    async def is_known_source(self, name: str) -> bool:
        """Whether calls may come from ``name``: one of orch's own, or a registered service."""
        from orchcore.callpath.identity import ORCH_IDENTITIES

        return name in ORCH_IDENTITIES or await self.discovery.is_registered(name)

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.db.fetchval(Q.ping)

    def health_checker(self, *, checker_id: UUID, actor: str) -> InstanceHealthChecker:
        from orchcore.registry.health import InstanceHealthChecker

        return InstanceHealthChecker(self.db, self.clock, checker_id=checker_id, actor=actor)

    async def service_map(self) -> GetServiceMapResponse:
        """The seed's GetServiceMapResponse over the last hour (``orch map``, the Map pane)."""
        from orchcore.tracing.servicemap import ServiceMapReader

        return await ServiceMapReader(self.db, self.clock).build()

    async def overview(self) -> SystemOverview:
        from orchcore.overview import summarise

        services = await self.registry.list_services()
        daemons = await self.daemons.list()
        breakers = await self.breakers.state_counts()
        workflows = await self.workflows.status_counts()
        alerts = await self.alerts.open_count()
        return summarise(services, daemons, breakers, workflows, alerts)


def _history_windows(settings: Settings) -> dict[History, timedelta | None]:
    from orchcore.retention import History, windows_of_days

    return windows_of_days(
        {
            History.SERVICE_EVENTS: settings.service_event_retention_days,
            History.WORKFLOW_EVENTS: settings.workflow_event_retention_days,
            History.BREAKER_TRANSITIONS: settings.breaker_transition_retention_days,
            History.AUDIT_LOG: settings.audit_retention_days,
        }
    )


async def _open_pool(dsn: str, settings: Settings) -> Database:
    try:
        return await Database.open(
            dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = str(exc) or type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {reason}"
        ) from None
