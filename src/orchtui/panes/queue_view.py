"""How a message queue reads on screen, and what an operator can do to its dead letters.

Shared by the Queues pane, a queue's detail pane and the Overview, so a queue's state
is drawn the same way everywhere and redrive and purge ask the same question wherever
they are pressed. A queue's state is a word with a symbol (never colour alone):

* ``✖ dead letters``: messages gave up and wait in its dead-letter queue for a person;
* ``▲ backlog``: more ready than its monitoring threshold (``alert_on_backlog``);
* ``● flowing``: messages ready, in flight or delayed;
* ``○ idle``: nothing in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from orchcore.bus.models import (
    DeadLetterActionResponse,
    MessageEvent,
    MessageQueue,
    QueueMetrics,
    QueueType,
)
from orchtui.actions import ConsoleAction, ExtraField, Mutation, Outcome, Unavailable
from orchtui.formatting import duration, plural
from orchtui.source import BusSource
from orchtui.symbols import state_style, state_symbol

if TYPE_CHECKING:
    pass

#: The engine's notifications about queues: the registry's changes, and a message
#: dead-lettered, redriven or purged (each naming its ``queue_name``). Sends and acks
#: are not announced on orch's channel, so the panes poll depth while they are seen.
BUS_TOPICS = frozenset({"message_queue", "dead_letter"})
#: How often a visible queue pane fetches anyway (depth moves without notifications).
DEPTH_REFRESH_SECONDS = 1.0

#: A queue's states, worst first, each drawn with the symbol of a console state that
#: means the same to an operator (so the symbols keep one meaning across panes).
QUEUE_STATES: dict[str, tuple[str, str]] = {
    "dead_letters": ("failing", "dead letters"),
    "backlog": ("degraded", "backlog"),
    "flowing": ("healthy", "flowing"),
    "idle": ("no_instances", "idle"),
}

#: A message's status (the last event of its life the message log holds), with the
#: console state whose symbol it borrows; keyed by the core's vocabulary, so a status
#: added there is missed here visibly (tests/console/test_queues.py).
MESSAGE_STATES: dict[str, str] = {
    MessageEvent.PRODUCED: "pending",
    MessageEvent.DELIVERED: "running",
    MessageEvent.ACKED: "completed",
    MessageEvent.FAILED: "retrying",
    MessageEvent.DEAD_LETTERED: "failed",
    MessageEvent.EXPIRED: "cancelled",
    MessageEvent.REDRIVEN: "compensated",
    MessageEvent.PURGED: "deregistered",
}


def one_line(text: Text) -> Text:
    """``text`` cut with ``…`` at the edge instead of wrapping onto the next line."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def queue_state_text(state: str, label: str | None = None) -> Text:
    """``✖ dead letters``: a queue state's symbol, then its word (or ``label``)."""
    borrowed, word = QUEUE_STATES[state]
    return Text(f"{state_symbol(borrowed)} {label or word}", style=state_style(borrowed))


#: A topic's mark where a queue shows its state: it fans messages out, holding none.
TOPIC_MARK = "⇉"


def queue_symbol(figures: QueueFigures) -> Text:
    if figures.is_topic:
        return Text(TOPIC_MARK, style="bright_black")
    borrowed, _ = QUEUE_STATES[figures.state]
    return Text(state_symbol(borrowed), style=state_style(borrowed))


def message_status_text(status: str) -> Text:
    """``● acked``, ``✖ dead lettered``: a message's status with its symbol."""
    borrowed = MESSAGE_STATES.get(status, status)
    return Text(f"{state_symbol(borrowed)} {status.replace('_', ' ')}", style=state_style(borrowed))


@dataclass(frozen=True)
class QueueFigures:
    """A queue as the registry keeps it, with its live figures (None: PGMQ gave none)."""

    queue: MessageQueue
    metrics: QueueMetrics | None

    @property
    def name(self) -> str:
        return self.queue.queue_name

    @property
    def is_topic(self) -> bool:
        """A topic holds no messages of its own: it fans each out to its bound queues."""
        return self.queue.queue_type == QueueType.TOPIC

    @property
    def ready(self) -> int:
        return self.metrics.pending_messages if self.metrics else 0

    @property
    def in_flight(self) -> int:
        return self.metrics.processing_messages if self.metrics else 0

    @property
    def delayed(self) -> int:
        return self.metrics.delayed_messages if self.metrics else 0

    @property
    def depth(self) -> int:
        """Everything not yet acked: ready, in flight and delayed."""
        return self.ready + self.in_flight + self.delayed

    @property
    def dead_letters(self) -> int:
        return self.metrics.failed_messages if self.metrics else 0

    @property
    def oldest_seconds(self) -> float | None:
        return self.metrics.oldest_age_seconds if self.metrics else None

    @property
    def backlog_threshold(self) -> int | None:
        value = self.queue.monitoring_config.get("alert_on_backlog")
        return value if isinstance(value, int) and value > 0 else None

    @property
    def state(self) -> str:
        if self.dead_letters:
            return "dead_letters"
        threshold = self.backlog_threshold
        if threshold is not None and self.ready >= threshold:
            return "backlog"
        return "flowing" if self.depth else "idle"


def visible_queues(figures: list[QueueFigures]) -> list[QueueFigures]:
    """The queues an operator looks at, by name, then the topics (which hold nothing); a
    queue's own ``<name>_dlq`` is left out (its messages are the DEAD column of the
    queue they gave up in)."""
    dlqs = {f.queue.dead_letter_queue for f in figures if f.queue.dead_letter_queue}
    shown = (f for f in figures if f.name not in dlqs)
    return sorted(shown, key=lambda f: (f.is_topic, f.name))


def count(value: int) -> str:
    """A count in at most five cells: ``42``, ``9999``, ``12.3k``, ``4.1M``."""
    if value < 10_000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.1f}M"


def rate(per_minute: float | None) -> str:
    """Messages a minute: ``0``, ``0.5``, ``12``, ``1.2k``."""
    if per_minute is None:
        return "–"
    if per_minute == 0:
        return "0"
    if per_minute < 10:
        return f"{per_minute:.1f}".rstrip("0").rstrip(".")
    if per_minute < 10_000:
        return f"{per_minute:.0f}"
    return count(int(per_minute))


def oldest(seconds: float | None) -> str:
    """The age of the oldest message waiting, or ``–`` when none waits."""
    return "–" if seconds is None else duration(seconds)


def dead_text(dead: int) -> Text:
    """The DEAD column: ``✖ 3`` when any wait for a person, a dim ``0`` otherwise."""
    if not dead:
        return Text("0", style="bright_black")
    return queue_state_text("dead_letters", count(dead))


def kind_text(queue: MessageQueue) -> str:
    """What the queue is and who takes its messages: ``queue · push to notification``."""
    if queue.queue_type == QueueType.TOPIC:
        pattern = f" {queue.message_pattern}" if queue.message_pattern else ""
        return f"topic{pattern} · fans each message out to its bound queues"
    kind = "dead-letter queue" if queue.queue_type == QueueType.DEAD_LETTER else "queue"
    consumers = ", ".join(queue.consumer_services) or "any consumer"
    how = "push to" if queue.push_endpoint else "pulled by"
    return f"{kind} · {how} {consumers}"


def settings_text(queue: MessageQueue) -> Text:
    """``3 retries, then booking_dlq · visible again after 30s · kept 168h · from booking``."""
    if queue.dlq_enabled and queue.dead_letter_queue:
        tries = f"{queue.dlq_max_retries} {'retry' if queue.dlq_max_retries == 1 else 'retries'}"
        parts = [f"{tries}, then {queue.dead_letter_queue}"]
    else:
        parts = ["no dead-letter queue"]
    parts.append(f"visible again after {duration(queue.visibility_timeout_seconds)}")
    threshold = queue.monitoring_config.get("alert_on_backlog")
    if threshold:
        parts.append(f"alert over {threshold} ready")
    parts.append(f"kept {queue.retention_hours}h")
    if queue.producer_services:
        parts.append(f"from {', '.join(queue.producer_services)}")
    return Text(" · ".join(parts), style="bright_black")


def figures_text(figures: QueueFigures) -> Text:
    """``42 ready, 5 in flight, 2 delayed · ✖ 3 dead · oldest 4m · 12/min in, 9.5 out``."""
    text = Text(
        f"{figures.ready} ready, {figures.in_flight} in flight, {figures.delayed} delayed · "
    )
    if figures.dead_letters:
        text.append_text(queue_state_text("dead_letters", f"{figures.dead_letters} dead"))
    else:
        text.append("0 dead", style="bright_black")
    text.append(f" · oldest {oldest(figures.oldest_seconds)}")
    metrics = figures.metrics
    if metrics is not None:
        text.append(
            f" · {rate(metrics.messages_in_per_minute)}/min in, "
            f"{rate(metrics.messages_out_per_minute)} out",
            style="bright_black",
        )
    return text


# -- the operator's actions ---------------------------------------------------------------------

QUEUE_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "R",
        "redrive",
        "Redrive",
        "Send every dead letter back to its queue, with its retry count reset",
        mutating=True,
    ),
    ConsoleAction(
        "P",
        "purge",
        "Purge",
        "Delete every dead letter of the queue for good (asks for the queue's name)",
        mutating=True,
    ),
)


def _dead_letters_of(figures: QueueFigures, verb: str) -> int:
    queue = figures.queue
    if figures.is_topic:
        raise Unavailable(
            f"Topic {figures.name} holds no messages of its own: its bound queues do."
        )
    if not queue.dlq_enabled or not queue.dead_letter_queue:
        raise Unavailable(f"Queue {figures.name} has no dead-letter queue: nothing to {verb}.")
    if not figures.dead_letters:
        raise Unavailable(f"Queue {figures.name} has no dead letters to {verb}.")
    return figures.dead_letters


def _affected(asked: int, verb: str, name: str) -> Callable[[object], Outcome]:
    """Says how many the engine moved, and why that differs from the count confirmed."""

    def report(result: object) -> Outcome:
        assert isinstance(result, DeadLetterActionResponse)
        done = f"{verb} {plural(result.affected, 'dead letter')} of queue {name}"
        if result.affected > asked:
            return Outcome(f"{done} ({result.affected - asked} more arrived since)")
        if result.affected < asked:
            return Outcome(
                f"{done}: {asked - result.affected} of {asked} were gone already", "warning"
            )
        return Outcome(done)

    return report


def redrive_mutation(figures: QueueFigures, bus: BusSource) -> Mutation:
    dead = _dead_letters_of(figures, "redrive")
    name = figures.name

    async def redrive(actor: str, reason: str) -> DeadLetterActionResponse:
        return await bus.redrive(name, {"reason": reason}, actor=actor)

    return Mutation(
        title="Redrive dead letters",
        question=f"Redrive {plural(dead, 'dead letter')} of queue {name}?",
        consequence=(
            f"{'It goes' if dead == 1 else f'All {dead} go'} back from "
            f"{figures.queue.dead_letter_queue} to {name} with the retry count reset, to be "
            "delivered again. A message redriven twice is delivered once more, not twice."
        ),
        verb="Redrive",
        perform=redrive,
        done=f"Redrove the dead letters of queue {name}",
        report=_affected(dead, "Redrove", name),
    )


def purge_mutation(figures: QueueFigures, bus: BusSource) -> Mutation:
    dead = _dead_letters_of(figures, "purge")
    name = figures.name

    def typed_name(typed: str) -> str:
        if typed.strip() != name:
            raise ValueError(f"type the queue's name, {name}, to purge")
        return name

    confirm_name = ExtraField(
        label=f"Type the queue's name ({name}) to purge:",
        placeholder="the queue's name",
        parse=typed_name,
    )

    async def purge(actor: str, reason: str) -> DeadLetterActionResponse:
        return await bus.purge_dead_letters(name, {"reason": reason}, actor=actor)

    return Mutation(
        title="Purge dead letters",
        question=f"Purge {plural(dead, 'dead letter')} of queue {name}?",
        consequence=(
            f"{'It is' if dead == 1 else 'They are'} deleted from "
            f"{figures.queue.dead_letter_queue} for good and cannot be redriven; the "
            "message log keeps that they were purged, by whom and why."
        ),
        verb="Purge",
        perform=purge,
        done=f"Purged the dead letters of queue {name}",
        report=_affected(dead, "Purged", name),
        extra=confirm_name,
    )
