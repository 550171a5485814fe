"""Wedding sagas in every status, driven by the engine's own saga runner, the same every run.

A real :class:`SagaRunner` drives each workflow: it plans, commits, retries,
compensates and raises alerts exactly as a daemon does. Only the participants are
scripted: :class:`ScriptedParticipants` answers each call as the story says instead of
over HTTP (as :mod:`tests.console.seed` records breaker calls without making them), and
takes the scripted time on the ManualClock, so steps have real durations, parallel
branches overlap, and every timestamp is fixed.

Workflow ids are random in the engine; while a workflow is started here they are made
from its correlation id instead (the one stand-in for randomness), so the idempotency
keys the console shows are the same every run too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from unittest import mock

import httpx

from orchcore import ManualClock, Orch
from orchcore.callpath.caller import CallResult
from orchcore.saga.runner import SagaRunner
from orchcore.saga.views import GetWorkflowStatusResponse
from tests.support.callers import known_callers
from tests.support.polling import eventually

PLANNER = "svc:booking"  # who starts the bookings
INITIATOR = "booking"  # the service they are started as
OPS = "ops@example"
DAEMON = "orch-1"
#: Made from correlation ids, so a seeded workflow's id is the same every run.
IDS = uuid.UUID("7e0c2f4c-5b1d-4a8e-9f3a-0d6c1b2a3e4f")


def _call(
    name: str, order: int | None, service: str, endpoint: str, **extra: Any
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "name": name,
        "type": "service_call",
        "service_name": service,
        "endpoint": endpoint,
        "input_mapping": {"wedding_id": "wedding_id"},
        "retry_policy": {"max_retries": 3, "initial_delay": 200, "backoff_multiplier": 2},
        "timeout_seconds": 5,
        **extra,
    }
    if order is not None:
        step["order"] = order
    return step


def _undo(service: str, endpoint: str) -> dict[str, Any]:
    return {
        "service_name": service,
        "endpoint": endpoint,
        "retry_policy": {"max_retries": 2, "initial_delay": 500},
    }


#: The example platform's full-service booking (examples/wedding), on the seeded services.
FULL_SERVICE_BOOKING: dict[str, Any] = {
    "name": "full-service-booking",
    "version": "1.0.0",
    "timeout_minutes": 60,
    "steps": [
        _call(
            "reserve_venue",
            1,
            "venue",
            "/reservations",
            input_mapping={"wedding_id": "wedding_id", "date": "date", "guests": "guests"},
            output_mapping={"venue.reservation_id": "reservation_id"},
            compensation_action=_undo("venue", "/reservations/{venue.reservation_id}/cancel"),
        ),
        {
            "name": "vendors",
            "type": "parallel",
            "order": 2,
            "branches": [
                {
                    "name": "catering",
                    "steps": [
                        _call(
                            "order_catering",
                            None,
                            "catering",
                            "/orders",
                            input_mapping={"wedding_id": "wedding_id", "guests": "guests"},
                            output_mapping={"catering.order_id": "order_id"},
                            compensation_action=_undo(
                                "catering", "/orders/{catering.order_id}/cancel"
                            ),
                        )
                    ],
                },
                {
                    "name": "photography",
                    "steps": [
                        _call(
                            "book_photographer",
                            None,
                            "photographer",
                            "/bookings",
                            input_mapping={"wedding_id": "wedding_id", "date": "date"},
                            output_mapping={"photographer.booking_id": "booking_id"},
                            compensation_action=_undo(
                                "photographer", "/bookings/{photographer.booking_id}/cancel"
                            ),
                        )
                    ],
                },
            ],
        },
        _call(
            "charge_deposit",
            3,
            "payments",
            "/charges",
            input_mapping={"wedding_id": "wedding_id", "amount_cents": "deposit_cents"},
            output_mapping={"payment.charge_id": "charge_id"},
            compensation_action={
                **_undo("payments", "/refunds"),
                "input_mapping": {"charge_id": "payment.charge_id"},
            },
        ),
        _call("send_confirmation", 4, "notifications", "/notifications"),
    ],
}

#: Moving a wedding's date: nothing to undo by machine (the couple is told by hand).
DATE_CHANGE: dict[str, Any] = {
    "name": "date-change",
    "version": "1.2.0",
    "timeout_minutes": 30,
    "compensation_strategy": "none",
    "steps": [
        _call(
            "move_reservation",
            1,
            "venue",
            "/reservations/move",
            output_mapping={"venue.reservation_id": "reservation_id"},
        ),
        _call("notify_guests", 2, "notifications", "/notifications/bulk"),
    ],
}

#: What each step answers when it succeeds (the output mappings read these fields).
OUTPUTS: dict[str, dict[str, Any]] = {
    "reserve_venue": {"reservation_id": "RSV-{n}", "hall": "orangery"},
    "move_reservation": {"reservation_id": "RSV-{n}", "date": "2027-09-18"},
    "order_catering": {"order_id": "CAT-{n}", "menu": "classic"},
    "book_photographer": {"booking_id": "PH-{n}", "package": "signature"},
    "charge_deposit": {"charge_id": "ch_{n}", "amount_cents": 250000},
    "send_confirmation": {"message_id": "msg-{n}", "channel": "email"},
    "notify_guests": {"sent": 112},
}


@dataclass(frozen=True)
class Answer:
    """One answer of a participant: its HTTP status, how long it took, what it said."""

    status: int = 201
    seconds: float = 0.5
    detail: str = ""
    retry_after: float | None = None
    #: never answers: the call is still in flight when the story ends
    hang: bool = False


@dataclass
class Story:
    """One workflow of the seed: who, what each step answers, and where it is left."""

    correlation_id: str
    minutes_before: float  # started this long before the platform's story begins
    couple: str
    definition: str = "full-service-booking"
    #: (step, "forward" | "compensate") -> answers, one per attempt (the last repeats)
    answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    #: where it rests
    ends: tuple[str, ...] = ("completed",)

    @property
    def wedding_id(self) -> uuid.UUID:
        return uuid.uuid5(IDS, self.couple)

    @property
    def workflow_id(self) -> uuid.UUID:
        return uuid.uuid5(IDS, self.correlation_id)


#: How long each step takes when the story does not say.
TYPICAL_SECONDS = {
    "reserve_venue": 0.6,
    "move_reservation": 0.7,
    "order_catering": 1.4,
    "book_photographer": 0.8,
    "charge_deposit": 0.9,
    "send_confirmation": 0.3,
    "notify_guests": 0.5,
}


class ScriptedParticipants:
    """The wedding services as the seeded story has them answer.

    The runner asks its engine for a caller; this object is that engine and that caller
    at once (the database and clock are the real engine's). A call waits its scripted
    time on the ManualClock; calls in flight together overlap, and the one due first
    moves the clock and answers first.
    """

    def __init__(self, orch: Orch, clock: ManualClock) -> None:
        self.db = orch.db
        self.clock = clock
        self.tracing = orch.tracing  # the runner records the story's spans there
        self.stories: dict[str, Story] = {}
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._due: list[datetime] = []
        self._served = 4100

    async def caller(self) -> ScriptedParticipants:
        return self

    async def call(
        self,
        source: str,
        target: str,
        endpoint: str,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        **_: Any,
    ) -> CallResult:
        assert idempotency_key is not None and correlation_id is not None
        _, step, direction = idempotency_key.split(":")
        story = self.stories[correlation_id]
        attempt = self._attempts.get((correlation_id, step, direction), 0)
        self._attempts[(correlation_id, step, direction)] = attempt + 1
        answers = story.answers.get((step, direction)) or [
            Answer(seconds=TYPICAL_SECONDS.get(step, 0.5) / (2 if direction == "compensate" else 1))
        ]
        answer = answers[min(attempt, len(answers) - 1)]
        if answer.hang:
            await asyncio.Event().wait()
        await self._take(answer.seconds)
        headers = httpx.Headers()
        if answer.retry_after is not None:
            headers["retry-after"] = str(int(answer.retry_after))
        if 200 <= answer.status < 300:
            self._served += 1
            if direction == "compensate":
                body: dict[str, Any] = {"status": "cancelled", "service": target}
            else:
                template = OUTPUTS.get(step, {"id": "{n}"})
                body = {
                    key: value.format(n=self._served) if isinstance(value, str) else value
                    for key, value in template.items()
                }
        else:
            body = {"detail": answer.detail or f"{target} answered {answer.status}"}
        return CallResult(
            status_code=answer.status,
            headers=headers,
            content=json.dumps(body).encode(),
            instance_id=f"{target}-1",
            trace_id="0" * 32,
            correlation_id=correlation_id,
        )

    async def _take(self, seconds: float) -> None:
        due = self.clock.now() + timedelta(seconds=seconds)
        self._due.append(due)
        await asyncio.sleep(0)  # calls made together (parallel branches) all get here first
        try:
            while self.clock.now() < due:
                if due <= min(self._due):
                    await self.clock.advance((due - self.clock.now()).total_seconds())
                else:
                    await asyncio.sleep(0)  # an earlier call moves the clock first
        finally:
            self._due.remove(due)


def _declined() -> list[Answer]:
    return [Answer(402, 1.1, "card declined: insufficient funds")]


STORIES: list[Story] = [
    Story("bk-1041", 44, "ava-liam"),
    Story(
        "bk-1042",
        40,
        "mia-noah",
        answers={
            ("charge_deposit", "forward"): [
                Answer(503, 2.0, "payment provider timed out"),
                Answer(201, 0.8),
            ]
        },
    ),
    Story(
        "bk-1043",
        35,
        "zoe-ethan",
        answers={("charge_deposit", "forward"): _declined()},
        ends=("compensated",),
    ),
    Story(
        "dc-1044",
        31,
        "ava-liam",
        definition="date-change",
        answers={
            ("notify_guests", "forward"): [
                Answer(422, 0.4, "template date_changed is missing for locale it")
            ]
        },
        ends=("failed",),
    ),
    Story(
        "bk-1045",
        27,
        "lea-omar",
        answers={
            ("charge_deposit", "forward"): _declined(),
            ("reserve_venue", "compensate"): [
                Answer(409, 0.4, "reservation RSV-4113 is already invoiced; cancel by hand")
            ],
        },
        ends=("compensation_failed",),
    ),
    Story(
        "bk-1046",
        22,
        "ivy-jack",
        answers={
            ("charge_deposit", "forward"): [
                Answer(503, 1.5, "payment provider maintenance", retry_after=300)
            ]
        },
        ends=("retrying",),  # then cancelled by an operator
    ),
    Story("bk-1047", 18, "eva-max"),
    Story(
        "bk-1048",
        14,
        "ana-leo",
        answers={
            ("reserve_venue", "forward"): [
                Answer(503, 3.0, "venue calendar unavailable", retry_after=600)
            ]
        },
        ends=("retrying",),  # then paused by an operator
    ),
    Story(
        "bk-1049",
        9,
        "kim-sam",
        answers={
            ("charge_deposit", "forward"): _declined(),
            ("book_photographer", "compensate"): [
                Answer(503, 0.6, "photographer API in maintenance until 14:00", retry_after=900)
            ],
        },
        ends=("compensating",),
    ),
    Story(
        "bk-1050",
        5,
        "nia-ben",
        answers={
            ("charge_deposit", "forward"): [
                # due again 22 s after the platform's story ends (5 min + 2 min later)
                Answer(503, 2.2, "payment provider timed out", retry_after=440)
            ]
        },
        ends=("retrying",),
    ),
    Story(
        "bk-1051",
        2,
        "rae-tom",
        answers={("charge_deposit", "forward"): [Answer(hang=True)]},
        ends=("running",),
    ),
]
#: Started last, with no daemon running: it waits to be claimed.
PENDING = Story("bk-1052", 1, "joy-dan", ends=("pending",))


@contextmanager
def ids_from_correlation(story: Story) -> Iterator[None]:
    """The workflow's id, normally random, made from its correlation id for this start."""
    with mock.patch("orchcore.saga.starting.uuid.uuid4", return_value=story.workflow_id):
        yield


def _context(story: Story) -> dict[str, Any]:
    return {
        "wedding_id": str(story.wedding_id),
        "date": "2027-06-12",
        "guests": 120,
        "deposit_cents": 250000,
    }


async def _start(orch: Orch, story: Story) -> None:
    with ids_from_correlation(story):
        await orch.workflows.start(
            {
                "workflow_name": story.definition,
                "correlation_id": story.correlation_id,
                "wedding_id": str(story.wedding_id),
                "initiating_service": INITIATOR,
                "context_data": _context(story),
            },
            actor=PLANNER,
        )


async def _settle(orch: Orch, runner: SagaRunner, story: Story) -> None:
    """Until the workflow rests where the story leaves it, moving the clock to retries."""
    clock = cast(ManualClock, orch.clock)
    events_seen = 0
    for _ in range(20):

        async def resting(seen: int = events_seen) -> GetWorkflowStatusResponse | None:
            status = await orch.workflows.status(story.workflow_id)
            driven = runner.in_flight or status.workflow.lease_owner is not None
            moved = len(status.execution_timeline) > seen
            return status if moved and not driven else None

        status = await eventually(resting, message=f"{story.correlation_id} to rest")
        workflow = status.workflow
        if workflow.current_status in story.ends:
            return
        if workflow.next_run_at is None:
            raise AssertionError(
                f"{story.correlation_id} stopped {workflow.current_status}, not {story.ends}"
            )
        # Due again later: the runner claims it when the clock gets there.
        events_seen = len(status.execution_timeline)
        await clock.advance(max((workflow.next_run_at - clock.now()).total_seconds(), 0.001))
    raise AssertionError(f"{story.correlation_id} never rested")


async def seed_workflows(orch: Orch, clock: ManualClock, *, until: datetime) -> None:
    """Every status a workflow can rest in, started over the 45 minutes before ``until``.

    The clock must start at least 45 minutes before ``until``; it ends at ``until``.
    """
    await orch.workflow_definitions.register(FULL_SERVICE_BOOKING, actor=OPS)
    await orch.workflow_definitions.register(DATE_CHANGE, actor=OPS)
    await known_callers(orch, INITIATOR)
    participants = ScriptedParticipants(orch, clock)
    runner = SagaRunner(
        cast(Orch, participants),
        owner=DAEMON,
        actor=f"daemon:{DAEMON}",
        lease_seconds=30,
        poll_seconds=3600,  # it wakes when the clock reaches a workflow's next run
    )
    orch.workflows.attach_runner(runner)
    loop = asyncio.create_task(runner.run_forever())
    try:
        for story in STORIES:
            participants.stories[story.correlation_id] = story
            await _advance_to(clock, until - timedelta(minutes=story.minutes_before))
            await _start(orch, story)
            if "running" in story.ends:
                await _until_in_flight(orch, story)
                continue
            await _settle(orch, runner, story)
            await _operators(orch, clock, story)
    finally:
        await runner.stop(grace_seconds=0)
        await asyncio.wait_for(loop, 5)
        orch.workflows.attach_runner(None)
    participants.stories[PENDING.correlation_id] = PENDING
    await _advance_to(clock, until - timedelta(minutes=PENDING.minutes_before))
    await _start(orch, PENDING)
    await _advance_to(clock, until)


async def _until_in_flight(orch: Orch, story: Story) -> None:
    """The call that never answers has been made: its step's start is committed."""
    (hanging,) = [step for (step, _), answers in story.answers.items() if answers[-1].hang]

    async def calling() -> bool:
        status = await orch.workflows.status(story.workflow_id)
        return any(s.step_name == hanging and s.status == "running" for s in status.steps)

    await eventually(calling, message=f"{story.correlation_id} to be calling {hanging}")


async def _operators(orch: Orch, clock: ManualClock, story: Story) -> None:
    """What the on-call did about some of them, a couple of minutes later."""
    if story.correlation_id == "bk-1046":
        await clock.advance(130)
        await orch.workflows.cancel(
            story.workflow_id, actor=OPS, reason="couple postponed the wedding to 2028"
        )
    elif story.correlation_id == "bk-1048":
        await clock.advance(95)
        await orch.workflows.pause(
            story.workflow_id, actor=OPS, reason="venue double-booked; checking with the couple"
        )


async def _advance_to(clock: ManualClock, when: datetime) -> None:
    if when < clock.now():
        raise AssertionError(f"the story is late: {clock.now()} is past {when}")
    await clock.advance((when - clock.now()).total_seconds())
