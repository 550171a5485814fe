"""The registry of workflow definitions, by name and version."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import asyncpg

from orchcore.audit import record_action
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.errors import ConflictError, NotFoundError
from orchcore.validation import parse

# The definition models (the whole saga and bus vocabulary) are imported when a
# definition is first registered or read: the workflow store holds this store, and a face
# that only lists workflows (`orch status`, `orch workflow list`) reads none.
if TYPE_CHECKING:
    from orchcore.saga.models import RegisteredDefinition, WorkflowDefinition

Q = Queries("orchcore.saga")

#: How long "the latest version of X" may be served from memory.
_LATEST_TTL_SECONDS = 2.0


def _registered(row: asyncpg.Record, warnings: list[str] | None = None) -> RegisteredDefinition:
    from orchcore.saga.models import RegisteredDefinition, WorkflowDefinition

    return RegisteredDefinition(
        id=row["id"],
        workflow_name=row["workflow_name"],
        workflow_version=row["workflow_version"],
        definition=WorkflowDefinition.model_validate(row["definition"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        warnings=warnings or [],
    )


class DefinitionStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._by_version: dict[tuple[str, str], RegisteredDefinition] = {}
        self._latest: dict[str, tuple[float, RegisteredDefinition]] = {}

    async def register(
        self, definition: WorkflowDefinition | dict[str, Any], *, actor: str
    ) -> RegisteredDefinition:
        """Register a definition; the same name, version and content again is a no-op."""
        from orchcore.saga.models import WorkflowDefinition

        parsed = parse(WorkflowDefinition, definition)
        stored = parsed.model_dump(mode="json")
        warnings = await self._unknown_services(parsed) + await self._unknown_queues(parsed)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                Q.insert_definition, parsed.name, parsed.version, stored, actor, now
            )
            if row is None:
                existing = await conn.fetchrow(Q.definition_by_version, parsed.name, parsed.version)
                assert existing is not None
                if existing["definition"] != stored:
                    raise ConflictError(
                        f"workflow {parsed.name} {parsed.version} is registered with other "
                        "content; register it under a new version"
                    )
                return _registered(existing, warnings)
            await record_action(
                conn,
                actor=actor,
                action="workflow_definition.register",
                target_kind="workflow_definition",
                target_id=f"{parsed.name}@{parsed.version}",
                at=now,
                details={"steps": len(parsed.steps)},
            )
        self._latest.pop(parsed.name, None)
        return _registered(row, warnings)

    async def get(self, name: str, version: str | None = None) -> RegisteredDefinition:
        if version is not None:
            cached = self._by_version.get((name, version))
            if cached is not None:
                return cached
            row = await self._db.fetchrow(Q.definition_by_version, name, version)
            if row is None:
                raise NotFoundError("workflow definition", f"{name} {version}")
            found = _registered(row)
            self._by_version[(name, version)] = found  # definitions never change
            return found
        latest = self._latest.get(name)
        if latest is not None and time.monotonic() - latest[0] < _LATEST_TTL_SECONDS:
            return latest[1]
        row = await self._db.fetchrow(Q.latest_definition, name)
        if row is None:
            raise NotFoundError("workflow definition", name)
        found = _registered(row)
        self._latest[name] = (time.monotonic(), found)
        self._by_version[(name, found.workflow_version)] = found
        return found

    async def list_definitions(self) -> list[dict[str, Any]]:
        rows = await self._db.fetch(Q.all_definitions)
        return [
            {
                "id": r["id"],
                "workflow_name": r["workflow_name"],
                "workflow_version": r["workflow_version"],
                "created_by": r["created_by"],
                "created_at": r["created_at"],
                "runs": r["runs"],
                "steps": len(r["definition"]["steps"]),
            }
            for r in rows
        ]

    async def _unknown_queues(self, definition: WorkflowDefinition) -> list[str]:
        wanted = definition.queues()
        if not wanted:
            return []
        known = {row["queue_name"] for row in await self._db.fetch(Q.registered_queue_names)}
        return [
            f"queue {name!r} does not exist or is inactive (yet): publishing to it fails the step"
            for name in sorted(wanted - known)
        ]

    async def _unknown_services(self, definition: WorkflowDefinition) -> list[str]:
        known = {row["service_name"] for row in await self._db.fetch(Q.registered_service_names)}
        return [
            f"service {name!r} is not registered (yet)"
            for name in sorted(definition.services() - known)
        ]
