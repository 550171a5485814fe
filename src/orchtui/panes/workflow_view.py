"""How a workflow reads on screen, and what an operator can do to one.

Shared by the Workflows pane, a workflow's detail and the Overview, so a workflow is
named and its status drawn the same way everywhere, and each operator action asks the
same question wherever it is pressed. Whether an action is allowed in a status is the
engine's rule: the console asks, and shows the engine's refusal if it refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from rich.text import Text

from orchcore.saga.store import WorkflowStore
from orchcore.saga.views import WorkflowDetail, WorkflowSummary
from orchtui.actions import ConsoleAction, ExtraField, Mutation, Outcome, Unavailable
from orchtui.formatting import countdown
from orchtui.symbols import state_style, state_symbol, state_text

#: Workflow statuses in the order the counts read: what is moving, what needs a
#: person, then how the rest ended.
STATUSES = (
    "running",
    "pending",
    "retrying",
    "paused",
    "compensating",
    "compensation_failed",
    "failed",
    "completed",
    "compensated",
    "cancelled",
)
ACTIVE_ORDER = STATUSES[:5]
ENDED_ORDER = STATUSES[5:]
#: Where the engine's word does not fit a table column.
SHORT_WORDS = {"compensation_failed": "comp failed"}
#: Statuses a daemon may still move on by itself.
ACTIVE = ("pending", "running", "retrying", "paused", "compensating")
#: The status that waits for a person: a compensation that kept failing.
NEEDS_INTERVENTION = "compensation_failed"


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
    for group in (ACTIVE_ORDER, ENDED_ORDER):
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
        if self.failed_step and self.status in ("failed", "retrying", NEEDS_INTERVENTION):
            text += f" at {self.failed_step}"
        text += f" (step {self.current_step}/{self.total_steps})"
        if self.status in ("retrying", "compensating") and self.next_run_at is not None:
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


def _report(label: str) -> Callable[[object], Outcome]:
    """Says where the workflow is once the engine has taken the action."""

    def report(result: object) -> Outcome:
        assert isinstance(result, WorkflowDetail)
        status = result.current_status
        return Outcome(f"{label} is {state_symbol(status)} {status_word(status)}")

    return report


def retry_mutation(
    ref: WorkflowRef,
    store: WorkflowStore,
    now: datetime,
    *,
    from_step: tuple[str, int] | None = None,
) -> Mutation:
    """Retry where it failed, or (``from_step``: name and order) from a step on."""
    if from_step is None:
        request: dict[str, Any] = {"retry_strategy": "current_step"}
        question = f"Retry workflow {ref.label}?"
        what = (
            "The failed or waiting step runs again, with the same idempotency key; "
            "the steps done before it are kept."
        )
    else:
        name, order = from_step
        request = {"retry_strategy": "from_step", "from_step": order}
        question = f"Retry workflow {ref.label} from step {name}?"
        what = (
            f"{name} and every step after it run again, with the same idempotency keys "
            "(a careful participant answers a repeat without doing it twice)."
        )

    async def retry(actor: str, reason: str) -> WorkflowDetail:
        return await store.retry(ref.id, {**request, "reason": reason}, actor=actor)

    return Mutation(
        title="Retry workflow",
        question=question,
        consequence=f"It is {ref.now_text(now)}. {what}",
        verb="Retry",
        perform=retry,
        done=f"Retried workflow {ref.label}",
        report=_report(f"Workflow {ref.label}"),
    )


def compensate_mutation(ref: WorkflowRef, store: WorkflowStore, now: datetime) -> Mutation:
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
        report=_report(f"Workflow {ref.label}"),
    )


def pause_mutation(ref: WorkflowRef, store: WorkflowStore, now: datetime) -> Mutation:
    """Pause, or resume when it is paused: one key, the status decides which."""
    if ref.status == "paused":

        async def resume(actor: str, reason: str) -> WorkflowDetail:
            return await store.resume(ref.id, actor=actor, reason=reason)

        return Mutation(
            title="Resume workflow",
            question=f"Resume workflow {ref.label}?",
            consequence=f"It is {ref.now_text(now)}. It carries on where it stopped.",
            verb="Resume",
            perform=resume,
            done=f"Resumed workflow {ref.label}",
            report=_report(f"Workflow {ref.label}"),
        )

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
        report=_report(f"Workflow {ref.label}"),
    )


def cancel_mutation(ref: WorkflowRef, store: WorkflowStore, now: datetime) -> Mutation:
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
        report=_report(f"Workflow {ref.label}"),
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
    ref: WorkflowRef, store: WorkflowStore, now: datetime, step_name: str | None
) -> Mutation:
    """Treat a failed step as done with an output the operator types (``{}`` if none)."""
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
        report=_report(f"Workflow {ref.label}"),
        extra=output,
    )


def retry_compensation_mutation(ref: WorkflowRef, store: WorkflowStore, now: datetime) -> Mutation:
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
        report=_report(f"Workflow {ref.label}"),
    )


def mark_compensated_mutation(
    ref: WorkflowRef, store: WorkflowStore, now: datetime, step_name: str | None
) -> Mutation:
    """Record that a person undid the step by hand (every failed undo when no step)."""
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
        report=_report(f"Workflow {ref.label}"),
        reason_label="What was done by hand, recorded as the note (Enter confirms):",
    )
