"""The bus's registry and its basic round trip: create, send, receive, ack, on real PGMQ."""

from __future__ import annotations

import pytest

from orchcore import ConflictError, NotFoundError, Orch, PermissionDeniedError, ValidationFailed
from orchcore.audit import recent_actions
from orchcore.bus import MessageBus, QueueType
from orchcore.db.migrate import bundled_pgmq, pgmq_in_use
from orchcore.db.pool import connect
from orchcore.errors import PayloadTooLarge

ACTOR = "test"


def queue(name: str = "bookings", **overrides: object) -> dict[str, object]:
    return {
        "queue_name": name,
        "producer_services": ["booking"],
        "consumer_services": ["notification"],
        **overrides,
    }


async def test_migrations_record_the_pgmq_they_installed(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        installed = await pgmq_in_use(conn)
        assert installed is not None
        assert (installed.version, installed.source) == (bundled_pgmq()[0], "sql")
        assert installed.version == "1.13.0"
        assert await conn.fetchval("SELECT count(*) FROM pgmq.meta") == 0
    finally:
        await conn.close()


async def test_pgmq_is_read_without_importing_its_client() -> None:
    import sys

    version, script = bundled_pgmq()
    assert version == "1.13.0" and "CREATE FUNCTION pgmq.read(" in script
    assert "pgmq" not in sys.modules and "psycopg" not in sys.modules


async def test_create_makes_the_pgmq_queue_and_its_dead_letter_queue(orch: Orch) -> None:
    created = await orch.bus.create_queue(queue(dlq_max_retries=2), actor=ACTOR)
    assert created.queue_name == "bookings" and created.is_active
    assert created.dead_letter_queue == "bookings_dlq"
    assert created.visibility_timeout_seconds == 30
    names = {r["queue_name"] for r in await orch.db.fetch("SELECT queue_name FROM pgmq.meta")}
    assert names == {"bookings", "bookings_dlq"}
    throttles = await orch.db.fetch("SELECT queue_name FROM pgmq.notify_insert_throttle")
    assert [r["queue_name"] for r in throttles] == ["bookings"]
    assert (await orch.bus.get_queue("bookings")).dlq_max_retries == 2
    assert [q.queue_name for q in await orch.bus.list_queues()] == ["bookings"]
    audit = await recent_actions(orch.db.pool, target_kind="message_queue")
    assert [a.action for a in audit] == ["queue.create"]


async def test_without_dead_letters_there_is_no_dlq(orch: Orch) -> None:
    created = await orch.bus.create_queue(queue(dlq_enabled=False), actor=ACTOR)
    assert created.dead_letter_queue is None
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.meta") == 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("orders_dlq", "kept for dead-letter queues"),
        ("Orders", "should match pattern"),
        ("9lives", "should match pattern"),
        ("has-dash", "should match pattern"),
        ("x" * 44, "should match pattern"),
    ],
)
async def test_names_pgmq_or_orch_cannot_take_are_refused(
    orch: Orch, name: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed, match=reason) as caught:
        await orch.bus.create_queue(queue(name), actor=ACTOR)
    assert caught.value.field == "queue_name"


async def test_a_name_is_taken_once(orch: Orch) -> None:
    await orch.bus.create_queue(queue(), actor=ACTOR)
    with pytest.raises(ConflictError, match="already exists"):
        await orch.bus.create_queue(queue(), actor=ACTOR)
    await orch.bus.deactivate_queue("bookings", actor=ACTOR, reason="retired")
    with pytest.raises(ConflictError, match=r"already exists \(inactive\)"):
        await orch.bus.create_queue(queue(), actor=ACTOR)


async def test_a_bad_routing_pattern_is_refused_with_pgmqs_reason(orch: Orch) -> None:
    with pytest.raises(ValidationFailed, match="consecutive dots") as caught:
        await orch.bus.create_queue(queue(message_pattern="booking..x"), actor=ACTOR)
    assert caught.value.field == "message_pattern"
    assert await orch.db.fetchval("SELECT count(*) FROM message_queues") == 0


async def test_send_receive_ack_round_trip(orch: Orch) -> None:
    await orch.bus.create_queue(queue(), actor=ACTOR)
    sent = await orch.bus.send(
        {
            "queue_name": "bookings",
            "message_type": "booking.confirmed",
            "message_payload": {"booking_id": "b-1"},
            "correlation_id": "wed-1",
            "headers": {"traceparent": "00-abc-def-01"},
        },
        producer="booking",
        actor="svc:booking",
    )
    assert sent.status == "queued" and sent.message_id.isdigit()
    got = await orch.bus.receive(
        "bookings", {"max_messages": 5, "visibility_timeout_seconds": 30}, consumer="notification"
    )
    [message] = got.messages
    assert message.message_id == sent.message_id
    assert message.message_type == "booking.confirmed"
    assert message.message_payload == {"booking_id": "b-1"}
    assert message.correlation_id == "wed-1"
    assert message.headers == {"traceparent": "00-abc-def-01"}
    assert message.retry_count == 0
    # in flight: nobody else gets it
    again = await orch.bus.receive("bookings", {"max_messages": 5}, consumer="notification")
    assert again.messages == []
    [live] = (await orch.bus.queue_messages("bookings")).messages
    assert (live.message_id, live.status, live.id) == (sent.message_id, "delivered", "bookings:1")
    await orch.bus.ack("bookings", message.message_id, consumer="notification")
    with pytest.raises(NotFoundError):
        await orch.bus.ack("bookings", message.message_id, consumer="notification")
    await orch.bus.flush_logs()
    listing = await orch.bus.queue_messages("bookings")
    [logged] = listing.messages
    assert (logged.message_id, logged.status) == (sent.message_id, "acked")
    assert logged.producer_service == "booking" and logged.consumer_service == "notification"
    assert logged.processing_time_ms is not None and logged.processing_time_ms >= 0
    assert logged.message_size_bytes == live.message_size_bytes > 0
    assert logged.headers == {"traceparent": "00-abc-def-01"}
    # the happy path is in the columns: produced, delivered, acked; nothing else happened
    row = await orch.db.fetchrow("SELECT * FROM message_logs")
    assert row["produced_at"] <= row["delivered_at"] <= row["consumed_at"]
    assert (row["retry_count"], row["events"]) == (0, [])
    assert listing.queue_metrics.total_messages == 0


async def test_producers_and_consumers_not_listed_are_refused(orch: Orch) -> None:
    await orch.bus.create_queue(queue(), actor=ACTOR)
    message = {"queue_name": "bookings", "message_type": "x", "message_payload": {}}
    with pytest.raises(PermissionDeniedError, match="not a producer"):
        await orch.bus.send(message, producer="payment", actor="svc:payment")
    with pytest.raises(PermissionDeniedError, match="not a consumer"):
        await orch.bus.receive("bookings", {}, consumer="booking")
    # an operator (no service) may do both
    sent = await orch.bus.send(message, producer=None, actor="alice")
    [got] = (await orch.bus.receive("bookings", {}, consumer=None)).messages
    assert got.message_id == sent.message_id
    with pytest.raises(PermissionDeniedError):
        await orch.bus.ack("bookings", got.message_id, consumer="booking")
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.q_bookings") == 1


async def test_unknown_and_inactive_queues_refuse_sends(orch: Orch) -> None:
    message = {"queue_name": "bookings", "message_type": "x", "message_payload": {}}
    with pytest.raises(NotFoundError):
        await orch.bus.send(message, producer=None, actor=ACTOR)
    await orch.bus.create_queue(queue(), actor=ACTOR)
    await orch.bus.send(message, producer=None, actor=ACTOR)
    deactivated = await orch.bus.deactivate_queue("bookings", actor=ACTOR, reason="moving")
    assert not deactivated.is_active
    with pytest.raises(ConflictError, match="inactive"):
        await orch.bus.send(message, producer=None, actor=ACTOR)
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.q_bookings") == 1
    # what was in it can still be drained
    assert len((await orch.bus.receive("bookings", {}, consumer=None)).messages) == 1
    assert [q.queue_name for q in await orch.bus.list_queues()] == []
    assert len(await orch.bus.list_queues(include_inactive=True)) == 1
    await orch.bus.reactivate_queue("bookings", actor=ACTOR, reason="back")
    await orch.bus.send(message, producer=None, actor=ACTOR)


async def test_a_payload_over_the_limit_is_refused_and_nothing_is_stored(orch: Orch) -> None:
    await orch.bus.create_queue(queue(max_message_size=100), actor=ACTOR)
    fits = {"queue_name": "bookings", "message_type": "x", "message_payload": {"a": "x" * 90}}
    await orch.bus.send(fits, producer="booking", actor=ACTOR)
    too_big = {**fits, "message_payload": {"a": "é" * 50}}  # 58 characters, 108 bytes
    with pytest.raises(PayloadTooLarge, match="108 bytes is over the limit") as caught:
        await orch.bus.send(too_big, producer="booking", actor=ACTOR)
    assert caught.value.http_status == 413
    with pytest.raises(PayloadTooLarge):
        await orch.bus.send_batch("bookings", [fits, too_big], producer="booking", actor=ACTOR)
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.q_bookings") == 1


async def test_payloads_postgres_cannot_store_are_refused_by_field(orch: Orch) -> None:
    await orch.bus.create_queue(queue(), actor=ACTOR)
    bad = {"queue_name": "bookings", "message_type": "x", "message_payload": {"a": "x\u0000y"}}
    with pytest.raises(ValidationFailed) as caught:
        await orch.bus.send(bad, producer=None, actor=ACTOR)
    assert caught.value.field.startswith("message_payload")
    nan = {**bad, "message_payload": {"a": float("nan")}}
    with pytest.raises(ValidationFailed, match="not storable"):
        await orch.bus.send(nan, producer=None, actor=ACTOR)
    own = {**bad, "message_payload": {}, "headers": {"x-orch-expires-at": "2000-01-01T00:00:00Z"}}
    with pytest.raises(ValidationFailed, match="set by orch only"):
        await orch.bus.send(own, producer=None, actor=ACTOR)


async def test_update_changes_only_what_is_given(orch: Orch) -> None:
    await orch.bus.create_queue(queue(push_endpoint="/events"), actor=ACTOR)
    updated = await orch.bus.update_queue(
        "bookings", {"consumer_services": ["notification", "crm"]}, actor=ACTOR
    )
    assert updated.consumer_services == ["notification", "crm"]
    assert updated.producer_services == ["booking"] and updated.push_endpoint == "/events"
    cleared = await orch.bus.update_queue("bookings", {"push_endpoint": None}, actor=ACTOR)
    assert cleared.push_endpoint is None
    # the cache follows: the new consumer may receive at once
    assert (await orch.bus.receive("bookings", {}, consumer="crm")).messages == []


async def test_a_change_made_by_another_process_reaches_this_ones_cache(orch: Orch) -> None:
    from tests.support.polling import eventually

    await orch.bus.create_queue(queue(), actor=ACTOR)
    message = {"queue_name": "bookings", "message_type": "x", "message_payload": {}}
    await orch.bus.send(message, producer="booking", actor=ACTOR)  # cached now
    other = MessageBus(orch.db, orch.clock, None)
    await other.update_queue("bookings", {"producer_services": ["payment"]}, actor=ACTOR)

    async def refused() -> bool:
        try:
            await orch.bus.send(message, producer="booking", actor=ACTOR)
        except PermissionDeniedError:
            return True
        return False

    await eventually(refused, timeout=5, message="the cache never heard of the change")
    await other.close()


async def test_a_topic_has_no_storage_and_no_consumers(orch: Orch) -> None:
    topic = await orch.bus.create_queue(
        {"queue_name": "events", "queue_type": "topic", "producer_services": ["booking"]},
        actor=ACTOR,
    )
    assert topic.queue_type is QueueType.TOPIC and topic.dead_letter_queue is None
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.meta") == 0
    with pytest.raises(ConflictError, match="is a topic"):
        await orch.bus.receive("events", {}, consumer=None)
