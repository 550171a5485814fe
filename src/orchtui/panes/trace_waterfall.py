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

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.events import Resize
from textual.widgets import DataTable, Static

from orchcore import NotFoundError, Orch
from orchcore.tracing.models import GetTraceDetailsResponse, SpanLog, SpanView
from orchtui.actions import ConsoleAction
from orchtui.formatting import age, clock_time, offset, plural, took
from orchtui.pane import Pane
from orchtui.symbols import state_style, state_symbol
from orchtui.widgets import Column, KeyedTable, Row

ERROR_MARK = state_symbol("failed")  # ✖
CRITICAL_MARK = "◆"
UNFOLDED = "▾"
FOLDED = "▸"
BAR = "█"
#: Cells of indentation a level of depth; deep trees stop indenting before the name goes.
INDENT = 2
#: The label takes what its longest span needs, within these bounds (at most half the row).
MIN_LABEL = 16
#: Cells kept for a name however deep the span (the indentation gives way first).
MIN_NAME = 10
#: The duration column, right-aligned: ``350ms``, ``12.4s``, ``420µs``.
TOOK_WIDTH = 6

Fold = Literal["leaf", "open", "shut"]
#: What each piece of a row is, so the widget styles it and the layout stays plain text.
Role = Literal[
    "marker", "indent", "fold", "error", "service", "operation", "more", "took", "bar", "gap"
]


@dataclass(frozen=True)
class WaterfallRow:
    span_id: str
    depth: int
    pieces: tuple[tuple[str, Role], ...]
    #: the bar's first cell and the cell after its last, counted from the row's start
    bar_start: int
    bar_end: int
    error: bool
    critical: bool
    fold: Fold
    #: spans hidden under this one while it is folded
    hidden: int

    @property
    def text(self) -> str:
        return "".join(piece for piece, _ in self.pieces)


@dataclass(frozen=True)
class Waterfall:
    rows: list[WaterfallRow]
    #: the line above the rows: ``SPAN``, ``TOOK`` and the time axis' labels
    ruler: str
    label_width: int
    #: where the bars' area starts in a row, and how wide it is
    bar_offset: int
    bar_width: int


def span_took(microseconds: int) -> str:
    """How long a span took, in microseconds under a millisecond (services' spans are short)."""
    if microseconds < 1000:
        return f"{max(0, microseconds)}µs"
    return took(microseconds / 1000)


def _cut(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def parents(detail: GetTraceDetailsResponse) -> dict[str, str]:
    """Each span's parent in the tree the engine built (a missing parent is no parent)."""
    return {child: span.span_id for span in detail.spans for child in span.children}


def foldable(detail: GetTraceDetailsResponse) -> frozenset[str]:
    """The spans with children: what ``[`` folds."""
    return frozenset(span.span_id for span in detail.spans if span.children)


def visible_spans(
    detail: GetTraceDetailsResponse, folded: Iterable[str]
) -> list[tuple[SpanView, int]]:
    """The spans not under a folded one, depth-first, each with how many it hides."""
    shut = set(folded)
    shown: list[tuple[SpanView, int]] = []
    spans = detail.spans
    index = 0
    while index < len(spans):
        span = spans[index]
        index += 1
        hidden = 0
        if span.span_id in shut and span.children:
            # Depth-first order: the subtree is every following span deeper than this one.
            while index < len(spans) and spans[index].depth > span.depth:
                index += 1
                hidden += 1
        shown.append((span, hidden))
    return shown


def _label_pieces(span: SpanView, fold: Fold, hidden: int, width: int) -> list[tuple[str, Role]]:
    indent = " " * min(span.depth * INDENT, max(0, width - MIN_NAME - 4))
    glyph = {"open": UNFOLDED, "shut": FOLDED, "leaf": " "}[fold]
    pieces: list[tuple[str, Role]] = [(indent, "indent"), (f"{glyph} ", "fold")]
    if span.status_code == "error":
        pieces.append((f"{ERROR_MARK} ", "error"))
    more = f" +{hidden}" if hidden else ""
    room = width - sum(len(p) for p, _ in pieces) - len(more)
    name = _cut(f"{span.service_name} {span.operation_name}", room)
    service = name[: len(span.service_name)]
    pieces += [(service, "service"), (name[len(service) :], "operation")]
    if more:
        pieces.append((more, "more"))
    used = sum(len(p) for p, _ in pieces)
    pieces.append((" " * (width - used), "gap"))
    return pieces


def _label_need(span: SpanView) -> int:
    error = 2 if span.status_code == "error" else 0
    return span.depth * INDENT + 2 + error + len(span.service_name) + 1 + len(span.operation_name)


def bar_cells(
    start: datetime, end: datetime, *, axis_start: datetime, total_seconds: float, width: int
) -> tuple[int, int]:
    """Where a span falls on an axis of ``width`` cells: its first cell and the one after
    its last, at least one cell wide, so an instant (an operator's action) still shows."""
    first = (start - axis_start).total_seconds() / total_seconds * width
    last = (end - axis_start).total_seconds() / total_seconds * width
    a = min(width - 1, max(0, math.floor(first)))
    b = min(width, max(a + 1, math.ceil(last)))
    return a, b


def axis_labels(bar_width: int, total_ms: float) -> str:
    """``0        2.0s        4.0s``: the axis' start, middle and end over its cells; a
    label that would touch another is left out (a narrow axis keeps only its ends)."""
    axis = [" "] * bar_width
    end, middle = took(total_ms), took(total_ms / 2)
    # The start at the first cell, the end ending at the last, the middle centred.
    for at, label in (
        (0, "0"),
        (bar_width - len(end), end),
        (bar_width // 2 - len(middle) // 2, middle),
    ):
        around = axis[max(0, at - 1) : at + len(label) + 1]
        if at >= 0 and at + len(label) <= bar_width and all(c == " " for c in around):
            axis[at : at + len(label)] = label
    return "".join(axis).rstrip()


def _ruler(label_width: int, bar_width: int, total_ms: float) -> str:
    labels = axis_labels(bar_width, total_ms)
    return f"  {'SPAN'.ljust(label_width)} {'TOOK'.rjust(TOOK_WIDTH)} {labels}".rstrip()


def waterfall_layout(
    detail: GetTraceDetailsResponse, *, width: int, folded: Iterable[str] = ()
) -> Waterfall:
    """The rows of the trace's visible spans in ``width`` cells (see the module's doc)."""
    header = detail.trace
    critical = set(detail.critical_path)
    # marker and a space, a space and the duration, a space: the rest is label and bars
    fixed = 2 + 1 + TOOK_WIDTH + 1
    rest = max(2, width - fixed)
    longest = max((_label_need(span) for span in detail.spans), default=MIN_LABEL)
    label_width = max(min(MIN_LABEL, rest // 2), min(longest, rest // 2))
    bar_width = max(1, rest - label_width)
    bar_offset = fixed + label_width
    axis_start = header.start_time
    total = max((header.end_time - axis_start).total_seconds(), 1e-6)
    rows = []
    for span, hidden in visible_spans(detail, folded):
        fold: Fold = "leaf" if not span.children else "shut" if hidden else "open"
        end = span.end_time or span.start_time
        a, b = bar_cells(
            span.start_time, end, axis_start=axis_start, total_seconds=total, width=bar_width
        )
        pieces: list[tuple[str, Role]] = [
            (f"{CRITICAL_MARK if span.span_id in critical else ' '} ", "marker"),
            *_label_pieces(span, fold, hidden, label_width),
            (" " + span_took(span.duration_microseconds).rjust(TOOK_WIDTH) + " ", "took"),
            (" " * a, "gap"),
            (BAR * (b - a), "bar"),
        ]
        rows.append(
            WaterfallRow(
                span_id=span.span_id,
                depth=span.depth,
                pieces=tuple(pieces),
                bar_start=bar_offset + a,
                bar_end=bar_offset + b,
                error=span.status_code == "error",
                critical=span.span_id in critical,
                fold=fold,
                hidden=hidden,
            )
        )
    return Waterfall(
        rows=rows,
        ruler=_ruler(label_width, bar_width, header.total_duration_ms),
        label_width=label_width,
        bar_offset=bar_offset,
        bar_width=bar_width,
    )


def first_cause(detail: GetTraceDetailsResponse) -> str | None:
    """The span to look at first: the deepest error on the critical path (what made the
    trace end as it did), else the first error none of whose descendants failed (where a
    failure began); None when nothing failed."""
    failed = {s.span_id for s in detail.spans if s.status_code == "error"}
    if not failed:
        return None
    on_path = [span_id for span_id in detail.critical_path if span_id in failed]
    if on_path:
        return on_path[-1]
    below: dict[str, bool] = {}
    for span in reversed(detail.spans):  # children before their parents
        below[span.span_id] = any(c in failed or below.get(c, False) for c in span.children)
    return next(s.span_id for s in detail.spans if s.span_id in failed and not below[s.span_id])


# -- drawing ------------------------------------------------------------------------------------

_STYLES: dict[Role, str] = {
    "marker": "bold yellow",
    "fold": "bright_black",
    "error": state_style("failed"),
    "service": "bold",
    "more": "bright_black",
    "took": "",
    "bar": "cyan",
}


def row_text(row: WaterfallRow) -> Text:
    """A row with its styles: errors red (label and bar), the critical path's bars bold."""
    text = Text(no_wrap=True, overflow="crop")
    for piece, role in row.pieces:
        style = _STYLES.get(role, "")
        if row.error and role in ("bar", "operation", "service"):
            style = f"{'bold ' if role == 'service' else ''}{state_style('failed')}"
        if role == "bar" and row.critical:
            style = f"bold {style}"
        text.append(piece, style=style or None)
    return text


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _fields(fields: Mapping[str, Any]) -> str:
    return "  ".join(f"{k}={_value(v)}" for k, v in sorted(fields.items()))


def span_panel(span: SpanView, detail: GetTraceDetailsResponse) -> RenderableType:
    """The highlighted span in full: what and where, when and how long, events, tags."""
    start = detail.trace.start_time
    title = Text(f"{span.service_name} {span.operation_name}", style="bold")
    title.append(f"  span {span.span_id}", style="bright_black")
    if span.span_id in detail.critical_path:
        title.append(f"  {CRITICAL_MARK} critical path", style="bold yellow")
    line = Text()
    if span.status_code == "error":
        line.append(f"{ERROR_MARK} error", style=state_style("failed"))
        why = span.tags.get("otel.status_description")
        line.append(f": {why}" if why else "", style=state_style("failed"))
        line.append(" · ")
    line.append(f"{span.span_kind} · took {span_took(span.duration_microseconds)}")
    line.append(f" · at {offset((span.start_time - start).total_seconds())}")
    tags = Table.grid(padding=(0, 2))
    tags.add_column(style="bright_black", no_wrap=True)
    tags.add_column()
    for key, value in sorted(span.tags.items()):
        tags.add_row(key, _value(value))
    # Events first: a retry, a rejection or an exception says more than the tags do.
    parts: list[RenderableType] = [title, line, Text("events", style="bold underline")]
    parts += [event_text(log, start) for log in span.logs] or [
        Text("no events", style="bright_black")
    ]
    parts.append(Text("tags", style="bold underline"))
    parts.append(tags if span.tags else Text("no tags", style="bright_black"))
    return Group(*parts)


def event_text(log: SpanLog, trace_start: datetime) -> Text:
    """``+2.10s ✖ breaker rejected  state=open``: when, what, and its attributes."""
    text = Text(f"{offset((log.timestamp - trace_start).total_seconds())} ")
    if log.level == "error":
        text.append(f"{ERROR_MARK} {log.message}", style=state_style("failed"))
    else:
        text.append(f"• {log.message}")
    if log.fields:
        text.append(f"  {_fields(log.fields)}", style="bright_black")
    return text


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


async def fetch_trace(orch: Orch, trace_id: str | None, workflow: str | None) -> TraceSnapshot:
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


class WaterfallTable(KeyedTable):
    """The spans' table: ← and → are the pane's (fold, unfold), not sideways scrolling;
    the rows are laid out to the table's width, so there is nothing sideways to see."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("cursor_left", "cursor_right"):
            return False
        return super().check_action(action, parameters)


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
        table = WaterfallTable((Column("span", "SPAN"),), id="trace-spans")
        table.show_header = False  # the ruler above is the header, axis labels and all
        yield table
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
    def filter_table(self) -> KeyedTable:
        return self.query_one("#trace-spans", KeyedTable)

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

    async def fetch(self, orch: Orch) -> TraceSnapshot:
        return await fetch_trace(orch, self.trace_id, self.workflow)

    def show(self, snapshot: TraceSnapshot) -> None:
        if snapshot.trace_id is not None:
            self.trace_id = snapshot.trace_id
        self.query_one("#trace-summary", Static).update(summary_text(snapshot))
        self._draw()
        self._describe_selected()

    @property
    def rows_width(self) -> int | None:
        """The cells a row may take: the table's, less each cell's padding and a scrollbar;
        None before the first layout, when there is no width to lay rows out in."""
        width = self.filter_table.size.width or self.size.width
        return max(20, width - 3) if width else None

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
        self.filter_table.show_rows([Row(r.span_id, (row_text(r),)) for r in self.waterfall.rows])
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

    @on(DataTable.RowHighlighted, "#trace-spans")
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
