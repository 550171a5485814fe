"""Breakers: every circuit breaker between services, its state and when it tries again.

Fetch: :meth:`CircuitBreakers.list_breakers`. Render: the counts by state, one row per
breaker keyed by id, and the highlighted breaker's reason below. Enter opens the
breaker's detail; ``r`` resets, ``o`` forces open, ``x`` disables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from orchcore.resilience.breakers import Breaker
from orchtui.actions import ConsoleAction, Mutation
from orchtui.formatting import age
from orchtui.pane import Pane
from orchtui.panes.breaker_detail import BreakerDetailPane
from orchtui.panes.breaker_view import (
    BREAKER_ACTIONS,
    breaker_label,
    counts_text,
    disable_mutation,
    force_open_mutation,
    next_attempt,
    reset_mutation,
    state_summary,
)
from orchtui.source import ConsoleSource
from orchtui.symbols import state_text
from orchtui.widgets import Column, KeyedTable, Row

#: Longer endpoint patterns are cut in the table (the line below shows them whole), so
#: the state, the reason to look at this pane, stays on an 80-column screen.
ENDPOINT_WIDTH = 20

COLUMNS = (
    Column("pair", "SOURCE → TARGET"),
    Column("endpoint", "ENDPOINT"),
    Column("state", "STATE"),
    Column("failures", "FAILS"),
    Column("since", "FOR"),
    Column("next", "NEXT TRY"),
)


@dataclass(frozen=True)
class BreakersSnapshot:
    breakers: list[Breaker]
    taken_at: datetime

    def by_id(self, key: str) -> Breaker | None:
        return next((b for b in self.breakers if str(b.id) == key), None)

    @property
    def by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for breaker in self.breakers:
            counts[breaker.current_state] = counts.get(breaker.current_state, 0) + 1
        return counts


async def fetch_breakers(orch: ConsoleSource) -> BreakersSnapshot:
    return BreakersSnapshot(breakers=await orch.breakers.list_breakers(), taken_at=orch.clock.now())


def breaker_row(breaker: Breaker, now: datetime) -> Row:
    endpoint = breaker.endpoint_pattern
    if len(endpoint) > ENDPOINT_WIDTH:
        endpoint = endpoint[: ENDPOINT_WIDTH - 1] + "…"
    return Row(
        key=str(breaker.id),
        cells=(
            f"{breaker.service_name} → {breaker.target_service}",
            endpoint,
            state_text(breaker.current_state),
            f"{breaker.failure_count}/{breaker.failure_threshold}",
            age(breaker.state_changed_at, now),
            next_attempt(breaker, now),
        ),
    )


def breaker_line(breaker: Breaker, now: datetime) -> Text:
    """The highlighted breaker in full: who calls whom, what its state means, and why."""
    text = Text(breaker_label(breaker), style="bold")
    text.append("  ")
    text.append_text(state_summary(breaker, now))
    reason = breaker.state_reason or "never tripped"
    text.append(f"\nwhy: {reason}", style="bright_black")
    return text


class BreakersPane(Pane[BreakersSnapshot]):
    NAME = "breakers"
    ALIASES = ("cb", "breaker")
    TITLE = "Breakers"
    SUMMARY = "circuit breakers between services: state, failures and next attempt"
    TOPICS = frozenset({"breaker"})
    ACTIONS = (
        ConsoleAction(
            "enter",
            "open_detail",
            "Detail",
            "The breaker's settings, 24-hour figures and history",
            key_display="⏎",
        ),
        *BREAKER_ACTIONS,
    )

    def compose(self) -> ComposeResult:
        yield Static("", id="breakers-counts")
        yield KeyedTable(COLUMNS, id="breakers-table")
        yield Static("", id="breaker-line")

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#breakers-table", KeyedTable)

    async def fetch(self, orch: ConsoleSource) -> BreakersSnapshot:
        return await fetch_breakers(orch)

    def show(self, snapshot: BreakersSnapshot) -> None:
        counts = self.query_one("#breakers-counts", Static)
        if snapshot.breakers:
            counts.update(counts_text(snapshot.by_state))
        else:
            counts.update(
                Text(
                    "no breakers yet: one is made on a service's first call to another",
                    style="bright_black",
                )
            )
        now = snapshot.taken_at
        self.filter_table.show_rows([breaker_row(b, now) for b in snapshot.breakers])
        self._describe_selected()

    @on(DataTable.RowHighlighted, "#breakers-table")
    def _describe_selected(self) -> None:
        breaker = self.selected_breaker
        line = self.query_one("#breaker-line", Static)
        if breaker is None or self.snapshot is None:
            line.update("")
        else:
            line.update(breaker_line(breaker, self.snapshot.taken_at))

    @on(DataTable.RowSelected, "#breakers-table")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        # Enter reaches action_open_detail through the binding; a click comes here.
        event.stop()
        self.action_open_detail()

    @property
    def selected_breaker(self) -> Breaker | None:
        key = self.filter_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.by_id(key)

    def action_open_detail(self) -> None:
        breaker = self.selected_breaker
        if breaker is None:
            self.notify("No breaker selected.", severity="warning")
            return
        self.console.open_detail(BreakerDetailPane(breaker.id, breaker_label(breaker)))

    def mutation_reset(self) -> Mutation | None:
        breaker = self.selected_breaker
        return reset_mutation(breaker, self.console.engine.breakers) if breaker else None

    def mutation_force_open(self) -> Mutation | None:
        breaker = self.selected_breaker
        return force_open_mutation(breaker, self.console.engine.breakers) if breaker else None

    def mutation_disable(self) -> Mutation | None:
        breaker = self.selected_breaker
        return disable_mutation(breaker, self.console.engine.breakers) if breaker else None
