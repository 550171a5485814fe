"""A PGMQ client in another language, as raw SQL: the contract of docs/BUS.md.

The client here is a bare asyncpg connection with none of orch's codecs, calling PGMQ's
functions with JSON text, as a Go or Node service's PGMQ library does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchcore import Orch
from orchcore.bus.envelope import FOREIGN_TYPE

ACTOR = "test"


@pytest.fixture
async def raw(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()


async def setup_queue(orch: Orch) -> None:
    await orch.bus.create_queue(
        {
            "queue_name": "bookings",
            "producer_services": ["booking"],
            "consumer_services": ["notification"],
            "dlq_max_retries": 1,
        },
        actor=ACTOR,
    )


async def test_a_foreign_producer_sends_and_orch_consumes(
    orch: Orch, raw: asyncpg.Connection
) -> None:
    await setup_queue(orch)
    message = {
        "type": "booking.confirmed",
        "payload": {"booking_id": "b-7"},
        "correlation_id": "wed-7",
        "producer": "booking",
    }
    msg_id = await raw.fetchval(
        "SELECT * FROM pgmq.send($1, $2::jsonb, $3::jsonb)",
        "bookings",
        json.dumps(message),
        json.dumps({"traceparent": "00-1-2-01", "x-orch-expires-at": "2999-01-01T00:00:00Z"}),
    )
    [got] = (await orch.bus.receive("bookings", {}, consumer="notification")).messages
    assert got.message_id == str(msg_id)
    assert (got.message_type, got.message_payload) == ("booking.confirmed", {"booking_id": "b-7"})
    assert got.correlation_id == "wed-7" and got.headers["traceparent"] == "00-1-2-01"
    await orch.bus.ack("bookings", got.message_id, consumer="notification")
    await orch.bus.flush_logs()
    row = await orch.db.fetchrow("SELECT status, producer_service FROM message_logs")
    assert dict(row) == {"status": "acked", "producer_service": "booking"}


async def test_a_foreign_ttl_is_kept_by_orch(orch: Orch, raw: asyncpg.Connection) -> None:
    await setup_queue(orch)
    await raw.execute(
        "SELECT pgmq.send('bookings', $1::jsonb, $2::jsonb)",
        json.dumps({"type": "t", "payload": {}}),
        json.dumps({"x-orch-expires-at": "2000-01-01T00:00:00Z"}),
    )
    assert (await orch.bus.receive("bookings", {}, consumer=None)).messages == []
    assert await orch.db.fetchval("SELECT expired FROM bus_queue_totals") == 1


async def test_a_message_not_in_orchs_shape_is_carried_whole(
    orch: Orch, raw: asyncpg.Connection
) -> None:
    await setup_queue(orch)
    await raw.execute("SELECT pgmq.send('bookings', $1::jsonb)", json.dumps({"legacy": True}))
    await raw.execute("SELECT pgmq.send('bookings', $1::jsonb)", json.dumps([1, 2]))
    got = (await orch.bus.receive("bookings", {"max_messages": 5}, consumer=None)).messages
    assert [(m.message_type, m.message_payload) for m in got] == [
        (FOREIGN_TYPE, {"legacy": True}),
        (FOREIGN_TYPE, {"value": [1, 2]}),
    ]


async def test_orch_produces_and_a_foreign_consumer_reads_and_deletes(
    orch: Orch, raw: asyncpg.Connection
) -> None:
    await setup_queue(orch)
    sent = await orch.bus.send(
        {
            "queue_name": "bookings",
            "message_type": "booking.confirmed",
            "message_payload": {"booking_id": "b-8"},
            "correlation_id": "wed-8",
            "headers": {"traceparent": "00-3-4-01"},
            "ttl_seconds": 3600,
        },
        producer="booking",
        actor=ACTOR,
    )
    [row] = await raw.fetch("SELECT * FROM pgmq.read('bookings', 30, 10)")
    assert str(row["msg_id"]) == sent.message_id and row["read_ct"] == 1
    assert json.loads(row["message"]) == {
        "type": "booking.confirmed",
        "payload": {"booking_id": "b-8"},
        "correlation_id": "wed-8",
        "producer": "booking",
    }
    headers = json.loads(row["headers"])
    assert headers["traceparent"] == "00-3-4-01" and headers["x-orch-expires-at"].endswith("Z")
    assert await raw.fetchval("SELECT pgmq.delete('bookings', $1::bigint)", row["msg_id"])
    assert (await orch.bus.metrics("bookings")).total_messages == 0


async def test_a_foreign_consumer_that_fails_leaves_orchs_dead_letter_rule_to_orch(
    orch: Orch, raw: asyncpg.Connection
) -> None:
    """PGMQ itself has no delivery limit: a raw read twice, then orch's read buries it."""
    await setup_queue(orch)
    sent = await orch.bus.send(
        {"queue_name": "bookings", "message_type": "t", "message_payload": {}},
        producer=None,
        actor=ACTOR,
    )
    for _ in range(2):
        await raw.execute("SELECT * FROM pgmq.read('bookings', 0, 1)")
    assert (await orch.bus.receive("bookings", {}, consumer=None)).messages == []
    [dead] = await orch.bus.dead_letters("bookings")
    assert (dead.original_message_id, dead.attempts) == (sent.message_id, 2)
    # and the dead letters are a PGMQ queue too
    [row] = await raw.fetch("SELECT * FROM pgmq.read('bookings_dlq', 30, 10)")
    assert json.loads(row["headers"])["x-orch-original-queue"] == "bookings"


async def test_foreign_topic_sends_reach_orchs_bound_queues(
    orch: Orch, raw: asyncpg.Connection
) -> None:
    await orch.bus.create_queue(
        {"queue_name": "emails", "message_pattern": "booking.*"}, actor=ACTOR
    )
    matched = await raw.fetchval(
        "SELECT pgmq.send_topic('booking.confirmed', $1::jsonb)",
        json.dumps({"type": "booking.confirmed", "payload": {"b": 1}}),
    )
    assert matched == 1
    [got] = (await orch.bus.receive("emails", {}, consumer=None)).messages
    assert got.message_payload == {"b": 1}
