"""MeshPolicies: CRUD of service_mesh_policies and the in-process view every call reads.

What is written is exportable to Istio: create, update and enable refuse (ValidationFailed,
HTTP 422) a policy ``orchcore.mesh.exportable`` would not export, naming the field. Rows
are read under ``STORED_ROW``, so one written before those rules still loads and keeps
being enforced; disabling or deleting it always works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ValidationError

from orchcore.audit import record_action
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.db.listen import NotificationListener
from orchcore.errors import ConflictError, NotFoundError, validation_failed_from
from orchcore.mesh.effective import EffectivePolicy, resolve
from orchcore.mesh.models import (
    STORED_ROW,
    CreateMeshPolicyRequest,
    MeshPolicy,
    UpdateMeshPolicyRequest,
)
from orchcore.mesh.summary import summarise_policy
from orchcore.validation import parse

Q = Queries("orchcore.mesh")
#: Resolved (source, target) pairs kept at most; past that the cache starts afresh.
MAX_CACHED_PAIRS = 10_000
log = logging.getLogger("orch.mesh")


class PolicyListEntry(BaseModel):
    """One entry of the seed's GetMeshPoliciesResponse."""

    id: UUID
    policy_name: str
    policy_type: str
    source_services: list[str]
    target_services: list[str]
    is_enabled: bool
    priority: int
    created_at: Any
    applied_instances: int
    policy_summary: str


class PolicyTypeCount(BaseModel):
    type: str
    count: int
    enabled_count: int


class GetMeshPoliciesResponse(BaseModel):
    policies: list[PolicyListEntry]
    policy_types: list[PolicyTypeCount]


class ApplyError(BaseModel):
    service: str
    instance: str
    error: str


class ApplyPolicyResponse(BaseModel):
    policy_id: UUID
    applied_to_services: list[str]
    applied_to_instances: int
    application_status: Literal["success", "partial", "failed"]
    errors: list[ApplyError] | None = None


class UnreadablePolicy(BaseModel):
    """A row that does not read as a policy under today's shapes, and why."""

    policy_name: str
    reason: str


class StoredPolicies(BaseModel):
    policies: list[MeshPolicy]
    unreadable: list[UnreadablePolicy]


def policy_from_row(row: asyncpg.Record) -> MeshPolicy:
    return MeshPolicy.model_validate(dict(row), context=STORED_ROW)


class MeshPolicies:
    def __init__(self, db: Database, clock: Clock, listener: NotificationListener | None) -> None:
        self._db = db
        self._clock = clock
        self._listener = listener
        self._policies: list[MeshPolicy] = []
        self._effective: dict[tuple[str, str], EffectivePolicy] = {}
        self._loaded_at: float | None = None
        self._reload_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        if self._listener is not None:
            self._listener.subscribe(self._on_notification)
            self._listener.on_reconnect(self.reload)

    async def stop(self) -> None:
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task

    async def reload(self) -> None:
        rows = await self._db.fetch(Q.all_policies)
        self._policies = [policy_from_row(row) for row in rows]
        self._effective = {}
        self._loaded_at = self._clock.monotonic()

    def _on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") != "mesh_policy":
            return
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.create_task(self._reload_quietly())

    async def _reload_quietly(self) -> None:
        try:
            await self.reload()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("mesh policy reload failed: %s", exc)
        except ValidationError as exc:
            # A row that no longer reads as a policy: keep the last good view and say so.
            log.warning("mesh policy reload failed: %s", validation_failed_from(exc))

    async def effective(self, source: str, target: str) -> EffectivePolicy:
        """The policy in force for a call; from the cache while NOTIFY keeps it fresh."""
        listening = self._listener is not None and self._listener.connected
        stale = self._loaded_at is None or self._clock.monotonic() - self._loaded_at > 1.0
        if not listening and stale:
            await self.reload()
        pair = (source, target)
        found = self._effective.get(pair)
        if found is None:
            found = resolve(self._policies, source, target)
            if len(self._effective) >= MAX_CACHED_PAIRS:
                # A backstop: the call path admits only known names, so this is
                # reached by a platform with very many pairs, never by made-up ones.
                self._effective.clear()
            self._effective[pair] = found
        return found

    # -- CRUD -------------------------------------------------------------------------------

    async def create(
        self, request: CreateMeshPolicyRequest | dict[str, Any], *, actor: str
    ) -> MeshPolicy:
        req = parse(CreateMeshPolicyRequest, request)
        _check_request(req)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                Q.insert_policy,
                req.policy_name,
                req.policy_type,
                req.source_services,
                req.target_services,
                req.policy_config.model_dump(mode="json", exclude_none=True, by_alias=True),
                req.is_enabled,
                req.priority,
                actor,
                now,
            )
            if row is None:
                raise ConflictError(f"mesh policy {req.policy_name!r} exists already")
            await record_action(
                conn,
                actor=actor,
                action="mesh_policy.create",
                target_kind="mesh_policy",
                target_id=req.policy_name,
                at=now,
                details={"type": req.policy_type},
            )
        policy = policy_from_row(row)
        await self.reload()
        return policy

    async def update(
        self, key: str | UUID, request: UpdateMeshPolicyRequest | dict[str, Any], *, actor: str
    ) -> MeshPolicy:
        req = parse(UpdateMeshPolicyRequest, request)
        current = await self.get(key)
        merged = current.model_copy(update=req.model_dump(exclude_unset=True, exclude_none=True))
        if req.policy_config is not None:
            merged.policy_config = req.policy_config
        # The policy as it will be, fields left as stored included: an old row's fault is
        # named here and mended by the same update. Disabling alone is exempt, as in
        # set_enabled: it is how a faulty row is taken out of force.
        if req.model_dump(exclude_unset=True) != {"is_enabled": False}:
            _check_exportable(merged)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                Q.update_policy,
                current.id,
                merged.policy_type,
                merged.source_services,
                merged.target_services,
                merged.policy_config.model_dump(mode="json", exclude_none=True, by_alias=True),
                merged.is_enabled,
                merged.priority,
                now,
            )
            assert row is not None
            await record_action(
                conn,
                actor=actor,
                action="mesh_policy.update",
                target_kind="mesh_policy",
                target_id=current.policy_name,
                at=now,
                details={"fields": sorted(req.model_dump(exclude_unset=True))},
            )
        await self.reload()
        return policy_from_row(row)

    async def set_enabled(
        self, key: str | UUID, enabled: bool, *, actor: str, reason: str | None = None
    ) -> MeshPolicy:
        """Enabling refuses a policy the export would leave out; disabling always works,
        as it is how an operator takes a faulty old row out of force."""
        current = await self.get(key)
        if enabled:
            _check_exportable(current)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(Q.set_policy_enabled, current.id, enabled, now)
            assert row is not None
            await record_action(
                conn,
                actor=actor,
                action="mesh_policy." + ("enable" if enabled else "disable"),
                target_kind="mesh_policy",
                target_id=current.policy_name,
                at=now,
                reason=reason,
            )
        await self.reload()
        return policy_from_row(row)

    async def delete(self, key: str | UUID, *, actor: str, reason: str | None = None) -> MeshPolicy:
        current = await self.get(key)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(Q.delete_policy, current.id)
            assert row is not None
            await record_action(
                conn,
                actor=actor,
                action="mesh_policy.delete",
                target_kind="mesh_policy",
                target_id=current.policy_name,
                at=now,
                reason=reason,
            )
        await self.reload()
        return policy_from_row(row)

    async def get(self, key: str | UUID) -> MeshPolicy:
        row = None
        with contextlib.suppress(ValueError):  # not a UUID: look it up by name
            row = await self._db.fetchrow(
                Q.policy_by_id, key if isinstance(key, UUID) else UUID(key)
            )
        if row is None:
            row = await self._db.fetchrow(Q.policy_by_name, str(key))
        if row is None:
            raise NotFoundError("mesh policy", str(key))
        return policy_from_row(row)

    async def list_policies(self) -> list[MeshPolicy]:
        return [policy_from_row(row) for row in await self._db.fetch(Q.all_policies)]

    async def stored_policies(self) -> StoredPolicies:
        """Every row that reads as a policy, and the name and fault of each that does not,
        so that one row written by hand or by another version cannot sink an export."""
        policies: list[MeshPolicy] = []
        unreadable: list[UnreadablePolicy] = []
        for row in await self._db.fetch(Q.all_policies):
            try:
                policies.append(policy_from_row(row))
            except ValidationError as exc:
                problem = validation_failed_from(exc)
                unreadable.append(
                    UnreadablePolicy(
                        policy_name=row["policy_name"],
                        reason=f"the stored row does not read as a policy: {problem}",
                    )
                )
        return StoredPolicies(policies=policies, unreadable=unreadable)

    async def overview(self) -> GetMeshPoliciesResponse:
        """The seed's GetMeshPoliciesResponse."""
        policies = await self.list_policies()
        live = await self._live_instances()
        entries = [
            PolicyListEntry(
                id=p.id,
                policy_name=p.policy_name,
                policy_type=p.policy_type,
                source_services=p.source_services,
                target_services=p.target_services,
                is_enabled=p.is_enabled,
                priority=p.priority,
                created_at=p.created_at,
                applied_instances=sum(n for s, n in live.items() if _targets(p.target_services, s))
                if p.is_enabled
                else 0,
                policy_summary=summarise_policy(p),
            )
            for p in policies
        ]
        types = [
            PolicyTypeCount(
                type=kind,
                count=sum(1 for p in policies if p.policy_type == kind),
                enabled_count=sum(1 for p in policies if p.policy_type == kind and p.is_enabled),
            )
            for kind in ("traffic", "security", "resilience", "observability")
        ]
        return GetMeshPoliciesResponse(policies=entries, policy_types=types)

    async def apply(
        self, key: str | UUID, *, actor: str, reason: str | None = None
    ) -> ApplyPolicyResponse:
        """Check a policy against the registry and push it to every daemon now."""
        policy = await self.get(key)
        live = await self._live_instances()
        errors: list[ApplyError] = []
        if not policy.is_enabled:
            errors.append(ApplyError(service="*", instance="", error="policy is disabled"))
            services: list[str] = []
        elif not policy.target_services or "*" in policy.target_services:
            services = sorted(live)
        else:
            services = [s for s in policy.target_services if s in live]
            errors += [
                ApplyError(service=s, instance="", error="service is not registered or inactive")
                for s in policy.target_services
                if s not in live
            ]
        errors += [
            ApplyError(service=s, instance="", error="service has no live instances")
            for s in services
            if live[s] == 0
        ]
        instances = sum(live[s] for s in services)
        if not services or instances == 0:
            status: Literal["success", "partial", "failed"] = "failed"
        elif errors:
            status = "partial"
        else:
            status = "success"
        now = self._clock.now()
        async with self._db.transaction() as conn:
            await conn.execute(Q.mark_applied, policy.id, now, actor)
            await record_action(
                conn,
                actor=actor,
                action="mesh_policy.apply",
                target_kind="mesh_policy",
                target_id=policy.policy_name,
                at=now,
                reason=reason,
                details={"status": status, "services": services, "instances": instances},
            )
        await self.reload()
        return ApplyPolicyResponse(
            policy_id=policy.id,
            applied_to_services=services,
            applied_to_instances=instances,
            application_status=status,
            errors=errors or None,
        )

    async def _live_instances(self) -> dict[str, int]:
        return {
            row["service_name"]: row["live"]
            for row in await self._db.fetch(Q.live_instances_by_service)
        }


# orchcore.mesh.exportable is imported on the first write: the CRD-schema validator behind
# it (jsonschema) costs tens of milliseconds at import, which every `orch` command and the
# console would pay at start.


def _check_request(request: CreateMeshPolicyRequest) -> None:
    from orchcore.mesh.exportable import check_request

    check_request(request)


def _check_exportable(policy: MeshPolicy) -> None:
    from orchcore.mesh.exportable import check_exportable

    check_exportable(policy)


def _targets(targets: list[str], service: str) -> bool:
    return not targets or "*" in targets or service in targets
