"""A trace as a text waterfall: pure rendering, apart from the verbs that print it.

One line a span, depth-first and indented by depth: its markers (``◆`` on the critical
path, ``✗`` an error), its operation and service, a bar on the trace's time axis (from
the first span's start to the last span's end, scaled to what the line has left), and
its duration right-aligned. A span of no duration is a one-cell tick. Every state has a
symbol, so the waterfall reads the same without colour; colour only tints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import click

from orchcore.tracing.models import GetTraceDetailsResponse, SpanView

#: Narrower terminals still get 60 columns: below that the bars say nothing.
MIN_WIDTH = 60
CRITICAL = "◆"
ERROR = "✗"
BAR = "█"
TICK = "│"
#: Columns of the duration at a line's end ("1000.0ms" is the longest).
DURATION_WIDTH = 8
#: Columns before the label: the two markers and a space.
MARKS_WIDTH = 3
#: Bar colours by service, in order of first appearance (red is for errors).
SERVICE_COLOURS = ("cyan", "green", "blue", "magenta", "yellow", "bright_cyan", "bright_blue")
MICROSECOND = timedelta(microseconds=1)


def use_color(env: Mapping[str, str], isatty: bool) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return isatty and not env.get("NO_COLOR")


def duration_text(micros: int) -> str:
    """``0µs``, ``250µs``, ``12.5ms``, ``3.20s``, ``4m05s``, ``2h10m``."""
    if micros < 1000:
        return f"{max(micros, 0)}µs"
    if micros < 1_000_000:
        return f"{micros / 1000:.1f}ms"
    if micros < 60_000_000:
        return f"{micros / 1_000_000:.2f}s"
    minutes, seconds = divmod(micros // 1_000_000, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class Layout:
    """Where a line's parts go: markers, label, bar, duration, a space between each."""

    width: int
    label: int
    bar: int

    @classmethod
    def for_width(cls, width: int) -> Layout:
        width = max(width, MIN_WIDTH)
        label = max(22, min(50, int(width * 0.34)))
        return cls(width, label, width - MARKS_WIDTH - label - 1 - 1 - DURATION_WIDTH)

    @property
    def bar_start(self) -> int:
        return MARKS_WIDTH + self.label + 1


@dataclass(frozen=True)
class Axis:
    """The trace's time axis: its start and length, both in microseconds."""

    start: datetime
    micros: int

    def cells(self, span: SpanView, width: int) -> tuple[int, int]:
        """The cells [first, last) the span covers on a bar of ``width`` cells: at least
        one, so a short span still shows where it happened."""
        offset = max(0, (span.start_time - self.start) // MICROSECOND)
        total = max(self.micros, 1)
        first = min(width - 1, offset * width // total)
        last = -(-(offset + max(span.duration_microseconds, 0)) * width // total)  # ceiling
        return first, min(width, max(first + 1, last))


def render_waterfall(detail: GetTraceDetailsResponse, width: int, color: bool) -> list[str]:
    """The trace's header, a time ruler, one line a span (in ``detail.spans``' order,
    which is depth-first) and a legend; each line at most ``width`` columns (at least
    60). ``color`` adds ANSI styles; without it the text is plain."""
    layout = Layout.for_width(width)
    header = detail.trace
    axis = Axis(header.start_time, max(0, (header.end_time - header.start_time) // MICROSECOND))
    critical = set(detail.critical_path)
    colours = _service_colours(detail.spans)
    style = _Style(color)
    lines = _header_lines(detail, layout.width, style)
    lines.append(_ruler(axis, layout))
    for span in detail.spans:
        lines.append(_span_line(span, axis, layout, span.span_id in critical, colours, style))
    lines.append(style(f"{CRITICAL} critical path   {ERROR} error   {TICK} no duration", dim=True))
    return lines


class _Style:
    """ANSI styles when colour is on; the text as it is when off (or only blanks)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(
        self, text: str, *, fg: str | None = None, bold: bool | None = None, dim: bool | None = None
    ) -> str:
        if not self.enabled or not text.strip():
            return text
        return click.style(text, fg=fg, bold=bold, dim=dim)


def _service_colours(spans: list[SpanView]) -> dict[str, str]:
    colours: dict[str, str] = {}
    for span in spans:
        if span.service_name not in colours:
            colours[span.service_name] = SERVICE_COLOURS[len(colours) % len(SERVICE_COLOURS)]
    return colours


def _header_lines(detail: GetTraceDetailsResponse, width: int, style: _Style) -> list[str]:
    header = detail.trace
    errors = sum(1 for span in detail.spans if span.status_code == "error")
    status = f"{ERROR} {_plural(errors, 'error')}" if errors else "ok"
    parts = [
        f"trace {header.trace_id}",
        duration_text(round(header.total_duration_ms * 1000)),
        _plural(header.span_count, "span"),
        _plural(header.service_count, "service"),
        status,
    ]
    lines = [style(line, bold=True) for line in _wrap(parts, width)]
    belongs = []
    if header.workflow_id:
        belongs.append(f"workflow {header.workflow_id}")
    if header.correlation_id:
        belongs.append(f"correlation {header.correlation_id}")
    lines.extend(_wrap(belongs, width))
    if header.error_message:
        failed = next((s for s in detail.spans if s.status_code == "error"), None)
        where = f" in {failed.operation_name} ({failed.service_name})" if failed else ""
        lines.append(style(_cut(f"{ERROR} error{where}: {header.error_message}", width), fg="red"))
    return lines


def _wrap(parts: list[str], width: int) -> list[str]:
    """Parts joined by two spaces, a new line where the next would pass ``width``."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "  " + part
        else:
            lines.append(_cut(part, width))
    return lines


def _ruler(axis: Axis, layout: Layout) -> str:
    """The axis' start, middle and end above the bars."""
    cells = [" "] * layout.bar
    for at, text in (
        (0, "0"),
        (layout.bar // 2, duration_text(axis.micros // 2)),
        (layout.bar, duration_text(axis.micros)),
    ):
        begin = 0 if at == 0 else min(at - len(text) // 2, layout.bar - len(text))
        cells[begin : begin + len(text)] = list(text)
    return (" " * layout.bar_start + "".join(cells)).rstrip()


def _span_line(
    span: SpanView,
    axis: Axis,
    layout: Layout,
    on_critical_path: bool,
    colours: dict[str, str],
    style: _Style,
) -> str:
    failed = span.status_code == "error"
    marks = (
        style(CRITICAL if on_critical_path else " ", bold=True)
        + style(ERROR if failed else " ", fg="red", bold=True)
        + " "
    )
    label = _label(span, layout.label)
    if failed:
        label = style(label, fg="red", bold=on_critical_path)
    elif on_critical_path:
        label = style(label, bold=True)
    first, last = axis.cells(span, layout.bar)
    drawn = TICK if span.duration_microseconds <= 0 else BAR * (last - first)
    bar = (
        " " * first
        + style(drawn, fg="red" if failed else colours[span.service_name])
        + " " * (layout.bar - first - len(drawn))
    )
    took = duration_text(span.duration_microseconds).rjust(DURATION_WIDTH)
    return f"{marks}{label} {bar} {style(took, bold=True) if on_critical_path else took}"


def _label(span: SpanView, width: int) -> str:
    """Indent, ``operation (service)``, cut to ``width`` and padded to it. When both do
    not fit the operation is cut first; the service keeps at least a third."""
    indent = " " * min(2 * span.depth, width // 2)
    room = width - len(indent)
    operation, service = span.operation_name, span.service_name
    text = f"{operation} ({service})"
    if len(text) > room:
        service_room = max(room - len(operation) - 3, min(len(service), (room - 3) // 3))
        operation_room = room - 3 - service_room
        if service_room < 3 or operation_room < 3:
            text = _cut(operation, room)
        else:
            text = f"{_cut(operation, operation_room)} ({_cut(service, service_room)})"
    return (indent + text).ljust(width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
