"""Drive: one daemon moving one workflow on until it waits, stops or ends.

The loop: ask the planner what to do, do it (a call, or a pure change), commit. An
outcome is committed together with the start of what follows, in one statement, so a
happy-path step costs one commit; a call is never made before the previous outcome is
durable, and a crash between a call and its commit means the call is made again with
the same idempotency key.

Operators' actions on a workflow a daemon holds are queued (see
:mod:`orchcore.saga.actions`). Queuing moves the workflow's revision, so the drive's
next commit fails its guard; the drive then applies the queued actions to its own,
newer state with the same functions the store uses (:mod:`orchcore.saga.operator`) and
plans again. Nothing an operator does is written over, and nothing the drive learnt
(the outcome of the call in flight) is lost.

A commit that fails because the database is unreachable is retried while the lease
still holds, so a restart of PostgreSQL costs the seconds it takes, not a lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar
from uuid import UUID, uuid4

from asyncpg import Record

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.db.failures import is_transient
from orchcore.errors import OrchError
from orchcore.saga import compensation, forward, operator, outbox, planner
from orchcore.saga.execution import call_compensation, call_forward
from orchcore.saga.models import PublishMessage
from orchcore.saga.parallel import run_parallel
from orchcore.saga.persistence import write_changes
from orchcore.saga.state import (
    Command,
    CommandOutcome,
    OutboxMessage,
    StepState,
    WorkflowState,
)
from orchcore.saga.status import (
    STEP_ENDED_BADLY,
    TERMINAL,
    OperatorAction,
    Phase,
    StepStatus,
    WorkflowEvent,
    WorkflowStatus,
)
from orchcore.tracing.sagaspans import SagaSpans
from orchcore.tracing.spans import Span

if TYPE_CHECKING:
    # Annotations only: a face that reads workflows imports this module through the
    # operator's actions and needs neither the call path (httpx) nor the bus.
    from orchcore.bus.bus import MessageBus
    from orchcore.callpath.caller import ServiceCaller

Q = Queries("orchcore.saga")
log = logging.getLogger("orch.saga")
T = TypeVar("T")

#: How many times in a row a commit may find the revision moved without a reason it can
#: see (no queued action) before the drive gives the workflow up.
_MAX_GUARD_MISSES = 10
#: A commit is retried through a database outage until this long before the lease ends.
_LEASE_MARGIN_SECONDS = 2.0
_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)

#: A completed workflow is the everyday case: at hundreds a second, a line each would
#: drown the log (and cost a few per cent of a daemon's CPU); the console and the API
#: answer for it. What went wrong is logged; what needs a person is a warning.
_END_LOG_LEVELS = {
    WorkflowStatus.COMPLETED: logging.DEBUG,
    WorkflowStatus.COMPENSATION_FAILED: logging.WARNING,
}


class LeaseLost(Exception):
    """Another daemon owns the workflow now (ours expired): stop driving it."""


class DriveHost(Protocol):
    """What a drive needs of the runner that started it."""

    db: Database
    owner: str
    actor: str
    lease_seconds: float

    @property
    def clock(self) -> Clock: ...

    async def caller(self) -> ServiceCaller: ...

    def message_bus(self) -> MessageBus: ...

    def note_progress(self, workflow_id: UUID) -> None: ...

    def note_due(self, when: datetime) -> None: ...

    def lease_expiry(self, workflow_id: UUID) -> datetime | None: ...

    def note_lease(self, workflow_id: UUID, until: datetime | None) -> None: ...

    def note_database_trouble(self, exc: BaseException | None) -> None: ...

    @property
    def saga_spans(self) -> SagaSpans: ...

    def record_spans(self, state: WorkflowState, spans: list[Span]) -> None: ...


class Drive:
    def __init__(
        self,
        host: DriveHost,
        state: WorkflowState,
        commands: list[Command] | None = None,
        *,
        started: StepState | None = None,
    ) -> None:
        self.host = host
        self.state = state
        self._started = started
        self.clock = host.clock
        self.actor = host.actor
        self._queued = list(commands or [])
        self._settled_commands: set[int] = set()
        self._commit_lock = asyncio.Lock()

    async def run(self) -> None:
        if self._queued:  # queued while a daemon that died held the workflow
            self._apply_commands(self._queued)
        await self._loop()
        self._log_end()

    async def _loop(self) -> None:
        caller = await self.host.caller()
        state = self.state
        if self._started is not None:  # its start was committed with the workflow's
            await self.call_started(caller, self._started)
        while True:
            now = self.clock.now()
            action = planner.plan(state, now)
            match action:
                case planner.Stop():
                    if await self.commit(release=True):
                        return
                case planner.Wait(until=until):
                    self._wait_until(until)
                    if await self.commit(release=True):
                        self.host.note_due(until)
                        return
                case planner.Complete():
                    await self._publish_at_end(state.definition.publish_on_completed)
                    forward.complete(state, self.clock.now(), self.actor)
                    if await self.commit(release=True):
                        return
                case planner.FinishCompensation():
                    await self._publish_at_end(state.definition.publish_on_compensated)
                    compensation.finish(state, self.clock.now(), self.actor)
                    if await self.commit(release=True):
                        return
                case planner.BeginCompensation(reason=reason):
                    compensation.begin_compensation(state, reason, now, self.actor)
                case planner.Decide(step=step):
                    forward.decide(state, step, now, self.actor)
                case planner.StartDelay(step=step):
                    forward.start_delay(state, step, now, self.actor)
                case planner.FinishDelay(step=step):
                    forward.finish_delay(state, step, now, self.actor)
                case planner.FinishParallel(step=step):
                    forward.finish_parallel(state, step, now, self.actor)
                case planner.RunStep(step=step):
                    await self.attempt_forward(caller, step)
                case planner.Publish(step=step):
                    await self._publish_step(step)
                case planner.Compensate(step=step):
                    await self._attempt_compensation(caller, step)
                case planner.RunParallel(step=step):
                    await run_parallel(self, step, caller)

    def _wait_until(self, until: datetime) -> None:
        state = self.state
        state.next_run_at = until
        waits_for_retry = any(s.status == StepStatus.RETRYING for s in state.steps.values())
        if state.phase == Phase.FORWARD and waits_for_retry:
            state.status = WorkflowStatus.RETRYING

    # -- attempts ----------------------------------------------------------------------------

    async def attempt_forward(self, caller: ServiceCaller, step: StepState) -> bool:
        """One attempt of a forward step; False when queued actions came first (re-plan)."""
        undo = forward.start_attempt(self.state, step, self.clock.now(), self.actor)
        if not await self.commit(release=False, undo=undo):
            return False
        await self.call_started(caller, step)
        return True

    async def call_started(self, caller: ServiceCaller, step: StepState) -> None:
        """Make the attempt whose start is committed, and apply what came of it."""
        outcome = await call_forward(caller, self.clock, self.state, step)
        messages: list[OutboxMessage] = []
        if outcome.ok and getattr(step.definition, "publish", None):
            outcome, messages = await outbox.on_success(
                self.host.message_bus(), self.state, step, outcome, actor=self.actor
            )
        forward.apply_attempt(self.state, step, outcome, self.clock.now(), self.actor, messages)

    async def _publish_step(self, step: StepState) -> None:
        """A publish step: checked and encoded now, sent by the commit that records it."""
        outcome, messages = await outbox.for_publish_step(
            self.host.message_bus(), self.state, step, actor=self.actor
        )
        forward.publish(self.state, step, outcome, messages, self.clock.now(), self.actor)

    async def _publish_at_end(self, publish: list[PublishMessage]) -> None:
        if not publish:
            return
        messages, refusal = await outbox.at_end(
            self.host.message_bus(), self.state, publish, actor=self.actor
        )
        forward.publish_at_end(self.state, messages, refusal, self.clock.now(), self.actor)

    async def _attempt_compensation(self, caller: ServiceCaller, step: StepState) -> None:
        undo = compensation.start_attempt(self.state, step, self.clock.now(), self.actor)
        if not await self.commit(release=False, undo=undo):
            return
        outcome = await call_compensation(caller, self.clock, self.state, step)
        compensation.apply_attempt(self.state, step, outcome, self.clock.now(), self.actor)

    # -- committing --------------------------------------------------------------------------

    async def commit(self, *, release: bool, undo: Callable[[], None] | None = None) -> bool:
        """Write what changed. False when operators' queued actions came first: they are
        applied to the state instead (``undo`` first takes back a call not yet made) and
        nothing is written; the caller plans again."""
        async with self._commit_lock:
            for _ in range(_MAX_GUARD_MISSES):
                if await self._write(release):
                    return True
                commands = await self._read_guard()
                if commands:
                    if undo is not None:
                        undo()
                    self._apply_commands(commands)
                    return False
            raise LeaseLost()

    async def _write(self, release: bool) -> bool:
        state = self.state
        now = self.clock.now()
        if not release:
            state.next_run_at = now  # if this daemon dies, due as soon as the lease expires
        lease_owner = None if release else self.host.owner
        lease_until = None if release else now + timedelta(seconds=self.host.lease_seconds)
        # Take what is to be written before awaiting: parallel branches keep changing
        # the state meanwhile, and what they change must go into the next commit.
        changes = state.take_changes()
        commit_id = uuid4()

        async def write(attempt: int) -> int | None:
            if attempt:  # the answer of the last try was lost with the connection: did it land?
                landed = await self.host.db.fetchrow(Q.commit_landed, state.id)
                if landed is not None and landed["commit_id"] == commit_id:
                    return int(landed["revision"])
            return await write_changes(
                self.host.db,
                state,
                changes,
                now=now,
                actor=self.actor,
                guard_owner=self.host.owner,
                lease_owner=lease_owner,
                lease_until=lease_until,
                commit_id=commit_id,
            )

        try:
            revision = await self._while_lease_holds(write)
        except BaseException:
            state.give_back(changes)
            raise
        if revision is None:
            state.give_back(changes)
            return False
        state.revision = revision
        state.lease_owner = lease_owner
        if changes.events:  # spans follow the timeline, once it is committed
            spans = self.host.saga_spans.committed(state, changes.events)
            if spans:
                self.host.record_spans(state, spans)
        self.host.note_lease(state.id, lease_until)
        self.host.note_progress(state.id)
        self._settled_commands -= {c.command_id for c in changes.commands}
        return True

    async def _read_guard(self) -> list[Command]:
        """Why the guard failed: the queued actions not yet applied here, if any."""

        async def read(_attempt: int) -> Record | None:
            return await self.host.db.fetchrow(Q.workflow_guard, self.state.id)

        row = await self._while_lease_holds(read)
        if row is None or row["lease_owner"] != self.host.owner:
            raise LeaseLost()
        self.state.revision = int(row["revision"])
        queued = [Command.from_record(c) for c in row["commands"]]
        return [c for c in queued if c.id not in self._settled_commands]

    async def _while_lease_holds(self, operation: Callable[[int], Awaitable[T]]) -> T:
        """Run ``operation``, again while the database is unreachable and the lease holds."""
        attempt = 0
        while True:
            try:
                result = await operation(attempt)
            except Exception as exc:
                if not is_transient(exc) or not self._lease_left():
                    raise
                self.host.note_database_trouble(exc)
                await asyncio.sleep(_RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)])
                attempt += 1
                continue
            if attempt:
                self.host.note_database_trouble(None)
            return result

    def _lease_left(self) -> bool:
        expiry = self.host.lease_expiry(self.state.id)
        if expiry is None:
            return False
        return self.clock.now() < expiry - timedelta(seconds=_LEASE_MARGIN_SECONDS)

    # -- operators' queued actions -----------------------------------------------------------

    def _apply_commands(self, commands: list[Command]) -> None:
        now = self.clock.now()
        for command in commands:
            self._settled_commands.add(command.id)
            self.state.settled_commands.append(apply_command(self.state, command, now, self.actor))
        log.info(
            "workflow %s: applied %d queued operator action(s) while driving it",
            self.state.id,
            len(commands),
        )

    def _log_end(self) -> None:
        """One line when a workflow ends (or parks for a person)."""
        state = self.state
        if state.status not in TERMINAL:
            return
        log.log(
            _END_LOG_LEVELS.get(state.status, logging.INFO),
            "workflow %s %s",
            state.name,
            state.status.replace("_", " "),
            extra={
                "workflow_id": str(state.id),
                "workflow": state.name,
                "correlation_id": state.correlation_id,
                "status": state.status,
                "error": (state.error_details or {}).get("error_message"),
            },
        )

    # -- for the parallel runner ---------------------------------------------------------------

    def going_forward_in(self, parallel: StepState) -> bool:
        """Whether branches of ``parallel`` may still start attempts."""
        state = self.state
        if state.status not in (WorkflowStatus.RUNNING, WorkflowStatus.RETRYING):
            return False
        if state.phase != Phase.FORWARD or parallel.status != StepStatus.RUNNING:
            return False
        if self.clock.now() >= state.timeout_at:
            return False
        fronts = planner.branch_fronts(state, parallel).values()
        return not any(f is not None and f.status in STEP_ENDED_BADLY for f in fronts)


def apply_command(state: WorkflowState, command: Command, now: datetime, by: str) -> CommandOutcome:
    """Apply one queued operator action, or refuse it with the reason, on the timeline."""
    try:
        request = operator.OperatorRequest(
            action=OperatorAction(command.action),
            params=command.params,
            actor=command.actor,
            reason=command.reason,
        )
        operator.apply(state, request, now, by)
    except (OrchError, ValueError) as exc:
        state.record(
            command.params.get("step_name"),
            WorkflowEvent.ACTION_REFUSED,
            command.actor,
            now,
            action=command.action,
            reason=command.reason,
            refused=str(exc),
        )
        return CommandOutcome(command.id, "refused", str(exc))
    return CommandOutcome(command.id, "applied", None)
