"""An ack of a message this process handed out is PGMQ's delete alone: the receive kept
the facts its log needs. One received elsewhere is acked with the facts read back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchcore import NotFoundError, Orch, Settings
from orchcore.bus.deliveries import Deliveries, Delivery
from tests.support.clockwork import ManualClock

ACTOR = "test"
QUEUE = {
    "queue_name": "bookings",
    "producer_services": ["booking"],
    "consumer_services": ["notification"],
}
SENT = {
    "queue_name": "bookings",
    "message_type": "booking.confirmed",
    "message_payload": {"booking_id": "b-1"},
    "correlation_id": "wed-1",
    "headers": {"traceparent": "00-abc-def-01"},
}


def delivery(read_ct: int = 1) -> Delivery:
    at = datetime(2026, 6, 20, 14, 0, tzinfo=UTC)
    return Delivery(read_ct, at, at, "booking.confirmed", None, "booking", {})


def test_the_oldest_deliveries_are_forgotten_first() -> None:
    held = Deliveries(limit=2)
    held.remember("q", 1, delivery())
    held.remember("q", 2, delivery())
    held.remember("q", 1, delivery(read_ct=2))  # redelivered: the newest facts, and young again
    held.remember("q", 3, delivery())
    assert len(held) == 2
    taken = held.take("q", [1, 2, 3])
    assert set(taken) == {1, 3} and taken[1].read_ct == 2
    assert len(held) == 0  # taken is forgotten: an ack answers a delivery once
    held.remember("q", 4, delivery())
    held.forget("q", 4)
    assert held.take("q", [4]) == {}


async def logged(orch: Orch, acker: Orch) -> dict[str, object]:
    await acker.bus.flush_logs()  # the log record is the acker's to write
    [row] = (await orch.bus.queue_messages("bookings")).messages
    return row.model_dump()


async def test_an_ack_here_and_an_ack_elsewhere_log_the_same_facts(
    orch: Orch, dsn: str, clock: ManualClock
) -> None:
    await orch.bus.create_queue(QUEUE, actor=ACTOR)
    other = await Orch.open(Settings(database_url=dsn), clock=clock)
    try:
        facts = []
        for acker in (orch, other):
            await orch.bus.send(SENT, producer="booking", actor="svc:booking")
            got = await orch.bus.receive("bookings", {"max_messages": 1}, consumer="notification")
            [message] = got.messages
            # orch received it: its own ack needs no facts back; the other engine's does
            await acker.bus.ack("bookings", message.message_id, consumer="notification")
            facts.append(await logged(orch, acker))
            await orch.db.execute("DELETE FROM message_logs")
    finally:
        await other.close()
    here, elsewhere = facts
    for row in facts:
        assert row["status"] == "acked"
        assert (row["message_type"], row["correlation_id"]) == ("booking.confirmed", "wed-1")
        assert (row["producer_service"], row["consumer_service"]) == ("booking", "notification")
        assert row["headers"] == {"traceparent": "00-abc-def-01"}
        assert row["retry_count"] == 0 and row["processing_time_ms"] is not None
    assert here["message_size_bytes"] == elsewhere["message_size_bytes"] > 0
    # the one acked elsewhere is still remembered here, until the bound pushes it out
    assert len(orch.bus._deliveries) == 1


async def test_a_message_acked_twice_is_not_found_the_second_time(orch: Orch) -> None:
    await orch.bus.create_queue(QUEUE, actor=ACTOR)
    await orch.bus.send(SENT, producer="booking", actor="svc:booking")
    [message] = (await orch.bus.receive("bookings", {"max_messages": 1}, consumer=None)).messages
    assert await orch.bus.ack_batch("bookings", [message.message_id], consumer=None) == [
        message.message_id
    ]
    with pytest.raises(NotFoundError):  # its delivery was answered: nothing to delete now
        await orch.bus.ack("bookings", message.message_id, consumer=None)
