"""One workflow: its steps on a common time axis, the highlighted step in full, its timeline.

Fetch: :meth:`WorkflowStore.status` (the seed's GetWorkflowStatusResponse). Render:

* a few lines on where the workflow is and why;
* the steps in definition order (a parallel step, then its branches' steps), each with
  its status, attempts, time taken, compensation state and a bar on one time axis from
  the workflow's start to its end (now while a call is in flight, the next attempt
  while it waits for one), so parallel branches show their overlap and an undo shows
  after what it undid (``█`` ran, ``▒`` undone, ``·`` waits to retry);
* the highlighted step in full: its service, idempotency key and errors;
* the execution timeline, newest first, with who did what and why; ``i`` swaps it for
  the highlighted step's input and output as JSON.

The Workflows pane's keys act on this workflow here too, with ``F`` (retry from the
highlighted step), ``s`` on the highlighted step, and for a compensation that kept
failing ``C`` (retry it) and ``m`` (mark it done by hand); ``t`` opens the workflow's
trace as a waterfall. Opened from Workflows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from rich.cells import cell_len
from rich.console import RenderableType
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.events import Resize
from textual.widgets import DataTable, Static

from orchcore.saga.runner import MAX_DRIVE_CRASHES
from orchcore.saga.status import (
    STEP_ENDED_BADLY,
    STEP_UNSETTLED,
    TERMINAL,
    CompensationStatus,
    OperatorAction,
    StepStatus,
    WorkflowEvent,
    WorkflowStatus,
)
from orchcore.saga.views import (
    GetWorkflowStatusResponse,
    StepView,
    WorkflowDetail,
)
from orchtui.actions import ConsoleAction, Mutation, Unavailable
from orchtui.formatting import age, clock_time, countdown, plural, took
from orchtui.pane import Pane
from orchtui.panes.trace_waterfall import TraceWaterfallPane
from orchtui.panes.workflow_axis import StepSpans, axis_end, bar_text, step_spans
from orchtui.panes.workflow_events import timeline_row
from orchtui.panes.workflow_view import (
    NEEDS_INTERVENTION,
    WAITS_FOR_RETRY,
    WORKFLOW_ACTIONS,
    WorkflowRef,
    action_word,
    applies,
    cancel_mutation,
    compensate_mutation,
    mark_compensated_mutation,
    pause_mutation,
    ref_of_detail,
    retry_compensation_mutation,
    retry_mutation,
    skip_mutation,
    status_text,
    waits_for_text,
)
from orchtui.source import ConsoleSource
from orchtui.symbols import state_style, state_text
from orchtui.widgets import Column, KeyedTable, Row

#: Steps an operator may skip (the engine's rule for the step, beside ALLOWED_FROM's
#: for the workflow): one that ended badly, or one still waiting to run or retry.
SKIPPABLE = frozenset({*STEP_ENDED_BADLY, StepStatus.RETRYING, StepStatus.PENDING})
#: The time axis takes what the other columns leave, within these bounds.
MIN_BAR_WIDTH = 10
MAX_BAR_WIDTH = 60

STEP_COLUMNS = (
    Column("step", "STEP"),
    Column("status", "STATUS"),
    Column("tries", "TRIES"),
    Column("took", "TOOK"),
    Column("undo", "UNDO"),
    Column("bar", "TIMELINE"),
)
TIMELINE_COLUMNS = (
    Column("when", "WHEN"),
    Column("actor", "BY"),
    Column("step", "STEP"),
    Column("event", "EVENT"),
)


@dataclass(frozen=True)
class WorkflowDetailSnapshot:
    status: GetWorkflowStatusResponse
    taken_at: datetime

    def step(self, name: str) -> StepView | None:
        return next((s for s in self.status.steps if s.step_name == name), None)


async def fetch_workflow_detail(orch: ConsoleSource, workflow_id: UUID) -> WorkflowDetailSnapshot:
    return WorkflowDetailSnapshot(
        status=await orch.workflows.status(workflow_id), taken_at=orch.clock.now()
    )


# -- rows and lines -----------------------------------------------------------------------------


def step_label(step: StepView, steps: Sequence[StepView]) -> str:
    """``reserve_venue``; a branch's step under its parallel step: ``├ order_catering``."""
    if step.parent_step is None:
        return step.step_name
    siblings = [s for s in steps if s.parent_step == step.parent_step]
    corner = "└" if siblings and siblings[-1].step_name == step.step_name else "├"
    return f"{corner} {step.step_name}"


def attempts_made(step: StepView) -> int:
    """A retrying step has counted the retry it waits for; any other, every attempt made."""
    if step.started_at is None:
        return 0
    return step.retry_count if step.status == StepStatus.RETRYING else step.retry_count + 1


def tries_text(step: StepView) -> str:
    """Attempts made, of the most the retry policy allows: ``2/4``; ``–`` before any."""
    if step.started_at is None:
        return "–"
    attempts = attempts_made(step)
    if step.step_type == "service_call" and step.max_retries is not None:
        return f"{attempts}/{step.max_retries + 1}"
    return str(attempts)


def step_took(step: StepView, spans: StepSpans) -> str:
    """From start to completion; a failed or running step, to its last attempt or now."""
    if step.duration_ms is not None:
        return took(step.duration_ms)
    if spans.forward is not None:
        return took((spans.forward.end - spans.forward.start).total_seconds() * 1000)
    return "–"


#: Which step the detail opens on when no step is named as failed: the first moving,
#: else the first that ended badly.
_FOCUS_ORDER = (
    StepStatus.RUNNING,
    StepStatus.RETRYING,
    StepStatus.WAITING,
    StepStatus.FAILED,
    StepStatus.UNCERTAIN,
)


def focus_step(status: GetWorkflowStatusResponse) -> str | None:
    """The step to look at first: the one that failed, else the one moving, else none."""
    error = status.workflow.error_details
    if error is not None and error.step_name:
        return error.step_name
    for wanted in _FOCUS_ORDER:
        step = next((s for s in status.steps if s.status == wanted), None)
        if step is not None:
            return step.step_name
    return None


def undo_text(step: StepView, now: datetime) -> Text:
    """The compensation's state: ``↺ undone``, ``⚠ failed``, ``↻ in 5m``; blank if none."""
    status = step.compensation_status
    if status is None:
        return Text("")
    if status == CompensationStatus.COMPLETED:
        return state_text(StepStatus.COMPENSATED, "undone")
    if status == CompensationStatus.MANUAL:
        return Text("✓ by hand", style=state_style(StepStatus.COMPENSATED))
    if status == CompensationStatus.FAILED:
        return state_text(NEEDS_INTERVENTION, "failed")
    if status == CompensationStatus.RUNNING:
        return state_text(WorkflowStatus.COMPENSATING, "undoing")
    if status == CompensationStatus.RETRYING:
        return state_text(StepStatus.RETRYING, countdown(step.compensation_next_attempt_at, now))
    if status == CompensationStatus.NOT_NEEDED:
        return Text("– not needed", style="bright_black")
    return state_text(CompensationStatus.PENDING)


def uncertainty_text(step: StepView, *, workflow_status: str) -> Text | None:
    """Why a step whose request may have reached its service unanswered matters: its
    effect may exist, so compensation undoes it (or, where nothing will, a person must
    find out)."""
    style = state_style(StepStatus.UNCERTAIN)
    if step.outcome_unknown and step.status in STEP_UNSETTLED:
        return Text(
            "an attempt went unanswered and may have taken effect; a retry keeps its key",
            style=style,
        )
    undone = step.compensation_status in (CompensationStatus.COMPLETED, CompensationStatus.MANUAL)
    if step.status != StepStatus.UNCERTAIN and not (step.outcome_unknown and undone):
        return None
    if undone:
        then = "its compensation undid it"
    elif not step.has_compensation:
        then = "it has no compensation: check with its service"
    elif step.compensation_status is None and workflow_status in TERMINAL:
        then = "nothing undid it: check with its service"
    else:
        then = "compensation undoes it"
    return Text(f"outcome unknown: the request may have taken effect; {then}", style=style)


def key_text(step: StepView) -> Text | None:
    """The idempotency key, and its generation once an operator's retry started a new one."""
    if not step.idempotency_key:
        return None
    text = Text(f"key {step.idempotency_key}", style="bright_black")
    if step.generation > 1:
        text.append(f" · generation {step.generation}", style="bright_black")
    return text


def _in_flight_until(step: StepView) -> str:
    """`` · answers by 12:03:14``: when the attempt under way ends at the latest."""
    moving = step.status == StepStatus.RUNNING or (
        step.compensation_status == CompensationStatus.RUNNING
    )
    if not moving or step.attempt_deadline is None:
        return ""
    return f" · attempt ends by {clock_time(step.attempt_deadline)}"


def step_line(step: StepView, now: datetime, *, workflow_status: str) -> Text:
    """The highlighted step in full: where it calls, its key, what went wrong."""
    text = Text(step.step_name, style="bold")
    if step.service_name:
        text.append(f" → {step.service_name}")
    if step.branch_name:
        text.append(f" · branch {step.branch_name}")
    text.append(" · ")
    text.append_text(state_text(step.status))
    waiting = step.status == StepStatus.RETRYING and step.next_attempt_at is not None
    if waiting and workflow_status in _DRIVEN_FORWARD:
        text.append(f" · next attempt {countdown(step.next_attempt_at, now)}")
    text.append(_in_flight_until(step))
    for line in (key_text(step), uncertainty_text(step, workflow_status=workflow_status)):
        if line is not None:
            text.append("\n")
            text.append_text(line)
    if step.error_message:
        text.append("\n")
        text.append_text(state_text(StepStatus.FAILED, step.error_message))
    if step.compensation_status is not None:
        text.append("\nundo ")
        text.append_text(undo_text(step, now))
        tries = step.compensation_attempts
        text.append(f" after {tries} {'try' if tries == 1 else 'tries'}" if tries else "")
        if step.compensation_error and step.compensation_status != CompensationStatus.COMPLETED:
            text.append(f": {step.compensation_error}", style="bright_black")
    elif step.has_compensation and step.status == StepStatus.COMPLETED:
        text.append(
            "\nundone by its compensation if the workflow is compensated", style="bright_black"
        )
    return text


#: Where a step's next attempt is the workflow's next move (not paused, not undoing).
_DRIVEN_FORWARD = frozenset({WorkflowStatus.RUNNING, WorkflowStatus.RETRYING})


def summary_text(snapshot: WorkflowDetailSnapshot) -> Text:
    """Where the workflow is, how long it ran, and why it is not simply done."""
    workflow, now = snapshot.status.workflow, snapshot.taken_at
    status = workflow.current_status
    text = status_text(status)
    text.append(f" · step {workflow.current_step}/{workflow.total_steps}")
    end = workflow.completed_at or now
    ran = took((end - workflow.started_at).total_seconds() * 1000)
    text.append(f" · ran {ran}" if workflow.completed_at else f" · {ran} so far")
    text.append(
        f" · started {age(workflow.started_at, now)} ago by {workflow.initiating_service}",
        style="bright_black",
    )
    text.append(f"\n{workflow.workflow_name} {workflow.workflow_version}", style="bright_black")
    if workflow.wedding_id:
        text.append(f" · wedding {workflow.wedding_id}", style="bright_black")
    if workflow.lease_owner and status not in TERMINAL:
        text.append(f" · held by {workflow.lease_owner}", style="bright_black")
    why = _crashed(snapshot) or _why(snapshot)
    if why:
        text.append("\n")
        text.append_text(why)
    return text


def _last_crash(snapshot: WorkflowDetailSnapshot) -> str | None:
    """What the latest crashed drive raised (the timeline has it; the row keeps a count)."""
    timeline = snapshot.status.execution_timeline
    crash = next((e for e in reversed(timeline) if e.event == WorkflowEvent.DRIVE_CRASHED), None)
    return str(crash.details.get("error") or "") or None if crash is not None else None


def _crashed(snapshot: WorkflowDetailSnapshot) -> Text | None:
    """Drives of the workflow that crashed in a row: counted, and at the limit parked."""
    workflow, now = snapshot.status.workflow, snapshot.taken_at
    crashes = workflow.drive_crashes
    if crashes == 0:
        return None
    error = _last_crash(snapshot)
    if workflow.current_status in TERMINAL:
        text = state_text(
            workflow.current_status, f"parked after {plural(crashes, 'crashed drive')}"
        )
        text.append(f": {error}" if error else "", style="bright_black")
        text.append(" · needs intervention", style="bright_black")
        return text
    text = state_text("degraded", f"{plural(crashes, 'crashed drive')} in a row")
    text.append(f": {error}" if error else "", style="bright_black")
    if workflow.next_run_at is not None:
        text.append(f" · tried again {countdown(workflow.next_run_at, now)}", style="bright_black")
    text.append(f" · parked at {MAX_DRIVE_CRASHES}", style="bright_black")
    return text


def _why(snapshot: WorkflowDetailSnapshot) -> Text | None:
    workflow, now = snapshot.status.workflow, snapshot.taken_at
    status = workflow.current_status
    error = workflow.error_details
    if status == NEEDS_INTERVENTION and error is not None:
        text = state_text(NEEDS_INTERVENTION, f"the undo of {error.step_name} failed")
        text.append(": needs intervention (C retries it, m marks it done)", style="bright_black")
        return text
    if status in WAITS_FOR_RETRY and workflow.next_run_at is not None:
        text = state_text(status, f"next attempt {countdown(workflow.next_run_at, now)}")
        request = workflow.compensation_request
        if status == WorkflowStatus.COMPENSATING and request and request.get("reason"):
            text.append(f" · undoing because: {request['reason']}", style="bright_black")
        return text
    if error is not None and error.step_name:
        return Text(f"why: {error.step_name}: {error.error_message}", style="bright_black")
    request = workflow.compensation_request
    if request and request.get("reason"):
        by = f" ({request['requested_by']})" if request.get("requested_by") else ""
        return Text(f"why: {request['reason']}{by}", style="bright_black")
    return None


def pending_text(workflow: WorkflowDetail, now: datetime) -> Text | None:
    """Operators' actions queued behind a call in flight, and when they apply."""
    if not workflow.pending_actions:
        return None
    asked = ", ".join(
        f"{action_word(p.action)} by {p.requested_by} {age(p.requested_at, now)} ago"
        for p in workflow.pending_actions
    )
    text = state_text("queued", f"queued: {asked}")
    text.append(f" · applies {waits_for_text(workflow.in_flight)}", style="bright_black")
    return text


def io_text(step: StepView | None) -> RenderableType:
    """The step's input (the request made) and output (the answer), as JSON."""
    if step is None:
        return Text("no step selected", style="bright_black")
    text = Text()
    for title, value in (("input", step.input_data), ("output", step.output_data)):
        text.append(f"{title}\n", style="bold")
        if value is None:
            text.append("  (none yet)\n", style="bright_black")
        else:
            text.append(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    text.rstrip()
    return text


def _cell_width(cell: RenderableType) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


# -- the pane -----------------------------------------------------------------------------------

DETAIL_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "i",
        "toggle_io",
        "In/out",
        "Show the highlighted step's input and output as JSON (again: the timeline)",
    ),
    ConsoleAction("t", "open_trace", "Trace", "The workflow's trace: its spans as a waterfall"),
    *WORKFLOW_ACTIONS,
    ConsoleAction(
        "s",
        "skip",
        "Skip step",
        "Treat the highlighted (failed or waiting) step as done with a given output",
        mutating=True,
    ),
    ConsoleAction(
        "F",
        "retry_from",
        "Retry from",
        "Run the highlighted step and every step after it again",
        mutating=True,
    ),
    ConsoleAction(
        "C",
        "retry_compensation",
        "Retry undo",
        "Try the failed compensation again, with a fresh retry budget",
        mutating=True,
    ),
    ConsoleAction(
        "m",
        "mark_compensated",
        "Mark undone",
        "Record that the highlighted step's failed compensation was done by hand",
        mutating=True,
    ),
)


class WorkflowDetailPane(Pane[WorkflowDetailSnapshot]):
    NAME = "workflow"
    TITLE = "Workflow"
    SUMMARY = "one workflow: its steps on a time axis, their errors, and its timeline"
    TOPICS = frozenset({"workflow"})
    ACTIONS = DETAIL_ACTIONS

    def __init__(self, workflow_id: UUID, label: str) -> None:
        super().__init__(id="pane-workflow")
        self.workflow_id = workflow_id
        self.label = label
        self.showing_io = False
        self._placed_cursor = False

    def compose(self) -> ComposeResult:
        yield Static("", id="workflow-summary")
        yield Static("", id="workflow-pending")
        yield KeyedTable(STEP_COLUMNS, id="workflow-steps")
        yield Static("", id="workflow-step")
        with Vertical(id="workflow-timeline-section") as timeline:
            timeline.border_title = "Timeline, newest first"
            # A log to read, not rows to act on: no cursor to suggest otherwise.
            yield KeyedTable(TIMELINE_COLUMNS, id="workflow-timeline", cursor=False)
        with VerticalScroll(id="workflow-io-section") as io:
            io.border_title = "Input and output"
            yield Static("", id="workflow-io")

    @property
    def breadcrumb(self) -> str:
        return f"Workflows › {self.label}"

    @property
    def steps_table(self) -> KeyedTable:
        return self.query_one("#workflow-steps", KeyedTable)

    @property
    def filter_table(self) -> KeyedTable:
        # ``/`` finds events (a step's name, an error, an operator); the steps are few.
        return self.query_one("#workflow-timeline", KeyedTable)

    def focus_primary(self) -> None:
        self.steps_table.focus()

    def update_border_title(self) -> None:
        # Where the operator is, without a row count: the rows are events, not workflows.
        table = self.filter_table
        self.border_title = self.breadcrumb + (
            f" /{table.filter_text}" if table.filter_text else ""
        )

    def concerns(self, notification: Mapping[str, Any]) -> bool:
        if not super().concerns(notification):
            return False
        mine = str(self.workflow_id)
        if "ids" in notification:  # an announcement; no ids means too many to name
            ids = notification["ids"]
            return ids is None or mine in {str(i) for i in ids}
        return str(notification.get("id")) == mine

    async def fetch(self, orch: ConsoleSource) -> WorkflowDetailSnapshot:
        return await fetch_workflow_detail(orch, self.workflow_id)

    def show(self, snapshot: WorkflowDetailSnapshot) -> None:
        status = snapshot.status
        workflow = status.workflow
        self.label = f"{workflow.workflow_name} {workflow.correlation_id}"
        self.query_one("#workflow-summary", Static).update(summary_text(snapshot))
        pending = pending_text(workflow, snapshot.taken_at)
        line = self.query_one("#workflow-pending", Static)
        line.update(pending or "")
        line.display = pending is not None  # a line only while actions wait
        self.steps_table.show_rows(self._step_rows(snapshot))
        if not self._placed_cursor:
            # Opened on the step that matters (what failed, or what runs), not the first.
            self._placed_cursor = True
            wanted = focus_step(status)
            if wanted is not None:
                self.steps_table.move_cursor(row=self.steps_table.get_row_index(wanted))
        timeline = status.execution_timeline
        rows = [timeline_row(i, e, workflow.started_at) for i, e in enumerate(timeline)]
        self.filter_table.show_rows(list(reversed(rows)))
        self._describe_selected()

    def _step_rows(self, snapshot: WorkflowDetailSnapshot) -> list[Row]:
        status, now = snapshot.status, snapshot.taken_at
        start, end = status.workflow.started_at, axis_end(status, now)
        fixed = []
        for step in status.steps:
            spans = step_spans(step, end_of_axis=end)
            cells = (
                step_label(step, status.steps),
                state_text(step.status),
                tries_text(step),
                step_took(step, spans),
                undo_text(step, now),
            )
            fixed.append((step, spans, cells))
        width = self._bar_width([cells for _, _, cells in fixed])
        return [
            Row(
                key=step.step_name,
                cells=(*cells, bar_text(spans, step.status, start=start, end=end, width=width)),
            )
            for step, spans, cells in fixed
        ]

    def _bar_width(self, rows: Sequence[tuple[RenderableType, ...]]) -> int:
        """What the other columns leave of the pane's width (each column pads 1 a side)."""
        used = 0
        for index, column in enumerate(STEP_COLUMNS[:-1]):
            widest = max((_cell_width(cells[index]) for cells in rows), default=0)
            used += max(cell_len(column.label), widest) + 2
        # the pane's border (2), the bar column's padding (2), the scrollbar (1)
        free = self.size.width - used - 5
        return max(MIN_BAR_WIDTH, min(MAX_BAR_WIDTH, free))

    def on_resize(self, event: Resize) -> None:
        if self.snapshot is not None:
            self.show(self.snapshot)

    @on(DataTable.RowHighlighted, "#workflow-steps")
    def _describe_selected(self) -> None:
        step = self.selected_step
        now = self.snapshot.taken_at if self.snapshot is not None else self.console.now()
        line = self.query_one("#workflow-step", Static)
        status = self.snapshot.status.workflow.current_status if self.snapshot else ""
        line.update(step_line(step, now, workflow_status=status) if step is not None else "")
        self.query_one("#workflow-io", Static).update(io_text(step))
        section = self.query_one("#workflow-io-section", VerticalScroll)
        section.border_title = (
            f"Input and output of {step.step_name} (i: the timeline again)"
            if step is not None
            else "Input and output"
        )

    @property
    def selected_step(self) -> StepView | None:
        key = self.steps_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.step(key)

    def action_toggle_io(self) -> None:
        self.showing_io = not self.showing_io
        self.set_class(self.showing_io, "-showing-io")

    def action_open_trace(self) -> None:
        pane = TraceWaterfallPane.of_workflow(str(self.workflow_id), origin=self.breadcrumb)
        self.console.open_detail(pane)

    # -- the operator's actions ------------------------------------------------------------

    def _ref(self) -> WorkflowRef | None:
        if self.snapshot is None:
            return None
        return ref_of_detail(self.snapshot.status.workflow)

    def _now(self) -> datetime:
        return self.snapshot.taken_at if self.snapshot is not None else self.console.now()

    def mutation_retry(self) -> Mutation | None:
        ref = self._ref()
        return retry_mutation(ref, self.console.engine.workflows, self._now()) if ref else None

    def mutation_retry_from(self) -> Mutation | None:
        ref, step = self._ref(), self.selected_step
        if ref is None or step is None or self.snapshot is None:
            return None
        # A branch's step is retried with its parallel step: from_step counts top-level steps.
        top = self.snapshot.step(step.parent_step) if step.parent_step else step
        assert top is not None
        return retry_mutation(
            ref,
            self.console.engine.workflows,
            self._now(),
            from_step=(top.step_name, top.step_order),
        )

    def mutation_compensate(self) -> Mutation | None:
        ref = self._ref()
        return compensate_mutation(ref, self.console.engine.workflows, self._now()) if ref else None

    def mutation_pause(self) -> Mutation | None:
        ref = self._ref()
        return pause_mutation(ref, self.console.engine.workflows, self._now()) if ref else None

    def mutation_cancel(self) -> Mutation | None:
        ref = self._ref()
        return cancel_mutation(ref, self.console.engine.workflows, self._now()) if ref else None

    def mutation_skip(self) -> Mutation | None:
        ref, step = self._ref(), self.selected_step
        if ref is None or step is None:
            return None
        applies(OperatorAction.SKIP_STEP, ref)
        if step.status not in SKIPPABLE:
            raise Unavailable(
                f"Step {step.step_name} is {step.status}: only a failed, uncertain or "
                "waiting step can be skipped."
            )
        return skip_mutation(ref, self.console.engine.workflows, self._now(), step.step_name)

    def _failed_undos(self, ref: WorkflowRef) -> list[StepView]:
        assert self.snapshot is not None
        steps = self.snapshot.status.steps
        failed = [s for s in steps if s.compensation_status == CompensationStatus.FAILED]
        if not failed:
            raise Unavailable(f"No compensation of workflow {ref.label} has failed.")
        return failed

    def mutation_retry_compensation(self) -> Mutation | None:
        ref = self._ref()
        if ref is None:
            return None
        applies(OperatorAction.RETRY_COMPENSATION, ref)
        self._failed_undos(ref)
        return retry_compensation_mutation(ref, self.console.engine.workflows, self._now())

    def mutation_mark_compensated(self) -> Mutation | None:
        ref, step = self._ref(), self.selected_step
        if ref is None:
            return None
        applies(OperatorAction.MARK_COMPENSATED, ref)
        failed = self._failed_undos(ref)
        # The highlighted step if its undo failed; else the one that failed, if only one did.
        if step is not None and step.compensation_status == CompensationStatus.FAILED:
            name: str | None = step.step_name
        else:
            name = failed[0].step_name if len(failed) == 1 else None
        return mark_compensated_mutation(ref, self.console.engine.workflows, self._now(), name)
