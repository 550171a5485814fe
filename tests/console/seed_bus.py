"""Queues for the console's tests: made, fed and failed through the real bus.

``seed_bus`` tells a quarter of an hour of the wedding platform's events: bookings
confirmed faster than the notification service takes them, then drained, three given
up on along the way; payment failures the finance service could not take at all; an
idle queue and a topic. The daemons' depth samples are taken every 30 s on the
ManualClock, so the chart is the same each run. Every message ends acked or dead:
PGMQ's ages run on the database's clock, which a ManualClock cannot hold still.
"""

from __future__ import annotations

from orchcore import ManualClock, Orch
from tests.support.polling import eventually

ACTOR = "test"
BOOKINGS = "booking_events"
PAYMENTS = "payment_failed"
ERROR = "notification answered 500: SMTP relay refused"
FINANCE_ERROR = "finance answered 422: ledger closed for the day"


async def a_queue(orch: Orch, name: str = BOOKINGS, **fields: object) -> None:
    await orch.bus.create_queue(
        {"queue_name": name, "dlq_max_retries": 1, "producer_services": ["booking"], **fields},
        actor=ACTOR,
    )


async def send(
    orch: Orch, count: int, queue: str = BOOKINGS, first: int = 1, kind: str = "booking.confirmed"
) -> None:
    for number in range(first, first + count):
        await orch.bus.send(
            {
                "queue_name": queue,
                "message_type": kind,
                "message_payload": {"booking_id": f"bk-{number}", "guests": 120},
                "correlation_id": f"bk-{number}",
            },
            producer=None,
            actor=ACTOR,
        )


async def dead_letter(orch: Orch, count: int, queue: str = BOOKINGS, error: str = ERROR) -> None:
    """Fail what the queue delivers until ``count`` have dead-lettered (in all)."""

    async def failed_enough() -> bool:
        # One at a time: the oldest comes back first, so the messages fail in order and
        # the rest are left as they were.
        received = await orch.bus.receive(
            queue, {"max_messages": 1, "visibility_timeout_seconds": 30}, consumer=None
        )
        for message in received.messages:
            await orch.bus.nack(queue, message.message_id, {"error_message": error}, consumer=None)
        return (await orch.bus.metrics(queue)).failed_messages >= count

    await eventually(failed_enough, message=f"{count} dead letters in {queue}")


async def ack(orch: Orch, count: int, queue: str = BOOKINGS) -> None:
    received = await orch.bus.receive(queue, {"max_messages": count}, consumer=None)
    for message in received.messages:
        await orch.bus.ack(queue, message.message_id, consumer=None)


#: Samples of the story: one each 30 s for 15 minutes.
STEPS, EVERY = 30, 30


async def seed_bus(orch: Orch, clock: ManualClock) -> None:
    await a_queue(
        orch,
        BOOKINGS,
        consumer_services=["notification"],
        monitoring_config={"alert_on_backlog": 20},
    )
    await a_queue(orch, PAYMENTS, producer_services=["payment"], consumer_services=["finance"])
    await a_queue(orch, "guest_updates")
    await a_queue(orch, "booking", queue_type="topic", message_pattern="booking.*")
    sent = 0
    for step in range(STEPS):
        if step < 14:  # confirmed faster than notification takes them
            await send(orch, 2, first=sent + 1)
            sent += 2
        else:
            await ack(orch, 2)
        if step in (7, 17, 20):
            await dead_letter(orch, (step > 7) + (step > 17) + 1)
        if step == 20:
            await send(orch, 3, queue=PAYMENTS, first=900, kind="payment.failed")
        if step == 26:
            await dead_letter(orch, 3, queue=PAYMENTS, error=FINANCE_ERROR)
        # the ack counters are written with the logs, every 0.5 s of real time: written
        # now, each sample counts exactly the acks before it
        await orch.bus.flush_logs()
        await orch.bus.sample_depths()
        await clock.advance(EVERY)
    await orch.bus.flush_logs()
