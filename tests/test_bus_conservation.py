"""Nothing lost: 10,000 messages through consumers that fail, give up and die at random.

Every message sent ends acked, dead-lettered or expired, exactly one of them (some fail
on every attempt, some expire before anyone asks for them); a message
comes back only to a consumer after one that died, gave it back or overran its
visibility timeout, never after a successful ack.
"""

from __future__ import annotations

import asyncio
import random

from orchcore import Orch
from tests.support.polling import eventually

ACTOR = "test"
TOTAL = 10_000
EXPIRING = 50
VISIBILITY = 2


async def test_every_message_is_acked_dead_lettered_or_expired(orch: Orch) -> None:
    await orch.bus.create_queue(
        {"queue_name": "work", "consumer_services": ["worker"], "dlq_max_retries": 2},
        actor=ACTOR,
    )
    sent: set[str] = set()
    # some that nobody takes in time
    short_lived = [
        {"message_type": "t", "message_payload": {"i": i}, "ttl_seconds": 1}
        for i in range(EXPIRING)
    ]
    early = await orch.bus.send_batch("work", short_lived, producer=None, actor=ACTOR)
    sent.update(s.message_id for s in early)
    deadline = await orch.db.fetchval(
        "SELECT max((headers->>'x-orch-expires-at')::timestamptz) FROM pgmq.q_work"
    )
    await eventually(lambda: orch.db.fetchval("SELECT now() > $1", deadline), timeout=5)
    for start in range(EXPIRING, TOTAL, 1000):
        batch = await orch.bus.send_batch(
            "work",
            [
                {"message_type": "t", "message_payload": {"i": i}, "ttl_seconds": 3600}
                if i % 3 == 0
                else {"message_type": "t", "message_payload": {"i": i}}
                for i in range(start, min(start + 1000, TOTAL))
            ],
            producer=None,
            actor=ACTOR,
        )
        sent.update(s.message_id for s in batch)
    assert len(sent) == TOTAL

    rng = random.Random(20260620)
    acked: set[str] = set()
    # the state of each message's latest delivery: 'held', 'acked', 'released' (given
    # back or abandoned by a consumer that died)
    latest: dict[str, str] = {}
    bad_redeliveries: list[str] = []
    deaths = 0
    timed_out = 0

    async def consumer() -> bool:
        """Work until the queue is empty (True) or die holding a batch (False)."""
        nonlocal timed_out
        while True:
            got = (
                await orch.bus.receive(
                    "work",
                    {"max_messages": 50, "visibility_timeout_seconds": VISIBILITY,
                     "wait_seconds": 0.5},
                    consumer="worker",
                )
            ).messages  # fmt: skip
            if not got:
                if (await orch.bus.metrics("work")).total_messages == 0:
                    return True
                continue
            for m in got:
                before = latest.get(m.message_id)
                if before == "acked":
                    bad_redeliveries.append(m.message_id)
                elif before == "held":
                    timed_out += 1  # its holder overran the visibility timeout
                latest[m.message_id] = "held"
            if rng.random() < 0.05:
                for m in got:
                    latest[m.message_id] = "released"
                return False  # died: never acks, never gives back
            to_ack = []
            for m in got:
                poison = m.message_payload["i"] % 97 == 0  # fails every time it is tried
                if poison or rng.random() < 0.01:
                    latest[m.message_id] = "released"
                    await orch.bus.nack(
                        "work", m.message_id, {"error_message": "flaky"}, consumer="worker"
                    )
                else:
                    to_ack.append(m.message_id)
            done = await orch.bus.ack_batch("work", to_ack, consumer="worker")
            for message_id in done:
                assert message_id not in acked
                acked.add(message_id)
                latest[message_id] = "acked"

    async def supervised() -> None:
        nonlocal deaths
        while not await consumer():
            deaths += 1  # a new consumer takes the dead one's place

    await asyncio.wait_for(asyncio.gather(*(supervised() for _ in range(4))), timeout=300)

    dead = {d.original_message_id for d in await orch.bus.dead_letters("work", limit=TOTAL)}
    expired = {
        r["message_id"]
        for r in await orch.db.fetch("SELECT message_id FROM message_logs WHERE status = 'expired'")
    }
    assert bad_redeliveries == []
    assert deaths > 0 and dead  # the run did exercise dying and dead-lettering
    assert len(expired) >= EXPIRING
    assert not (acked & dead) and not (acked & expired) and not (dead & expired)
    assert acked | dead | expired == sent
    assert len(acked) + len(dead) + len(expired) == TOTAL
    assert (await orch.bus.metrics("work")).total_messages == 0

    await orch.bus.flush_logs()
    counts = dict(await orch.db.fetch("SELECT status, count(*) FROM message_logs GROUP BY status"))
    assert counts == {"acked": len(acked), "dead_lettered": len(dead), "expired": len(expired)}
    counters = await orch.db.fetchrow("SELECT * FROM bus_queue_totals WHERE queue_name = 'work'")
    assert (counters["acked"], counters["dead_lettered"], counters["expired"]) == (
        len(acked),
        len(dead),
        len(expired),
    )
    print(f"deaths={deaths} timed_out={timed_out} dead={len(dead)} expired={len(expired)}")
