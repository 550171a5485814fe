"""The console speaks the core's vocabulary: every status the saga engine can give a
workflow or a step has a symbol, and every operator action has its words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchcore.saga.status import ACTION_VERBS, OperatorAction, StepStatus, WorkflowStatus
from orchcore.saga.views import TimelineEntry
from orchtui.panes.workflow_events import event_text
from orchtui.symbols import state_symbol


@pytest.mark.parametrize("status", [*WorkflowStatus, *StepStatus], ids=str)
def test_every_status_of_the_core_has_a_symbol(status: str) -> None:
    assert state_symbol(status) != "?"


def test_every_operator_action_has_its_verb() -> None:
    assert set(ACTION_VERBS) == set(OperatorAction)


def entry(event: str, **details: object) -> TimelineEntry:
    return TimelineEntry(
        timestamp=datetime(2026, 6, 12, tzinfo=UTC),
        event=event,
        step_name=None,
        actor="ops",
        details=details,
    )


@pytest.mark.parametrize(
    ("event", "details", "shown"),
    [
        (
            "action_queued",
            {"action": "skip_step", "reason": "by phone"},
            "action queued  skip step why: by phone",
        ),
        (
            "action_refused",
            {"action": "pause", "refused": "cannot pause a workflow that is completed"},
            "action refused  pause: cannot pause a workflow that is completed",
        ),
        (
            "drive_crashed",
            {"error": "RuntimeError: boom", "crashes": 2},
            "drive crashed  RuntimeError: boom (2 in a row)",
        ),
        ("workflow_parked", {"crashes": 3}, "workflow parked  after 3 crashed drives"),
        ("step_uncertain", {"outcome_unknown": True}, "step uncertain  outcome unknown"),
        ("something_new", {"colour": "blue"}, "something new  colour=blue"),
    ],
)
def test_timeline_events_read_as_words(event: str, details: dict[str, object], shown: str) -> None:
    assert event_text(entry(event, **details)).plain == shown
