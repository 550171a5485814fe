"""Queues: every message queue's depth, flow and dead letters, and a chart of one.

Fetch: the registry's queues (:meth:`MessageBus.list_queues`), every queue's figures in
one round trip (:meth:`MessageBus.all_metrics`) and the highlighted queue's depth over
the last 15 minutes (:meth:`MessageBus.depth_history`, sampled by the daemons so every
console draws the same history). Render: the totals, one row per queue keyed by name
(ready, in flight, delayed, dead letters, in and out a minute, the oldest message's
age), the highlighted queue in full, and its depth chart (:mod:`.depth_chart`).

Enter opens the queue (recent messages and dead letters); ``R`` redrives its dead
letters and ``P`` purges them, as in the queue's own pane.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Resize
from textual.widgets import DataTable, Static

from orchcore.bus.models import DepthSample
from orchtui.actions import ConsoleAction, Mutation
from orchtui.formatting import plural
from orchtui.pane import Pane
from orchtui.panes.depth_chart import WINDOW, depth_chart, legend
from orchtui.panes.queue_detail import QueueDetailPane
from orchtui.panes.queue_view import (
    BUS_TOPICS,
    DEPTH_REFRESH_SECONDS,
    QUEUE_ACTIONS,
    TOPIC_MARK,
    QueueFigures,
    count,
    dead_text,
    kind_text,
    oldest,
    one_line,
    purge_mutation,
    queue_state_text,
    queue_symbol,
    rate,
    redrive_mutation,
    settings_text,
    visible_queues,
)
from orchtui.source import ConsoleSource
from orchtui.widgets import Column, KeyedTable, Row

#: Longer names are cut in the table (the line below shows them whole), so the figures
#: stay on an 80-column screen.
NAME_WIDTH = 16
#: The chart's rows, its axes and tick labels included.
CHART_HEIGHT = 8

COLUMNS = (
    Column("name", "QUEUE"),
    Column("ready", "READY"),
    Column("in_flight", "FLIGHT"),
    Column("delayed", "DELAYED"),
    Column("dead", "DEAD"),
    Column("in", "IN/m"),
    Column("out", "OUT/m"),
    Column("oldest", "OLDEST"),
)


@dataclass(frozen=True)
class QueuesSnapshot:
    queues: list[QueueFigures]
    #: the queue whose depth history was fetched (the highlighted one, else the first)
    charted: str | None
    history: list[DepthSample]
    taken_at: datetime

    def by_name(self, name: str) -> QueueFigures | None:
        return next((q for q in self.queues if q.name == name), None)


async def fetch_queues(orch: ConsoleSource, highlighted: str | None) -> QueuesSnapshot:
    now = orch.clock.now()
    queues, metrics = await asyncio.gather(orch.bus.list_queues(), orch.bus.all_metrics())
    shown = visible_queues([QueueFigures(q, metrics.get(q.queue_name)) for q in queues])
    names = [q.name for q in shown]
    # Before the first highlight, the first row (a queue: the topics come last).
    charted = highlighted if highlighted in names else (names[0] if names else None)
    history = []
    figures = next((q for q in shown if q.name == charted), None)
    if figures is not None and not figures.is_topic:
        history = await orch.bus.depth_history(figures.name, since=now - WINDOW)
    return QueuesSnapshot(shown, charted, history, taken_at=now)


def queue_row(figures: QueueFigures) -> Row:
    name = figures.name
    if len(name) > NAME_WIDTH:
        name = name[: NAME_WIDTH - 1] + "…"
    label = queue_symbol(figures)
    label.append(f" {name}", style="")
    metrics = figures.metrics
    if figures.is_topic or metrics is None:
        return Row(key=figures.name, cells=(label, *("–",) * (len(COLUMNS) - 1)))
    return Row(
        key=figures.name,
        cells=(
            label,
            count(figures.ready),
            count(figures.in_flight),
            count(figures.delayed),
            dead_text(figures.dead_letters),
            rate(metrics.messages_in_per_minute),
            rate(metrics.messages_out_per_minute),
            oldest(figures.oldest_seconds),
        ),
    )


def totals_text(queues: list[QueueFigures]) -> Text:
    """``112 ready · 5 in flight · 2 delayed · ✖ 3 dead letters · oldest message 1h``
    over every queue (the title counts the queues)."""
    if not queues:
        return Text(
            "no queues yet: create one with `orch queue create` or POST messages/queues",
            style="bright_black",
        )
    text = Text(
        f"{sum(q.ready for q in queues)} ready · {sum(q.in_flight for q in queues)} in flight"
        f" · {sum(q.delayed for q in queues)} delayed · "
    )
    dead = sum(q.dead_letters for q in queues)
    if dead:
        text.append_text(queue_state_text("dead_letters", plural(dead, "dead letter")))
    else:
        text.append("0 dead letters", style="bright_black")
    ages = [q.oldest_seconds for q in queues if q.oldest_seconds is not None]
    text.append(f" · oldest message {oldest(max(ages) if ages else None)}")
    return text


def queue_line(figures: QueueFigures) -> RenderableType:
    """The highlighted queue in full: its state in words, its whole name, what it is,
    then its settings (its figures are in its row already)."""
    if figures.is_topic:
        text = Text(f"{TOPIC_MARK} {figures.name}", style="bold")
        text.append(f" · {kind_text(figures.queue)}", style="bright_black")
        return one_line(text)
    text = queue_state_text(figures.state)
    text.append(f"  {figures.name}", style="bold")
    text.append(f" · {kind_text(figures.queue)}", style="bright_black")
    return Group(one_line(text), settings_text(figures.queue))


class QueuesPane(Pane[QueuesSnapshot]):
    NAME = "queues"
    ALIASES = ("q", "queue", "mq")
    TITLE = "Queues"
    SUMMARY = "message queues: depth, dead letters and a depth chart"
    TOPICS = BUS_TOPICS
    ACTIONS = (
        ConsoleAction(
            "enter",
            "open_detail",
            "Open",
            "The queue's recent messages and its dead letters",
            key_display="⏎",
        ),
        *QUEUE_ACTIONS,
    )

    def compose(self) -> ComposeResult:
        yield Static("", id="queues-totals")
        yield KeyedTable(COLUMNS, id="queues-table")
        yield Static("", id="queue-line")
        with Vertical(id="queue-chart-section") as section:
            section.border_title = "Depth, last 15 min"
            yield Static("", id="queue-legend")
            yield Static("", id="queue-chart")

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#queues-table", KeyedTable)

    @property
    def highlighted(self) -> str | None:
        return self.filter_table.selected_key if self.is_mounted else None

    def needs_refresh(self, every_seconds: float) -> bool:
        return super().needs_refresh(min(every_seconds, DEPTH_REFRESH_SECONDS))

    async def fetch(self, orch: ConsoleSource) -> QueuesSnapshot:
        return await fetch_queues(orch, self.highlighted)

    def show(self, snapshot: QueuesSnapshot) -> None:
        self.query_one("#queues-totals", Static).update(totals_text(snapshot.queues))
        self.filter_table.show_rows([queue_row(q) for q in snapshot.queues])
        self._describe_selected()

    @on(DataTable.RowHighlighted, "#queues-table")
    def _describe_selected(self) -> None:
        figures = self.selected_queue
        line = self.query_one("#queue-line", Static)
        line.update(queue_line(figures) if figures is not None else "")
        line.display = figures is not None
        self._draw_chart()

    def _draw_chart(self) -> None:
        snapshot = self.snapshot
        section = self.query_one("#queue-chart-section", Vertical)
        legend_line = self.query_one("#queue-legend", Static)
        chart = self.query_one("#queue-chart", Static)
        wanted = self.highlighted
        if snapshot is None or snapshot.charted is None:
            section.display = False
            return
        section.display = True
        if wanted is not None and wanted != snapshot.charted:
            # The history is of the queue highlighted before: fetch the new one's (the
            # next tick does, within 250 ms) rather than show it under the wrong name.
            section.border_title = f"Depth of {wanted}, last 15 min"
            legend_line.display = False
            chart.update(Text("loading…", style="bright_black"))
            self.mark_dirty()
            return
        section.border_title = f"Depth of {snapshot.charted}, last 15 min"
        charted = snapshot.by_name(snapshot.charted)
        if charted is not None and charted.is_topic:
            legend_line.display = False
            chart.update(
                Text(
                    f"{charted.name} is a topic: its messages wait in the queues bound to it, "
                    "each charted on its own row.",
                    style="bright_black",
                )
            )
            return
        marks = legend(snapshot.history, snapshot.taken_at)
        legend_line.update(marks)
        legend_line.display = bool(marks)
        # Before the first layout the chart has no width yet: the pane's, less the
        # chart's padding (the pane's border is outside its size already).
        width = chart.size.width or self.size.width - 2
        chart.update(
            depth_chart(snapshot.history, snapshot.taken_at, width=width, height=CHART_HEIGHT)
        )

    def on_resize(self, event: Resize) -> None:
        if self.snapshot is not None:
            self._draw_chart()

    @on(DataTable.RowSelected, "#queues-table")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        # Enter reaches action_open_detail through the binding; a click comes here.
        event.stop()
        self.action_open_detail()

    @property
    def selected_queue(self) -> QueueFigures | None:
        key = self.filter_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.by_name(key)

    def action_open_detail(self) -> None:
        figures = self.selected_queue
        if figures is None:
            self.notify("No queue selected.", severity="warning")
            return
        if figures.is_topic:
            self.notify(
                f"Topic {figures.name} holds no messages of its own: open a queue bound to it.",
                severity="warning",
            )
            return
        self.console.open_detail(QueueDetailPane(figures.name))

    def mutation_redrive(self) -> Mutation | None:
        figures = self.selected_queue
        return redrive_mutation(figures, self.console.engine.bus) if figures else None

    def mutation_purge(self) -> Mutation | None:
        figures = self.selected_queue
        return purge_mutation(figures, self.console.engine.bus) if figures else None
