"""PGMQ's statements prepared per queue (orchcore.bus.direct) and the per-session notify
throttle (migration 0014), on real PostgreSQL.

The receive no longer goes through orch_bus_receive: a read that finds a message past
its TTL, over its delivery limit, or with a stamp only the database can judge must
still set it aside (or deliver it) exactly as the function did.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from orchcore import Orch
from orchcore.bus import direct
from orchcore.db.pool import connect

ACTOR = "test"
CHANNEL = "pgmq.q_bookings.INSERT"


async def make_queue(orch: Orch, **overrides: object) -> None:
    await orch.bus.create_queue({"queue_name": "bookings", **overrides}, actor=ACTOR)


async def raw_send(orch: Orch, headers: dict[str, object] | None = None) -> int:
    """A message as a foreign PGMQ client writes one, with the headers given."""
    msg_id: int = await orch.db.fetchval(
        "SELECT pgmq.send('bookings', $1::text::jsonb, $2::text::jsonb)",
        json.dumps({"type": "booking.confirmed", "payload": {"n": 1}}),
        json.dumps(headers) if headers is not None else None,
    )
    return msg_id


def test_queue_table_is_pgmqs_name_quoted() -> None:
    assert direct.queue_table("bookings") == 'pgmq."q_bookings"'
    assert direct.queue_table('Odd"Name') == 'pgmq."q_odd""name"'  # as format_table_name


def test_only_the_database_judges_a_stamp_python_cannot_read() -> None:
    read_at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def row(stamp: object, read_ct: int = 1) -> dict[str, object]:
        return {
            "read_ct": read_ct,
            "headers": {"x-orch-expires-at": stamp},
            "last_read_at": read_at,
        }

    due = direct.maybe_due_for_setting_aside
    assert not due(row((read_at + timedelta(seconds=1)).isoformat()), 3)
    assert due(row((read_at - timedelta(seconds=1)).isoformat()), 3)
    assert due(row("2026-12-06T11:00:00"), 3)  # no zone: the session's, the database's call
    assert due(row("not a time"), 3)
    assert due(row(20261206), 3)
    assert due(row("2999-01-01T00:00:00Z", read_ct=4), 3)  # over the limit
    assert not due({"read_ct": 1, "headers": None, "last_read_at": read_at}, 3)


async def test_a_stamp_the_database_cannot_read_is_delivered_not_lost(orch: Orch) -> None:
    await make_queue(orch)
    msg_id = await raw_send(orch, {"x-orch-expires-at": "whenever"})
    got = await orch.bus.receive("bookings", {"max_messages": 5}, consumer=None)
    assert [m.message_id for m in got.messages] == [str(msg_id)]


async def test_a_read_goes_on_past_what_it_sets_aside(orch: Orch) -> None:
    await make_queue(orch)
    expired = [
        await raw_send(orch, {"x-orch-expires-at": "2000-01-01T00:00:00Z"}) for _ in range(3)
    ]
    live = [await raw_send(orch) for _ in range(2)]
    got = await orch.bus.receive("bookings", {"max_messages": 2}, consumer=None)
    assert [m.message_id for m in got.messages] == [str(i) for i in live]  # oldest live first
    archived = await orch.db.fetch("SELECT msg_id FROM pgmq.a_bookings ORDER BY msg_id")
    assert [r["msg_id"] for r in archived] == expired
    await orch.bus.flush_logs()
    statuses = await orch.db.fetch(
        "SELECT message_id, status FROM message_logs WHERE queue_name = 'bookings'"
    )
    assert {r["message_id"]: r["status"] for r in statuses} == {str(i): "expired" for i in expired}


async def test_a_message_over_its_limit_is_buried_by_the_read(orch: Orch) -> None:
    await make_queue(orch, dlq_max_retries=1)  # two deliveries
    msg_id = await raw_send(orch)
    for _ in range(2):
        got = await orch.bus.receive(
            "bookings", {"max_messages": 1, "visibility_timeout_seconds": 1}, consumer=None
        )
        assert [m.message_id for m in got.messages] == [str(msg_id)]
        await orch.db.execute("UPDATE pgmq.q_bookings SET vt = clock_timestamp()")
    third = await orch.bus.receive("bookings", {"max_messages": 1}, consumer=None)
    assert third.messages == []
    dead = await orch.bus.dead_letters("bookings")
    assert [(d.original_message_id, d.attempts) for d in dead] == [(str(msg_id), 2)]


async def test_a_queue_recreated_under_its_name_is_read_again(orch: Orch) -> None:
    """asyncpg keeps the prepared read; PostgreSQL re-plans it for the new table."""
    await make_queue(orch)
    await raw_send(orch)
    assert len((await orch.bus.receive("bookings", {}, consumer=None)).messages) == 1
    await orch.db.execute("SELECT pgmq.drop_queue('bookings')")
    await orch.db.execute("SELECT pgmq.create('bookings')")
    msg_id = await raw_send(orch)
    got = await orch.bus.receive("bookings", {}, consumer=None)
    assert [m.message_id for m in got.messages] == [str(msg_id)]


# -- the notify throttle, per session ---------------------------------------------------------


async def listen(dsn: str) -> tuple[asyncpg.Connection, asyncio.Queue[str]]:
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await connect(dsn)
    await conn.add_listener(CHANNEL, lambda _c, _p, channel, _payload: heard.put_nowait(channel))
    return conn, heard


async def drained(heard: asyncio.Queue[str], wait: float) -> int:
    """How many notifications arrive within ``wait`` seconds (a bounded collection
    window: the throttle's claim is about what does not arrive)."""
    count = 0
    deadline = asyncio.get_running_loop().time() + wait
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            await asyncio.wait_for(heard.get(), left)
        except TimeoutError:
            break
        count += 1
    return count


async def replace_trigger(orch: Orch, arguments: str) -> None:
    """The queue's insert trigger again, with ``arguments`` (SQL literals) for it."""
    await orch.db.execute("DROP TRIGGER orch_notify_insert ON pgmq.q_bookings")
    await orch.db.execute(
        "CREATE TRIGGER orch_notify_insert AFTER INSERT ON pgmq.q_bookings "
        f"FOR EACH STATEMENT EXECUTE FUNCTION orch_bus_notify_insert({arguments})"
    )


async def test_one_session_notifies_once_an_interval(orch: Orch, dsn: str) -> None:
    await make_queue(orch)
    # a minute's throttle for this test's trigger, to count without racing the clock
    await replace_trigger(orch, "'60000'")
    listener, heard = await listen(dsn)
    producer = await connect(dsn)
    other = await connect(dsn)
    try:
        send = "SELECT pgmq.send('bookings', '{\"n\": 1}'::jsonb)"
        for _ in range(5):
            await producer.execute(send)
        await other.execute(send)
        assert await drained(heard, 0.5) == 2  # one for each producing session
        throttled = await orch.db.fetchval("SELECT count(*) FROM pgmq.notify_insert_throttle")
        assert throttled == 1  # PGMQ's list still names the queue
    finally:
        for conn in (listener, producer, other):
            await conn.close()


async def test_a_trigger_made_before_the_throttle_argument_keeps_10_ms(
    orch: Orch, dsn: str
) -> None:
    await make_queue(orch)
    await replace_trigger(orch, "")  # as migration 0007 made it
    listener, heard = await listen(dsn)
    producer = await connect(dsn)
    try:
        await producer.execute("SELECT pgmq.send('bookings', '{}'::jsonb)")
        assert await drained(heard, 0.3) == 1
        # 10 ms later (the database's clock, not a sleep here) the same session notifies again
        await producer.execute("SELECT pg_sleep(0.02)")
        await producer.execute("SELECT pgmq.send('bookings', '{}'::jsonb)")
        assert await drained(heard, 0.3) == 1
    finally:
        await listener.close()
        await producer.close()


@pytest.mark.parametrize("ttl", [None, 60])
async def test_batches_with_and_without_ttl_keep_their_order(orch: Orch, ttl: int | None) -> None:
    await make_queue(orch)
    sent = await orch.bus.send_batch(
        "bookings",
        [
            {"message_type": "booking.confirmed", "message_payload": {"n": n}, "ttl_seconds": ttl}
            for n in range(20)
        ],
        producer=None,
        actor=ACTOR,
    )
    rows = await orch.db.fetch("SELECT msg_id, message, headers FROM pgmq.q_bookings")
    by_id = {str(r["msg_id"]): r for r in rows}
    assert [by_id[s.message_id]["message"]["payload"]["n"] for s in sent] == list(range(20))
    stamped = [(by_id[s.message_id]["headers"] or {}).get("x-orch-expires-at") for s in sent]
    assert all(stamped) if ttl else not any(stamped)
