"""A daemon SIGKILLed while pushing: its messages come back after their visibility
timeout, the surviving daemon delivers them again under the same key, and in the end
every message is acked once, none lost, none dead-lettered, none held twice at once."""

from __future__ import annotations

import asyncio

import pytest

from orchcore import Orch, Settings
from tests.support.daemons import DaemonProcess
from tests.support.polling import eventually
from tests.test_bus_push import QUEUE, PushConsumer, push_queue, register_consumer, running_consumer

pytestmark = pytest.mark.slow

MESSAGES = 120
VISIBILITY_TIMEOUT = 3
HOLD = 0.4  # seconds the consumer takes per message: deliveries are in flight at the kill


async def test_a_daemon_killed_while_pushing_loses_nothing(dsn: str) -> None:
    orch = await Orch.open(Settings(database_url=dsn))
    flags = ("--no-health-checks", "--no-workflows")
    daemons = [DaemonProcess(dsn, "push-a", *flags), DaemonProcess(dsn, "push-b", *flags)]
    try:
        async with running_consumer(PushConsumer(plan=lambda _k, _s: (200, HOLD))) as consumer:
            await register_consumer(orch, consumer)
            await push_queue(orch, visibility_timeout_seconds=VISIBILITY_TIMEOUT, dlq_max_retries=5)
            await asyncio.gather(*(d.start() for d in daemons))
            sent = await orch.bus.send_batch(
                QUEUE,
                [{"message_type": "booking.confirmed", "message_payload": {"n": n}}
                 for n in range(MESSAGES)],
                producer="booking",
                actor="test",
            )  # fmt: skip
            # Both daemons push at once (16 each at most), so the victim holds some.
            await eventually(lambda: consumer.concurrent >= 24, timeout=30, message="both push")
            await daemons[0].kill()

            async def drained() -> bool:
                return (await orch.bus.metrics(QUEUE)).total_messages == 0

            await eventually(
                lambda: len(consumer.effects) == MESSAGES, timeout=60, message="all delivered"
            )
            await eventually(drained, timeout=30, message="all acked")
            assert await daemons[1].terminate() == 0  # flushes its message log
    finally:
        for daemon in daemons:
            await daemon.ensure_stopped()
    try:
        keys = {f"msg:{QUEUE}:{s.message_id}" for s in sent}
        assert set(consumer.effects) == keys and set(consumer.effects.values()) == {1}
        assert consumer.overlaps == []  # never in flight to two consumers at once
        again = [k for k in keys if len(consumer.calls(k)) > 1]
        assert again, "the killed daemon's deliveries were never made again"
        for k in again:
            first, second = consumer.calls(k)[:2]
            assert second.started - first.started > VISIBILITY_TIMEOUT - 1.5, k
        assert await orch.bus.dead_letters(QUEUE) == []
        assert await orch.db.fetchval(f"SELECT count(*) FROM pgmq.a_{QUEUE}") == 0
        acked_twice = await orch.db.fetchval(
            "SELECT count(*) FROM message_logs WHERE queue_name = $1 AND"
            " (SELECT count(*) FROM jsonb_array_elements(events) e"
            "  WHERE e->>'event' = 'acked') > 1",
            QUEUE,
        )
        assert acked_twice == 0
        # What the survivor redelivered it acked, and logged as such.
        redelivered_ids = [k.rsplit(":", 1)[1] for k in again]
        statuses = await orch.db.fetch(
            "SELECT status FROM message_logs WHERE queue_name = $1 AND message_id = ANY($2)",
            QUEUE,
            redelivered_ids,
        )
        assert {r["status"] for r in statuses} == {"acked"}
        print(f"\npush kill test: {len(again)} deliveries made again after the kill")
    finally:
        await orch.close()
