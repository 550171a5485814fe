"""Depth, rates, history and retention: what the console and the daemons read and keep."""

from __future__ import annotations

from datetime import timedelta

from orchcore import ManualClock, Orch

ACTOR = "test"


async def fill(orch: Orch, name: str, n: int, **fields: object) -> list[str]:
    sent = await orch.bus.send_batch(
        name,
        [{"message_type": "t", "message_payload": {"i": i}, **fields} for i in range(n)],
        producer=None,
        actor=ACTOR,
    )
    return [s.message_id for s in sent]


async def test_all_metrics_counts_every_state_in_one_call(orch: Orch) -> None:
    await orch.bus.create_queue({"queue_name": "a", "dlq_max_retries": 0}, actor=ACTOR)
    await orch.bus.create_queue({"queue_name": "b"}, actor=ACTOR)
    await orch.bus.create_queue({"queue_name": "t", "queue_type": "topic"}, actor=ACTOR)
    await orch.bus.create_queue({"queue_name": "gone"}, actor=ACTOR)
    await orch.bus.deactivate_queue("gone", actor=ACTOR, reason="old")
    await fill(orch, "a", 5)
    await fill(orch, "a", 2, delay_seconds=600)
    got = (await orch.bus.receive("a", {"max_messages": 3}, consumer=None)).messages
    await orch.bus.dead_letter("a", got[0].message_id, error="x", consumer=None)
    await orch.bus.ack("a", got[1].message_id, consumer=None)

    metrics = await orch.bus.all_metrics()
    assert sorted(metrics) == ["a", "b"]
    a = metrics["a"]
    assert (a.pending_messages, a.processing_messages, a.delayed_messages) == (2, 1, 2)
    assert (a.total_messages, a.failed_messages) == (5, 1)
    assert a.oldest_age_seconds is not None and a.oldest_age_seconds >= 0
    assert metrics["b"].total_messages == 0 and metrics["b"].oldest_age_seconds is None
    assert (await orch.bus.metrics("t")).total_messages == 0


async def test_rates_come_from_the_samples_of_the_last_minute(
    orch: Orch, clock: ManualClock
) -> None:
    await orch.bus.create_queue({"queue_name": "a"}, actor=ACTOR)
    await fill(orch, "a", 4)
    start = clock.now()
    assert await orch.bus.sample_depths() == 1
    assert await orch.bus.sample_depths() == 0  # sampled a moment ago (by another daemon)
    await clock.advance(30)
    await fill(orch, "a", 10)
    for m in (await orch.bus.receive("a", {"max_messages": 6}, consumer=None)).messages:
        await orch.bus.ack("a", m.message_id, consumer=None)
    await orch.bus.flush_logs()
    a = (await orch.bus.all_metrics())["a"]
    assert a.messages_in_per_minute == 20.0  # 10 in 30 s
    assert a.messages_out_per_minute == 12.0  # 6 acked in 30 s
    assert await orch.bus.sample_depths() == 1
    history = await orch.bus.depth_history("a", since=start)
    assert [(s.ready, s.sent_total, s.acked_total) for s in history] == [(4, 4, 0), (8, 14, 6)]
    assert history[1].sampled_at - history[0].sampled_at == timedelta(seconds=30)
    assert await orch.bus.depth_history("a", since=clock.now() + timedelta(seconds=1)) == []


async def test_retention_removes_old_archive_logs_and_samples_in_batches(
    orch: Orch, clock: ManualClock
) -> None:
    await orch.bus.create_queue(
        {"queue_name": "a", "retention_hours": 1, "dlq_enabled": False, "dlq_max_retries": 0},
        actor=ACTOR,
    )
    ids = await fill(orch, "a", 3)
    for m in (await orch.bus.receive("a", {"max_messages": 3}, consumer=None)).messages:
        await orch.bus.nack("a", m.message_id, {"error_message": "x"}, consumer=None)
    assert await orch.db.fetchval("SELECT count(*) FROM pgmq.a_a") == 3  # archived as failed
    await orch.bus.sample_depths()
    await orch.db.execute("UPDATE pgmq.a_a SET archived_at = now() - interval '2 hours'")
    await orch.db.execute(
        "UPDATE message_logs SET produced_at = now() - interval '2 hours' WHERE message_id = $1",
        ids[0],
    )
    await clock.advance(25 * 3600)
    removed = await orch.bus.enforce_retention()
    assert removed == 3 + 1 + 1  # archive rows, one log row, one sample
    assert await orch.db.fetchval("SELECT count(*) FROM message_logs") == 2
    assert await orch.bus.enforce_retention() == 0


async def test_queue_messages_lists_the_latest_first_with_metrics(orch: Orch) -> None:
    await orch.bus.create_queue({"queue_name": "a"}, actor=ACTOR)
    ids = await fill(orch, "a", 3)
    listing = await orch.bus.queue_messages("a", limit=2)
    assert [m.message_id for m in listing.messages] == [ids[2], ids[1]]
    assert all(m.status == "produced" for m in listing.messages)
    assert listing.queue_metrics.pending_messages == 3
