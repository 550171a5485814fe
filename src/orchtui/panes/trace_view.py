"""One trace's waterfall, drawn as text: pure layout and styling, apart from the pane.

:func:`waterfall_layout` takes the engine's trace (the seed's GetTraceDetailsResponse,
spans depth-first with their depth and children), a width and the spans folded, and
returns one row a visible span, each a string of cells (marker, indented label,
duration, bar) with the bar's columns on an axis from the trace's first start to its
last end. :func:`row_text` styles a row; :func:`span_panel` describes one span in full.

A row reads ``◆ ▾ ✖ payments step charge_deposit  1.9s        ██████``: ``◆`` on the
critical path (the chain of spans that decided when the trace ended), ``▾`` unfolded or
``▸`` folded (with ``+N`` spans hidden), ``✖`` an error (its bar red as well), so the
waterfall reads the same under NO_COLOR.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchcore.tracing.models import GetTraceDetailsResponse, SpanLog, SpanView
from orchtui.formatting import offset, took
from orchtui.symbols import state_style, state_symbol

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
    span: SpanView
    #: the bar's first cell and the cell after its last, counted from the row's start
    bar_start: int
    bar_end: int
    critical: bool
    fold: Fold
    #: spans hidden under this one while it is folded
    hidden: int
    #: the cells the label takes (the same in every row)
    label_width: int
    #: where the bars' area starts in a row
    bar_offset: int

    @property
    def span_id(self) -> str:
        return self.span.span_id

    @property
    def depth(self) -> int:
        return self.span.depth

    @property
    def error(self) -> bool:
        return self.span.status_code == "error"

    @property
    def key(self) -> str:
        return self.span.span_id

    @cached_property
    def pieces(self) -> tuple[tuple[str, Role], ...]:
        """The row's cells, made when first drawn (a screenful of a 1,000-span trace)."""
        span, a, b = self.span, self.bar_start - self.bar_offset, self.bar_end - self.bar_offset
        return (
            (f"{CRITICAL_MARK if self.critical else ' '} ", "marker"),
            *_label_pieces(span, self.fold, self.hidden, self.label_width),
            (" " + span_took(span.duration_microseconds).rjust(TOOK_WIDTH) + " ", "took"),
            (" " * a, "gap"),
            (BAR * (b - a), "bar"),
        )

    @property
    def text(self) -> str:
        return "".join(piece for piece, _ in self.pieces)

    def styled(self) -> Text:
        return row_text(self)


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
        rows.append(
            WaterfallRow(
                span=span,
                bar_start=bar_offset + a,
                bar_end=bar_offset + b,
                critical=span.span_id in critical,
                fold=fold,
                hidden=hidden,
                label_width=label_width,
                bar_offset=bar_offset,
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
