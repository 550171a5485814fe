"""One trace as a waterfall: its spans depth-first on the trace's time axis, foldable.

The layout is pure (:func:`waterfall_layout`): given the engine's trace (the seed's
GetTraceDetailsResponse, spans depth-first with their depth and children), a width and
the spans folded, it returns one row a visible span, each a string of cells (marker,
indented label, duration, bar) with the bar's columns on an axis from the trace's first
start to its last end. The pane draws those rows, keeps the folds, and shows the
highlighted span's tags and events below.

A row reads ``◆ ▾ ✖ payments step charge_deposit  1.9s        ██████``: ``◆`` on the
critical path (the chain of spans that decided when the trace ended), ``▾`` unfolded or
``▸`` folded (with ``+N`` spans hidden), ``✖`` an error (its bar red as well), so the
waterfall reads the same under NO_COLOR. ``[`` folds every span, ``]`` unfolds them, ← and
→ fold and unfold the highlighted one. Opened from Traces, or with ``t`` on a workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.events import Resize
from textual.widgets import Static

from orchcore import NotFoundError
from orchcore.tracing.models import GetTraceDetailsResponse, SpanView
from orchtui.actions import ConsoleAction
from orchtui.formatting import age, clock_time, plural, took
from orchtui.pane import Pane
from orchtui.panes.trace_view import (
    CRITICAL_MARK,
    ERROR_MARK,
    FOLDED,
    Waterfall,
    WaterfallRow,
    first_cause,
    foldable,
    parents,
    span_panel,
    waterfall_layout,
)
from orchtui.source import ConsoleSource
from orchtui.symbols import state_style, state_symbol
from orchtui.widgets import LazyRows


def summary_text(snapshot: TraceSnapshot) -> Text:
    """What the trace was, how it ended and how long it took, and whose it is."""
    detail = snapshot.detail
    if detail is None:
        return Text(snapshot.missing or "no spans", style="bright_black")
    header = detail.trace
    failed = header.status == "error"
    state = "failed" if failed else "completed"
    text = Text(f"{state_symbol(state)} {'error' if failed else 'ok'}", style=state_style(state))
    errors = sum(1 for s in detail.spans if s.status_code == "error")
    text.append(f" · {took(header.total_duration_ms)} · {plural(header.span_count, 'span')}")
    text.append(f" · {plural(header.service_count, 'service')}")
    if errors:
        text.append(" · ")
        text.append(f"{plural(errors, 'error')}", style=state_style("failed"))
    text.append(
        f" · started {clock_time(header.start_time)}, {age(header.start_time, snapshot.taken_at)}"
        " ago",
        style="bright_black",
    )
    text.append(f"\ntrace {header.trace_id}", style="bright_black")
    if header.correlation_id:
        text.append(f" · workflow {header.correlation_id}", style="bright_black")
    if header.error_message:
        text.append("\n")
        text.append(f"why: {header.error_message}", style=state_style("failed"))
    return text


# -- the pane -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSnapshot:
    trace_id: str | None
    detail: GetTraceDetailsResponse | None
    taken_at: datetime
    #: why there is nothing to draw, when there is not
    missing: str | None = None

    def span(self, span_id: str) -> SpanView | None:
        if self.detail is None:
            return None
        return next((s for s in self.detail.spans if s.span_id == span_id), None)


async def fetch_trace(
    orch: ConsoleSource, trace_id: str | None, workflow: str | None
) -> TraceSnapshot:
    """The trace, found by its id or by its workflow's (id or correlation id)."""
    now = orch.clock.now()
    if trace_id is None:
        assert workflow is not None
        try:
            trace_id = await orch.tracing.trace_of_workflow(workflow)
        except NotFoundError:
            return TraceSnapshot(None, None, now, f"workflow {workflow} has no trace")
    try:
        detail = await orch.tracing.trace(trace_id)
    except NotFoundError:
        return TraceSnapshot(
            trace_id,
            None,
            now,
            f"no spans of trace {trace_id} yet: spans are written as they end, "
            "a workflow's root when the workflow ends",
        )
    return TraceSnapshot(trace_id, detail, now)


WATERFALL_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "left_square_bracket",
        "fold_all",
        "Fold all",
        "Fold every span with children: only the roots show",
        key_display="[",
    ),
    ConsoleAction(
        "right_square_bracket", "unfold_all", "Unfold all", "Unfold every span", key_display="]"
    ),
    ConsoleAction(
        "left",
        "fold",
        "Fold",
        "Fold the highlighted span's children (folded, or a leaf: go to its parent)",
        key_display="←",
    ),
    ConsoleAction(
        "right",
        "unfold",
        "Unfold",
        "Unfold the highlighted span's children (unfolded: go to its first child)",
        key_display="→",
    ),
)


class TraceWaterfallPane(Pane[TraceSnapshot]):
    NAME = "trace"
    TITLE = "Trace"
    SUMMARY = "one trace: its spans on a time axis, the critical path, each span's tags and events"
    ACTIONS = WATERFALL_ACTIONS

    def __init__(
        self, trace_id: str | None = None, *, workflow: str | None = None, origin: str = "Traces"
    ) -> None:
        if (trace_id is None) == (workflow is None):
            raise ValueError("name the trace or its workflow, one of them")
        super().__init__(id="pane-trace")
        self.trace_id = trace_id
        self.workflow = workflow
        self.origin = origin
        self.folded: set[str] = set()
        self.waterfall: Waterfall | None = None
        self._placed_cursor = False

    @classmethod
    def of_workflow(cls, workflow: str, *, origin: str) -> TraceWaterfallPane:
        """The trace of a workflow (by id or correlation id), looked up when fetched."""
        return cls(workflow=workflow, origin=origin)

    def compose(self) -> ComposeResult:
        yield Static("", id="trace-summary")
        yield Static("", id="trace-ruler")
        # The ruler above is the rows' header, axis labels and all.
        yield LazyRows(id="trace-spans")
        with VerticalScroll(id="trace-span-section") as section:
            section.border_title = "Span"
            yield Static("", id="trace-span")

    @property
    def breadcrumb(self) -> str:
        detail = self.snapshot.detail if self.snapshot is not None else None
        if detail is None or not detail.spans:
            return f"{self.origin} › trace"
        root = detail.spans[0]
        return f"{self.origin} › {root.service_name} {root.operation_name}"

    @property
    def filter_table(self) -> LazyRows:
        return self.query_one("#trace-spans", LazyRows)

    def focus_primary(self) -> None:
        self.filter_table.focus()

    def update_border_title(self) -> None:
        table = self.filter_table
        self.border_title = self.breadcrumb + (
            f" /{table.filter_text}" if table.filter_text else ""
        )
        self.border_subtitle = (
            f"{CRITICAL_MARK} critical path · {ERROR_MARK} error · {FOLDED} folded"
        )

    async def fetch(self, orch: ConsoleSource) -> TraceSnapshot:
        return await fetch_trace(orch, self.trace_id, self.workflow)

    def show(self, snapshot: TraceSnapshot) -> None:
        if snapshot.trace_id is not None:
            self.trace_id = snapshot.trace_id
        self.query_one("#trace-summary", Static).update(summary_text(snapshot))
        self._draw()
        self._describe_selected()

    @property
    def rows_width(self) -> int | None:
        """The cells a row may take: the rows' width, less the scrollbar's; None before the
        first layout, when there is no width to lay rows out in."""
        width = self.filter_table.scrollable_content_region.width
        return max(20, width) if width else None

    def _draw(self) -> None:
        snapshot = self.snapshot
        detail = snapshot.detail if snapshot is not None else None
        ruler = self.query_one("#trace-ruler", Static)
        if detail is None:
            self.waterfall = None
            ruler.update("")
            self.filter_table.show_rows([])
            return
        width = self.rows_width
        if width is None:
            return  # the first layout's resize draws them, at the width there is
        self.folded &= foldable(detail)  # spans of an older fetch are forgotten
        self.waterfall = waterfall_layout(detail, width=width, folded=self.folded)
        ruler.update(Text(self.waterfall.ruler, style="bold", no_wrap=True, overflow="crop"))
        self.filter_table.show_rows(self.waterfall.rows)
        if not self._placed_cursor:
            # Opened where the failure began, not on the root every trace starts with.
            self._placed_cursor = True
            cause = first_cause(detail)
            if cause is not None:
                self._move_to(cause)

    def on_resize(self, event: Resize) -> None:
        if self.snapshot is not None:
            self._draw()
            self._describe_selected()

    @on(LazyRows.Highlighted, "#trace-spans")
    def _describe_selected(self) -> None:
        snapshot, span = self.snapshot, self.selected_span
        section = self.query_one("#trace-span-section", VerticalScroll)
        panel = self.query_one("#trace-span", Static)
        if snapshot is None or snapshot.detail is None or span is None:
            panel.update("")
            section.border_title = "Span"
            return
        panel.update(span_panel(span, snapshot.detail))
        section.border_title = f"Span {span.service_name} {span.operation_name}"

    @property
    def selected_span(self) -> SpanView | None:
        key = self.filter_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.span(key)

    def _move_to(self, span_id: str) -> None:
        """Put the cursor on the span, or on its nearest ancestor shown."""
        snapshot = self.snapshot
        if snapshot is None or snapshot.detail is None:
            return
        up = parents(snapshot.detail)
        table = self.filter_table
        wanted: str | None = span_id
        while wanted is not None and wanted not in table.shown_keys:
            wanted = up.get(wanted)
        if wanted is not None:
            table.move_cursor(row=table.get_row_index(wanted), animate=False)

    def _refold(self, folded: set[str], *, keep: str | None) -> None:
        self.folded = folded
        self._draw()
        if keep is not None:
            self._move_to(keep)
        self._describe_selected()

    # -- keys -------------------------------------------------------------------------------------

    def action_fold_all(self) -> None:
        if self.snapshot is None or self.snapshot.detail is None:
            return
        self._refold(set(foldable(self.snapshot.detail)), keep=self.filter_table.selected_key)

    def action_unfold_all(self) -> None:
        self._refold(set(), keep=self.filter_table.selected_key)

    def action_fold(self) -> None:
        span = self.selected_span
        if span is None or self.snapshot is None or self.snapshot.detail is None:
            return
        if span.children and span.span_id not in self.folded:
            self._refold(self.folded | {span.span_id}, keep=span.span_id)
            return
        parent = parents(self.snapshot.detail).get(span.span_id)
        if parent is not None:
            self._move_to(parent)

    def action_unfold(self) -> None:
        span = self.selected_span
        if span is None or not span.children:
            return
        if span.span_id in self.folded:
            self._refold(self.folded - {span.span_id}, keep=span.span_id)
        else:
            self._move_to(span.children[0])


__all__ = [
    "TraceSnapshot",
    "TraceWaterfallPane",
    "Waterfall",
    "WaterfallRow",
    "fetch_trace",
    "waterfall_layout",
]
