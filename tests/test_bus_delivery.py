"""At-least-once delivery on PGMQ: visibility timeouts, dead letters, TTL, delay, topics.

PGMQ's visibility timeouts run on the database's clock, so these tests use timeouts of
one second and poll with a deadline for what comes back; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchcore import ConflictError, Orch, ValidationFailed
from orchcore.audit import recent_actions
from orchcore.bus import ReceivedMessage
from tests.support.polling import eventually

ACTOR = "test"


async def make_queue(orch: Orch, name: str = "bookings", **overrides: Any) -> None:
    await orch.bus.create_queue(
        {
            "queue_name": name,
            "producer_services": ["booking"],
            "consumer_services": ["notification"],
            **overrides,
        },
        actor=ACTOR,
    )


async def send(orch: Orch, queue: str = "bookings", n: int = 0, **fields: Any) -> str:
    sent = await orch.bus.send(
        {
            "queue_name": queue,
            "message_type": "booking.confirmed",
            "message_payload": {"n": n},
            **fields,
        },
        producer=None,
        actor=ACTOR,
    )
    return sent.message_id


async def receive(
    orch: Orch, queue: str = "bookings", *, vt: int = 30, n: int = 10, wait: float = 0
) -> list[ReceivedMessage]:
    got = await orch.bus.receive(
        queue,
        {"max_messages": n, "visibility_timeout_seconds": vt, "wait_seconds": wait},
        consumer="notification",
    )
    return got.messages


async def receive_eventually(orch: Orch, queue: str = "bookings", **kw: Any) -> ReceivedMessage:
    async def probe() -> list[ReceivedMessage]:
        return await receive(orch, queue, **kw)

    messages = await eventually(probe, timeout=10, message="no message came back")
    assert len(messages) == 1
    return messages[0]


async def test_unacked_message_comes_back_after_its_visibility_timeout(orch: Orch) -> None:
    await make_queue(orch)
    msg_id = await send(orch)
    [first] = await receive(orch, vt=1)
    assert (first.message_id, first.retry_count) == (msg_id, 0)
    again = await receive_eventually(orch, vt=1)
    assert (again.message_id, again.retry_count) == (msg_id, 1)
    read_ct = await orch.db.fetchval("SELECT read_ct FROM pgmq.q_bookings")
    assert read_ct == 2


async def test_messages_come_oldest_first(orch: Orch) -> None:
    await make_queue(orch)
    ids = [await send(orch, n=n) for n in range(5)]
    got = await receive(orch, n=3) + await receive(orch, n=3)
    assert [m.message_id for m in got] == ids


async def test_dead_lettered_after_exactly_its_retries_by_nack(orch: Orch) -> None:
    await make_queue(orch, dlq_max_retries=2)
    msg_id = await send(orch, correlation_id="wed-9")
    outcomes = []
    for attempt in range(3):
        [got] = await receive(orch)
        assert got.retry_count == attempt
        outcomes.append(
            await orch.bus.nack(
                "bookings", got.message_id, {"error_message": f"boom {attempt}"},
                consumer="notification",
            )
        )  # fmt: skip
    assert outcomes == ["retry", "retry", "dead_lettered"]
    assert await receive(orch) == []
    [dead] = await orch.bus.dead_letters("bookings")
    assert dead.original_queue == "bookings" and dead.original_message_id == msg_id
    assert (dead.attempts, dead.last_error) == (3, "boom 2")
    assert dead.message_payload == {"n": 0} and dead.correlation_id == "wed-9"
    logged = await orch.db.fetchrow("SELECT status, error_message, retry_count FROM message_logs")
    assert dict(logged) == {"status": "dead_lettered", "error_message": "boom 2", "retry_count": 2}
    metrics = await orch.bus.metrics("bookings")
    assert (metrics.total_messages, metrics.failed_messages) == (0, 1)


async def test_dead_lettered_after_exactly_its_retries_by_timeouts(orch: Orch) -> None:
    await make_queue(orch, dlq_max_retries=1)
    msg_id = await send(orch)
    [first] = await receive(orch, vt=1)
    second = await receive_eventually(orch, vt=1)
    assert (first.retry_count, second.retry_count) == (0, 1)

    async def buried() -> bool:
        assert await receive(orch, vt=1) == []  # never a third delivery
        return bool(await orch.bus.dead_letters("bookings"))

    await eventually(buried, timeout=10, message="never dead-lettered")
    [dead] = await orch.bus.dead_letters("bookings")
    assert (dead.original_message_id, dead.attempts) == (msg_id, 2)
    assert dead.last_error == "no ack within the visibility timeout"


async def test_the_last_error_is_that_of_the_last_delivery(orch: Orch) -> None:
    await make_queue(orch, dlq_max_retries=1)
    await send(orch)
    [got] = await receive(orch, vt=1)
    await orch.bus.nack("bookings", got.message_id, {"error_message": "boom"}, consumer=None)
    again = await receive_eventually(orch, vt=1)
    assert again.headers["x-orch-last-error"] == "boom"  # the next consumer sees why

    async def buried() -> bool:
        await receive(orch, vt=1)
        return bool(await orch.bus.dead_letters("bookings"))

    await eventually(buried, timeout=10)
    [dead] = await orch.bus.dead_letters("bookings")
    assert dead.last_error == "no ack within the visibility timeout"  # not the stale "boom"


async def test_without_a_dead_letter_queue_exhausted_messages_are_archived_failed(
    orch: Orch,
) -> None:
    await make_queue(orch, dlq_enabled=False, dlq_max_retries=0)
    await send(orch)
    [got] = await receive(orch)
    outcome = await orch.bus.nack("bookings", got.message_id, {"error_message": "x"}, consumer=None)
    assert outcome == "failed"
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.a_bookings") == 1
    assert await orch.db.fetchval("SELECT status FROM message_logs") == "failed"


async def test_a_push_answered_4xx_dead_letters_at_once(orch: Orch) -> None:
    await make_queue(orch, dlq_max_retries=5)
    msg_id = await send(orch)
    [got] = await receive(orch)
    dead_id = await orch.bus.dead_letter(
        "bookings", got.message_id, error="HTTP 422: unknown booking", consumer="notification"
    )
    assert dead_id is not None
    [dead] = await orch.bus.dead_letters("bookings")
    assert (dead.message_id, dead.original_message_id) == (dead_id, msg_id)
    assert (dead.attempts, dead.last_error) == (1, "HTTP 422: unknown booking")


async def test_nack_with_a_delay_and_extend(orch: Orch) -> None:
    await make_queue(orch)
    await send(orch)
    [got] = await receive(orch, vt=1)
    await orch.bus.extend(
        "bookings", got.message_id, {"visibility_timeout_seconds": 600}, consumer=None
    )
    hidden_for = await orch.db.fetchval(
        "SELECT extract(epoch FROM vt - now()) FROM pgmq.q_bookings"
    )
    assert hidden_for > 500
    await orch.bus.nack("bookings", got.message_id, {"delay_seconds": 0}, consumer=None)
    [again] = await receive(orch)
    assert again.retry_count == 1
    await orch.bus.nack("bookings", again.message_id, {"delay_seconds": 600}, consumer=None)
    assert await receive(orch) == []
    metrics = await orch.bus.metrics("bookings")
    assert (metrics.processing_messages, metrics.pending_messages) == (1, 0)


async def test_a_message_past_its_ttl_is_never_delivered(orch: Orch) -> None:
    await make_queue(orch)
    short = await send(orch, n=1, ttl_seconds=1)
    long = await send(orch, n=2, ttl_seconds=3600)
    expires = await orch.db.fetchval(
        "SELECT headers->>'x-orch-expires-at' FROM pgmq.q_bookings WHERE msg_id = $1", int(short)
    )
    assert expires.endswith("Z")
    await eventually(
        lambda: orch.db.fetchval("SELECT now() > $1::text::timestamptz", expires), timeout=5
    )
    got = await receive(orch)
    assert [m.message_id for m in got] == [long]
    assert got[0].headers["x-orch-expires-at"].endswith("Z")
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.a_bookings") == 1
    row = await orch.db.fetchrow(
        "SELECT status, message_payload FROM message_logs WHERE message_id = $1", short
    )
    assert (row["status"], row["message_payload"]) == ("expired", {"n": 1})
    assert await orch.db.fetchval("SELECT expired FROM bus_queue_totals") == 1


async def test_retention_expires_messages_nobody_asked_for(orch: Orch) -> None:
    await make_queue(orch)
    await send(orch, ttl_seconds=1)
    expires = await orch.db.fetchval("SELECT headers->>'x-orch-expires-at' FROM pgmq.q_bookings")
    await eventually(
        lambda: orch.db.fetchval("SELECT now() > $1::text::timestamptz", expires), timeout=5
    )
    assert await orch.bus.enforce_retention() == 1
    assert (await orch.bus.metrics("bookings")).total_messages == 0
    assert await orch.db.fetchval("SELECT expired FROM bus_queue_totals") == 1


async def test_a_ttl_shorter_than_the_delay_is_refused(orch: Orch) -> None:
    await make_queue(orch)
    with pytest.raises(ValidationFailed, match="expire before delivery"):
        await send(orch, delay_seconds=10, ttl_seconds=5)


async def test_a_delayed_message_waits_for_its_delay(orch: Orch) -> None:
    await make_queue(orch)
    sent = await orch.bus.send(
        {
            "queue_name": "bookings",
            "message_type": "reminder",
            "message_payload": {},
            "delay_seconds": 1,
        },
        producer="booking",
        actor=ACTOR,
    )
    assert sent.status == "delayed"
    assert await receive(orch) == []
    assert (await orch.bus.metrics("bookings")).delayed_messages == 1
    got = await receive_eventually(orch)
    assert got.message_id == sent.message_id and got.retry_count == 0


async def test_a_batch_sends_in_order_with_each_ones_delay_and_ttl(orch: Orch) -> None:
    await make_queue(orch)
    sent = await orch.bus.send_batch(
        "bookings",
        [
            {"message_type": "a", "message_payload": {"i": 0}},
            {"message_type": "b", "message_payload": {"i": 1}, "delay_seconds": 600},
            {"message_type": "c", "message_payload": {"i": 2}, "ttl_seconds": 600},
        ],
        producer="booking",
        actor=ACTOR,
    )
    assert [s.status for s in sent] == ["queued", "delayed", "queued"]
    got = await receive(orch)
    assert [m.message_type for m in got] == ["a", "c"]
    assert [m.message_id for m in got] == [sent[0].message_id, sent[2].message_id]
    assert "x-orch-expires-at" in got[1].headers and "x-orch-expires-at" not in got[0].headers
    with pytest.raises(ValidationFailed, match=r"messages\.0\.queue_name"):
        await orch.bus.send_batch(
            "bookings",
            [{"queue_name": "other", "message_type": "a", "message_payload": {}}],
            producer=None,
            actor=ACTOR,
        )


async def test_a_topic_fans_out_to_every_queue_whose_pattern_matches(orch: Orch) -> None:
    await make_queue(orch, "emails", message_pattern="booking.*")
    await make_queue(orch, "audit", message_pattern="#")
    await make_queue(orch, "payments", message_pattern="payment.*")
    await make_queue(orch, "unbound")
    await orch.bus.create_queue(
        {"queue_name": "events", "queue_type": "topic", "producer_services": ["booking"]},
        actor=ACTOR,
    )
    sent = await orch.bus.send(
        {"queue_name": "events", "message_type": "booking.confirmed", "message_payload": {"b": 1}},
        producer="booking",
        actor=ACTOR,
    )
    assert sent.fanned_out_to == ["audit", "emails"] and sent.status == "queued"
    assert sent.message_id == sent.fanned_out_ids["audit"]
    [email] = await receive(orch, "emails")
    [audit] = await receive(orch, "audit")
    assert email.message_payload == audit.message_payload == {"b": 1}
    assert email.message_id == sent.fanned_out_ids["emails"]
    assert await receive(orch, "payments") == [] and await receive(orch, "unbound") == []

    batch = await orch.bus.send_batch(
        "events",
        [
            {"message_type": "payment.failed", "message_payload": {"p": 1}},
            {"message_type": "booking.cancelled", "message_payload": {"b": 2}},
        ],
        producer="booking",
        actor=ACTOR,
    )
    assert [b.fanned_out_to for b in batch] == [["audit", "payments"], ["audit", "emails"]]
    assert [m.message_payload for m in await receive(orch, "audit")] == [{"p": 1}, {"b": 2}]

    # a deactivated queue is unbound; a changed pattern is rebound
    await orch.bus.deactivate_queue("emails", actor=ACTOR, reason="migrating")
    await orch.bus.update_queue("payments", {"message_pattern": "booking.#"}, actor=ACTOR)
    again = await orch.bus.send(
        {"queue_name": "events", "message_type": "booking.paid", "message_payload": {}},
        producer="booking",
        actor=ACTOR,
    )
    assert again.fanned_out_to == ["audit", "payments"]
    nowhere = await orch.bus.send(
        {"queue_name": "events", "message_type": "x", "message_payload": {}},
        producer=None,
        actor=ACTOR,
    )
    assert nowhere.fanned_out_to == ["audit"]


async def test_a_topic_with_a_pattern_takes_only_matching_types(orch: Orch) -> None:
    await orch.bus.create_queue(
        {"queue_name": "events", "queue_type": "topic", "message_pattern": "booking.#"},
        actor=ACTOR,
    )
    nothing = await orch.bus.send(
        {"queue_name": "events", "message_type": "booking.x", "message_payload": {}},
        producer=None,
        actor=ACTOR,
    )
    assert (nothing.status, nothing.fanned_out_to, nothing.message_id) == ("failed", [], "")
    with pytest.raises(ValidationFailed, match=r"takes 'booking\.#' only"):
        await orch.bus.send(
            {"queue_name": "events", "message_type": "payment.x", "message_payload": {}},
            producer=None,
            actor=ACTOR,
        )
    with pytest.raises(ValidationFailed, match="routing key"):
        await orch.bus.send(
            {"queue_name": "events", "message_type": "booking x", "message_payload": {}},
            producer=None,
            actor=ACTOR,
        )


async def test_redrive_is_idempotent_and_audited(orch: Orch) -> None:
    await make_queue(orch, dlq_max_retries=0)
    original = await send(orch, correlation_id="wed-3", headers={"h": "v"})
    [got] = await receive(orch)
    await orch.bus.nack("bookings", got.message_id, {"error_message": "boom"}, consumer=None)
    [dead] = await orch.bus.dead_letters("bookings")

    first = await orch.bus.redrive(
        "bookings", {"message_ids": [dead.message_id], "reason": "fixed the bug"}, actor="alice"
    )
    second = await orch.bus.redrive(
        "bookings", {"message_ids": [dead.message_id], "reason": "again"}, actor="alice"
    )
    assert (first.affected, first.message_ids) == (1, [dead.message_id])
    assert (second.affected, second.message_ids) == (0, [])
    [back] = await receive(orch)
    assert back.message_id == first.redriven_to[dead.message_id] != original
    assert back.retry_count == 0 and back.correlation_id == "wed-3"
    assert back.headers == {"h": "v", "x-orch-redriven-from": original}
    assert await receive(orch) == []  # delivered once more, not twice
    assert await orch.bus.dead_letters("bookings") == []
    audit = await recent_actions(orch.db.pool, target_kind="message_queue", target_id="bookings")
    redrives = [a for a in audit if a.action == "dead_letters.redrive"]
    assert {(a.actor, a.reason) for a in redrives} == {
        ("alice", "fixed the bug"),
        ("alice", "again"),
    }
    listing = {m.message_id: m.status for m in (await orch.bus.queue_messages("bookings")).messages}
    assert listing == {original: "redriven", back.message_id: "delivered"}


async def test_redrive_all_and_purge_are_audited(orch: Orch) -> None:
    await make_queue(orch, dlq_max_retries=0)
    for n in range(3):
        await send(orch, n=n)
    for got in await receive(orch):
        await orch.bus.dead_letter("bookings", got.message_id, error="bad", consumer=None)
    assert len(await orch.bus.dead_letters("bookings")) == 3
    redriven = await orch.bus.redrive("bookings", {"reason": "all of them"}, actor="bob")
    assert redriven.affected == 3
    for got in await receive(orch):
        await orch.bus.dead_letter("bookings", got.message_id, error="bad", consumer=None)
    purged = await orch.bus.purge_dead_letters("bookings", {"reason": "junk"}, actor="carol")
    assert purged.affected == 3 and await orch.bus.dead_letters("bookings") == []
    audit = await recent_actions(orch.db.pool, target_kind="message_queue", target_id="bookings")
    assert ("carol", "dead_letters.purge", "junk") in {(a.actor, a.action, a.reason) for a in audit}
    assert await orch.db.fetchval("SELECT purged FROM bus_queue_totals") == 3

    await send(orch)
    cleared = await orch.bus.purge_queue("bookings", actor="dave", reason="test data")
    assert cleared.affected == 1 and (await orch.bus.metrics("bookings")).total_messages == 0
    with pytest.raises(ValidationFailed):
        await orch.bus.redrive("bookings", {"reason": ""}, actor="bob")


async def test_no_dead_letter_actions_on_a_queue_without_them(orch: Orch) -> None:
    await make_queue(orch, dlq_enabled=False)
    with pytest.raises(ConflictError, match="no dead-letter queue"):
        await orch.bus.dead_letters("bookings")


async def test_concurrent_consumers_never_hold_one_message_at_once(orch: Orch) -> None:
    await make_queue(orch)
    total = 300
    await orch.bus.send_batch(
        "bookings",
        [{"message_type": "t", "message_payload": {"n": n}} for n in range(total)],
        producer=None,
        actor=ACTOR,
    )
    held: set[str] = set()
    seen: list[str] = []
    overlaps: list[str] = []

    async def consumer() -> None:
        while True:
            got = await receive(orch, n=7, vt=30)
            if not got:
                return
            for m in got:
                if m.message_id in held:
                    overlaps.append(m.message_id)
                held.add(m.message_id)
                seen.append(m.message_id)
            await asyncio.sleep(0)  # let the others read while these are held
            for m in got:
                held.discard(m.message_id)
                await orch.bus.ack("bookings", m.message_id, consumer="notification")

    await asyncio.gather(*(consumer() for _ in range(6)))
    assert overlaps == []
    assert len(seen) == len(set(seen)) == total


async def test_a_waiting_consumer_is_woken_by_the_insert_not_the_safety_net(orch: Orch) -> None:
    await make_queue(orch)
    orch.bus.wakeups.safety_seconds = 120  # only a notification can wake it in time
    waiting = asyncio.create_task(receive(orch, wait=60))
    await eventually(lambda: orch.bus.wakeups.is_listening("bookings"), timeout=5)
    msg_id = await send(orch)
    got = await asyncio.wait_for(waiting, timeout=10)
    assert [m.message_id for m in got] == [msg_id]


async def test_a_waiting_consumer_wakes_when_a_visibility_timeout_runs_out(orch: Orch) -> None:
    await make_queue(orch)
    orch.bus.wakeups.safety_seconds = 120
    msg_id = await send(orch)
    await receive(orch, vt=1)  # in flight for a second; nothing is inserted after
    got = await asyncio.wait_for(receive(orch, wait=60), timeout=10)
    assert [(m.message_id, m.retry_count) for m in got] == [(msg_id, 1)]


async def test_a_long_poll_with_nothing_to_get_ends_at_its_deadline(orch: Orch) -> None:
    await make_queue(orch)
    assert await asyncio.wait_for(receive(orch, wait=0.3), timeout=5) == []
