"""One queue: its figures and settings, its dead letters, and its recent messages.

Fetch: the queue (:meth:`MessageBus.get_queue`), its recent messages with their figures
(:meth:`MessageBus.queue_messages`, the seed's GetQueueMessagesResponse) and its dead
letters (:meth:`MessageBus.dead_letters`). Render: a few lines on the queue, its dead
letters newest first with their attempts and last error, the highlighted one's error in
full, and the message log. ``i`` swaps the log for the highlighted dead letter's
payload as JSON; ``R`` redrives and ``P`` purges the dead letters, as on the Queues
pane. Opened from Queues.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from orchcore.bus.models import DeadLetter, QueueMessage
from orchtui.actions import ConsoleAction, Mutation
from orchtui.formatting import age, plural, took
from orchtui.pane import Pane
from orchtui.panes.queue_view import (
    BUS_TOPICS,
    DEPTH_REFRESH_SECONDS,
    QUEUE_ACTIONS,
    QueueFigures,
    figures_text,
    kind_text,
    message_status_text,
    one_line,
    purge_mutation,
    queue_state_text,
    redrive_mutation,
    settings_text,
)
from orchtui.source import ConsoleSource
from orchtui.widgets import Column, KeyedTable, Row

#: How many messages and dead letters are shown (the engine keeps more).
MESSAGES_LIMIT = 100
DEAD_LETTERS_LIMIT = 100
#: Errors are cut in the table; the line below the table shows the highlighted one whole.
ERROR_WIDTH = 34

DEAD_COLUMNS = (
    Column("id", "MSG"),
    Column("age", "AGE"),
    Column("type", "TYPE"),
    Column("attempts", "ATTEMPTS"),
    Column("error", "LAST ERROR"),
)
MESSAGE_COLUMNS = (
    Column("id", "MSG"),
    Column("age", "AGE"),
    Column("type", "TYPE"),
    Column("status", "STATUS"),
    Column("retries", "RETRIES"),
    Column("took", "TOOK"),
    Column("consumer", "BY"),
)


@dataclass(frozen=True)
class QueueDetailSnapshot:
    figures: QueueFigures
    messages: list[QueueMessage]
    #: newest first
    dead_letters: list[DeadLetter]
    taken_at: datetime

    def dead_letter(self, key: str) -> DeadLetter | None:
        return next((d for d in self.dead_letters if d.message_id == key), None)


async def fetch_queue_detail(orch: ConsoleSource, name: str) -> QueueDetailSnapshot:
    queue = await orch.bus.get_queue(name)
    if queue.dlq_enabled and queue.dead_letter_queue:
        recent, dead = await asyncio.gather(
            orch.bus.queue_messages(name, limit=MESSAGES_LIMIT),
            orch.bus.dead_letters(name, limit=DEAD_LETTERS_LIMIT),
        )
    else:
        recent, dead = await orch.bus.queue_messages(name, limit=MESSAGES_LIMIT), []
    return QueueDetailSnapshot(
        figures=QueueFigures(queue, recent.queue_metrics),
        messages=sorted(recent.messages, key=lambda m: m.produced_at, reverse=True),
        dead_letters=sorted(dead, key=lambda d: d.dead_lettered_at, reverse=True),
        taken_at=orch.clock.now(),
    )


def _cut(text: str | None, width: int) -> str:
    if not text:
        return "–"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def dead_letter_row(dead: DeadLetter, now: datetime) -> Row:
    return Row(
        key=dead.message_id,
        cells=(
            dead.original_message_id,
            age(dead.dead_lettered_at, now),
            dead.message_type,
            str(dead.attempts),
            Text(_cut(dead.last_error, ERROR_WIDTH), style="red" if dead.last_error else ""),
        ),
    )


def message_row(message: QueueMessage, now: datetime) -> Row:
    return Row(
        key=message.id,
        cells=(
            message.message_id,
            age(message.produced_at, now),
            message.message_type,
            message_status_text(message.status),
            str(message.retry_count),
            took(message.processing_time_ms),
            message.consumer_service or "–",
        ),
    )


def dead_letter_line(dead: DeadLetter, now: datetime) -> RenderableType:
    """The highlighted dead letter: where it came from, when it gave up, and why."""
    where = Text(f"message {dead.original_message_id} of {dead.original_queue}", style="bold")
    where.append(
        f" · {plural(dead.attempts, 'attempt')} · dead-lettered {age(dead.dead_lettered_at, now)}"
        f" ago · produced {age(dead.produced_at, now)} ago",
        style="bright_black",
    )
    if dead.correlation_id:
        where.append(f" · {dead.correlation_id}", style="bright_black")
    why = Text("why: ")
    why.append(" ".join((dead.last_error or "no error recorded").split()), style="red")
    return Group(one_line(where), why)


def payload_text(dead: DeadLetter | None) -> Text:
    if dead is None:
        return Text("no dead letter highlighted", style="bright_black")
    text = Text(f"{dead.message_type}", style="bold")
    if dead.correlation_id:
        text.append(f"  correlation {dead.correlation_id}", style="bright_black")
    text.append("\n")
    text.append(json.dumps(dead.message_payload, indent=2, sort_keys=True, default=str))
    return text


def summary_text(snapshot: QueueDetailSnapshot) -> RenderableType:
    """The queue's state and kind, its figures, its settings: a line each."""
    figures = snapshot.figures
    kind = queue_state_text(figures.state)
    kind.append(f" · {kind_text(figures.queue)}", style="bright_black")
    if figures.queue.push_endpoint:
        kind.append(f" ({figures.queue.push_endpoint})", style="bright_black")
    lines = (kind, figures_text(figures), settings_text(figures.queue))
    return Group(*(one_line(line) for line in lines))


DETAIL_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "i",
        "toggle_payload",
        "Payload",
        "Show the highlighted dead letter's payload as JSON (again: the recent messages)",
    ),
    *QUEUE_ACTIONS,
)


class QueueDetailPane(Pane[QueueDetailSnapshot]):
    NAME = "queue"
    TITLE = "Queue"
    SUMMARY = "one queue: its figures, its dead letters with their errors, recent messages"
    TOPICS = BUS_TOPICS
    ACTIONS = DETAIL_ACTIONS

    def __init__(self, name: str) -> None:
        super().__init__(id="pane-queue")
        self.queue_name = name
        self.showing_payload = False

    def compose(self) -> ComposeResult:
        yield Static("", id="queue-summary")
        with Vertical(id="queue-dead-section") as dead:
            dead.border_title = "Dead letters"
            yield KeyedTable(DEAD_COLUMNS, id="queue-dead")
        yield Static("", id="dead-letter-line")
        with Vertical(id="queue-messages-section") as recent:
            recent.border_title = "Recent messages, newest first"
            # A log to read, not rows to act on: no cursor to suggest otherwise.
            yield KeyedTable(MESSAGE_COLUMNS, id="queue-messages", cursor=False)
        with VerticalScroll(id="queue-payload-section") as payload:
            payload.border_title = "Payload"
            yield Static("", id="queue-payload")

    @property
    def breadcrumb(self) -> str:
        return f"Queues › {self.queue_name}"

    @property
    def filter_table(self) -> KeyedTable:
        # ``/`` finds dead letters (a type, an error, a correlation id): what is acted on.
        return self.query_one("#queue-dead", KeyedTable)

    @property
    def messages_table(self) -> KeyedTable:
        return self.query_one("#queue-messages", KeyedTable)

    def update_border_title(self) -> None:
        table = self.filter_table
        self.border_title = self.breadcrumb + (
            f" /{table.filter_text}" if table.filter_text else ""
        )

    def concerns(self, notification: Mapping[str, Any]) -> bool:
        if not super().concerns(notification):
            return False
        queue = notification.get("queue_name")
        # A notification naming no queue may be about any of them.
        return queue is None or queue == self.queue_name

    def needs_refresh(self, every_seconds: float) -> bool:
        return super().needs_refresh(min(every_seconds, DEPTH_REFRESH_SECONDS))

    async def fetch(self, orch: ConsoleSource) -> QueueDetailSnapshot:
        return await fetch_queue_detail(orch, self.queue_name)

    def show(self, snapshot: QueueDetailSnapshot) -> None:
        now = snapshot.taken_at
        self.query_one("#queue-summary", Static).update(summary_text(snapshot))
        section = self.query_one("#queue-dead-section", Vertical)
        queue = snapshot.figures.queue
        if not (queue.dlq_enabled and queue.dead_letter_queue):
            section.border_title = "Dead letters: none kept (dead-lettering is off)"
        elif snapshot.figures.dead_letters > len(snapshot.dead_letters):
            section.border_title = (
                f"Dead letters in {queue.dead_letter_queue}: newest "
                f"{len(snapshot.dead_letters)} of {snapshot.figures.dead_letters}"
            )
        else:
            section.border_title = (
                f"Dead letters in {queue.dead_letter_queue} ({len(snapshot.dead_letters)})"
            )
        self.filter_table.show_rows([dead_letter_row(d, now) for d in snapshot.dead_letters])
        self.messages_table.show_rows([message_row(m, now) for m in snapshot.messages])
        self._describe_selected()

    @on(DataTable.RowHighlighted, "#queue-dead")
    def _describe_selected(self) -> None:
        dead = self.selected_dead_letter
        now = self.snapshot.taken_at if self.snapshot is not None else self.console.now()
        line = self.query_one("#dead-letter-line", Static)
        line.update(dead_letter_line(dead, now) if dead is not None else "")
        line.display = dead is not None
        self.query_one("#queue-payload", Static).update(payload_text(dead))
        self.query_one("#queue-payload-section", VerticalScroll).border_title = (
            f"Payload of message {dead.original_message_id} (i: recent messages again)"
            if dead is not None
            else "Payload"
        )

    @on(DataTable.RowSelected, "#queue-dead")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_toggle_payload()

    @property
    def selected_dead_letter(self) -> DeadLetter | None:
        key = self.filter_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.dead_letter(key)

    def action_toggle_payload(self) -> None:
        self.showing_payload = not self.showing_payload
        self.set_class(self.showing_payload, "-showing-payload")

    def mutation_redrive(self) -> Mutation | None:
        if self.snapshot is None:
            return None
        return redrive_mutation(self.snapshot.figures, self.console.engine.bus)

    def mutation_purge(self) -> Mutation | None:
        if self.snapshot is None:
            return None
        return purge_mutation(self.snapshot.figures, self.console.engine.bus)
