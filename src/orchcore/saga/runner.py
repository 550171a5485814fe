"""SagaRunner: claims workflows under a lease and drives each with a :class:`Drive`.

The runner owns the claim loop, the leases it holds (renewed a third of the way
through) and the announcements that tell consoles what moved. Its side tasks run
supervised: one that dies is logged and restarted, never left dead while the runner
goes on driving without renewing leases.

Every drive ends in a recorded outcome. A drive that raises something unexpected is
counted against its workflow (``drive_crashes``), its lease is given back and the
workflow is tried again after a pause; after :data:`MAX_DRIVE_CRASHES` in a row the
workflow is parked for a person with an alert. A workflow whose stored definition no
longer loads is parked at once; it never stops the claim loop for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from orchcore.bus import MessageBus
from orchcore.callpath import ServiceCaller
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.db.failures import UNREACHABLE, is_transient
from orchcore.saga.drive import Drive, LeaseLost
from orchcore.saga.persistence import loaded
from orchcore.saga.state import Command, StepState, WorkflowState
from orchcore.storable import storable_text
from orchcore.supervision import TaskSupervisor
from orchcore.tracing.sagaspans import SagaSpans, lease_lost_span
from orchcore.tracing.spans import Span
from orchcore.tracing.tracing import Tracing

Q = Queries("orchcore.saga")
log = logging.getLogger("orch.saga")

#: How often a runner tells watchers (consoles) which workflows it moved on, at most.
PROGRESS_ANNOUNCE_SECONDS = 0.5
#: Beyond this many workflows an announcement names none ("many changed").
_ANNOUNCE_IDS_AT_MOST = 50
#: Unexpected errors in a row after which a workflow waits for a person.
MAX_DRIVE_CRASHES = 3
#: The pause before a crashed workflow is tried again (doubling with each crash).
CRASH_BACKOFF_SECONDS = 1.0


class SagaEngine(Protocol):
    """What the runner needs of the engine (the facade provides it)."""

    db: Database

    @property
    def clock(self) -> Clock: ...

    @property
    def bus(self) -> MessageBus: ...

    async def caller(self) -> ServiceCaller: ...

    @property
    def tracing(self) -> Tracing: ...


class SagaRunner:
    def __init__(
        self,
        engine: SagaEngine,
        *,
        owner: str,
        actor: str,
        max_in_flight: int = 64,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        max_drive_crashes: int = MAX_DRIVE_CRASHES,
    ) -> None:
        self._engine = engine
        self.db = engine.db
        self._clock = engine.clock
        self.owner = owner
        self.actor = actor
        self.max_in_flight = max_in_flight
        self.lease_seconds = lease_seconds
        self.max_drive_crashes = max_drive_crashes
        self._poll = poll_seconds
        self._driving: dict[UUID, asyncio.Task[None]] = {}
        self._lease_until: dict[UUID, datetime] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._next_due: datetime | None = None
        # Whether a claim query could find something: a notification said so, a
        # claim filled every free slot, or a due time or poll interval came round.
        # Asking after every finished drive instead was a transaction a saga.
        self._claim_wanted = True
        self._last_claim: datetime | None = None
        self._progressed: set[UUID] = set()
        self._trouble_since: float | None = None
        self.supervisor = TaskSupervisor(logger="orch.saga")
        self._saga_spans = SagaSpans()
        self.completed_drives = 0

    @property
    def clock(self) -> Clock:
        return self._clock

    async def caller(self) -> ServiceCaller:
        return await self._engine.caller()

    @property
    def saga_spans(self) -> SagaSpans:
        return self._saga_spans

    def record_spans(self, state: WorkflowState, spans: list[Span]) -> None:
        tracing = self._engine.tracing
        if tracing.enabled:
            for span in spans:
                tracing.recorder.finish(span, sampled=state.trace_sampled)

    def message_bus(self) -> MessageBus:
        """The bus the outbox checks its messages against (asked for only by workflows
        that publish)."""
        return self._engine.bus

    # -- the claim loop --------------------------------------------------------------

    def on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") == "workflow" and message.get("claimable"):
            self._claim_wanted = True
            self._wake.set()

    async def run_forever(self) -> None:
        self.supervisor.start("saga-leases", self._keep_leases)
        self.supervisor.start("saga-progress", self._announce_progress)
        try:
            while not self._stopping:
                claimed = await self._claim_some()
                if claimed and len(self._driving) < self.max_in_flight:
                    continue
                await self._idle()
        finally:
            await self.supervisor.stop()
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
            rows = await self.db.fetch(
                Q.claim_workflows, now, self.owner, free, self.lease_seconds, self.actor
            )
        except UNREACHABLE as exc:
            self.note_database_trouble(exc)
            self._claim_wanted = True
            return 0
        self.note_database_trouble(None)
        for row in rows:
            await self._adopt_row(row, now)
        if len(rows) >= free:
            self._claim_wanted = True  # there may be more waiting
        return len(rows)

    async def _adopt_row(self, row: Any, now: datetime) -> None:
        try:
            state, commands = loaded(row)
        except Exception as exc:  # a definition that no longer validates, a bad row
            log.warning("workflow %s cannot be loaded; parking it: %s", row["id"], exc)
            await self._note_crash(row["id"], f"cannot be loaded: {exc}", parking=True)
            return
        self._lease_until[state.id] = now + timedelta(seconds=self.lease_seconds)
        self.adopt(state, commands)

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

    def has_room(self) -> bool:
        return len(self._driving) < self.max_in_flight

    def adopt(
        self,
        state: WorkflowState,
        commands: list[Command] | None = None,
        *,
        started: StepState | None = None,
    ) -> None:
        """Drive a workflow this runner holds the lease of (``started``: a step whose
        attempt's start is already committed, to call first)."""
        if state.lease_until is not None:
            self._lease_until.setdefault(state.id, state.lease_until)
        drive = Drive(self, state, commands, started=started)
        task = asyncio.create_task(self._drive_guarded(drive), name=f"saga-{state.id}")
        self._driving[state.id] = task
        self.note_progress(state.id)

    # -- what drives tell the runner ---------------------------------------------------

    def note_progress(self, workflow_id: UUID) -> None:
        """A driven workflow changed; watchers hear of it with the next announcement."""
        self._progressed.add(workflow_id)

    def note_due(self, when: datetime) -> None:
        if self._next_due is None or when < self._next_due:
            self._next_due = when

    def lease_expiry(self, workflow_id: UUID) -> datetime | None:
        return self._lease_until.get(workflow_id)

    def note_lease(self, workflow_id: UUID, until: datetime | None) -> None:
        if until is None:
            self._lease_until.pop(workflow_id, None)
        else:
            self._lease_until[workflow_id] = until

    def note_database_trouble(self, exc: BaseException | None) -> None:
        """Log once when the database becomes unreachable, and once when it is back."""
        if exc is not None and self._trouble_since is None:
            self._trouble_since = time.monotonic()
            log.warning(
                "database unreachable (%s); workflows resume when it is back",
                str(exc) or type(exc).__name__,
            )
        elif exc is None and self._trouble_since is not None:
            log.warning(
                "database reachable again after %.1fs; workflows resume",
                time.monotonic() - self._trouble_since,
            )
            self._trouble_since = None

    # -- telling watchers --------------------------------------------------------------

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
            await self.db.execute(Q.announce_workflows, "progress", ids, len(moved), self.owner)
        except UNREACHABLE as exc:
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
        with contextlib.suppress(*UNREACHABLE):
            await self.db.execute(Q.release_leases, self.owner, self._clock.now())

    async def _keep_leases(self) -> None:
        while True:
            await self._clock.sleep(self.lease_seconds / 3)
            await self.renew_leases()

    async def renew_leases(self) -> None:
        """Extend the lease of every workflow being driven here."""
        if not self._driving:
            return
        until = self._clock.now() + timedelta(seconds=self.lease_seconds)
        driving = list(self._driving)
        try:
            await self.db.execute(Q.extend_leases, self.owner, driving, until)
        except UNREACHABLE as exc:
            self.note_database_trouble(exc)
            return
        for workflow_id in driving:
            if workflow_id in self._lease_until:
                self._lease_until[workflow_id] = until

    # -- driving -----------------------------------------------------------------------

    async def _drive_guarded(self, drive: Drive) -> None:
        state = drive.state
        try:
            await drive.run()
        except LeaseLost:
            log.warning("lost the lease of workflow %s; another daemon drives it", state.id)
            if state.trace_id:
                self.record_spans(state, [lease_lost_span(state, self._clock.now(), self.owner)])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                log.warning(
                    "workflow %s: the database stayed unreachable; its lease will expire: %s",
                    state.id,
                    exc,
                )
            else:
                log.exception("workflow %s: drive crashed", state.id)
                await self._note_crash(state.id, f"{type(exc).__name__}: {exc}")
        finally:
            self._driving.pop(state.id, None)
            self._lease_until.pop(state.id, None)
            self.completed_drives += 1
            self._wake.set()

    async def _note_crash(self, workflow_id: UUID, error: str, *, parking: bool = False) -> None:
        """Count a crashed drive against the workflow, give its lease back, park it at
        the limit (at once when ``parking``)."""
        threshold = 1 if parking else self.max_drive_crashes
        try:
            row = await self.db.fetchrow(
                Q.note_drive_crash,
                workflow_id,
                self.owner,
                self._clock.now(),
                storable_text(error)[:1000],
                threshold,
                CRASH_BACKOFF_SECONDS,
                self.actor,
            )
        except Exception as exc:
            if is_transient(exc):
                log.warning("workflow %s: recording its crash failed: %s", workflow_id, exc)
            else:  # our own statement failing: say so loudly, it leaves the lease to expire
                log.exception("workflow %s: recording its crash failed", workflow_id)
            return
        if row is not None and row["parked"]:
            log.warning(
                "workflow %s parked after %d crashed drive(s): %s",
                workflow_id,
                row["drive_crashes"],
                error,
                extra={"workflow_id": str(workflow_id), "status": row["current_status"]},
            )
