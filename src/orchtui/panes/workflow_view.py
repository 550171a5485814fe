"""How a workflow reads on screen, and what an operator can do to one.

Shared by the Workflows pane, a workflow's detail and the Overview, so a workflow is
named and its status drawn the same way everywhere, and each operator action asks the
same question wherever it is pressed. Statuses are the core's (orchcore.saga.status);
which statuses an action applies to is the core's one table, ALLOWED_FROM: elsewhere
the key says why not instead of asking. The engine still judges when it acts (the
workflow may have moved on meanwhile), and the console shows its refusal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from rich.text import Text

from orchcore.saga.status import (
    ACTION_VERBS,
    ALLOWED_FROM,
    NEEDS_PERSON,
    TERMINAL,
    OperatorAction,
    WorkflowStatus,
)
from orchcore.saga.views import InFlightStep, WorkflowDetail, WorkflowSummary
from orchtui.actions import ConsoleAction, ExtraField, Mutation, Outcome, Unavailable
from orchtui.formatting import clock_time, countdown
from orchtui.source import WorkflowsSource
from orchtui.symbols import state_style, state_symbol, state_text

_S = WorkflowStatus
#: Workflow statuses in the order the counts read: what is moving, what needs a
#: person, then how the rest ended. Every status of the core's, once (a test checks).
STATUSES: tuple[WorkflowStatus, ...] = (
    _S.RUNNING,
    _S.PENDING,
    _S.RETRYING,
    _S.PAUSED,
    _S.COMPENSATING,
    _S.COMPENSATION_FAILED,
    _S.FAILED,
    _S.COMPLETED,
    _S.COMPENSATED,
    _S.CANCELLED,
)
#: Statuses a daemon may still move on by itself (or, paused, once resumed), then the
#: ended ones: the two lines of the counts.
ACTIVE = tuple(s for s in STATUSES if s not in TERMINAL)
ENDED = tuple(s for s in STATUSES if s in TERMINAL)
#: Statuses that wait for a person, in the counts' order; the console names the one
#: there is (a compensation that kept failing) where it explains what to do.
NEEDS_PERSON_ORDER = tuple(s for s in STATUSES if s in NEEDS_PERSON)
NEEDS_INTERVENTION = _S.COMPENSATION_FAILED
#: Statuses that wait for a retry due at ``next_run_at``, forward or undoing.
WAITS_FOR_RETRY = frozenset({_S.RETRYING, _S.COMPENSATING})
#: Where the engine's word does not fit a table column.
SHORT_WORDS: dict[str, str] = {_S.COMPENSATION_FAILED: "comp failed"}


def status_word(status: str, *, short: bool = False) -> str:
    if short and status in SHORT_WORDS:
        return SHORT_WORDS[status]
    return status.replace("_", " ")


def status_text(status: str, *, short: bool = False) -> Text:
    """``✖ failed``, ``⚠ compensation failed`` (``⚠ comp failed`` where space is short)."""
    return state_text(status, status_word(status, short=short))


def counts_text(by_status: Mapping[str, int], *, short: bool = True) -> Text:
    """Every status, zeros dimmed: what is moving on one line, how the rest ended below.

    ``▶ 2 running  ○ 0 pending  ↻ 1 retrying  ‖ 0 paused  ↶ 0 compensating``
    ``⚠ 1 comp failed  ✖ 0 failed  ● 40 completed  ↺ 3 compensated  ◌ 0 cancelled``
    """
    lines = []
    for group in (ACTIVE, ENDED):
        line = Text()
        for status in group:
            count = by_status.get(status, 0)
            style = state_style(status) if count else "bright_black"
            word = status_word(status, short=short)
            line.append(f"{state_symbol(status)} {count} {word}", style=style)
            line.append("  ")
        line.rstrip()
        lines.append(line)
    return Text("\n").join(lines)


def wedding_short(wedding_id: UUID | None) -> str:
    """The first block of the wedding's id, as the CLI shows it; ``–`` for none."""
    return str(wedding_id)[:8] if wedding_id else "–"


#: Where a workflow's status is about the step that failed (forward or undoing).
_SAYS_WHERE_IT_FAILED = frozenset({_S.FAILED, _S.RETRYING, NEEDS_INTERVENTION})


@dataclass(frozen=True)
class WorkflowRef:
    """What the actions need of a workflow, from a list entry or the full detail alike."""

    id: UUID
    name: str
    correlation_id: str
    status: str
    current_step: int
    total_steps: int
    #: the step that failed (forward), or whose compensation failed
    failed_step: str | None
    next_run_at: datetime | None = None

    @property
    def label(self) -> str:
        """``full-service-booking wed-0612``: what a person calls the workflow."""
        return f"{self.name} {self.correlation_id}"

    def now_text(self, now: datetime) -> str:
        """``✖ failed at charge_deposit (step 3/5)``: where it is, for a question."""
        text = f"{state_symbol(self.status)} {status_word(self.status)}"
        if self.failed_step and self.status in _SAYS_WHERE_IT_FAILED:
            text += f" at {self.failed_step}"
        text += f" (step {self.current_step}/{self.total_steps})"
        if self.status in WAITS_FOR_RETRY and self.next_run_at is not None:
            text += f", next attempt {countdown(self.next_run_at, now)}"
        return text


def ref_of_summary(workflow: WorkflowSummary) -> WorkflowRef:
    return WorkflowRef(
        id=workflow.id,
        name=workflow.workflow_name,
        correlation_id=workflow.correlation_id,
        status=workflow.current_status,
        current_step=workflow.current_step,
        total_steps=workflow.total_steps,
        failed_step=workflow.failed_step,
        next_run_at=workflow.next_run_at,
    )


def ref_of_detail(workflow: WorkflowDetail) -> WorkflowRef:
    error = workflow.error_details
    return WorkflowRef(
        id=workflow.id,
        name=workflow.workflow_name,
        correlation_id=workflow.correlation_id,
        status=workflow.current_status,
        current_step=workflow.current_step,
        total_steps=workflow.total_steps,
        failed_step=error.step_name if error else None,
        next_run_at=workflow.next_run_at,
    )


# -- the operator's actions -------------------------------------------------------------------

WORKFLOW_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "R",
        "retry",
        "Retry",
        "Run the failed or waiting step again (the steps done before it are kept)",
        mutating=True,
    ),
    ConsoleAction(
        "c",
        "compensate",
        "Compensate",
        "Undo every completed step, in reverse order",
        mutating=True,
    ),
    ConsoleAction(
        "p",
        "pause",
        "Pause/resume",
        "Pause the workflow (nothing more runs), or resume a paused one",
        mutating=True,
    ),
    ConsoleAction(
        "x",
        "cancel",
        "Cancel",
        "Stop the workflow where it is, undoing nothing",
        mutating=True,
    ),
)


def applies(action: OperatorAction, ref: WorkflowRef) -> None:
    """Raise :class:`Unavailable` unless ``action`` applies in the workflow's status, by
    the core's one table (ALLOWED_FROM). The engine judges again when it acts, from the
    status it finds then; its refusal is shown as the action's failure."""
    allowed = ALLOWED_FROM[action]
    if ref.status in allowed:
        return
    word = status_word(ref.status)
    raise Unavailable(
        f"Workflow {ref.label} is {state_symbol(ref.status)} {word}: cannot "
        f"{ACTION_VERBS[action]} a workflow that is {word} "
        f"(only one {_one_of([status_word(s) for s in STATUSES if s in allowed])})."
    )


def _one_of(words: list[str]) -> str:
    """``paused``; ``failed or cancelled``; ``pending, running or retrying``."""
    if len(words) == 1:
        return f"that is {words[0]}"
    return f"that is {', '.join(words[:-1])} or {words[-1]}"


def action_word(action: str) -> str:
    """``pause``; ``skip_step`` reads ``skip step``."""
    return action.replace("_", " ")


def waits_for_text(in_flight: list[InFlightStep]) -> str:
    """When a queued action applies: ``when charge_deposit's attempt ends (by 12:03:14)``.

    The daemon applies it at its next commit, once every call in flight has ended, so
    the latest deadline is when it applies at the latest."""
    if not in_flight:
        return "at the driving daemon's next commit"
    calls = [
        f"{step.step_name}'s {'undo' if step.direction == 'compensate' else 'attempt'}"
        for step in in_flight
    ]
    named = calls[0] if len(calls) == 1 else f"{', '.join(calls[:-1])} and {calls[-1]}"
    text = f"when {named} {'ends' if len(calls) == 1 else 'end'}"
    deadlines = [step.deadline for step in in_flight if step.deadline is not None]
    if deadlines:
        text += f" (by {clock_time(max(deadlines))})"
    return text


def _report(ref: WorkflowRef, action: OperatorAction) -> Callable[[object], Outcome]:
    """Says where the workflow is once the engine has taken the action, or, when a daemon
    has a call in flight, that the action is queued and when it applies: not done yet."""

    def report(result: object) -> Outcome:
        assert isinstance(result, WorkflowDetail)
        if any(pending.action == action for pending in result.pending_actions):
            queued = f"{action_word(action)} queued: applies {waits_for_text(result.in_flight)}"
            return Outcome(queued)
        status = result.current_status
        return Outcome(f"Workflow {ref.label} is {state_symbol(status)} {status_word(status)}")

    return report


#: What a retry does to idempotency keys (the engine's rule, said before it is done).
_KEYS_ON_RETRY = (
    "A step that may have taken effect keeps its idempotency key (its service answers "
    "a repeat without doing it twice); one that failed with a definite answer starts a "
    "new generation of its key."
)


def retry_mutation(
    ref: WorkflowRef,
    store: WorkflowsSource,
    now: datetime,
    *,
    from_step: tuple[str, int] | None = None,
) -> Mutation:
    """Retry where it failed, or (``from_step``: name and order) from a step on."""
    applies(OperatorAction.RETRY, ref)
    if from_step is None:
        request: dict[str, Any] = {"retry_strategy": "current_step"}
        question = f"Retry workflow {ref.label}?"
        what = (
            "The failed or waiting step runs again; the steps done before it are kept. "
            f"{_KEYS_ON_RETRY}"
        )
    else:
        name, order = from_step
        request = {"retry_strategy": "from_step", "from_step": order}
        question = f"Retry workflow {ref.label} from step {name}?"
        what = f"{name} and every step after it run again. {_KEYS_ON_RETRY}"

    async def retry(actor: str, reason: str) -> WorkflowDetail:
        return await store.retry(ref.id, {**request, "reason": reason}, actor=actor)

    return Mutation(
        title="Retry workflow",
        question=question,
        consequence=f"It is {ref.now_text(now)}. {what}",
        verb="Retry",
        perform=retry,
        done=f"Retried workflow {ref.label}",
        report=_report(ref, OperatorAction.RETRY),
    )


def compensate_mutation(ref: WorkflowRef, store: WorkflowsSource, now: datetime) -> Mutation:
    applies(OperatorAction.COMPENSATE, ref)

    async def compensate(actor: str, reason: str) -> WorkflowDetail:
        return await store.compensate(
            ref.id, {"reason": reason, "compensation_strategy": "all"}, actor=actor
        )

    return Mutation(
        title="Compensate workflow",
        question=f"Compensate workflow {ref.label}?",
        consequence=(
            f"It is {ref.now_text(now)}. Every completed step is undone by its "
            "compensation, last first; what is undone cannot be retried."
        ),
        verb="Compensate",
        perform=compensate,
        done=f"Compensating workflow {ref.label}",
        report=_report(ref, OperatorAction.COMPENSATE),
    )


def pause_mutation(ref: WorkflowRef, store: WorkflowsSource, now: datetime) -> Mutation:
    """Pause, or resume when it is paused: one key, the status decides which."""
    if ref.status in ALLOWED_FROM[OperatorAction.RESUME]:

        async def resume(actor: str, reason: str) -> WorkflowDetail:
            return await store.resume(ref.id, actor=actor, reason=reason)

        return Mutation(
            title="Resume workflow",
            question=f"Resume workflow {ref.label}?",
            consequence=f"It is {ref.now_text(now)}. It carries on where it stopped.",
            verb="Resume",
            perform=resume,
            done=f"Resumed workflow {ref.label}",
            report=_report(ref, OperatorAction.RESUME),
        )

    applies(OperatorAction.PAUSE, ref)

    async def pause(actor: str, reason: str) -> WorkflowDetail:
        return await store.pause(ref.id, actor=actor, reason=reason)

    return Mutation(
        title="Pause workflow",
        question=f"Pause workflow {ref.label}?",
        consequence=(
            f"It is {ref.now_text(now)}. Nothing more of it runs until it is resumed "
            "(a call already made finishes first)."
        ),
        verb="Pause",
        perform=pause,
        done=f"Paused workflow {ref.label}",
        report=_report(ref, OperatorAction.PAUSE),
    )


def cancel_mutation(ref: WorkflowRef, store: WorkflowsSource, now: datetime) -> Mutation:
    applies(OperatorAction.CANCEL, ref)

    async def cancel(actor: str, reason: str) -> WorkflowDetail:
        return await store.cancel(ref.id, actor=actor, reason=reason)

    return Mutation(
        title="Cancel workflow",
        question=f"Cancel workflow {ref.label}?",
        consequence=(
            f"It is {ref.now_text(now)}. It stops where it is and nothing is undone "
            "(compensate undoes)."
        ),
        verb="Cancel workflow",
        perform=cancel,
        done=f"Cancelled workflow {ref.label}",
        report=_report(ref, OperatorAction.CANCEL),
    )


def parse_output(typed: str) -> dict[str, Any]:
    """A step's output as typed: a JSON object; nothing typed means ``{}``."""
    if not typed.strip():
        return {}
    try:
        value = json.loads(typed)
    except ValueError as exc:
        raise ValueError(f"the output is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError('the output must be a JSON object, such as {"id": "x"}')
    return value


def skip_mutation(
    ref: WorkflowRef, store: WorkflowsSource, now: datetime, step_name: str | None
) -> Mutation:
    """Treat a failed step as done with an output the operator types (``{}`` if none)."""
    applies(OperatorAction.SKIP_STEP, ref)
    if step_name is None:
        raise Unavailable(f"Workflow {ref.label} has no failed step to skip.")
    output = ExtraField(
        label=f"Output of {step_name}, a JSON object (empty: {{}}):",
        placeholder='{"field": "value"}',
        parse=parse_output,
    )

    async def skip(actor: str, reason: str) -> WorkflowDetail:
        return await store.skip_step(
            ref.id, step_name, output=output.value or {}, actor=actor, reason=reason
        )

    return Mutation(
        title="Skip step",
        question=f"Skip step {step_name} of workflow {ref.label}?",
        consequence=(
            f"It is {ref.now_text(now)}. The step counts as done with the output "
            "given below (its output mapping fills the context) and the workflow carries on."
        ),
        verb="Skip",
        perform=skip,
        done=f"Skipped {step_name} of workflow {ref.label}",
        report=_report(ref, OperatorAction.SKIP_STEP),
        extra=output,
    )


def retry_compensation_mutation(
    ref: WorkflowRef, store: WorkflowsSource, now: datetime
) -> Mutation:
    applies(OperatorAction.RETRY_COMPENSATION, ref)

    async def retry_compensation(actor: str, reason: str) -> WorkflowDetail:
        return await store.retry_compensation(ref.id, actor=actor, reason=reason)

    return Mutation(
        title="Retry compensation",
        question=f"Retry the compensation of workflow {ref.label}?",
        consequence=(
            f"It is {ref.now_text(now)}. The failed undo runs again with a fresh retry "
            "budget, then the remaining ones."
        ),
        verb="Retry compensation",
        perform=retry_compensation,
        done=f"Compensating workflow {ref.label} again",
        report=_report(ref, OperatorAction.RETRY_COMPENSATION),
    )


def mark_compensated_mutation(
    ref: WorkflowRef, store: WorkflowsSource, now: datetime, step_name: str | None
) -> Mutation:
    """Record that a person undid the step by hand (every failed undo when no step)."""
    applies(OperatorAction.MARK_COMPENSATED, ref)
    what = f"the undo of {step_name}" if step_name else "every failed undo"

    async def mark(actor: str, note: str) -> WorkflowDetail:
        return await store.mark_compensated(ref.id, step_name, actor=actor, note=note)

    return Mutation(
        title="Mark compensation done",
        question=f"Mark {what} of workflow {ref.label} as done by hand?",
        consequence=(
            f"It is {ref.now_text(now)}. The undo counts as done and the remaining "
            "compensations go on."
        ),
        verb="Mark done",
        perform=mark,
        done=f"Marked {what} of workflow {ref.label} done",
        report=_report(ref, OperatorAction.MARK_COMPENSATED),
        reason_label="What was done by hand, recorded as the note (Enter confirms):",
    )
