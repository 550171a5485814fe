"""A workflow's steps on one time axis: pure rendering, apart from the pane.

When a step ran and when it was undone is the core's to say
(:func:`orchcore.saga.reads.step_timing`, as ``StepView.timing``); this module only
places those moments on an axis from the workflow's start to its end, where an end
still open (a call in flight, an undo under way) is the axis' end, and draws them:
``█`` ran, ``▒`` undone, ``·`` waits to retry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text

from orchcore.saga.status import TERMINAL, WorkflowStatus
from orchcore.saga.views import GetWorkflowStatusResponse, StepTiming, StepView
from orchtui.panes.workflow_view import WAITS_FOR_RETRY
from orchtui.symbols import state_style

#: What a bar is drawn with: the step running forward, its compensation, and the wait
#: before a retry (of either) that is due later.
RAN = "█"
UNDONE = "▒"
WAITING = "·"


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class StepSpans:
    """A step's run, its undo and the wait for its retry, as drawn on one axis."""

    forward: Span | None
    undo: Span | None
    wait: Span | None = None


def in_flight(timing: StepTiming) -> bool:
    """Begun and not ended: the step's call, or its undo's, is under way."""
    running = timing.ran_from is not None and timing.ran_until is None
    undoing = timing.undo_from is not None and timing.undo_until is None
    return running or undoing


def axis_end(status: GetWorkflowStatusResponse, now: datetime) -> datetime:
    """Where the axis ends: the workflow's end; now while a call is in flight; the next
    attempt while it waits for one (so the wait shows); else its last event."""
    workflow = status.workflow
    if workflow.completed_at is not None:
        return workflow.completed_at
    moving = any(in_flight(step.timing) for step in status.steps)
    if moving and workflow.current_status not in TERMINAL:
        return now
    last = max((e.timestamp for e in status.execution_timeline), default=workflow.started_at)
    if workflow.current_status in WAITS_FOR_RETRY and workflow.next_run_at is not None:
        last = max(last, workflow.next_run_at)
    return max(last, workflow.started_at)


def _span(start: datetime | None, end: datetime | None, end_of_axis: datetime) -> Span | None:
    if start is None:
        return None
    return Span(start, max(start, end if end is not None else end_of_axis))


def step_spans(step: StepView, *, end_of_axis: datetime) -> StepSpans:
    """The core's timing of the step, with each open end at the axis' end; the wait for
    a retry follows whatever ran last (the run, or the undo when there is one)."""
    timing = step.timing
    forward = _span(timing.ran_from, timing.ran_until, end_of_axis)
    undo = _span(timing.undo_from, timing.undo_until, end_of_axis)
    last = undo or forward
    wait = None
    if timing.waits_until is not None and last is not None:
        wait = Span(last.end, max(last.end, timing.waits_until))
    return StepSpans(forward, undo, wait)


def bar_text(spans: StepSpans, status: str, *, start: datetime, end: datetime, width: int) -> Text:
    """One row of the axis: spaces, then the step's run and its undo where they fall."""
    total = max((end - start).total_seconds(), 1e-3)
    cells = [" "] * width
    styles = [""] * width

    def paint(span: Span | None, char: str, style: str) -> None:
        if span is None:
            return
        first = (span.start - start).total_seconds() / total * width
        last = (span.end - start).total_seconds() / total * width
        a = min(width - 1, max(0, math.floor(first)))
        b = min(width, max(a + 1, math.ceil(last)))
        for index in range(a, b):
            cells[index] = char
            styles[index] = style

    paint(spans.wait, WAITING, "bright_black")
    paint(spans.forward, RAN, state_style(status) or "")
    paint(spans.undo, UNDONE, state_style(WorkflowStatus.COMPENSATED))
    text = Text()
    for char, style in zip(cells, styles, strict=True):
        text.append(char, style=style or None)
    text.rstrip()
    return text
