"""WorkflowStore: what the faces hold for workflows.

Starting (:mod:`~orchcore.saga.starting`), reading (:mod:`~orchcore.saga.reads`) and
operator actions with batches (:mod:`~orchcore.saga.actions`) live in modules of their
own; the store puts them behind one object, so a face needs one name.
"""

from __future__ import annotations

from orchcore.clock import Clock
from orchcore.db import Database
from orchcore.saga.actions import BatchAction, OperatorActions
from orchcore.saga.definitions import DefinitionStore
from orchcore.saga.reads import ALL_STATUSES, WorkflowReader
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
        self._starter = WorkflowStarter(db, clock, definitions, known_source, sampler)
        self._reader = WorkflowReader(db, clock)
        self.actions = OperatorActions(db, clock, self._reader)
        # starting
        self.start = self._starter.start
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

    @property
    def runner(self) -> InlineDriver | None:
        return self._starter.runner

    def attach_runner(self, runner: InlineDriver | None) -> None:
        """Workflows started here are then driven here at once (no claim round trip)."""
        self._starter.runner = runner
