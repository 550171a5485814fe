"""WorkflowStore: what the faces hold for workflows.

Starting (:mod:`~orchcore.saga.starting`), reading (:mod:`~orchcore.saga.reads`) and
operator actions with batches (:mod:`~orchcore.saga.actions`) live in modules of their
own; the store puts them behind one object, so a face needs one name. The starter is
made when a workflow is first started: it brings the planner and the step execution,
which a face that only reads (`orch status`, `orch workflow list`) does not need.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchcore.clock import Clock
from orchcore.db import Database
from orchcore.saga.actions import BatchAction, OperatorActions
from orchcore.saga.definitions import DefinitionStore
from orchcore.saga.reads import ALL_STATUSES, WorkflowReader

if TYPE_CHECKING:
    from orchcore.saga.models import StartWorkflowRequest, StartWorkflowResponse
    from orchcore.saga.starting import InlineDriver, KnownSource, RootSampler, WorkflowStarter

__all__ = ["ALL_STATUSES", "BatchAction", "WorkflowStore"]


class WorkflowStore:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        definitions: DefinitionStore,
        *,
        known_source: KnownSource | None = None,
        sampler: RootSampler | None = None,
    ) -> None:
        self.definitions = definitions
        self._db = db
        self._clock = clock
        self._known_source = known_source
        self._sampler = sampler
        self._reader = WorkflowReader(db, clock)
        self.actions = OperatorActions(db, clock, self._reader)
        # reading
        self.status = self._reader.status
        self.detail = self._reader.detail
        self.find = self._reader.find
        self.list_workflows = self._reader.list_workflows
        self.status_counts = self._reader.status_counts
        # operator actions
        self.pause = self.actions.pause
        self.resume = self.actions.resume
        self.cancel = self.actions.cancel
        self.compensate = self.actions.compensate
        self.retry = self.actions.retry
        self.skip_step = self.actions.skip_step
        self.retry_compensation = self.actions.retry_compensation
        self.mark_compensated = self.actions.mark_compensated
        self.batch = self.actions.batch

    @cached_property
    def _starter(self) -> WorkflowStarter:
        from orchcore.saga.starting import WorkflowStarter

        return WorkflowStarter(
            self._db, self._clock, self.definitions, self._known_source, self._sampler
        )

    async def start(
        self,
        request: StartWorkflowRequest | dict[str, Any],
        *,
        actor: str,
        traceparent: str | None = None,
    ) -> StartWorkflowResponse:
        """Start a workflow (see :meth:`~orchcore.saga.starting.WorkflowStarter.start`)."""
        return await self._starter.start(request, actor=actor, traceparent=traceparent)

    @property
    def runner(self) -> InlineDriver | None:
        return self._starter.runner

    def attach_runner(self, runner: InlineDriver | None) -> None:
        """Workflows started here are then driven here at once (no claim round trip)."""
        self._starter.runner = runner
