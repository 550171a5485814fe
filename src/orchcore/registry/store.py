"""ServiceRegistry: every write and read of services, instances and their history."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from orchcore.audit import record_action
from orchcore.clock import Clock
from orchcore.db import Connection, Database, Queries
from orchcore.errors import ConflictError, NotFoundError, ValidationFailed
from orchcore.registry.models import (
    GONE_STATUSES,
    Dependency,
    HealthCheckConfig,
    HeartbeatRequest,
    Instance,
    InstanceStateEvent,
    InstanceStatus,
    RegisterInstanceRequest,
    RegisterServiceRequest,
    Service,
    UpdateServiceRequest,
)
from orchcore.validation import parse

Q = Queries("orchcore.registry")

#: Columns written from a registration, in the order insert_service/update_service bind them.
_SERVICE_FIELDS = (
    "service_version", "service_type", "service_description", "deployment_environment",
    "base_url", "health_check_endpoint", "metrics_endpoint", "documentation_url", "owner_team",
    "dependencies", "configuration_schema", "resource_requirements", "scaling_config",
    "health_check", "load_balancing",
)  # fmt: skip


def service_from_row(row: asyncpg.Record) -> Service:
    data = dict(row)
    data["dependencies"] = data.get("dependencies") or []
    for key in ("configuration_schema", "resource_requirements", "scaling_config", "health_check"):
        data[key] = data.get(key) or {}
    data["instance_counts"] = data.get("instance_counts") or {}
    return Service.model_validate(data)


def instance_from_row(row: asyncpg.Record) -> Instance:
    data = dict(row)
    data["service_id"] = data.pop("microservice_id")
    data["ip_address"] = str(data["ip_address"])
    data["metadata"] = data.get("metadata") or {}
    data["resource_usage"] = data.get("resource_usage") or {}
    return Instance.model_validate(data)


def _service_values(model: RegisterServiceRequest | dict[str, Any]) -> list[Any]:
    data = model.model_dump(mode="json") if isinstance(model, RegisterServiceRequest) else model
    return [data[field] if data[field] is not None else _empty(field) for field in _SERVICE_FIELDS]


def _empty(field: str) -> Any:
    if field == "dependencies":
        return []
    if field in ("configuration_schema", "resource_requirements", "scaling_config"):
        return {}
    return None


class ServiceRegistry:
    """Owns the registry tables. Faces call these methods; nothing else writes them."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- services -----------------------------------------------------------------

    async def register_service(
        self, request: RegisterServiceRequest | dict[str, Any], *, actor: str
    ) -> Service:
        req = parse(RegisterServiceRequest, request)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                Q.insert_service, req.service_name, *_service_values(req), now
            )
            if row is None:
                raise ConflictError(f"service {req.service_name!r} is already registered")
            service_id: UUID = row["id"]
            await self._replace_dependencies(conn, service_id, req.dependencies)
            await conn.execute(Q.resolve_dependencies_on, service_id, req.service_name, now)
            await record_action(
                conn,
                actor=actor,
                action="service.register" if row["inserted"] else "service.reactivate",
                target_kind="service",
                target_id=req.service_name,
                at=now,
                details={"version": req.service_version},
            )
        return await self.get_service(service_id)

    async def update_service(
        self, key: str | UUID, request: UpdateServiceRequest | dict[str, Any], *, actor: str
    ) -> Service:
        req = parse(UpdateServiceRequest, request)
        changes = req.model_dump(mode="json", exclude_unset=True)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            service_id = await self._resolve_service_id(conn, key)
            current = await conn.fetchrow(Q.lock_service, service_id)
            assert current is not None
            merged = {field: current[field] for field in _SERVICE_FIELDS} | changes
            if current["service_name"] in (merged.get("dependencies") or []):
                raise ValidationFailed("dependencies", "a service cannot depend on itself")
            if changes.get("health_check") is not None:
                # A partial health_check updates the current settings, keeping the rest.
                given = changes["health_check"]
                merged["health_check"] = parse(
                    HealthCheckConfig, {**(current["health_check"] or {}), **given}
                ).model_dump(mode="json")
            await conn.execute(Q.update_service, service_id, *_service_values(merged), now)
            if "dependencies" in changes:
                await self._replace_dependencies(conn, service_id, merged["dependencies"] or [])
            await record_action(
                conn,
                actor=actor,
                action="service.update",
                target_kind="service",
                target_id=current["service_name"],
                at=now,
                details={"fields": sorted(changes)},
            )
        return await self.get_service(service_id)

    async def deactivate_service(
        self, key: str | UUID, *, actor: str, reason: str | None = None
    ) -> Service:
        """Take a service out of discovery; its live instances are deregistered."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            service_id = await self._resolve_service_id(conn, key)
            if await conn.fetchrow(Q.deactivate_service, service_id, now) is None:
                raise ConflictError(f"service {key!s} is already deactivated")
            for inst in await conn.fetch(Q.deregister_instances_of_service, service_id):
                await self._transition(
                    conn,
                    inst["id"],
                    service_id,
                    inst["status"],
                    "deregistered",
                    reason=f"service deactivated{': ' + reason if reason else ''}",
                    actor=actor,
                    at=now,
                )
            name = await conn.fetchval(Q.service_name_by_id, service_id)
            await record_action(
                conn,
                actor=actor,
                action="service.deactivate",
                target_kind="service",
                target_id=name,
                at=now,
                reason=reason,
            )
        return await self.get_service(service_id)

    async def get_service(self, key: str | UUID) -> Service:
        service_id = await self._resolve_service_id(self._db.pool, key)
        row = await self._db.fetchrow(Q.service_by_id, service_id)
        if row is None:
            raise NotFoundError("service", str(key))
        return service_from_row(row)

    async def list_services(
        self, *, environment: str | None = None, include_inactive: bool = False
    ) -> list[Service]:
        rows = await self._db.fetch(Q.list_services, environment, include_inactive)
        return [service_from_row(row) for row in rows]

    async def dependencies_of(self, key: str | UUID) -> list[Dependency]:
        service_id = await self._resolve_service_id(self._db.pool, key)
        rows = await self._db.fetch(Q.dependencies_of, service_id)
        return [Dependency.model_validate(dict(row)) for row in rows]

    async def dependents_of(self, service_name: str) -> list[str]:
        return [row["service_name"] for row in await self._db.fetch(Q.dependents_of, service_name)]

    # -- instances ----------------------------------------------------------------

    async def register_instance(
        self,
        service: str | UUID,
        request: RegisterInstanceRequest | dict[str, Any],
        *,
        actor: str,
    ) -> Instance:
        """Add an instance (status starting); the same instance_id again updates it."""
        req = parse(RegisterInstanceRequest, request)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            service_id = await self._resolve_service_id(conn, service)
            active = await conn.fetchval(Q.service_is_active, service_id)
            if not active:
                raise ConflictError(f"service {service!s} is deactivated; register it again first")
            existing = await conn.fetchrow(Q.lock_instance, req.instance_id)
            if existing is None:
                instance_uuid = await self._insert_instance(conn, service_id, req, now)
                await conn.execute(
                    Q.insert_state_event,
                    instance_uuid,
                    service_id,
                    None,
                    "starting",
                    "registered",
                    actor,
                    now,
                )
            else:
                instance_uuid = await self._reregister(conn, existing, service_id, req, now, actor)
            await record_action(
                conn,
                actor=actor,
                action="instance.register",
                target_kind="instance",
                target_id=req.instance_id,
                at=now,
                details={"address": f"{req.ip_address}:{req.port}", "version": req.version},
            )
        return await self.get_instance(req.instance_id)

    async def _insert_instance(
        self, conn: Connection, service_id: UUID, req: RegisterInstanceRequest, now: Any
    ) -> UUID:
        try:
            async with conn.transaction():
                instance_uuid: UUID = await conn.fetchval(
                    Q.insert_instance,
                    service_id,
                    req.instance_id,
                    req.node_name,
                    req.ip_address,
                    req.port,
                    req.version,
                    req.metadata,
                    now,
                )
        except asyncpg.UniqueViolationError:
            raise ConflictError(
                f"instance {req.instance_id!r} was registered concurrently; try again"
            ) from None
        return instance_uuid

    async def _reregister(
        self,
        conn: Connection,
        existing: asyncpg.Record,
        service_id: UUID,
        req: RegisterInstanceRequest,
        now: Any,
        actor: str,
    ) -> UUID:
        if existing["microservice_id"] != service_id:
            raise ConflictError(
                f"instance {req.instance_id!r} belongs to service {existing['service_name']!r}"
            )
        moved = (str(existing["ip_address"]), existing["port"]) != (str(req.ip_address), req.port)
        old_status: InstanceStatus = existing["status"]
        restart = moved or old_status in GONE_STATUSES
        new_status = "starting" if restart else old_status
        await conn.execute(
            Q.reregister_instance,
            existing["id"],
            req.node_name,
            req.ip_address,
            req.port,
            req.version,
            req.metadata,
            new_status,
            now,
        )
        if new_status != old_status:
            reason = "registered again at a new address" if moved else "registered again"
            await conn.execute(
                Q.insert_state_event,
                existing["id"],
                service_id,
                old_status,
                new_status,
                reason,
                actor,
                now,
            )
        uuid: UUID = existing["id"]
        return uuid

    async def deregister_instance(
        self, service: str | UUID, instance_id: str, *, actor: str, reason: str | None = None
    ) -> Instance:
        """Graceful deregistration: the instance goes to terminating, out of discovery."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await self._locked_instance_of(conn, service, instance_id)
            if row["status"] in GONE_STATUSES:
                raise ConflictError(f"instance {instance_id!r} is already {row['status']}")
            await self._transition(
                conn,
                row["id"],
                row["microservice_id"],
                row["status"],
                "terminating",
                reason=reason or "deregistered",
                actor=actor,
                at=now,
            )
            await record_action(
                conn,
                actor=actor,
                action="instance.deregister",
                target_kind="instance",
                target_id=instance_id,
                at=now,
                reason=reason,
            )
        return await self.get_instance(instance_id)

    async def heartbeat(
        self,
        service: str | UUID,
        instance_id: str,
        request: HeartbeatRequest | dict[str, Any] | None = None,
        *,
        actor: str,
    ) -> Instance:
        """Record that the instance is alive; for TTL-checked services this passes the check."""
        req = parse(HeartbeatRequest, request or {})
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await self._locked_instance_of(conn, service, instance_id)
            if row["status"] in GONE_STATUSES:
                raise ConflictError(
                    f"instance {instance_id!r} is {row['status']}; register it again"
                )
            check = row["health_check"] or {}
            ttl = float(check.get("ttl_seconds", 30)) if check.get("kind") == "ttl" else None
            await conn.execute(Q.record_heartbeat, row["id"], now, req.resource_usage, ttl)
            if ttl is not None and row["status"] != "healthy":
                await self._transition(
                    conn,
                    row["id"],
                    row["microservice_id"],
                    row["status"],
                    "healthy",
                    reason="TTL heartbeat received",
                    actor=actor,
                    at=now,
                )
        return await self.get_instance(instance_id)

    async def get_instance(self, instance_id: str) -> Instance:
        row = await self._db.fetchrow(Q.instance_by_instance_id, instance_id)
        if row is None:
            raise NotFoundError("instance", instance_id)
        return instance_from_row(row)

    async def list_instances(
        self, service: str | UUID, *, include_gone: bool = False
    ) -> list[Instance]:
        service_id = await self._resolve_service_id(self._db.pool, service)
        rows = await self._db.fetch(Q.instances_of_service, service_id, include_gone)
        return [instance_from_row(row) for row in rows]

    async def instance_events(
        self, instance_id: str, *, limit: int = 50
    ) -> list[InstanceStateEvent]:
        instance = await self.get_instance(instance_id)
        rows = await self._db.fetch(Q.instance_events, instance.id, limit)
        return [InstanceStateEvent.model_validate(dict(row)) for row in rows]

    async def service_events(
        self, service: str | UUID, *, limit: int = 50
    ) -> list[InstanceStateEvent]:
        service_id = await self._resolve_service_id(self._db.pool, service)
        rows = await self._db.fetch(Q.recent_service_events, service_id, limit)
        return [InstanceStateEvent.model_validate(dict(row)) for row in rows]

    async def resource_usage_by_service(self) -> dict[UUID, list[dict[str, Any]]]:
        """Last reported resource usage of each live instance, grouped by service."""
        usage: dict[UUID, list[dict[str, Any]]] = {}
        for row in await self._db.fetch(Q.resource_usage_of_live_instances):
            usage.setdefault(row["microservice_id"], []).append(row["resource_usage"])
        return usage

    async def instance_counts(self) -> dict[str, int]:
        """Instances of active services by status (the Overview pane's breakdown)."""
        return {row["status"]: row["n"] for row in await self._db.fetch(Q.instance_counts)}

    # -- shared helpers ---------------------------------------------------------------

    async def _resolve_service_id(self, conn: Connection | asyncpg.Pool, key: str | UUID) -> UUID:
        if isinstance(key, UUID):
            candidate: UUID | None = key
        else:
            try:
                candidate = UUID(key)
            except ValueError:
                candidate = None
        if candidate is not None:
            found = await conn.fetchval(Q.service_id_by_id, candidate)
        else:
            found = await conn.fetchval(Q.service_id_by_name, key)
        if found is None:
            raise NotFoundError("service", str(key))
        service_id: UUID = found
        return service_id

    async def _locked_instance_of(
        self, conn: Connection, service: str | UUID, instance_id: str
    ) -> asyncpg.Record:
        service_id = await self._resolve_service_id(conn, service)
        row = await conn.fetchrow(Q.lock_instance, instance_id)
        if row is None or row["microservice_id"] != service_id:
            raise NotFoundError("instance", f"{instance_id} of service {service}")
        return row

    async def _replace_dependencies(
        self, conn: Connection, service_id: UUID, names: list[str]
    ) -> None:
        await conn.execute(Q.remove_dependencies_not_in, service_id, names)
        await conn.execute(Q.add_dependencies, service_id, names)

    @staticmethod
    async def _transition(
        conn: Connection,
        instance_uuid: UUID,
        service_id: UUID,
        from_status: str,
        to_status: str,
        *,
        reason: str,
        actor: str,
        at: Any,
    ) -> bool:
        changed = await conn.fetchval(
            Q.set_instance_status, instance_uuid, to_status, at, from_status
        )
        if changed is None:
            return False
        await conn.execute(
            Q.insert_state_event,
            instance_uuid,
            service_id,
            from_status,
            to_status,
            reason,
            actor,
            at,
        )
        return True
