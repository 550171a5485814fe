"""Health-aware discovery served from an in-process cache that NOTIFY keeps fresh.

Lookups never touch the database once a service is cached: a notification about
a service or one of its instances marks it dirty and one background task reloads
the dirty services, in rounds, until none is left (a change landing during a
reload marks the service dirty again, so nothing is missed). A periodic full
reload, and a full reload whenever the notification connection comes back, cover
notifications lost while disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.db.listen import NotificationListener
from orchcore.errors import NoHealthyInstanceError, NotFoundError
from orchcore.registry.balancing import PowerOfTwoChoices, RoundRobin, SmoothWeighted, Strategy
from orchcore.registry.endpoint import Endpoint
from orchcore.registry.models import LoadBalancing

Q = Queries("orchcore.registry")
log = logging.getLogger("orch.discovery")


@dataclass
class _CachedService:
    id: UUID
    name: str
    strategy: LoadBalancing
    active: bool
    scheme: str
    healthy: tuple[Endpoint, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    loaded_at: float = 0.0


class ServiceDiscovery:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        listener: NotificationListener | None = None,
        *,
        full_refresh_seconds: float = 30.0,
        uncached_max_age_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self._listener = listener
        self._full_refresh = full_refresh_seconds
        self._max_age_without_listener = uncached_max_age_seconds
        self._by_name: dict[str, _CachedService] = {}
        self._by_id: dict[UUID, _CachedService] = {}
        self._dirty: set[UUID] = set()
        self._dirty_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: defaultdict[UUID, int] = defaultdict(int)
        self._strategies: dict[str, Strategy] = {
            "round_robin": RoundRobin(),
            "least_connections": PowerOfTwoChoices(self._in_flight),
            "weighted": SmoothWeighted(),
        }
        self.reloads = 0

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_all()
        if self._listener is not None:
            self._listener.subscribe(self._on_notification)
            self._listener.on_reconnect(self.refresh_all)
            self._tasks.append(asyncio.create_task(self._reload_dirty(), name="discovery-dirty"))
        self._tasks.append(asyncio.create_task(self._periodic_refresh(), name="discovery-full"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- lookups ------------------------------------------------------------------

    async def get_healthy_instance(
        self, service: str, strategy: LoadBalancing | None = None
    ) -> Endpoint:
        """A healthy instance of ``service``; never one that is not healthy."""
        return self.pick(service, await self.healthy(service), strategy)

    async def healthy(self, service: str) -> tuple[Endpoint, ...]:
        """The healthy instances of ``service`` (raising if there is none)."""
        cached = self._by_name.get(service)
        if cached is None or self._needs_reload(cached):
            cached = await self._load_by_name(service)
        if not cached.healthy or not cached.active:
            counts = cached.counts if cached.active else {"deactivated": 1}
            raise NoHealthyInstanceError(service, counts)
        return cached.healthy

    async def is_registered(self, service: str) -> bool:
        """Whether ``service`` is registered, from the cache when it holds the name.

        A name the cache lacks is looked up (it may have been registered a moment
        ago); a name that is not registered leaves nothing behind, so a stream of
        made-up names cannot grow the cache.
        """
        if service in self._by_name:
            return True
        row = await self._db.fetchrow(Q.discovery_service_by_name, service)
        if row is None:
            return False
        await self._load_services([row["id"]])
        return True

    def pick(
        self,
        service: str,
        candidates: Sequence[Endpoint],
        strategy: LoadBalancing | None = None,
        *,
        weights: Mapping[str, int] | None = None,
        key: str | None = None,
    ) -> Endpoint:
        """Choose among ``candidates`` (a subset of the healthy instances) by strategy."""
        if not candidates:
            raise NoHealthyInstanceError(service, self.counts(service))
        cached = self._by_name.get(service)
        chosen = strategy or (cached.strategy if cached else "round_robin")
        return self._strategies[chosen].pick(key or service, candidates, weights)

    def counts(self, service: str) -> dict[str, int]:
        cached = self._by_name.get(service)
        return dict(cached.counts) if cached else {}

    @contextlib.asynccontextmanager
    async def lease(
        self, service: str, strategy: LoadBalancing | None = None
    ) -> AsyncIterator[Endpoint]:
        """Pick an instance and count the call as in flight until the block ends."""
        endpoint = await self.get_healthy_instance(service, strategy)
        self._in_flight[endpoint.id] += 1
        try:
            yield endpoint
        finally:
            self._in_flight[endpoint.id] -= 1

    @contextlib.contextmanager
    def track(self, endpoint: Endpoint) -> Iterator[None]:
        """Count a call to ``endpoint`` as in flight (least-connections reads it)."""
        self._in_flight[endpoint.id] += 1
        try:
            yield
        finally:
            self._in_flight[endpoint.id] -= 1

    def in_flight(self, endpoint: Endpoint) -> int:
        return self._in_flight[endpoint.id]

    def healthy_instances(self, service: str) -> tuple[Endpoint, ...]:
        cached = self._by_name.get(service)
        return cached.healthy if cached else ()

    def cached_services(self) -> list[str]:
        return sorted(self._by_name)

    # -- freshness ------------------------------------------------------------------

    def _needs_reload(self, cached: _CachedService) -> bool:
        if self._listener is not None and self._listener.connected:
            return False
        return self._clock.monotonic() - cached.loaded_at > self._max_age_without_listener

    def _on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") not in ("instance", "service"):
            return
        try:
            service_id = UUID(str(message["service_id"]))
        except (KeyError, ValueError):
            return
        self._dirty.add(service_id)
        self._dirty_event.set()

    async def _reload_dirty(self) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            while self._dirty:
                batch, self._dirty = self._dirty, set()
                try:
                    await self._load_services(batch)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("discovery reload failed, will retry: %s", exc)
                    self._dirty |= batch
                    await asyncio.sleep(0.5)

    async def _periodic_refresh(self) -> None:
        while True:
            await self._clock.sleep(self._full_refresh)
            try:
                await self.refresh_all()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("discovery full refresh failed: %s", exc)

    async def refresh_all(self) -> None:
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            services = await conn.fetch(Q.discovery_services)
            instances = await conn.fetch(Q.discovery_instances)
        self._apply(services, instances, replace_all=True)

    async def _load_services(self, ids: Iterable[UUID]) -> None:
        id_list = list(ids)
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            services = [
                row
                for sid in id_list
                if (row := await conn.fetchrow(Q.discovery_service_by_id, sid)) is not None
            ]
            instances = await conn.fetch(Q.discovery_instances_of, id_list)
        for sid in id_list:
            if sid not in {row["id"] for row in services}:
                self._forget(sid)
        self._apply(services, instances, replace_all=False)

    async def _load_by_name(self, name: str) -> _CachedService:
        row = await self._db.fetchrow(Q.discovery_service_by_name, name)
        if row is None:
            raise NotFoundError("service", name)
        await self._load_services([row["id"]])
        return self._by_name[name]

    def _forget(self, service_id: UUID) -> None:
        cached = self._by_id.pop(service_id, None)
        if cached is not None:
            self._by_name.pop(cached.name, None)

    def _apply(
        self,
        services: list[asyncpg.Record],
        instances: list[asyncpg.Record],
        *,
        replace_all: bool,
    ) -> None:
        now = self._clock.monotonic()
        fresh: dict[UUID, _CachedService] = {}
        for row in services:
            scheme = "https" if (row["base_url"] or "").startswith("https:") else "http"
            fresh[row["id"]] = _CachedService(
                row["id"],
                row["service_name"],
                row["load_balancing"],
                row["is_active"],
                scheme,
                loaded_at=now,
            )
        healthy: defaultdict[UUID, list[Endpoint]] = defaultdict(list)
        for row in instances:
            cached = fresh.get(row["microservice_id"])
            if cached is None:
                continue
            cached.counts[row["status"]] = cached.counts.get(row["status"], 0) + 1
            if row["status"] == "healthy":
                healthy[cached.id].append(_endpoint(row, cached))
        for service_id, cached in fresh.items():
            cached.healthy = tuple(sorted(healthy[service_id], key=lambda e: e.instance_id))
        if replace_all:
            self._by_id, self._by_name = {}, {}
        for cached in fresh.values():
            old = self._by_id.get(cached.id)
            if old is not None and old.name != cached.name:
                self._by_name.pop(old.name, None)
            self._by_id[cached.id] = cached
            self._by_name[cached.name] = cached
        self.reloads += 1


def _endpoint(row: asyncpg.Record, service: _CachedService) -> Endpoint:
    metadata = row["metadata"] or {}
    weight = metadata.get("weight", 1)
    return Endpoint(
        id=row["id"],
        instance_id=row["instance_id"],
        service_name=service.name,
        host=str(row["ip_address"]),
        port=row["port"],
        version=row["version"],
        scheme=service.scheme,
        weight=weight if isinstance(weight, int) else 1,
        metadata=metadata,
    )
