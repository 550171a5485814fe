"""Traces: recent traces from the real span store, the engine's filters, and one trace as a
waterfall (its pure layout at fixed widths, folding, the span panel), opened from the list
or from a workflow."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from textual.pilot import Pilot

from orchcore import ManualClock, Orch, Settings
from orchcore.tracing.models import GetTraceDetailsResponse, SpanLog, SpanView, TraceHeader
from orchcore.tracing.sagaspans import workflow_span_id
from orchcore.tracing.spans import Span, SpanEvent
from orchtui.app import OrchConsole
from orchtui.panes import command_names, pane_for
from orchtui.panes.trace_waterfall import (
    TraceWaterfallPane,
    first_cause,
    foldable,
    waterfall_layout,
)
from orchtui.panes.traces import TracesPane
from orchtui.panes.workflow_detail import WorkflowDetailPane
from orchtui.screens import HelpScreen
from orchtui.widgets import KeyedTable
from tests.console.helpers import SIZE, ShowcaseOrch, off_screen, on_screen, pane_loaded, table_keys
from tests.console.sources import SourceOf, console_on
from tests.support.callers import known_callers
from tests.support.polling import eventually
from tests.support.sagas import BOOKING as BOOKING_SAGA

BOOKING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # a booking whose deposit was declined
REMINDER = "0af7651916cd43dd8448eb211c80319c"  # a 40 ms reminder, no errors
REFUND = "5b8aa5a2d2c872e8321cf37308d69df2"  # a 600 ms refund across two services


@dataclass(frozen=True)
class S:
    """A span of the story: when it ran, in milliseconds from its trace's start."""

    trace_id: str
    span_id: str
    parent: str | None
    service: str
    operation: str
    start_ms: int
    end_ms: int
    kind: str = "internal"
    error: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    events: tuple[tuple[str, int, dict[str, Any]], ...] = ()


def _call(method: str, path: str, peer: str, status: int) -> dict[str, Any]:
    return {
        "http.request.method": method,
        "url.path": path,
        "peer.service": peer,
        "http.response.status_code": status,
    }


def _id(trace: str, number: int) -> str:
    """A span id of the story: ``a000000000000003`` is the booking's third span."""
    return f"{trace}{number:015x}"


A = [_id("a", n) for n in range(9)]  # A[1] … A[8]: the booking's spans
B = [_id("b", n) for n in range(3)]
C = [_id("c", n) for n in range(3)]

#: Three traces; in each, spans are listed depth-first as the engine orders them.
STORY: tuple[S, ...] = (
    S(BOOKING_TRACE, A[1], None, "booking", "workflow booking", 0, 4000,
      error="charge_deposit: card declined",
      tags={"orch.workflow.id": "wf-1", "orch.correlation_id": "bk-2001"}),
    S(BOOKING_TRACE, A[2], A[1], "venue", "step reserve_venue", 0, 1000),
    S(BOOKING_TRACE, A[3], A[2], "booking", "POST /reservations", 100, 900,
      kind="client", tags=_call("POST", "/reservations", "venue", 201)),
    S(BOOKING_TRACE, A[4], A[1], "catering", "step order_catering", 1000, 2000,
      tags={"orch.step.name": "order_catering"},
      events=(("retry scheduled", 1400, {"attempt": 1, "delay_ms": 200}),)),
    S(BOOKING_TRACE, A[5], A[4], "booking", "POST /orders", 1000, 1400,
      kind="client", error="HTTP 503", tags=_call("POST", "/orders", "catering", 503)),
    S(BOOKING_TRACE, A[6], A[4], "booking", "POST /orders", 1600, 2000,
      kind="client", tags=_call("POST", "/orders", "catering", 201)),
    S(BOOKING_TRACE, A[7], A[1], "payments", "step charge_deposit", 2000, 4000,
      error="card declined"),
    S(BOOKING_TRACE, A[8], A[7], "booking", "POST /charges", 2000, 3900,
      kind="client", error="card declined", tags=_call("POST", "/charges", "payments", 502),
      events=(("exception", 3900, {"exception.message": "card declined"}),)),
    S(REMINDER, B[1], None, "notifications", "send reminder", 0, 40),
    S(REMINDER, B[2], B[1], "notifications", "POST /sms", 5, 35,
      kind="client", tags=_call("POST", "/sms", "sms-gateway", 202)),
    S(REFUND, C[1], None, "payments", "POST /refunds", 0, 600, kind="server"),
    S(REFUND, C[2], C[1], "ledger", "record refund", 100, 500),
)  # fmt: skip
#: When each trace started, after the story's start; the clock reads STORY_END when looked at.
STARTS = {
    BOOKING_TRACE: timedelta(0),
    REMINDER: timedelta(seconds=60),
    REFUND: timedelta(seconds=90),
}
STORY_LENGTH = timedelta(minutes=3)


def _at(story_start: datetime, span: S, ms: int) -> datetime:
    return story_start + STARTS[span.trace_id] + timedelta(milliseconds=ms)


def as_span(s: S, story_start: datetime) -> Span:
    return Span(
        trace_id=s.trace_id,
        span_id=s.span_id,
        parent_span_id=s.parent,
        operation_name=s.operation,
        service_name=s.service,
        start_time=_at(story_start, s, s.start_ms),
        end_time=_at(story_start, s, s.end_ms),
        span_kind=s.kind,  # type: ignore[arg-type]
        status_code="error" if s.error else "unset",
        status_message=s.error,
        tags=dict(s.tags),
        events=[SpanEvent(name, _at(story_start, s, ms), dict(a)) for name, ms, a in s.events],
    )


async def seed_traces(orch: Orch) -> datetime:
    """Record the story's spans as orch records its own, ending now; returns its start."""
    story_start = orch.clock.now() - STORY_LENGTH
    for s in STORY:
        orch.tracing.recorder.record(as_span(s, story_start))
    await orch.tracing.flush()
    return story_start


def known_trace(story_start: datetime) -> GetTraceDetailsResponse:
    """The booking trace as the engine answers it, made by hand: no database needed."""
    spans = [s for s in STORY if s.trace_id == BOOKING_TRACE]
    depth: dict[str, int] = {}
    views = []
    for s in spans:
        depth[s.span_id] = depth[s.parent] + 1 if s.parent else 0
        span = as_span(s, story_start)
        views.append(
            SpanView(
                span_id=s.span_id,
                parent_span_id=s.parent,
                operation_name=s.operation,
                service_name=s.service,
                span_kind=s.kind,
                start_time=span.start_time,
                end_time=span.end_time,
                duration_microseconds=span.duration_microseconds,
                status_code=span.status_code,
                tags={**s.tags, **({"otel.status_description": s.error} if s.error else {})},
                logs=[
                    SpanLog(
                        timestamp=e.at,
                        level="error" if e.name == "exception" else "info",
                        message=e.name,
                        fields=e.attributes,
                    )
                    for e in span.events
                ],
                children=[c.span_id for c in spans if c.parent == s.span_id],
                depth=depth[s.span_id],
            )
        )
    start = views[0].start_time
    return GetTraceDetailsResponse(
        trace=TraceHeader(
            trace_id=BOOKING_TRACE,
            total_duration_ms=4000.0,
            span_count=len(views),
            service_count=4,
            start_time=start,
            end_time=start + timedelta(seconds=4),
            root_operation="workflow booking",
            status="error",
            error_message="charge_deposit: card declined",
        ),
        spans=views,
        service_map=[],
        critical_path=[A[1], A[7], A[8]],
    )


def row_of(text: str, needle: str) -> str:
    """The first line inside the pane's border with the needle (not the title above)."""
    return next(line for line in text.splitlines() if needle in line and line[0] == "│")


async def open_waterfall(app: OrchConsole, pilot: Any, trace_id: str) -> TraceWaterfallPane:
    """From the Traces pane: the cursor to the trace's row, then Enter."""
    await pane_loaded(app, "traces")
    table = app.screen.query_one("#traces-table", KeyedTable)
    await eventually(lambda: trace_id in table.shown_keys, message=f"trace {trace_id} listed")
    table.move_cursor(row=table.get_row_index(trace_id))
    await pilot.press("enter")
    await pane_loaded(app, "trace")
    pane = app.active_pane
    assert isinstance(pane, TraceWaterfallPane)
    return pane


def shown(app: OrchConsole) -> list[str]:
    return table_keys(app)


def selected(app: OrchConsole) -> str | None:
    pane = app.active_pane
    assert isinstance(pane, TraceWaterfallPane)
    return pane.filter_table.selected_key


# -- the pure layout --------------------------------------------------------------------------

#: The booking's trace at 80 cells: 4 s over a 36-cell axis (a cell is 111 ms), the label
#: as wide as its longest span needs (34), ◆ on the critical path, ✖ on the errors.
AT_80 = [
    "◆ ▾ ✖ booking workflow booking         4.0s ████████████████████████████████████",
    "    ▾ venue step reserve_venue         1.0s █████████",
    "        booking POST /reservations    800ms █████████",
    "    ▾ catering step order_catering     1.0s          █████████",
    "        ✖ booking POST /orders        400ms          ████",
    "        booking POST /orders          400ms               ████",
    "◆   ▾ ✖ payments step charge_deposit   2.0s                   ██████████████████",
    "◆       ✖ booking POST /charges        1.9s                   ██████████████████",
]
RULER_80 = "  SPAN                                 TOOK 0               2.0s            4.0s"


def test_the_layout_at_80_cells_places_every_span_on_the_traces_axis() -> None:
    trace = known_trace(datetime(2026, 6, 20, 11, 57, tzinfo=UTC))
    waterfall = waterfall_layout(trace, width=80)
    assert waterfall.ruler == RULER_80
    assert [row.text.rstrip() for row in waterfall.rows] == AT_80
    assert [row.span_id for row in waterfall.rows] == A[1:]
    assert [row.depth for row in waterfall.rows] == [0, 1, 2, 1, 2, 2, 1, 2]
    assert (waterfall.label_width, waterfall.bar_offset, waterfall.bar_width) == (34, 44, 36)
    # Bars in cells from the row's start: proportional to time, each at least a cell.
    bars = [(row.bar_start, row.bar_end) for row in waterfall.rows]
    assert bars == [(44, 80), (44, 53), (44, 53), (53, 62), (53, 57), (58, 62), (62, 80), (62, 80)]
    assert [row.error for row in waterfall.rows] == [1, 0, 0, 0, 1, 0, 1, 1]
    assert [row.critical for row in waterfall.rows] == [1, 0, 0, 0, 0, 0, 1, 1]
    folds = ["open", "open", "leaf", "open", "leaf", "leaf", "open", "leaf"]
    assert [row.fold for row in waterfall.rows] == folds
    assert all(len(row.text) <= 80 for row in waterfall.rows)


def test_folding_hides_a_subtree_and_counts_what_it_hides() -> None:
    trace = known_trace(datetime(2026, 6, 20, 11, 57, tzinfo=UTC))
    one = waterfall_layout(trace, width=80, folded={A[4]})
    assert [row.span_id for row in one.rows] == [A[1], A[2], A[3], A[4], A[7], A[8]]
    catering = one.rows[3]
    assert (catering.fold, catering.hidden) == ("shut", 2)
    # The count stays whole; the name gives way to it.
    assert (
        catering.text.rstrip() == "    ▸ catering step order_cateri… +2   1.0s          █████████"
    )
    # Folding changes which rows show, never where a row's bar is.
    assert [r.text for r in one.rows if r.span_id != A[4]] == [
        r.text for r in waterfall_layout(trace, width=80).rows if r.span_id not in A[4:7]
    ]
    every = waterfall_layout(trace, width=80, folded=foldable(trace))
    assert [(r.span_id, r.fold, r.hidden) for r in every.rows] == [(A[1], "shut", 7)]
    assert every.rows[0].text.startswith("◆ ▸ ✖ booking workflow booking +7 ")
    # A leaf "folded" hides nothing.
    assert len(waterfall_layout(trace, width=80, folded={A[3]}).rows) == 8


@pytest.mark.parametrize("width", [30, 48, 60, 120, 200])
def test_every_width_keeps_rows_inside_it_and_bars_proportional(width: int) -> None:
    trace = known_trace(datetime(2026, 6, 20, 11, 57, tzinfo=UTC))
    waterfall = waterfall_layout(trace, width=width)
    start, total = trace.trace.start_time, 4.0
    for row, span in zip(waterfall.rows, trace.spans, strict=True):
        assert len(row.text) <= width, row.text
        assert row.text[row.bar_start : row.bar_end] == "█" * (row.bar_end - row.bar_start)
        first = (span.start_time - start).total_seconds() / total * waterfall.bar_width
        assert row.bar_start - waterfall.bar_offset == min(waterfall.bar_width - 1, int(first))
        assert row.bar_end <= waterfall.bar_offset + waterfall.bar_width
        assert row.text.startswith("◆ ") is row.critical
        assert ("✖" in row.text) is row.error
    # A wide terminal gives the bars the room, not the labels.
    if width >= 120:
        assert waterfall.label_width == 34
        assert waterfall.rows[0].bar_end == width


def test_an_instant_span_is_one_cell_and_a_trace_of_no_duration_draws() -> None:
    trace = known_trace(datetime(2026, 6, 20, 11, 57, tzinfo=UTC))
    at = trace.trace.start_time + timedelta(seconds=2)
    instant = trace.spans[-1].model_copy(
        update={"start_time": at, "end_time": at, "duration_microseconds": 0}
    )
    waterfall = waterfall_layout(
        trace.model_copy(update={"spans": [*trace.spans[:-1], instant]}), width=80
    )
    last = waterfall.rows[-1]
    assert (last.bar_start, last.bar_end) == (62, 63)
    assert "0µs" in last.text
    alone = instant.model_copy(update={"depth": 0, "status_code": "unset"})
    header = trace.trace.model_copy(
        update={"start_time": at, "end_time": at, "total_duration_ms": 0}
    )
    only = waterfall_layout(
        trace.model_copy(update={"trace": header, "spans": [alone], "critical_path": []}), width=40
    )
    assert [(r.bar_start, r.bar_end) for r in only.rows] == [(only.bar_offset, only.bar_offset + 1)]


def test_the_first_span_shown_is_the_deepest_error_on_the_critical_path() -> None:
    trace = known_trace(datetime(2026, 6, 20, 11, 57, tzinfo=UTC))
    assert first_cause(trace) == A[8]  # the declined charge, not the retried 503
    off_path = trace.model_copy(update={"critical_path": []})
    assert first_cause(off_path) == A[5]  # else the first error with no failed descendant
    ok = [s.model_copy(update={"status_code": "unset"}) for s in trace.spans]
    assert first_cause(trace.model_copy(update={"spans": ok})) is None


# -- the Traces pane ----------------------------------------------------------------------------


async def test_the_pane_lists_recent_traces_with_their_figures(
    orch: Orch, as_source: SourceOf
) -> None:
    await seed_traces(orch)
    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "overview")
        await pilot.press("colon", *"tr", "enter")  # the short form
        await pane_loaded(app, "traces")
        assert isinstance(app.active_pane, TracesPane)
        text = await on_screen(app, "Traces [3]", "✖ booking")
        for header in ("SERVICE", "OPERATION", "TOOK", "SPANS", "SVCS", "ERRORS", "AGE"):
            assert header in text
        assert shown(app) == [REFUND, REMINDER, BOOKING_TRACE]  # newest first
        # root service and operation, duration, spans, services, errors, age
        assert row_of(text, "✖ booking").split() == [
            "│", "✖", "booking", "workflow", "booking", "4.0s", "8", "4", "✖", "4", "3m", "│"
        ]  # fmt: skip
        reminder = row_of(text, "● notificatio…").split()[3:10]
        assert reminder == ["send", "reminder", "40ms", "2", "1", "0", "2m"]
        refund = row_of(text, "● payments").split()[3:10]
        assert refund == ["POST", "/refunds", "600ms", "2", "2", "0", "1m"]
        assert "3 traces in the last hour · avg 1.5s · ✖ 1 with errors · 6 services" in text
        # The highlighted trace in full, below.
        await on_screen(app, f"{REFUND} · started ", "● payments POST /refunds · ledger, payments")
        await pilot.press("G")
        await on_screen(
            app, f"{BOOKING_TRACE}  correlation bk-2001", "booking, catering, payments, venue"
        )


async def test_filters_are_the_engines_errors_only_minimum_duration_service(
    orch: Orch, as_source: SourceOf
) -> None:
    await seed_traces(orch)
    app = console_on(await as_source(orch), first_pane="traces")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "traces")
        await eventually(lambda: len(shown(app)) == 3)
        await pilot.press("e")  # errors only: the reminder and the refund had none
        await eventually(lambda: shown(app) == [BOOKING_TRACE], message="errors only")
        await on_screen(app, "Traces · errors [1]", "e [errors only]")
        await pilot.press("e")
        await eventually(lambda: len(shown(app)) == 3, message="all again")

        await pilot.press("d")  # at least 100 ms: not the 40 ms reminder
        await eventually(lambda: shown(app) == [REFUND, BOOKING_TRACE], message="≥ 100ms")
        await on_screen(app, "Traces · ≥ 100ms [2]", "d [≥ 100ms]")
        await pilot.press("d")  # at least 1 s: only the 4 s booking
        await eventually(lambda: shown(app) == [BOOKING_TRACE], message="≥ 1s")
        await pilot.press("d")  # at least 10 s: none
        await eventually(lambda: shown(app) == [], message="≥ 10s")
        await on_screen(app, "no traces of these filters in the last hour")
        await pilot.press("d")  # round again: any duration
        await eventually(lambda: len(shown(app)) == 3, message="any duration")

        await pilot.press("s")  # a service taking part, typed with completion
        await on_screen(app, "Traces through service")
        await pilot.press(*"led", "tab", "enter")
        await eventually(lambda: shown(app) == [REFUND], message="ledger's traces")
        await on_screen(app, "Traces · ledger [1]", "s [ledger]")
        await pilot.press("s", "escape")  # esc keeps the filter as it was
        await on_screen(app, "Traces · ledger [1]")
        await pilot.press("s", "ctrl+u", "enter")  # empty: every service
        await eventually(lambda: len(shown(app)) == 3, message="every service")
        await on_screen(app, "s every service")


async def test_an_empty_pane_says_where_traces_come_from(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch), first_pane="traces")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "traces")
        await on_screen(app, "Traces [0]", "no traces in the last hour", "POST /v1/traces")
        await pilot.press("enter")
        await on_screen(app, "No trace selected.")


# -- the waterfall ------------------------------------------------------------------------------


async def test_enter_opens_the_waterfall_on_the_failure_with_its_tags_and_events(
    orch: Orch,
    as_source: SourceOf,
) -> None:
    await seed_traces(orch)
    app = console_on(await as_source(orch), first_pane="traces")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_waterfall(app, pilot, BOOKING_TRACE)
        text = await on_screen(
            app,
            "Traces › booking workflow booking",
            "✖ error · 4.0s · 8 spans · 4 services · 4 errors",
            f"trace {BOOKING_TRACE}",
            "why: charge_deposit: card declined",
            "SPAN",
            "TOOK",
            "◆ critical path · ✖ error · ▸ folded",
        )
        assert "◆ ▾ ✖ booking workflow booking" in text
        assert pane.snapshot is not None and pane.snapshot.detail is not None
        # The engine's trace lays out as the hand-made one does.
        rows = waterfall_layout(pane.snapshot.detail, width=80).rows
        assert [row.text.rstrip() for row in rows] == AT_80
        # Opened on the declined charge, its events and tags below.
        assert selected(app) == A[8]
        await on_screen(
            app,
            "Span booking POST /charges",
            f"booking POST /charges  span {A[8]}  ◆ critical path",
            "✖ error: card declined · client · took 1.9s · at +2.00s",
            "+3.90s ✖ exception  exception.message=card declined",
            "tags",
        )
        await pilot.press("tab", "end")  # the panel takes the keys: its tags, scrolled to
        text = await on_screen(app, "http.response.status_code  502", "url.path")
        assert "peer.service               payments" in text
        await pilot.press("shift+tab")  # back to the spans
        await pilot.press("up", "up", "up", "up")  # the catering step, retried once
        assert selected(app) == A[4]
        text = await on_screen(app, "Span catering step order_catering", "+1.40s • retry scheduled")
        assert "attempt=1  delay_ms=200" in text
        assert "orch.step.name" in text and "order_catering" in text
        await pilot.press("escape")
        await pane_loaded(app, "traces")


async def test_brackets_fold_everything_and_arrows_fold_one(
    orch: Orch, as_source: SourceOf
) -> None:
    await seed_traces(orch)
    app = console_on(await as_source(orch), first_pane="traces")
    async with app.run_test(size=SIZE) as pilot:
        await open_waterfall(app, pilot, BOOKING_TRACE)
        await eventually(lambda: len(shown(app)) == 8)
        await pilot.press("left_square_bracket")  # [ : only the root
        assert shown(app) == [A[1]]
        assert selected(app) == A[1]  # the cursor climbed to what still shows
        await on_screen(app, "▸ ✖ booking workflow booking +7")
        await pilot.press("right")  # → : the root's children, each still folded
        assert shown(app) == [A[1], A[2], A[4], A[7]]
        await on_screen(app, "▸ venue step reserve_venue +1", "▸ catering step order_cate… +2")
        await pilot.press("right_square_bracket")  # ] : everything
        assert shown(app) == A[1:]

        await pilot.press("g", "down", "down", "down")  # the catering step
        assert selected(app) == A[4]
        await pilot.press("left")  # ← folds it
        assert shown(app) == [A[1], A[2], A[3], A[4], A[7], A[8]]
        assert selected(app) == A[4]
        await on_screen(app, "▸ catering step order_cate… +2")
        await pilot.press("left")  # ← on a folded span: to its parent
        assert selected(app) == A[1]
        await pilot.press("right")  # → on an unfolded span: to its first child
        assert selected(app) == A[2]
        await pilot.press("right", "left")  # to the reservation call; ← on a leaf: its parent
        assert selected(app) == A[2]
        await pilot.press("down", "down", "right")  # → unfolds the catering step again
        assert shown(app) == A[1:]
        await off_screen(app, "+2")

        await pilot.press("question_mark")  # the keys are in the help, as everywhere
        assert isinstance(app.screen, HelpScreen)
        await on_screen(app, "Fold every span with children", "Unfold every span")


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
async def test_the_waterfall_fits_80_by_24(
    orch: Orch, monkeypatch: pytest.MonkeyPatch, no_color: bool, as_source: SourceOf
) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    await seed_traces(orch)
    app = console_on(await as_source(orch), first_pane="traces")
    assert app.no_color is no_color
    async with app.run_test(size=SIZE) as pilot:
        await open_waterfall(app, pilot, BOOKING_TRACE)
        # The rows, not the span panel below them (which names the charge as well).
        text = await on_screen(app, "◆       ✖ booking POST /charges", "q Quit")
        lines = text.splitlines()
        assert len(lines) == 24
        assert all(len(line) <= 80 for line in lines)
        # Every span shows with its bar; errors and the critical path read without colour.
        for name in ("workflow booking", "reserve_venue", "order_catering", "step charge_d"):
            assert "█" in row_of(text, name)
        assert row_of(text, "POST /charges").startswith("│ ◆       ✖ booking POST /charges")
        footer = lines[-1]
        for key in ("[ Fold all", "] Unfold all", "← Fold", "→ Unfold", "? Help", "q Quit"):
            assert key in footer, f"{key!r} not in footer {footer!r}"


# -- from a workflow ----------------------------------------------------------------------------


async def test_t_on_a_workflow_opens_its_trace(orch: Orch, as_source: SourceOf) -> None:
    await orch.workflow_definitions.register(BOOKING_SAGA, actor="t")
    await known_callers(orch, "booking")
    started = await orch.workflows.start(
        {
            "workflow_name": "booking",
            "correlation_id": "bk-3001",
            "initiating_service": "booking",
            "context_data": {"wedding_id": "w-1"},
        },
        actor="planner",
    )
    workflow_id = UUID(str(started.workflow_id))
    trace_id = await orch.tracing.trace_of_workflow("bk-3001")
    app = console_on(await as_source(orch), first_pane="workflows")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "workflows")
        await pilot.press("enter")
        await pane_loaded(app, "workflow")
        await pilot.press("t")  # nothing recorded yet: it says so, and why
        await pane_loaded(app, "trace")
        await on_screen(app, "Workflows › booking bk-3001 › trace", f"no spans of trace {trace_id}")
        await pilot.press("escape")
        await pane_loaded(app, "workflow")

        now = orch.clock.now()
        root = workflow_span_id(workflow_id)
        for span_id, parent, operation, ended in (
            (root, None, "workflow booking", now + timedelta(seconds=2)),
            (_id("d", 1), root, "step reserve_venue", now + timedelta(seconds=1)),
        ):
            orch.tracing.recorder.record(
                Span(trace_id, span_id, parent, operation, "booking", now, ended)
            )
        await orch.tracing.flush()
        await pilot.press("t")
        await pane_loaded(app, "trace")
        text = await on_screen(
            app,
            "Workflows › booking bk-3001 › booking workflow booking",
            f"trace {trace_id} · workflow bk-3001",
            "● ok · 2.0s · 2 spans · 1 service",
        )
        assert "▾ booking workflow booking" in row_of(text, "workflow booking")
        assert shown(app) == [root, _id("d", 1)]


# -- the contract ---------------------------------------------------------------------------------


def test_the_panes_are_registered_and_keep_the_contract() -> None:
    assert pane_for("traces") is TracesPane and pane_for("tr") is TracesPane
    assert {"traces", "tr"} <= set(command_names())
    for pane in (TracesPane, TraceWaterfallPane):
        for action in pane.ACTIONS:
            assert callable(getattr(pane, f"action_{action.name}", None)), action.name
        bound = {(b.key, b.action) for _, b in pane._merged_bindings}  # type: ignore[attr-defined]
        assert bound == {(a.key, a.action_string) for a in pane.ACTIONS}
    assert "t" in {a.key for a in WorkflowDetailPane.ACTIONS}


# -- snapshots at 80x24 (``--snapshot-update`` renews) --------------------------------------------

SnapCompare = Callable[..., bool]


@pytest.fixture
def utc() -> Iterator[None]:
    """The waterfall shows wall-clock times (local time): pinned, so snapshots match anywhere."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def traced(dsn: str, utc: None) -> tuple[str, ManualClock]:
    """A database holding the story's traces, and a clock at its end."""

    async def seed() -> ManualClock:
        clock = ManualClock()
        orch = await Orch.open(Settings(database_url=dsn), clock=clock, start_discovery=False)
        try:
            await seed_traces(orch)
        finally:
            await orch.close()
        return clock

    clock = asyncio.run(seed())
    return dsn, ManualClock(start=clock.now())


def showcase(traced: tuple[str, ManualClock]) -> OrchConsole:
    dsn, clock = traced

    async def open_orch() -> Orch:
        settings = Settings(database_url=dsn, environment="production")
        return await ShowcaseOrch.open(settings, clock=clock, start_discovery=False)

    return OrchConsole(open_orch=open_orch, first_pane="traces")


def waterfall_of_the_booking(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await open_waterfall(app, pilot, BOOKING_TRACE)
        await eventually(lambda: selected(app) == A[8], message="opened on the failure")
        await pilot.press(*keys)

    return run_before


def test_traces_snapshot(snap_compare: SnapCompare, traced: tuple[str, ManualClock]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "traces")
        await eventually(lambda: len(shown(app)) == 3)
        await pilot.press("G")  # the booking, with its errors

    assert snap_compare(showcase(traced), terminal_size=SIZE, run_before=run_before)


def test_trace_waterfall_snapshot(
    snap_compare: SnapCompare, traced: tuple[str, ManualClock]
) -> None:
    # the declined deposit: the critical path runs down to the charge, opened on it
    app = showcase(traced)
    assert snap_compare(app, terminal_size=SIZE, run_before=waterfall_of_the_booking())


def test_trace_waterfall_no_color(
    snap_compare: SnapCompare, traced: tuple[str, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the catering step folded (its retried call hidden), its retry event below
    monkeypatch.setenv("NO_COLOR", "1")
    app = showcase(traced)
    assert app.no_color
    keys = ("up", "up", "up", "up", "left")
    assert snap_compare(app, terminal_size=SIZE, run_before=waterfall_of_the_booking(*keys))
