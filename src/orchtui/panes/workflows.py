"""Workflows: the most recent sagas, their status, how far they got and what holds them up.

Fetch: :meth:`WorkflowStore.list_workflows` (the seed's GetWorkflowsResponse), newest
first, narrowed by the quick filter. Render: the counts of every status, the quick
filters, one row per workflow keyed by id, and the highlighted workflow in full below.
Enter opens the workflow's steps and timeline; ``R`` ``c`` ``p`` ``x`` ``s`` act on it.

Quick filters (keys 1-5) ask the engine for a set of statuses, so they reach past the
newest rows; ``/`` then filters what was fetched by any text on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from orchcore.saga.status import OperatorAction, WorkflowStatus
from orchcore.saga.views import GetWorkflowsResponse, WorkflowSummary
from orchtui.actions import ConsoleAction, Mutation, Unavailable
from orchtui.formatting import age, countdown, took
from orchtui.pane import Pane
from orchtui.panes.workflow_detail import WorkflowDetailPane
from orchtui.panes.workflow_view import (
    ACTIVE,
    NEEDS_INTERVENTION,
    NEEDS_PERSON_ORDER,
    WAITS_FOR_RETRY,
    WORKFLOW_ACTIONS,
    WorkflowRef,
    applies,
    cancel_mutation,
    compensate_mutation,
    counts_text,
    pause_mutation,
    ref_of_summary,
    retry_mutation,
    skip_mutation,
    status_text,
    wedding_short,
)
from orchtui.source import ConsoleSource
from orchtui.symbols import state_style
from orchtui.widgets import Column, KeyedTable, Row

#: How many of the newest workflows (of the quick filter's statuses) are fetched.
LIMIT = 100
#: Long names and correlation ids are cut in the table; the line below shows them whole.
NAME_WIDTH = 14
CORRELATION_WIDTH = 18

# The wedding goes last: it is what may run off an 80-column screen (the detail has it).
COLUMNS = (
    Column("status", "STATUS"),
    Column("name", "NAME"),
    Column("correlation", "CORRELATION"),
    Column("steps", "STEP"),
    Column("took", "TOOK"),
    Column("note", "NEXT / FAILED AT"),
    Column("wedding", "WEDDING"),
)


@dataclass(frozen=True)
class QuickFilter:
    key: str
    name: str
    statuses: tuple[WorkflowStatus, ...] | None  # None: every status
    explanation: str

    @property
    def action(self) -> str:
        return f"show_{self.name.split()[0]}"


_S = WorkflowStatus
#: Ended without completing: what went wrong, undone or not.
NOT_COMPLETED = (_S.FAILED, _S.COMPENSATION_FAILED, _S.COMPENSATED)
#: Where the note column names the step it failed at (forward, or its undo).
_NAMES_FAILED_STEP = frozenset(NOT_COMPLETED)

QUICK_FILTERS: tuple[QuickFilter, ...] = (
    QuickFilter("1", "all", None, "Show every workflow"),
    QuickFilter(
        "2",
        "active",
        ACTIVE,
        "Show workflows not ended: pending, running, retrying, paused, compensating",
    ),
    QuickFilter("3", "retrying", (_S.RETRYING,), "Show workflows waiting to retry a step"),
    QuickFilter(
        "4",
        "intervention",
        NEEDS_PERSON_ORDER,
        "Show workflows needing intervention (a compensation kept failing)",
    ),
    QuickFilter(
        "5",
        "failed",
        NOT_COMPLETED,
        "Show workflows that did not complete: failed, compensation failed, compensated",
    ),
)


@dataclass(frozen=True)
class WorkflowsSnapshot:
    listing: GetWorkflowsResponse
    quick: QuickFilter
    taken_at: datetime

    def by_id(self, key: str) -> WorkflowSummary | None:
        return next((w for w in self.listing.workflows if str(w.id) == key), None)


async def fetch_workflows(
    orch: ConsoleSource, quick: QuickFilter = QUICK_FILTERS[0]
) -> WorkflowsSnapshot:
    statuses = [str(s) for s in quick.statuses] if quick.statuses is not None else None
    listing = await orch.workflows.list_workflows(status=statuses, limit=LIMIT)
    return WorkflowsSnapshot(listing=listing, quick=quick, taken_at=orch.clock.now())


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def note_text(workflow: WorkflowSummary, now: datetime) -> Text:
    """What holds it up: when it tries again, or the step that failed (the status column
    carries the symbol, so this is words only)."""
    status = workflow.current_status
    if status in WAITS_FOR_RETRY and workflow.next_run_at is not None:
        return Text(f"next {countdown(workflow.next_run_at, now)}", style=state_style(status))
    if status in _NAMES_FAILED_STEP and workflow.failed_step:
        return Text(workflow.failed_step, style=state_style(status))
    if status == _S.RUNNING and workflow.lease_owner:
        return Text(f"on {workflow.lease_owner}", style="bright_black")
    return Text("")


def workflow_row(workflow: WorkflowSummary, now: datetime) -> Row:
    return Row(
        key=str(workflow.id),
        cells=(
            status_text(workflow.current_status, short=True),
            _cut(workflow.workflow_name, NAME_WIDTH),
            _cut(workflow.correlation_id, CORRELATION_WIDTH),
            f"{workflow.current_step}/{workflow.total_steps}",
            took(workflow.duration_ms),
            note_text(workflow, now),
            wedding_short(workflow.wedding_id),
        ),
    )


def workflow_line(workflow: WorkflowSummary, now: datetime) -> Text:
    """The highlighted workflow in full: who it is, where it is, and why."""
    text = Text(workflow.correlation_id, style="bold")
    text.append(f"  {workflow.workflow_name} {workflow.workflow_version}")
    text.append(
        f" · started {age(workflow.started_at, now)} ago by {workflow.initiating_service}",
        style="bright_black",
    )
    text.append("\n")
    status = workflow.current_status
    text.append_text(status_text(status))
    text.append(f" · step {workflow.current_step}/{workflow.total_steps}")
    if status in WAITS_FOR_RETRY and workflow.next_run_at is not None:
        text.append(f" · next attempt {countdown(workflow.next_run_at, now)}")
    if workflow.error_message and status != _S.COMPLETED:
        where = f" {workflow.failed_step}" if workflow.failed_step else ""
        what = "undo of" if status == NEEDS_INTERVENTION else "at"
        text.append(f"\nwhy: {what}{where}: {workflow.error_message}", style="bright_black")
    return text


def quick_filters_text(current: QuickFilter) -> Text:
    """``show [1 all] 2 active 3 retrying …``: the keys, the chosen one in reverse."""
    text = Text("show ", style="bright_black")
    for quick in QUICK_FILTERS:
        label = f"{quick.key} {quick.name}"
        if quick is current:
            text.append(f"[{label}]", style="bold reverse")
        else:
            text.append(f" {label} ")
        text.append(" ")
    text.rstrip()
    return text


def _quick_actions() -> tuple[ConsoleAction, ...]:
    return tuple(
        ConsoleAction(q.key, q.action, q.name.capitalize(), q.explanation, show=False)
        for q in QUICK_FILTERS
    )


class WorkflowsPane(Pane[WorkflowsSnapshot]):
    NAME = "workflows"
    ALIASES = ("wf", "workflow", "sagas")
    TITLE = "Workflows"
    SUMMARY = "sagas: status, progress, retries and failures, by step"
    TOPICS = frozenset({"workflow"})
    ACTIONS = (
        ConsoleAction(
            "enter",
            "open_detail",
            "Detail",
            "The workflow's steps on a time axis, and its execution timeline",
            key_display="⏎",
        ),
        *WORKFLOW_ACTIONS,
        ConsoleAction(
            "s",
            "skip",
            "Skip step",
            "Treat the failed step as done with a given output, and carry on",
            mutating=True,
        ),
        *_quick_actions(),
    )

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.quick = QUICK_FILTERS[0]
        self._to_top = False

    def compose(self) -> ComposeResult:
        yield Static("", id="workflows-counts")
        yield Static(quick_filters_text(self.quick), id="workflows-quick")
        yield KeyedTable(COLUMNS, id="workflows-table")
        yield Static("", id="workflow-line")

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#workflows-table", KeyedTable)

    async def fetch(self, orch: ConsoleSource) -> WorkflowsSnapshot:
        return await fetch_workflows(orch, self.quick)

    def show(self, snapshot: WorkflowsSnapshot) -> None:
        if snapshot.quick is not self.quick:
            return  # fetched before the filter changed; the next fetch is on its way
        listing, now = snapshot.listing, snapshot.taken_at
        counts = self.query_one("#workflows-counts", Static)
        if sum(listing.status_summary.values()):
            counts.update(counts_text(listing.status_summary))
        else:
            counts.update(
                Text("no workflows yet: orch workflow start NAME starts one", style="bright_black")
            )
        table = self.filter_table
        table.show_rows([workflow_row(w, now) for w in listing.workflows])
        if self._to_top:
            # A new quick filter starts at its newest workflow, not where the last one was.
            self._to_top = False
            table.move_cursor(row=0, animate=False)
        self._describe_selected()

    def update_border_title(self) -> None:
        """``Workflows · failed [3/40] /pay``: the quick filter, shown of how many, text."""
        title = self.TITLE
        if self.quick.statuses is not None:
            title += f" · {self.quick.name}"
        table = self.filter_table
        snapshot = self.snapshot
        if snapshot is not None and snapshot.quick is self.quick:
            shown, total = table.row_count, snapshot.listing.total
            title += f" [{shown}/{total}]" if shown != total else f" [{total}]"
        if table.filter_text:
            title += f" /{table.filter_text}"
        self.border_title = title

    @on(DataTable.RowHighlighted, "#workflows-table")
    def _describe_selected(self) -> None:
        workflow = self.selected_workflow
        line = self.query_one("#workflow-line", Static)
        if workflow is None or self.snapshot is None:
            line.update("")
        else:
            line.update(workflow_line(workflow, self.snapshot.taken_at))

    @on(DataTable.RowSelected, "#workflows-table")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        # Enter reaches action_open_detail through the binding; a click comes here.
        event.stop()
        self.action_open_detail()

    @property
    def selected_workflow(self) -> WorkflowSummary | None:
        key = self.filter_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.by_id(key)

    def action_open_detail(self) -> None:
        workflow = self.selected_workflow
        if workflow is None:
            self.notify("No workflow selected.", severity="warning")
            return
        self.console.open_detail(
            WorkflowDetailPane(workflow.id, f"{workflow.workflow_name} {workflow.correlation_id}")
        )

    # -- quick filters ----------------------------------------------------------------------

    def show_only(self, quick: QuickFilter) -> None:
        if quick is self.quick:
            return
        self.quick = quick
        self._to_top = True
        self.query_one("#workflows-quick", Static).update(quick_filters_text(quick))
        self.update_border_title()
        self.mark_dirty()
        if self.console.orch is not None:
            self.start_fetch(self.console.orch)

    def action_show_all(self) -> None:
        self.show_only(QUICK_FILTERS[0])

    def action_show_active(self) -> None:
        self.show_only(QUICK_FILTERS[1])

    def action_show_retrying(self) -> None:
        self.show_only(QUICK_FILTERS[2])

    def action_show_intervention(self) -> None:
        self.show_only(QUICK_FILTERS[3])

    def action_show_failed(self) -> None:
        self.show_only(QUICK_FILTERS[4])

    # -- the operator's actions ------------------------------------------------------------

    def _ref(self) -> WorkflowRef | None:
        workflow = self.selected_workflow
        return ref_of_summary(workflow) if workflow is not None else None

    def _now(self) -> datetime:
        return self.snapshot.taken_at if self.snapshot is not None else self.console.now()

    def mutation_retry(self) -> Mutation | None:
        ref = self._ref()
        return retry_mutation(ref, self.console.engine.workflows, self._now()) if ref else None

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
        ref = self._ref()
        if ref is None:
            return None
        applies(OperatorAction.SKIP_STEP, ref)
        # Only a failed workflow names its step here; otherwise the steps are in the detail.
        if ref.status != _S.FAILED or ref.failed_step is None:
            raise Unavailable(f"Open workflow {ref.label} (Enter) and pick the step to skip there.")
        return skip_mutation(ref, self.console.engine.workflows, self._now(), ref.failed_step)


__all__ = ["QUICK_FILTERS", "WorkflowsPane", "WorkflowsSnapshot", "fetch_workflows"]
