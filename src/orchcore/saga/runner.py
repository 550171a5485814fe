"""SagaRunner: claims workflows under a lease and drives them to their next wait or end.

A drive holds the workflow's lease and loops: ask the planner what to do, do it, and
commit. Results are committed together with the start of what follows, in one
statement, so a happy-path step costs one commit. A call is never made before
the outcome of the previous one is durable; a crash between a call and its commit
means the call is made again, with the same idempotency key, by whoever claims the
workflow once the lease has expired.

Operators change workflows while a daemon drives them (pause, cancel, compensate).
Their change bumps the revision; the driver's next commit then fails its revision
guard, so the driver reads the operator's fields, re-plans with them and commits its
step outcomes on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from orchcore.db import Queries
from orchcore.saga import planner
from orchcore.saga.execution import Outcome, call_compensation, call_forward, idempotency_key
from orchcore.saga.models import RUNNABLE_STATUSES, TERMINAL_STATUSES, Branch
from orchcore.saga.paths import PathError, apply_output
from orchcore.saga.state import AlertDraft, StepState, WorkflowState

if TYPE_CHECKING:
    from orchcore.facade import Orch

Q = Queries("orchcore.saga")
log = logging.getLogger("orch.saga")

#: How often a runner tells watchers (consoles) which workflows it moved on, at most.
PROGRESS_ANNOUNCE_SECONDS = 0.5
#: Beyond this many workflows an announcement names none ("many changed").
_ANNOUNCE_IDS_AT_MOST = 50

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


#: A completed workflow is the everyday case: at hundreds a second, a line each would
#: drown the log (and cost a few per cent of a daemon's CPU); the console and the API
#: answer for it. What went wrong is logged; what needs a person is a warning.
_END_LOG_LEVELS = {"completed": logging.DEBUG, "compensation_failed": logging.WARNING}


class LeaseLost(Exception):
    """Another daemon owns the workflow now (ours expired): stop driving it."""


class StopDrive(Exception):
    """An operator's change means this drive has nothing more to do now."""


def planner_runnable() -> frozenset[str]:
    return RUNNABLE_STATUSES


class SagaRunner:
    def __init__(
        self,
        orch: Orch,
        *,
        owner: str,
        actor: str,
        max_in_flight: int = 64,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self._orch = orch
        self._db = orch.db
        self._clock = orch.clock
        self.owner = owner
        self.actor = actor
        self.max_in_flight = max_in_flight
        self.lease_seconds = lease_seconds
        self._poll = poll_seconds
        self._driving: dict[UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._next_due: datetime | None = None
        # Whether a claim query could find something: a notification said so, a
        # claim filled every free slot, or a due time or poll interval came round.
        # Asking after every finished drive instead was a transaction a saga.
        self._claim_wanted = True
        self._last_claim: datetime | None = None
        self._progressed: set[UUID] = set()
        self.completed_drives = 0

    # -- the claim loop --------------------------------------------------------------

    def on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") == "workflow" and message.get("claimable"):
            self._claim_wanted = True
            self._wake.set()

    async def run_forever(self) -> None:
        helpers = [
            asyncio.create_task(self._keep_leases(), name="saga-leases"),
            asyncio.create_task(self._announce_progress(), name="saga-progress"),
        ]
        try:
            while not self._stopping:
                claimed = await self._claim_some()
                if claimed and len(self._driving) < self.max_in_flight:
                    continue
                await self._idle()
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            await self._announce_now()  # what the last drives did

    async def _claim_some(self) -> int:
        free = self.max_in_flight - len(self._driving)
        if free <= 0:
            return 0  # the wish to claim stays for when a slot frees
        now = self._clock.now()
        polled_long_ago = (
            self._last_claim is None or (now - self._last_claim).total_seconds() >= self._poll
        )
        if not (self._claim_wanted or polled_long_ago):
            return 0
        self._claim_wanted = False
        self._last_claim = now
        try:
            rows = await self._db.fetch(
                Q.claim_workflows, now, self.owner, free, self.lease_seconds, self.actor
            )
        except _DB_ERRORS as exc:
            log.warning("claiming workflows failed: %s", exc)
            self._claim_wanted = True
            return 0
        for row in rows:
            self.adopt(WorkflowState.from_row(row, list(row["steps"])))
        if len(rows) >= free:
            self._claim_wanted = True  # there may be more waiting
        return len(rows)

    async def _idle(self) -> None:
        wait = self._poll
        if self._next_due is not None:
            wait = min(wait, max(0.0, (self._next_due - self._clock.now()).total_seconds()))
            self._next_due = None
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(wait))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            if sleeper.done():
                self._claim_wanted = True  # a due time, or the poll interval
        finally:
            sleeper.cancel()
            waker.cancel()

    def adopt(self, state: WorkflowState) -> None:
        """Drive a workflow this runner holds the lease of."""
        task = asyncio.create_task(self._drive_guarded(state), name=f"saga-{state.id}")
        self._driving[state.id] = task
        self.note_progress(state.id)

    # -- telling watchers --------------------------------------------------------------

    def note_progress(self, workflow_id: UUID) -> None:
        """A driven workflow changed; watchers hear of it with the next announcement."""
        self._progressed.add(workflow_id)

    async def _announce_progress(self) -> None:
        # Real time, not the engine's clock: this paces a display, not the platform.
        while True:
            await asyncio.sleep(PROGRESS_ANNOUNCE_SECONDS)
            await self._announce_now()

    async def _announce_now(self) -> None:
        """One NOTIFY for every workflow moved on since the last one (none if none)."""
        if not self._progressed:
            return
        moved, self._progressed = self._progressed, set()
        ids = list(moved) if len(moved) <= _ANNOUNCE_IDS_AT_MOST else None
        try:
            await self._db.execute(Q.announce_workflows, "progress", ids, len(moved), self.owner)
        except _DB_ERRORS as exc:
            log.debug("announcing workflow progress failed: %s", exc)
            self._progressed |= moved

    @property
    def in_flight(self) -> int:
        return len(self._driving)

    async def stop(self, *, grace_seconds: float = 10.0) -> None:
        """Stop claiming, let drives reach a commit, then give back every lease."""
        self._stopping = True
        self._wake.set()
        if self._driving:
            await asyncio.wait(list(self._driving.values()), timeout=grace_seconds)
        for task in list(self._driving.values()):
            task.cancel()
        for task in list(self._driving.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(*_DB_ERRORS):
            await self._db.execute(Q.release_leases, self.owner, self._clock.now())

    async def _keep_leases(self) -> None:
        while True:
            await self._clock.sleep(self.lease_seconds / 3)
            if not self._driving:
                continue
            until = self._clock.now() + timedelta(seconds=self.lease_seconds)
            with contextlib.suppress(*_DB_ERRORS):
                await self._db.execute(Q.extend_leases, self.owner, list(self._driving), until)

    async def _drive_guarded(self, state: WorkflowState) -> None:
        try:
            await Drive(self, state).run()
        except LeaseLost:
            log.warning("lost the lease of workflow %s; another daemon drives it", state.id)
        except asyncio.CancelledError:
            raise
        except _DB_ERRORS as exc:
            log.warning("workflow %s: database error, the lease will expire: %s", state.id, exc)
        except Exception:
            log.exception("workflow %s: drive failed; the lease will expire", state.id)
        finally:
            self._driving.pop(state.id, None)
            self.completed_drives += 1
            self._wake.set()

    def note_due(self, when: datetime) -> None:
        if self._next_due is None or when < self._next_due:
            self._next_due = when


class Drive:
    """One daemon driving one workflow until it waits, stops or ends."""

    def __init__(self, runner: SagaRunner, state: WorkflowState) -> None:
        self.runner = runner
        self.state = state
        self.clock = runner._clock
        self.actor = runner.actor
        self._commit_lock = asyncio.Lock()
        self._needs_commit = False

    async def run(self) -> None:
        with contextlib.suppress(StopDrive):  # an operator's change ended the drive
            await self._loop()
        self._log_end()

    def _log_end(self) -> None:
        """One line when a workflow ends (or parks for a person)."""
        state = self.state
        if state.status not in TERMINAL_STATUSES:
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

    async def _loop(self) -> None:
        caller = await self.runner._orch.caller()
        state = self.state
        while True:
            now = self.clock.now()
            action = planner.plan(state, now)
            match action:
                case planner.Stop():
                    await self.commit(release=True)
                    return
                case planner.Wait(until=until):
                    state.next_run_at = until
                    await self.commit(release=True)
                    self.runner.note_due(until)
                    return
                case planner.Complete():
                    self._complete(now)
                    await self.commit(release=True)
                    return
                case planner.FinishCompensation():
                    self._finish_compensation(now)
                    await self.commit(release=True)
                    return
                case planner.BeginCompensation(reason=reason):
                    self._begin_compensation(reason, now)
                case planner.Decide(step=step):
                    self._decide(step, now)
                case planner.StartDelay(step=step):
                    self._start_delay(step, now)
                case planner.FinishDelay(step=step):
                    self._finish_delay(step, now)
                case planner.RunStep(step=step):
                    if await self._before_call(partial(self._mark_started, step, now)):
                        outcome = await call_forward(caller, self.clock, state, step)
                        self._apply_forward(step, outcome, self.clock.now())
                case planner.Compensate(step=step):
                    if await self._before_call(partial(self._mark_compensating, step, now)):
                        outcome = await call_compensation(caller, self.clock, state, step)
                        self._apply_compensation(step, outcome, self.clock.now())
                case planner.RunParallel(step=step):
                    await self._run_parallel(step, caller)

    # -- committing ------------------------------------------------------------------------

    async def _before_call(self, mark: Callable[[], None]) -> bool:
        """Make earlier outcomes durable before calling; the start itself rides along.

        False when an operator's change, found while committing, means the planned call
        is no longer what the workflow should do (the caller plans again)."""
        phase = self.state.phase
        mark()
        if self._needs_commit:
            await self.commit(release=False)
        return self.state.phase == phase

    async def commit(self, *, release: bool) -> None:
        """Write what changed. Raises StopDrive when an operator's change ended the drive."""
        async with self._commit_lock:
            stop_after = False
            for _ in range(5):
                if await self._try_commit(release):
                    self._needs_commit = False
                    if stop_after:
                        raise StopDrive()
                    return
                await self._merge_operator_change()
                if self.state.status not in planner_runnable():
                    release, stop_after = True, True
            raise LeaseLost()

    async def _try_commit(self, release: bool) -> bool:
        state = self.state
        now = self.clock.now()
        if not release:
            state.next_run_at = now  # if this daemon dies, due as soon as the lease expires
        lease_owner = None if release else self.runner.owner
        lease_until = None if release else now + timedelta(seconds=self.runner.lease_seconds)
        # Take what is to be written before awaiting: parallel branches keep changing
        # the state meanwhile, and what they change must go into the next commit.
        steps, events, alerts = state.take_changes()
        try:
            revision = await self.runner._db.fetchval(
                Q.commit_progress,
                state.id,
                state.revision,
                state.status,
                state.phase,
                state.current_step,
                state.context,
                state.compensation_stack,
                state.error_details,
                state.completed_at,
                state.next_run_at,
                lease_owner,
                lease_until,
                now,
                self.runner.owner,
                [s.as_record() for s in steps],
                [e.as_record() for e in events],
                [
                    {"kind": a.kind, "severity": a.severity, "title": a.title, "details": a.details}
                    for a in alerts
                ],
                self.actor,
            )
        except BaseException:
            state.give_back(steps, events, alerts)
            raise
        if revision is None:
            state.give_back(steps, events, alerts)
            return False
        state.revision = revision
        state.lease_owner = lease_owner
        self.runner.note_progress(state.id)
        return True

    async def _merge_operator_change(self) -> None:
        row = await self.runner._db.fetchrow(Q.workflow_control_fields, self.state.id)
        if row is None or row["lease_owner"] != self.runner.owner:
            raise LeaseLost()
        before = self.state.status
        self.state.adopt_operator_fields(row)
        if self.state.phase == "compensate":
            for step in self.state.steps.values():
                if step.status in ("pending", "retrying", "waiting", "running"):
                    step.status = "cancelled"
                    step.dirty = True
        log.info(
            "workflow %s changed by an operator (%s -> %s) while driven",
            self.state.id,
            before,
            self.state.status,
        )

    # -- forward steps -------------------------------------------------------------------------

    def _mark_started(self, step: StepState, now: datetime) -> None:
        state = self.state
        step.status = "running"
        step.started_at = step.started_at or now
        step.idempotency_key = idempotency_key(state, step, "forward")
        step.dirty = True
        if state.status in ("pending", "retrying"):
            state.status = "running"
        state.record(
            step.name,
            "attempt_started",
            self.actor,
            now,
            attempt=step.retry_count + 1,
            service=step.definition.service_name,
            idempotency_key=step.idempotency_key,
        )

    def _apply_forward(self, step: StepState, outcome: Outcome, now: datetime) -> None:
        state = self.state
        step.dirty = True
        self._needs_commit = True
        step.input_data = outcome.request
        attempt = step.retry_count + 1
        if outcome.ok:
            try:
                apply_output(step.definition.output_mapping, outcome.output, state.context)
            except PathError as exc:  # checked by the call already; kept for safety
                outcome = Outcome(
                    False,
                    False,
                    outcome.request,
                    outcome.output,
                    outcome.status_code,
                    f"output_mapping: {exc}",
                    None,
                    outcome.instance_id,
                    outcome.duration_ms,
                )
            else:
                self._complete_step(step, outcome.output, now)
                state.record(
                    step.name,
                    "attempt_succeeded",
                    self.actor,
                    now,
                    attempt=attempt,
                    status_code=outcome.status_code,
                    instance=outcome.instance_id,
                    duration_ms=round(outcome.duration_ms, 1),
                )
                return
        state.record(
            step.name,
            "attempt_failed",
            self.actor,
            now,
            attempt=attempt,
            status_code=outcome.status_code,
            error=outcome.error,
            instance=outcome.instance_id,
            transient=outcome.transient,
        )
        step.output_data = outcome.output
        step.error_message = outcome.error
        policy = step.definition.retry_policy
        if outcome.transient and step.retry_count < policy.max_retries:
            step.retry_count += 1
            delay = max(policy.delay_seconds(step.retry_count), outcome.retry_after or 0.0)
            step.status = "retrying"
            step.next_attempt_at = now + timedelta(seconds=delay)
            if step.parent is None:
                state.status = "retrying"
            state.record(
                step.name,
                "retry_scheduled",
                self.actor,
                now,
                at=step.next_attempt_at.isoformat(),
                delay_seconds=round(delay, 3),
                retry=step.retry_count,
                of=policy.max_retries,
            )
            return
        step.status = "failed"
        step.next_attempt_at = None
        state.error_details = {
            "step_name": step.name,
            "error_message": outcome.error,
            "retry_count": step.retry_count,
            "phase": "forward",
        }
        state.record(
            step.name,
            "step_failed",
            self.actor,
            now,
            error=outcome.error,
            attempts=attempt,
            reason="retries exhausted" if outcome.transient else "not retryable",
        )

    def _complete_step(self, step: StepState, output: Any, now: datetime) -> None:
        state = self.state
        step.status = "completed"
        step.output_data = output
        step.completed_at = now
        step.error_message = None
        step.next_attempt_at = None
        step.completion_seq = state.next_completion_seq()
        step.dirty = True
        if getattr(step.definition, "compensation_action", None) is not None:
            state.compensation_stack.append(step.name)
        self._advance()

    def _advance(self) -> None:
        done = planner.DONE_STEP_STATUSES
        self.state.current_step = sum(1 for s in self.state.top_level() if s.status in done)

    def _complete(self, now: datetime) -> None:
        state = self.state
        state.status = "completed"
        state.completed_at = now
        state.next_run_at = None
        self._advance()
        state.record(
            None,
            "workflow_completed",
            self.actor,
            now,
            duration_ms=round((now - state.started_at).total_seconds() * 1000),
        )
        self._needs_commit = True

    # -- decisions and delays ----------------------------------------------------------------

    def _decide(self, step: StepState, now: datetime) -> None:
        state = self.state
        conditions = step.definition.conditions  # type: ignore[union-attr]
        assert conditions is not None
        holds, target = planner.decision_target(conditions, state.context)
        later = [s for s in state.top_level() if s.order > step.order]
        if target == "end":
            skipped = later
        elif target is not None:
            skipped = [s for s in later if s.order < state.steps[target].order]
        else:
            skipped = []
        step.status = "completed"
        step.started_at = step.started_at or now
        step.completed_at = now
        step.output_data = {"condition_holds": holds, "next": target or "next step"}
        step.completion_seq = state.next_completion_seq()
        step.dirty = True
        for other in skipped:
            other.status = "skipped"
            other.dirty = True
        self._advance()
        self._needs_commit = True
        state.record(
            step.name,
            "decision",
            self.actor,
            now,
            condition_holds=holds,
            next=target or "next step",
            skipped=[s.name for s in skipped],
        )

    def _start_delay(self, step: StepState, now: datetime) -> None:
        seconds = step.definition.delay_seconds or 0.0  # type: ignore[union-attr]
        step.status = "waiting"
        step.started_at = now
        step.next_attempt_at = now + timedelta(seconds=seconds)
        step.dirty = True
        self._needs_commit = True
        self.state.record(
            step.name,
            "delay_started",
            self.actor,
            now,
            until=step.next_attempt_at.isoformat(),
            seconds=seconds,
        )

    def _finish_delay(self, step: StepState, now: datetime) -> None:
        step.status = "completed"
        step.completed_at = now
        step.next_attempt_at = None
        step.completion_seq = self.state.next_completion_seq()
        step.dirty = True
        self._advance()
        self._needs_commit = True
        self.state.record(step.name, "delay_finished", self.actor, now)

    # -- parallel ----------------------------------------------------------------------------

    async def _run_parallel(self, step: StepState, caller: Any) -> None:
        state = self.state
        now = self.clock.now()
        if step.status != "running":
            step.status = "running"
            step.started_at = step.started_at or now
            step.dirty = True
            self._needs_commit = True
            state.record(
                step.name,
                "parallel_started",
                self.actor,
                now,
                branches=[b.name for b in _branches(step)],
            )
        branches = _branches(step)
        try:
            async with asyncio.TaskGroup() as group:  # a StopDrive in one branch stops all
                tasks = [
                    group.create_task(self._run_branch(step, branch.name, caller))
                    for branch in branches
                ]
        except* StopDrive:
            raise StopDrive() from None
        except* LeaseLost:
            raise LeaseLost() from None
        results = [task.result() for task in tasks]
        now = self.clock.now()
        failed = [b.name for b, ok in zip(branches, results, strict=True) if not ok]
        step.dirty = True
        self._needs_commit = True
        if not failed:
            step.status = "completed"
            step.completed_at = now
            step.completion_seq = state.next_completion_seq()
            self._advance()
            state.record(step.name, "parallel_completed", self.actor, now)
            return
        step.status = "failed"
        step.error_message = f"branch {', '.join(failed)} failed"
        state.error_details = {
            "step_name": step.name,
            "error_message": step.error_message,
            "retry_count": 0,
            "phase": "forward",
        }
        state.record(step.name, "step_failed", self.actor, now, error=step.error_message)

    async def _run_branch(self, parent: StepState, branch: str, caller: Any) -> bool:
        state = self.state
        for step in state.branch_steps(parent.name, branch):
            while step.status not in planner.DONE_STEP_STATUSES:
                if step.status == "failed":
                    return False
                now = self.clock.now()
                if (
                    step.status == "retrying"
                    and step.next_attempt_at
                    and step.next_attempt_at > now
                ):
                    await self.clock.sleep((step.next_attempt_at - now).total_seconds())
                    continue
                self._mark_started(step, now)
                outcome = await call_forward(caller, self.clock, state, step)
                self._apply_forward(step, outcome, self.clock.now())
                await self.commit(release=False)
                if state.status in ("paused", "cancelled") or state.phase == "compensate":
                    return step.status == "completed"
        return True

    # -- compensation ---------------------------------------------------------------------------

    def _begin_compensation(self, reason: str, now: datetime) -> None:
        state = self.state
        request = state.compensation_request or {}
        strategy = request.get("strategy") or state.definition.compensation_strategy
        self._needs_commit = True
        if strategy == "none":
            state.status = "failed"
            state.completed_at = now
            state.next_run_at = None
            state.error_details = state.error_details or {
                "step_name": None,
                "error_message": reason,
                "retry_count": 0,
            }
            state.record(
                None,
                "workflow_failed",
                self.actor,
                now,
                reason=reason,
                compensation="none (the definition's strategy)",
            )
            return
        state.phase = "compensate"
        state.status = "compensating"
        state.compensation_request = {
            **request,
            "strategy": strategy,
            "reason": request.get("reason") or reason,
        }
        for step in state.steps.values():
            if step.status in ("pending", "retrying", "waiting", "running"):
                step.status = "cancelled"
                step.next_attempt_at = None
                step.dirty = True
        targets = planner.compensation_targets(state)
        state.record(
            None,
            "compensation_started",
            self.actor,
            now,
            reason=reason,
            strategy=strategy,
            steps=[s.name for s in targets],
        )

    def _mark_compensating(self, step: StepState, now: datetime) -> None:
        step.compensation_status = "running"
        step.dirty = True
        self.state.status = "compensating"
        self.state.record(
            step.name,
            "compensation_attempt_started",
            self.actor,
            now,
            attempt=step.compensation_attempts + 1,
            idempotency_key=idempotency_key(self.state, step, "compensate"),
        )

    def _apply_compensation(self, step: StepState, outcome: Outcome, now: datetime) -> None:
        state = self.state
        step.dirty = True
        self._needs_commit = True
        step.compensation_attempts += 1
        attempt = step.compensation_attempts
        if outcome.ok:
            step.compensation_status = "completed"
            step.compensated_at = now
            step.compensation_error = None
            step.compensation_next_attempt_at = None
            step.status = "compensated"
            state.record(
                step.name,
                "compensation_succeeded",
                self.actor,
                now,
                attempt=attempt,
                status_code=outcome.status_code,
            )
            return
        action = step.definition.compensation_action
        assert action is not None
        policy = action.retry_policy
        step.compensation_error = outcome.error
        state.record(
            step.name,
            "compensation_attempt_failed",
            self.actor,
            now,
            attempt=attempt,
            error=outcome.error,
            status_code=outcome.status_code,
        )
        if outcome.transient and attempt <= policy.max_retries:
            delay = max(policy.delay_seconds(attempt), outcome.retry_after or 0.0)
            step.compensation_status = "retrying"
            step.compensation_next_attempt_at = now + timedelta(seconds=delay)
            state.record(
                step.name,
                "compensation_retry_scheduled",
                self.actor,
                now,
                at=step.compensation_next_attempt_at.isoformat(),
                delay_seconds=round(delay, 3),
            )
            return
        step.compensation_status = "failed"
        step.compensation_next_attempt_at = None
        state.status = "compensation_failed"
        state.next_run_at = None
        state.error_details = {
            "step_name": step.name,
            "error_message": outcome.error,
            "retry_count": attempt,
            "phase": "compensate",
        }
        state.alerts.append(
            AlertDraft(
                kind="compensation_failed",
                severity="critical",
                title=f"workflow {state.name} {state.correlation_id}: compensation of "
                f"{step.name} failed; needs manual intervention",
                details={
                    "workflow_id": str(state.id),
                    "step_name": step.name,
                    "error": outcome.error,
                    "attempts": attempt,
                    "wedding_id": str(state.wedding_id) if state.wedding_id else None,
                },
            )
        )
        state.record(
            step.name,
            "compensation_failed",
            self.actor,
            now,
            error=outcome.error,
            attempts=attempt,
            needs="manual intervention",
        )

    def _finish_compensation(self, now: datetime) -> None:
        state = self.state
        state.status = "compensated"
        state.completed_at = now
        state.next_run_at = None
        self._needs_commit = True
        state.record(
            None,
            "workflow_compensated",
            self.actor,
            now,
            compensated=[
                s.name
                for s in state.steps.values()
                if s.compensation_status in ("completed", "manual")
            ],
        )


def _branches(step: StepState) -> list[Branch]:
    return getattr(step.definition, "branches", None) or []
