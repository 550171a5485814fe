"""One circuit breaker: what it is set to, why it is in its state, its day, its history.

Fetch: the breaker, its 24-hour metrics (the seed's GetCircuitBreakerMetricsResponse)
and its transition history. Render: a few lines of settings and figures, the hourly
failures as a one-line chart, and the history as a table, newest first. The same
``r``/``o``/``x`` as the Breakers pane act on this breaker. Opened from Breakers.

The hourly failures are a line of block characters rather than a plotted chart: at
80x24 a plot with axes would take the rows the history needs, and one line of 24
bars says "when did it fail, and how badly" as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from orchcore.resilience.breaker_metrics import (
    FailurePattern,
    GetCircuitBreakerMetricsResponse,
)
from orchcore.resilience.breakers import Breaker, BreakerTransition
from orchtui.actions import Mutation
from orchtui.formatting import age, duration, plural
from orchtui.pane import Pane
from orchtui.panes.breaker_view import (
    BREAKER_ACTIONS,
    breaker_label,
    disable_mutation,
    force_open_mutation,
    reset_mutation,
    state_summary,
)
from orchtui.source import ConsoleSource
from orchtui.symbols import state_text, state_word
from orchtui.widgets import Column, KeyedTable, Row

#: How many transitions the history shows (the engine keeps them all).
HISTORY_LIMIT = 100
#: Bars from none to most: a space-free floor so "no calls" and "no failures" differ.
BARS = "▁▂▃▄▅▆▇█"
NO_FAILURES = "·"
NO_CALLS = " "

HISTORY_COLUMNS = (
    Column("age", "AGE"),
    Column("change", "CHANGE"),
    Column("actor", "BY"),
    Column("trigger", "WHY"),
)


@dataclass(frozen=True)
class BreakerDetailSnapshot:
    breaker: Breaker
    metrics: GetCircuitBreakerMetricsResponse
    history: list[BreakerTransition]
    taken_at: datetime


async def fetch_breaker_detail(orch: ConsoleSource, breaker_id: UUID) -> BreakerDetailSnapshot:
    breaker = await orch.breakers.get(breaker_id)
    metrics, history = await asyncio.gather(
        orch.breakers.metrics(breaker),
        orch.breakers.history(breaker.id, limit=HISTORY_LIMIT),
    )
    return BreakerDetailSnapshot(breaker, metrics, history, taken_at=orch.clock.now())


def settings_text(breaker: Breaker) -> Text:
    """``trips after 5 failures · open 60s · closes after 3 good trials (1 at a time)``."""
    text = Text(
        f"trips after {breaker.failure_threshold} failures · open {breaker.timeout_duration}s · "
        f"closes after {breaker.success_threshold} good trials "
        f"({breaker.half_open_max_calls} at a time)",
        style="bright_black",
    )
    if breaker.count_429_as_failure:
        text.append(" · 429 is a failure", style="bright_black")
    return text


def metrics_text(metrics: GetCircuitBreakerMetricsResponse) -> Text:
    """``24h 937 calls, 29 failed (96.9% ok) · 1 state change · avg outage 1.2 min``.

    An outage is a spell away from closed (the seed's average_failure_duration_minutes).
    """
    m = metrics.metrics
    text = Text("24h ", style="bold")
    if not m.total_requests_24h:
        text.append("no calls")
    else:
        text.append(
            f"{plural(m.total_requests_24h, 'call')}, {m.failed_requests_24h} failed "
            f"({m.success_rate_24h:.1%} ok)"
        )
    text.append(f" · {plural(m.state_changes_24h, 'state change')}")
    if m.average_failure_duration_minutes:
        text.append(f" · avg outage {duration(m.average_failure_duration_minutes * 60)}")
    return text


def hourly_failures(patterns: Sequence[FailurePattern], now: datetime) -> Text:
    """The last 24 hours, oldest left, as one bar per hour scaled to the worst hour."""
    text = Text("failures/h ", style="bold")
    if not any(p.total_requests for p in patterns):
        text.append("no calls in 24h", style="bright_black")
        return text
    by_hour = {p.hour: p for p in patterns}
    hours = [(now - timedelta(hours=23 - index)).hour for index in range(24)]
    worst = max((p.failure_count for p in patterns), default=0)
    for hour in hours:
        pattern = by_hour.get(hour)
        if pattern is None or not pattern.total_requests:
            text.append(NO_CALLS)
        elif not pattern.failure_count:
            text.append(NO_FAILURES, style="bright_black")
        else:
            level = max(0, -(-pattern.failure_count * len(BARS) // worst) - 1)
            text.append(BARS[level], style="red")
    if worst:
        peak = max(patterns, key=lambda p: (p.failure_count, p.hour))
        text.append(f"  peak {peak.failure_count} at {peak.hour:02d}:00", style="bright_black")
    else:
        text.append("  none in 24h", style="bright_black")
    text.append(f" · to {now.astimezone(UTC):%H:%M} UTC", style="bright_black")
    return text


def history_row(transition: BreakerTransition, now: datetime) -> Row:
    change = Text(f"{state_word(transition.from_state)} → ", style="bright_black")
    change.append_text(state_text(transition.to_state))
    return Row(
        key=str(transition.id),
        cells=(age(transition.occurred_at, now), change, transition.actor, transition.trigger),
    )


class BreakerDetailPane(Pane[BreakerDetailSnapshot]):
    NAME = "breaker"
    TITLE = "Breaker"
    SUMMARY = "one circuit breaker: settings, 24-hour metrics and transition history"
    TOPICS = frozenset({"breaker"})
    ACTIONS = BREAKER_ACTIONS

    def __init__(self, breaker_id: UUID, label: str) -> None:
        super().__init__(id="pane-breaker")
        self.breaker_id = breaker_id
        self.label = label

    def compose(self) -> ComposeResult:
        yield Static("", id="breaker-state")
        yield Static("", id="breaker-settings")
        yield Static("", id="breaker-metrics")
        with Vertical(id="breaker-history-section") as history:
            history.border_title = "History"
            # A log to read, not rows to act on: no cursor to suggest otherwise.
            yield KeyedTable(HISTORY_COLUMNS, id="breaker-history", cursor=False)

    @property
    def breadcrumb(self) -> str:
        return f"Breakers › {self.label}"

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#breaker-history", KeyedTable)

    def update_border_title(self) -> None:
        # Where the operator is, without a row count: the rows are history, not breakers.
        table = self.filter_table
        self.border_title = self.breadcrumb + (
            f" /{table.filter_text}" if table.filter_text else ""
        )

    def concerns(self, notification: Mapping[str, Any]) -> bool:
        return super().concerns(notification) and str(notification.get("id")) == str(
            self.breaker_id
        )

    async def fetch(self, orch: ConsoleSource) -> BreakerDetailSnapshot:
        return await fetch_breaker_detail(orch, self.breaker_id)

    def show(self, snapshot: BreakerDetailSnapshot) -> None:
        breaker, now = snapshot.breaker, snapshot.taken_at
        self.label = breaker_label(breaker)
        state = state_summary(breaker, now)
        state.append(f"\nwhy: {breaker.state_reason or 'never tripped'}", style="bright_black")
        self.query_one("#breaker-state", Static).update(state)
        self.query_one("#breaker-settings", Static).update(settings_text(breaker))
        figures = metrics_text(snapshot.metrics)
        figures.append("\n")
        figures.append_text(hourly_failures(snapshot.metrics.failure_patterns, now))
        self.query_one("#breaker-metrics", Static).update(figures)
        self.filter_table.show_rows([history_row(t, now) for t in snapshot.history])

    @property
    def breaker(self) -> Breaker | None:
        return self.snapshot.breaker if self.snapshot is not None else None

    def mutation_reset(self) -> Mutation | None:
        breaker = self.breaker
        return reset_mutation(breaker, self.console.engine.breakers) if breaker else None

    def mutation_force_open(self) -> Mutation | None:
        breaker = self.breaker
        return force_open_mutation(breaker, self.console.engine.breakers) if breaker else None

    def mutation_disable(self) -> Mutation | None:
        breaker = self.breaker
        return disable_mutation(breaker, self.console.engine.breakers) if breaker else None
