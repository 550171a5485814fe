"""Traces: the most recent traces of the last hour, what each took, and where it failed.

Fetch: :meth:`Tracing.recent` (the seed's GetTracesResponse), newest first, narrowed by
the pane's filters, which the engine applies so they reach past the newest rows: a
service taking part (``s``, typed with completion), errors only (``e``) and a minimum
duration (``d`` steps through a few). Render: the figures of what was fetched, the
filters, one row per trace keyed by its id (root service and operation, duration,
spans, services, errors, age) and the highlighted trace in full below.

Enter opens the trace's waterfall (:mod:`.trace_waterfall`). Spans are written in
batches without a notification, so the pane polls while it is seen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Input, Static

from orchcore.tracing.models import GetTracesResponse, TraceSummary
from orchtui.actions import ConsoleAction
from orchtui.formatting import age, clock_time, plural, took
from orchtui.pane import Pane
from orchtui.panes.trace_waterfall import TraceWaterfallPane
from orchtui.source import ConsoleSource
from orchtui.symbols import state_style, state_symbol
from orchtui.widgets import Column, KeyedTable, Row

#: How many of the newest traces (of the filters) are fetched.
LIMIT = 100
#: Spans arrive without a notification: a visible pane asks again this often.
TRACES_REFRESH_SECONDS = 2.0
#: What ``d`` steps through: no minimum, then each of these (milliseconds).
MIN_DURATIONS: tuple[float | None, ...] = (None, 100.0, 1000.0, 10_000.0)
#: Long names are cut in the table; the line below shows the highlighted trace whole.
SERVICE_WIDTH = 12
OPERATION_WIDTH = 24

COLUMNS = (
    Column("service", "SERVICE"),
    Column("operation", "OPERATION"),
    Column("took", "TOOK"),
    Column("spans", "SPANS"),
    Column("services", "SVCS"),
    Column("errors", "ERRORS"),
    Column("age", "AGE"),
)

#: A trace's state borrows the symbols of a workflow's: ended well, or with an error.
_ERROR, _OK = "failed", "completed"


@dataclass(frozen=True)
class TraceFilters:
    """What the engine is asked for: None and False mean no filter."""

    service: str | None = None
    errors_only: bool = False
    min_duration_ms: float | None = None

    @property
    def active(self) -> bool:
        return self != TraceFilters()

    def next_min_duration(self) -> TraceFilters:
        index = (
            MIN_DURATIONS.index(self.min_duration_ms)
            if self.min_duration_ms in MIN_DURATIONS
            else 0
        )
        return replace(self, min_duration_ms=MIN_DURATIONS[(index + 1) % len(MIN_DURATIONS)])


@dataclass(frozen=True)
class TracesSnapshot:
    listing: GetTracesResponse
    filters: TraceFilters
    taken_at: datetime

    def by_id(self, key: str) -> TraceSummary | None:
        return next((t for t in self.listing.traces if t.trace_id == key), None)


async def fetch_traces(
    orch: ConsoleSource, filters: TraceFilters = TraceFilters()
) -> TracesSnapshot:
    listing = await orch.tracing.recent(
        limit=LIMIT,
        service=filters.service,
        errors_only=filters.errors_only,
        min_duration_ms=filters.min_duration_ms,
    )
    return TracesSnapshot(listing=listing, filters=filters, taken_at=orch.clock.now())


# -- rows and lines -----------------------------------------------------------------------------


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def trace_state(trace: TraceSummary) -> str:
    return _ERROR if trace.error_count else _OK


def errors_text(count: int) -> Text:
    """The ERRORS column: ``✖ 2`` when any span failed, a dim ``0`` otherwise."""
    if not count:
        return Text("0", style="bright_black")
    return Text(f"{state_symbol(_ERROR)} {count}", style=state_style(_ERROR))


def trace_row(trace: TraceSummary, now: datetime) -> Row:
    state = trace_state(trace)
    service = Text(f"{state_symbol(state)} ", style=state_style(state))
    service.append(_cut(trace.root_service, SERVICE_WIDTH), style="")
    return Row(
        key=trace.trace_id,
        cells=(
            service,
            _cut(trace.operation_name, OPERATION_WIDTH),
            took(trace.duration_ms),
            str(trace.span_count),
            str(trace.service_count),
            errors_text(trace.error_count),
            age(trace.start_time, now),
        ),
    )


def trace_line(trace: TraceSummary) -> Group:
    """The highlighted trace in full: its id, its workflow and when, then every service
    in it (a line each, cut at the edge rather than wrapped)."""
    first = Text(trace.trace_id, style="bold", no_wrap=True, overflow="ellipsis")
    correlation = trace.tags.get("orch.correlation_id")
    if correlation:
        first.append(f"  correlation {correlation}")
    first.append(f" · started {clock_time(trace.start_time)}", style="bright_black")
    state = trace_state(trace)
    second = Text(no_wrap=True, overflow="ellipsis")
    second.append(f"{state_symbol(state)} ", style=state_style(state))
    second.append(f"{trace.root_service} {trace.operation_name}")
    second.append(f" · {', '.join(trace.services)}", style="bright_black")
    return Group(first, second)


def totals_text(snapshot: TracesSnapshot) -> Text:
    """``12 traces in the last hour · avg 1.2s · ✖ 3 with errors · 6 services``."""
    listing = snapshot.listing
    stats = listing.trace_stats
    if not listing.traces:
        if snapshot.filters.active:
            return Text("no traces of these filters in the last hour", style="bright_black")
        return Text(
            "no traces in the last hour: workflows are traced; services POST /v1/traces",
            style="bright_black",
        )
    shown = "newest " if len(listing.traces) >= LIMIT else ""
    text = Text(f"{shown}{plural(stats.total_traces, 'trace')} in the last hour")
    text.append(f" · avg {took(stats.avg_duration_ms)} · ")
    failed = sum(1 for t in listing.traces if t.error_count)
    if failed:
        text.append(f"{state_symbol(_ERROR)} {failed} with errors", style=state_style(_ERROR))
    else:
        text.append("0 with errors", style="bright_black")
    text.append(f" · {plural(len(stats.services_involved), 'service')}")
    return text


def min_duration_word(ms: float | None) -> str:
    return "any duration" if ms is None else f"≥ {took(ms)}"


def filters_text(filters: TraceFilters) -> Text:
    """``s [venue] · e all traces · d [≥ 1.0s]``: each key, its filter reversed when on."""
    text = Text()
    shown = (
        ("s", filters.service, filters.service or "every service"),
        ("e", filters.errors_only or None, "errors only" if filters.errors_only else "all traces"),
        ("d", filters.min_duration_ms, min_duration_word(filters.min_duration_ms)),
    )
    for index, (key, chosen, word) in enumerate(shown):
        if index:
            text.append(" · ", style="bright_black")
        text.append(f"{key} ", style="bold")
        text.append(
            f"[{word}]" if chosen else word, style="bold reverse" if chosen else "bright_black"
        )
    return text


# -- the service prompt ----------------------------------------------------------------------


class ServiceInput(Input):
    """Tab accepts the suggestion, as in the ``:`` prompt."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "accept_suggestion", "Complete", show=False),
    ]

    def action_accept_suggestion(self) -> None:
        self.action_cursor_right()


class ServicePrompt(ModalScreen[str | None]):
    """Asks which service's traces to show: a name (tab completes), empty for all.

    Dismissed with the name, ``""`` for every service, or None when abandoned (esc).
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, current: str | None, services: list[str]) -> None:
        super().__init__()
        self._current = current or ""
        self._services = services

    def compose(self) -> ComposeResult:
        with Vertical(id="trace-service-prompt") as box:
            box.border_title = "Traces through service"
            yield Static(
                "A service taking part (tab completes); empty shows every service. Esc keeps "
                "the filter as it was.",
                id="trace-service-help",
            )
            yield ServiceInput(
                value=self._current,
                placeholder=", ".join(self._services[:4]) or "service name",
                suggester=SuggestFromList(self._services, case_sensitive=False),
                id="trace-service-input",
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


# -- the pane -----------------------------------------------------------------------------------


class TracesPane(Pane[TracesSnapshot]):
    NAME = "traces"
    ALIASES = ("tr", "trace")
    TITLE = "Traces"
    SUMMARY = "recent traces: duration, spans, services, errors; Enter draws the waterfall"
    ACTIONS = (
        ConsoleAction(
            "enter",
            "open_detail",
            "Waterfall",
            "The trace's spans on a time axis, with each span's tags and events",
            key_display="⏎",
        ),
        ConsoleAction("s", "filter_service", "Service", "Show only traces a service took part in"),
        ConsoleAction(
            "e", "toggle_errors", "Errors", "Show only traces with an error (again: all)"
        ),
        ConsoleAction(
            "d",
            "next_min_duration",
            "Min time",
            "Show only traces at least this long: any, 100ms, 1s, 10s in turn",
        ),
    )

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.filters = TraceFilters()
        #: every service seen in a trace here, for the service prompt's completion
        self.services_seen: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static("", id="traces-totals")
        yield Static(filters_text(self.filters), id="traces-filters")
        yield KeyedTable(COLUMNS, id="traces-table")
        yield Static("", id="trace-line")

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#traces-table", KeyedTable)

    def needs_refresh(self, every_seconds: float) -> bool:
        return super().needs_refresh(min(every_seconds, TRACES_REFRESH_SECONDS))

    async def fetch(self, orch: ConsoleSource) -> TracesSnapshot:
        return await fetch_traces(orch, self.filters)

    def show(self, snapshot: TracesSnapshot) -> None:
        if snapshot.filters != self.filters:
            return  # fetched before the filters changed; the next fetch is on its way
        self.services_seen.update(snapshot.listing.trace_stats.services_involved)
        now = snapshot.taken_at
        self.query_one("#traces-totals", Static).update(totals_text(snapshot))
        self.filter_table.show_rows([trace_row(t, now) for t in snapshot.listing.traces])
        self._describe_selected()

    def update_border_title(self) -> None:
        """``Traces · errors · ≥ 1.0s [3] /pay``: the filters on, shown of how many, text."""
        title = self.TITLE
        filters = self.filters
        for chosen, word in (
            (filters.service, filters.service),
            (filters.errors_only, "errors"),
            (filters.min_duration_ms, min_duration_word(filters.min_duration_ms)),
        ):
            if chosen:
                title += f" · {word}"
        table = self.filter_table
        snapshot = self.snapshot
        if snapshot is not None and snapshot.filters == filters:
            shown, total = table.row_count, table.total_count
            title += f" [{shown}/{total}]" if shown != total else f" [{total}]"
        if table.filter_text:
            title += f" /{table.filter_text}"
        self.border_title = title

    @on(DataTable.RowHighlighted, "#traces-table")
    def _describe_selected(self) -> None:
        trace = self.selected_trace
        line = self.query_one("#trace-line", Static)
        if trace is None or self.snapshot is None:
            line.update("")
        else:
            line.update(trace_line(trace))

    @on(DataTable.RowSelected, "#traces-table")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        # Enter reaches action_open_detail through the binding; a click comes here.
        event.stop()
        self.action_open_detail()

    @property
    def selected_trace(self) -> TraceSummary | None:
        key = self.filter_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.by_id(key)

    def action_open_detail(self) -> None:
        trace = self.selected_trace
        if trace is None:
            self.notify("No trace selected.", severity="warning")
            return
        self.console.open_detail(TraceWaterfallPane(trace.trace_id, origin=self.TITLE))

    # -- filters ------------------------------------------------------------------------------

    def show_only(self, filters: TraceFilters) -> None:
        if filters == self.filters:
            return
        self.filters = filters
        self.query_one("#traces-filters", Static).update(filters_text(filters))
        self.update_border_title()
        self.mark_dirty()
        if self.console.orch is not None:
            self.start_fetch(self.console.orch)

    def action_toggle_errors(self) -> None:
        self.show_only(replace(self.filters, errors_only=not self.filters.errors_only))

    def action_next_min_duration(self) -> None:
        self.show_only(self.filters.next_min_duration())

    def action_filter_service(self) -> None:
        def answered(service: str | None) -> None:
            if service is not None:
                self.show_only(replace(self.filters, service=service or None))

        prompt = ServicePrompt(self.filters.service, sorted(self.services_seen))
        self.console.push_screen(prompt, answered)


__all__ = ["TraceFilters", "TracesPane", "TracesSnapshot", "fetch_traces"]
