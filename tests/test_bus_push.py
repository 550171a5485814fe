"""Push delivery through the call path: real PostgreSQL, a real HTTP consumer on loopback.

The consumer records every delivery with its idempotency key and arrival time, applies
each key's effect once, and notes any key that arrives while an earlier delivery of it
is still being handled (two consumers holding one message at once).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchcore import Orch, Settings
from orchcore.bus.push import PUSH_SOURCE, MessagePusher
from orchcore.callpath.tracecontext import TraceContext
from tests.support.api import serve_asgi
from tests.support.polling import eventually
from tests.support.registry import mark

ACTOR = "test"
QUEUE = "bookings"


@dataclass
class Delivery:
    key: str
    body: Any
    number: int  # X-Orch-Delivery
    started: float
    ended: float | None = None
    status: int | None = None
    traceparent: str | None = None


#: (the key, how many times this consumer saw it before) -> (status, seconds to hold)
Plan = Callable[[str, int], tuple[int, float]]


@dataclass
class PushConsumer:
    """A consumer service: answers each delivery by ``plan``, records everything."""

    plan: Plan = lambda _key, _seen: (200, 0.0)
    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    effects: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0

    def calls(self, key: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.key == key]

    async def handle(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key") or ""
        seen = len(self.calls(key))
        delivery = Delivery(
            key,
            await request.json(),
            int(request.headers.get("x-orch-delivery", "0")),
            time.monotonic(),
            traceparent=request.headers.get("traceparent"),
        )
        self.deliveries.append(delivery)
        if self.in_flight.get(key):
            self.overlaps.append(key)
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            status, hold = self.plan(key, seen)
            if hold:
                await asyncio.sleep(hold)
            if 200 <= status < 300:
                self.effects[key] = self.effects.get(key, 0) + (0 if key in self.effects else 1)
                return JSONResponse({"ok": True}, status_code=status)
            return JSONResponse({"detail": f"consumer says {status}"}, status_code=status)
        finally:
            delivery.ended = time.monotonic()
            delivery.status = status if "status" in locals() else None
            self.in_flight[key] -= 1
            self.concurrent -= 1


@asynccontextmanager
async def running_consumer(consumer: PushConsumer) -> AsyncIterator[PushConsumer]:
    app = Starlette(routes=[Route("/{path:path}", consumer.handle, methods=["POST"])])
    # force_exit: a consumer holding deliveries must not keep the test waiting
    async with serve_asgi(app, backlog=512, force_exit=True) as base_url:
        consumer.port = int(base_url.rsplit(":", 1)[1])
        yield consumer


async def register_consumer(orch: Orch, consumer: PushConsumer, name: str = "notification") -> None:
    """The consumer as a registered service with one healthy instance."""
    await orch.registry.register_service(
        {"service_name": name, "service_type": "api", "deployment_environment": "staging"},
        actor=ACTOR,
    )
    instance = await orch.registry.register_instance(
        name,
        {
            "instance_id": f"{name}-0",
            "ip_address": "127.0.0.1",
            "port": consumer.port,
            "version": "1.0.0",
        },
        actor=ACTOR,
    )
    await mark(orch, instance.instance_id, "healthy")
    await orch.discovery.refresh_all()


async def push_queue(orch: Orch, name: str = QUEUE, **overrides: Any) -> None:
    await orch.bus.create_queue(
        {
            "queue_name": name,
            "producer_services": ["booking"],
            "consumer_services": ["notification"],
            "push_endpoint": "/events",
            "visibility_timeout_seconds": 30,
            **overrides,
        },
        actor=ACTOR,
    )


async def send(orch: Orch, n: int, queue: str = QUEUE) -> str:
    sent = await orch.bus.send(
        {
            "queue_name": queue,
            "message_type": "booking.confirmed",
            "message_payload": {"n": n},
            "correlation_id": f"wedding-{n}",
        },
        producer="booking",
        actor=ACTOR,
    )
    return sent.message_id


def key(message_id: str, queue: str = QUEUE) -> str:
    return f"msg:{queue}:{message_id}"


@asynccontextmanager
async def pushing(orch: Orch, **kw: Any) -> AsyncIterator[MessagePusher]:
    pusher = MessagePusher(orch, **kw)
    assert orch.listener is not None
    orch.listener.subscribe(pusher.on_notification)
    task = asyncio.create_task(pusher.run_forever())
    try:
        yield pusher
    finally:
        await pusher.stop(grace_seconds=2)
        await task
        orch.listener.unsubscribe(pusher.on_notification)


async def queue_total(orch: Orch, queue: str = QUEUE) -> int:
    return (await orch.bus.metrics(queue)).total_messages


async def drained(orch: Orch, queue: str = QUEUE) -> bool:
    return await queue_total(orch, queue) == 0


async def test_a_2xx_answer_acks_the_message(orch: Orch) -> None:
    async with running_consumer(PushConsumer()) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch)
        ids = [await send(orch, n) for n in range(3)]
        async with pushing(orch):
            await eventually(lambda: len(consumer.effects) == 3, message="three pushed")
            await eventually(lambda: drained(orch), message="acked")
        await orch.bus.flush_logs()
    assert set(consumer.effects) == {key(i) for i in ids}
    first = consumer.calls(key(ids[0]))[0]
    assert first.number == 1
    assert first.body["queue_name"] == QUEUE
    assert first.body["message_id"] == ids[0]
    assert first.body["message_type"] == "booking.confirmed"
    assert first.body["message_payload"] == {"n": 0}
    assert first.body["correlation_id"] == "wedding-0"
    rows = await orch.db.fetch(
        "SELECT message_id, status, consumer_service FROM message_logs WHERE queue_name = $1",
        QUEUE,
    )
    assert {(r["message_id"], r["status"], r["consumer_service"]) for r in rows} == {
        (i, "acked", "notification") for i in ids
    }
    # The call path recorded each push like any other call, from orch to the consumer.
    await orch.events.flush()
    calls = await orch.db.fetchval(
        "SELECT count(*) FROM service_events WHERE source_service = 'orch'"
        " AND target_service = 'notification'"
    )
    assert calls == 3


async def test_a_4xx_answer_dead_letters_at_once_with_the_error(orch: Orch) -> None:
    async with running_consumer(PushConsumer(plan=lambda _k, _s: (422, 0.0))) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch, dlq_max_retries=5)
        msg_id = await send(orch, 1)
        async with pushing(orch):
            dead = await eventually(lambda: orch.bus.dead_letters(QUEUE), message="dead letter")
    [letter] = dead
    assert (letter.original_message_id, letter.attempts) == (msg_id, 1)
    assert letter.last_error is not None and "HTTP 422" in letter.last_error
    assert "consumer says 422" in letter.last_error
    assert len(consumer.calls(key(msg_id))) == 1
    assert await queue_total(orch) == 0


async def test_a_5xx_answer_comes_back_after_the_visibility_timeout_with_the_same_key(
    orch: Orch,
) -> None:
    def plan(_key: str, seen: int) -> tuple[int, float]:
        return (503, 0.0) if seen == 0 else (200, 0.0)

    async with running_consumer(PushConsumer(plan=plan)) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch, visibility_timeout_seconds=1, dlq_max_retries=3)
        msg_id = await send(orch, 1)
        async with pushing(orch):
            await eventually(lambda: len(consumer.calls(key(msg_id))) == 2, message="redelivered")
            await eventually(lambda: drained(orch), message="acked")
        await orch.bus.flush_logs()
    first, second = consumer.calls(key(msg_id))
    assert (first.status, second.status) == (503, 200)
    assert (first.number, second.number) == (1, 2)
    assert second.started - first.started >= 0.9  # not before the visibility timeout
    row = await orch.db.fetchrow(
        "SELECT status, events FROM message_logs WHERE queue_name = $1 AND message_id = $2",
        QUEUE,
        msg_id,
    )
    assert row["status"] == "acked"
    failed = [e for e in _json(row["events"]) if e["event"] == "failed"]
    assert failed and "HTTP 503" in json.dumps(failed)  # the answer, on the message's log


async def test_5xx_until_the_retry_limit_dead_letters_with_the_last_error(orch: Orch) -> None:
    async with running_consumer(PushConsumer(plan=lambda _k, _s: (500, 0.0))) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch, visibility_timeout_seconds=1, dlq_max_retries=1)
        msg_id = await send(orch, 1)
        async with pushing(orch):
            dead = await eventually(
                lambda: orch.bus.dead_letters(QUEUE), timeout=15, message="dead letter"
            )
    [letter] = dead
    assert letter.attempts == 2  # the first delivery and its one retry
    assert letter.last_error is not None and "HTTP 500" in letter.last_error
    assert [d.number for d in consumer.calls(key(msg_id))] == [1, 2]


async def test_no_answer_within_the_visibility_timeout_comes_back(orch: Orch) -> None:
    def plan(_key: str, seen: int) -> tuple[int, float]:
        return (200, 5.0) if seen == 0 else (200, 0.0)

    async with running_consumer(PushConsumer(plan=plan)) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch, visibility_timeout_seconds=1)
        msg_id = await send(orch, 1)
        async with pushing(orch):
            await eventually(lambda: len(consumer.calls(key(msg_id))) == 2, message="again")
            await eventually(lambda: drained(orch), message="acked")
    first, second = consumer.calls(key(msg_id))
    # The first delivery was cut off before its lease ended; the second came after it.
    assert 0.9 <= second.started - first.started < 4.0


async def test_two_daemons_share_a_queue_and_never_hold_one_message_at_once(
    orch: Orch, dsn: str
) -> None:
    other = await Orch.open(Settings(database_url=dsn))
    try:
        async with running_consumer(PushConsumer(plan=lambda _k, _s: (200, 0.02))) as consumer:
            await register_consumer(orch, consumer)
            await other.discovery.refresh_all()
            await push_queue(orch)
            async with (
                pushing(orch, max_in_flight_per_queue=8) as a,
                pushing(other, max_in_flight_per_queue=8) as b,
            ):
                await eventually(lambda: QUEUE in a.queues and QUEUE in b.queues)
                sent = await orch.bus.send_batch(
                    QUEUE,
                    [{"message_type": "booking.confirmed", "message_payload": {"n": n}}
                     for n in range(300)],
                    producer="booking",
                    actor=ACTOR,
                )  # fmt: skip
                await eventually(
                    lambda: len(consumer.effects) == 300, timeout=60, message="all pushed"
                )
                await eventually(lambda: drained(orch), message="acked")
                shares = (a.queues[QUEUE].delivered, b.queues[QUEUE].delivered)
    finally:
        await other.close()
    assert consumer.overlaps == []
    assert len(consumer.deliveries) == 300  # each message delivered exactly once
    assert {d.key for d in consumer.deliveries} == {key(s.message_id) for s in sent}
    assert all(share["acked"] > 0 for share in shares), shares  # both took part
    assert consumer.max_concurrent <= 16


async def test_concurrency_is_bounded_per_queue(orch: Orch) -> None:
    async with running_consumer(PushConsumer(plan=lambda _k, _s: (200, 0.2))) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch)
        for n in range(10):
            await send(orch, n)
        async with pushing(orch, max_in_flight_per_queue=3):
            await eventually(lambda: len(consumer.effects) == 10, timeout=20)
    assert consumer.max_concurrent == 3


async def test_a_message_sent_to_an_idle_queue_wakes_the_pusher_by_notify(orch: Orch) -> None:
    async with running_consumer(PushConsumer()) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch)
        async with pushing(orch, safety_seconds=60) as pusher:
            await eventually(lambda: QUEUE in pusher.queues)
            await eventually(lambda: orch.bus.wakeups.is_listening(QUEUE))
            await asyncio.sleep(0)  # let the loop reach its wait
            await eventually(lambda: pusher.queues[QUEUE].in_flight == 0)
            started = time.monotonic()
            msg_id = await send(orch, 1)
            await eventually(lambda: consumer.effects.get(key(msg_id)), timeout=5)
            assert time.monotonic() - started < 2  # far below the 60 s safety re-read


async def test_a_queue_made_a_push_queue_later_is_pushed(orch: Orch) -> None:
    async with running_consumer(PushConsumer()) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch, push_endpoint=None)
        msg_id = await send(orch, 1)
        async with pushing(orch) as pusher:
            await eventually(lambda: pusher.queues == {} or None)
            await orch.bus.update_queue(QUEUE, {"push_endpoint": "/later"}, actor=ACTOR)
            await eventually(lambda: consumer.effects.get(key(msg_id)), timeout=10)
            assert consumer.calls(key(msg_id))[0].body["message_id"] == msg_id
            await orch.bus.update_queue(QUEUE, {"push_endpoint": None}, actor=ACTOR)
            await eventually(lambda: QUEUE not in pusher.queues, timeout=10)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def test_a_consumer_without_a_healthy_instance_is_not_read_for(orch: Orch) -> None:
    async with running_consumer(PushConsumer()) as consumer:
        await register_consumer(orch, consumer)
        await mark(orch, "notification-0", "unhealthy")
        await orch.discovery.refresh_all()
        await push_queue(orch, dlq_max_retries=0)
        msg_id = await send(orch, 1)
        async with pushing(orch) as pusher:
            await eventually(lambda: QUEUE in pusher.queues)
            await eventually(lambda: pusher.queues[QUEUE]._unavailable, message="waiting")
            # No delivery is spent while nothing could take it (one would bury it here).
            assert await orch.db.fetchval(f"SELECT read_ct FROM pgmq.q_{QUEUE}") == 0
            await mark(orch, "notification-0", "healthy")
            await orch.discovery.refresh_all()
            await eventually(lambda: consumer.effects.get(key(msg_id)), timeout=10)
    assert consumer.calls(key(msg_id))[0].number == 1


# -- the consumer's circuit breaker ------------------------------------------------------------


async def forced_open_breaker(orch: Orch, target: str = "notification") -> UUID:
    """The breaker guarding pushes (orch → the consumer, every endpoint), forced open."""
    breaker = await orch.breakers.create(
        {"service_name": PUSH_SOURCE, "target_service": target}, actor=ACTOR
    )
    await orch.breakers.force_open(breaker.id, actor=ACTOR, reason="consumer in maintenance")
    return breaker.id


async def test_an_open_breaker_holds_the_message_back_until_it_is_reset(orch: Orch) -> None:
    async with running_consumer(PushConsumer()) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch, dlq_max_retries=3)
        breaker_id = await forced_open_breaker(orch)
        msg_id = await send(orch, 1)
        async with pushing(orch) as pusher:
            await eventually(lambda: QUEUE in pusher.queues)
            queue = pusher.queues[QUEUE]
            await eventually(lambda: queue.delivered["given_back"], message="refused")
            # Refused before sending: the consumer saw no call, and the message is neither
            # dead-lettered nor gone but back in its queue, hidden for the refusal's wait
            # (a forced-open breaker names no next attempt: 5 s), not re-read at once.
            assert consumer.deliveries == []
            assert await orch.bus.dead_letters(QUEUE) == []
            assert await queue_total(orch) == 1
            hidden_for = await orch.db.fetchval(
                f"SELECT extract(epoch FROM vt - clock_timestamp()) FROM pgmq.q_{QUEUE}"
            )
            assert 2.0 < float(hidden_for) <= 5.0
            reset_at = time.monotonic()
            await orch.breakers.reset(breaker_id, actor=ACTOR, reason="maintenance over")
            await eventually(
                lambda: consumer.effects.get(key(msg_id)), timeout=15, message="pushed"
            )
            await eventually(lambda: drained(orch), message="acked")
            counts = dict(queue.delivered)
        await orch.bus.flush_logs()
    [delivery] = consumer.deliveries  # once, after the reset
    assert (delivery.key, delivery.status) == (key(msg_id), 200)
    assert delivery.started >= reset_at
    assert (counts["acked"], counts["dead_lettered"]) == (1, 0)
    assert await orch.bus.dead_letters(QUEUE) == []
    row = await orch.db.fetchrow(
        "SELECT status, events FROM message_logs WHERE queue_name = $1 AND message_id = $2",
        QUEUE,
        msg_id,
    )
    assert row["status"] == "acked"
    # The refusal is on the message's log, as the breaker's, not the consumer's, answer.
    [refused] = _json(row["events"])
    assert refused["event"] == "failed" and "circuit breaker" in refused["error"]


async def test_a_breaker_open_for_longer_than_the_retries_does_not_dead_letter(
    orch: Orch,
) -> None:
    """No call was made, so no delivery is spent (as with a consumer that has no healthy
    instance): a message outlives any number of refusals and arrives once it can."""
    async with running_consumer(PushConsumer()) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch, dlq_max_retries=1)  # two deliveries allowed
        breaker_id = await forced_open_breaker(orch)
        msg_id = await send(orch, 1)
        async with pushing(orch) as pusher:
            await eventually(lambda: QUEUE in pusher.queues)
            queue = pusher.queues[QUEUE]
            # Open through more refusals than the message has deliveries.
            await eventually(
                lambda: queue.delivered["given_back"] >= 2, timeout=20, message="refused twice"
            )
            assert consumer.deliveries == []
            assert await orch.bus.dead_letters(QUEUE) == []
            assert await queue_total(orch) == 1
            await orch.breakers.reset(breaker_id, actor=ACTOR, reason="maintenance over")
            await eventually(
                lambda: consumer.effects.get(key(msg_id)), timeout=15, message="pushed"
            )
            await eventually(lambda: drained(orch), message="acked")
    assert [d.key for d in consumer.deliveries] == [key(msg_id)]
    assert await orch.bus.dead_letters(QUEUE) == []


async def test_a_pushed_message_carries_its_producers_trace_to_the_consumer(orch: Orch) -> None:
    producer_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with running_consumer(PushConsumer()) as consumer:
        await register_consumer(orch, consumer)
        await push_queue(orch)
        sent = await orch.bus.send(
            {
                "queue_name": QUEUE,
                "message_type": "booking.confirmed",
                "message_payload": {"n": 1},
                "headers": {"traceparent": producer_span},
            },
            producer="booking",
            actor=ACTOR,
        )
        async with pushing(orch):
            await eventually(lambda: consumer.effects.get(key(sent.message_id)), message="pushed")
    [delivery] = consumer.deliveries
    received = TraceContext.parse(delivery.traceparent)
    assert received is not None and received.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    await orch.tracing.flush()
    # The delivery is a client span of orch's, a child of the producer's span, and the
    # span the consumer was told is its parent.
    row = await orch.db.fetchrow(
        "SELECT parent_span_id, span_kind, tags FROM distributed_traces WHERE span_id = $1",
        received.span_id,
    )
    assert row is not None
    assert (row["parent_span_id"], row["span_kind"]) == ("00f067aa0ba902b7", "client")
    assert row["tags"]["orch.idempotency_key"] == key(sent.message_id)
