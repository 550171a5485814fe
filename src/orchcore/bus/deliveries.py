"""What this process handed to consumers, kept until they answer.

An ack's log record needs the message's facts (type, correlation id, producer, when it
was produced and delivered, how often it was read). Reading them back in the ack's
DELETE ... RETURNING (jsonb fields, headers as text) made an ack measurably dearer than
PGMQ's own delete, so the receive that handed the message out remembers them, and an
ack of a message received here is ``pgmq.delete`` alone. An ack of a message this
process did not hand out (another daemon's consumer acking over the API, an entry
evicted under a flood) takes the statement that returns the facts, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchcore.bus import envelope

#: Deliveries remembered at most: past it the oldest are forgotten (their ack is then
#: one statement dearer, nothing else). A few MB at most.
MAX_REMEMBERED = 20_000


@dataclass(frozen=True, slots=True)
class Delivery:
    read_ct: int
    enqueued_at: datetime
    last_read_at: datetime | None
    message_type: str
    correlation_id: str | None
    producer: str | None
    #: as the log takes them: a dict, or JSON text (orch_bus_ack reads them back as text)
    headers: dict[str, str] | str

    @classmethod
    def of_row(cls, row: Any, opened: envelope.Envelope, headers: dict[str, str]) -> Delivery:
        return cls(
            read_ct=int(row["read_ct"]),
            enqueued_at=row["enqueued_at"],
            last_read_at=row["last_read_at"],
            message_type=opened.message_type,
            correlation_id=opened.correlation_id,
            producer=opened.producer,
            headers=headers,
        )

    @classmethod
    def of_ack(cls, row: Any) -> Delivery:
        """The facts orch_bus_ack reads back, for a message not handed out here."""
        return cls(
            read_ct=int(row["read_ct"]),
            enqueued_at=row["enqueued_at"],
            last_read_at=row["last_read_at"],
            message_type=row["message_type"],
            correlation_id=row["correlation_id"],
            producer=row["producer"],
            headers=row["headers_json"],
        )


class Deliveries:
    """(queue, msg_id) → the facts of its latest delivery here, oldest forgotten first."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._held: OrderedDict[tuple[str, int], Delivery] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def remember(self, queue_name: str, msg_id: int, delivery: Delivery) -> None:
        key = (queue_name, msg_id)
        self._held.pop(key, None)  # a redelivery replaces the facts of the one before
        self._held[key] = delivery
        while len(self._held) > self._limit:
            self._held.popitem(last=False)

    def take(self, queue_name: str, msg_ids: Iterable[int]) -> dict[int, Delivery]:
        """The deliveries known of these ids, forgotten as they are answered."""
        taken: dict[int, Delivery] = {}
        for msg_id in msg_ids:
            delivery = self._held.pop((queue_name, msg_id), None)
            if delivery is not None:
                taken[msg_id] = delivery
        return taken

    def take_one(self, queue_name: str, msg_id: int) -> Delivery | None:
        return self._held.pop((queue_name, msg_id), None)

    def forget(self, queue_name: str, msg_id: int) -> None:
        self.take_one(queue_name, msg_id)
