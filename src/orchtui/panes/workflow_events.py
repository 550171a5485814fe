"""A workflow's timeline events as one line each: what happened, then the details that
say how (``attempt failed  #2 HTTP 503: …``), who did it and why.

Every event is described by the same rules over its details, so an event the core adds
reads sensibly before anyone writes a rule for it; the rules below only say the known
details better than ``key=value``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.text import Text

from orchcore.saga.status import WorkflowEvent
from orchcore.saga.views import TimelineEntry
from orchtui.formatting import offset, plural, took
from orchtui.widgets import Row

Details = dict[str, Any]


def _attempt(details: Details, event: str) -> list[str]:
    attempt = details.pop("attempt", None)
    return [f"#{attempt}"] if attempt is not None else []


def _operator_action(details: Details, event: str) -> list[str]:
    """A queued or refused action: ``pause``, ``pause: cannot pause a workflow that …``."""
    action = details.pop("action", None)
    refused = details.pop("refused", None)
    if action is None:
        return [f"refused: {refused}"] if refused else []
    word = str(action).replace("_", " ")  # skip_step: "skip step"
    return [f"{word}: {refused}" if refused else word]


def _outcome(details: Details, event: str) -> list[str]:
    error = details.pop("error", None)
    code = details.pop("status_code", None)
    if error:
        return [str(error)]
    return [f"HTTP {code}"] if code is not None else []


def _waits_for(details: Details, event: str) -> list[str]:
    steps = details.pop("waits_for", None)
    return [f"waits for {', '.join(str(s) for s in steps)}"] if steps else []


def _crashes(details: Details, event: str) -> list[str]:
    crashes = details.pop("crashes", None)
    if crashes is None:
        return []
    if event == WorkflowEvent.PARKED:
        return [f"after {plural(int(crashes), 'crashed drive')}"]
    return [f"({crashes} in a row)"]


def _transition(details: Details, event: str) -> list[str]:
    before, after = details.pop("from", None), details.pop("to", None)
    return [f"{before} → {after}"] if before and after else []


def _retry(details: Details, event: str) -> list[str]:
    retry, budget = details.pop("retry", None), details.pop("of", None)
    if retry is None:
        return []
    return [f"retry {retry}/{budget}" if budget is not None else f"retry {retry}"]


def _timing(details: Details, event: str) -> list[str]:
    parts = []
    for key in ("delay_seconds", "seconds"):
        delay = details.pop(key, None)
        if delay is not None:
            parts.append(f"in {took(float(delay) * 1000)}")
    ran = details.pop("duration_ms", None)
    if ran is not None:
        parts.append(f"took {took(float(ran))}")
    for key in ("at", "until"):  # the moment again, as a timestamp: said by the delay
        details.pop(key, None)
    return parts


def _reason(details: Details, event: str) -> list[str]:
    reason = details.pop("reason", None)
    return [f"why: {reason}"] if reason else []


#: The known details, in the order they are told; the rest follow as ``key=value``.
_RULES: tuple[Callable[[Details, str], list[str]], ...] = (
    _attempt,
    _operator_action,
    _outcome,
    _waits_for,
    _crashes,
    _transition,
    _retry,
    _timing,
    _reason,
)


def _rest(key: str, value: Any) -> str | None:
    """A detail no rule knows: ``key=value``; a flag that is set, as its words."""
    if value is None or value == [] or value == {} or value is False:
        return None
    if value is True:
        return key.replace("_", " ")  # outcome_unknown: "outcome unknown"
    if key == "needs":
        return f"needs {value}"
    if key == "generations" and isinstance(value, dict):
        return "generations " + ", ".join(f"{step} {n}" for step, n in value.items())
    if isinstance(value, list):
        return f"{key}={','.join(str(item) for item in value)}"
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"{key}={shown}"


def event_text(entry: TimelineEntry) -> Text:
    """``attempt failed  #2 HTTP 503: …`` with the details that say what happened."""
    text = Text(entry.event.replace("_", " "))
    details = dict(entry.details)
    details.pop("idempotency_key", None)  # the step line shows it whole
    parts = [part for rule in _RULES for part in rule(details, entry.event)]
    parts += [shown for key, value in details.items() if (shown := _rest(key, value))]
    if parts:
        text.append("  " + " ".join(parts), style="bright_black")
    return text


def timeline_row(index: int, entry: TimelineEntry, started: datetime) -> Row:
    return Row(
        key=str(index),
        cells=(
            offset((entry.timestamp - started).total_seconds()),
            entry.actor,
            entry.step_name or "",
            event_text(entry),
        ),
    )
