"""One consumer process of ``bench/bus_throughput.py``, and what both sides share.

The same consumer for each system under test (raw PGMQ, orch, procrastinate), run as a
subprocess so that two consumers are two processes with an event loop each. It speaks
a small line protocol with the benchmark on stdin/stdout:

- it connects, warms up, and prints ``ready``;
- it waits for ``go`` on stdin, then consumes: ``drain`` takes messages until a read
  finds the queue empty (every message was sent before ``go``); ``latency`` waits for
  new messages (long-poll, LISTEN, a listening worker) until it has seen ``--count``,
  printing ``got <seq>`` as it acknowledges each (procrastinate: once its worker has
  finished the job), so the benchmark sends the next one only to a consumer that is
  waiting again;
- it prints one JSON line (the sequence numbers it acknowledged, when it received each,
  its CPU time over the run) and keeps its connections open until ``exit`` on stdin, so
  the benchmark can read the database server's CPU while their backends still exist.

    bench/bus_consumer.py --system pgmq|orch|procrastinate --dsn DSN --mode drain|latency
        [--count N] [--batch 10] [--ack-batch] [--pgmq-wait notify|poll] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

#: One queue a system; a PGMQ name (orch's rules: lower case, digits, underscores).
QUEUE = "bench_bus"
MESSAGE_TYPE = "booking.confirmed"
VISIBILITY_SECONDS = 30
#: A waiting consumer's longest single wait before it asks again (orch: wait_seconds).
WAIT_SECONDS = 5
PROCRASTINATE_TASK = "bench_bus_noop"


def payload(seq: int, pad: int) -> dict[str, Any]:
    """The same event for every system; ``seq`` is how a consumer names what it got."""
    return {
        "seq": seq,
        "booking_id": f"bk-{seq:08d}",
        "event": MESSAGE_TYPE,
        "amount_cents": 125_000,
        "pad": "x" * pad,
    }


def pgmq_message(body: dict[str, Any]) -> dict[str, Any]:
    """What orch stores as a PGMQ message (its documented contract), so raw PGMQ moves
    rows of the same shape and size as orch does."""
    return {"type": MESSAGE_TYPE, "payload": body, "correlation_id": None, "producer": None}


async def pgmq_connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


def pgmq_channel(queue: str) -> str:
    """The channel PGMQ's ``enable_notify_insert`` trigger notifies."""
    return f"pgmq.q_{queue}.INSERT"


@dataclass
class Received:
    """What one consumer acknowledged, in order, and when it held each message."""

    seqs: list[int] = field(default_factory=list)
    at: list[float] = field(default_factory=list)  # time.monotonic(), one clock per machine
    tell: bool = False  # latency: say ``got <seq>`` on stdout as each one is acknowledged

    def add(self, seq: int, at: float) -> None:
        self.seqs.append(seq)
        self.at.append(at)
        if self.tell:
            print(f"got {seq}", flush=True)


def procrastinate_app(dsn: str, on_job: Callable[[int], None] | None = None) -> Any:
    """A procrastinate App on ``dsn`` with one no-op task; ``on_job`` hears each seq."""
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name=PROCRASTINATE_TASK, queue=QUEUE)
    async def noop(**kwargs: Any) -> None:
        if on_job is not None:
            on_job(int(kwargs["seq"]))

    return app


# -- the consumers ---------------------------------------------------------------------------


class Consumer:
    async def open(self) -> None:
        raise NotImplementedError

    async def drain(self, received: Received) -> None:
        raise NotImplementedError

    async def wait_for(self, count: int, received: Received) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PgmqConsumer(Consumer):
    """pgmq.read (or read_with_poll) of up to ``batch``, then pgmq.delete of each: the
    calls orch's own receive and ack make, without orch."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conn: asyncpg.Connection | None = None
        self.listen: asyncpg.Connection | None = None
        self.woken = asyncio.Event()

    async def open(self) -> None:
        self.conn = await pgmq_connect(self.args.dsn)
        await self.conn.fetchval("SELECT count(*) FROM pgmq.read($1, 0, 0)", QUEUE)
        if self.args.mode == "latency" and self.args.pgmq_wait == "notify":
            self.listen = await asyncpg.connect(self.args.dsn)
            await self.listen.add_listener(pgmq_channel(QUEUE), lambda *_: self.woken.set())

    async def _read(self) -> list[asyncpg.Record]:
        assert self.conn is not None
        return await self.conn.fetch(
            "SELECT msg_id, message FROM pgmq.read($1, $2, $3)",
            QUEUE,
            VISIBILITY_SECONDS,
            self.args.batch,
        )

    async def _delete(self, rows: list[asyncpg.Record], received: Received, at: float) -> None:
        assert self.conn is not None
        for row in rows:
            if not await self.conn.fetchval(
                "SELECT pgmq.delete($1::text, $2::bigint)", QUEUE, row["msg_id"]
            ):
                raise RuntimeError(f"pgmq.delete({row['msg_id']}) found nothing")
            received.add(int(row["message"]["payload"]["seq"]), at)

    async def drain(self, received: Received) -> None:
        while rows := await self._read():
            await self._delete(rows, received, time.monotonic())

    async def wait_for(self, count: int, received: Received) -> None:
        assert self.conn is not None
        while len(received.seqs) < count:
            if self.args.pgmq_wait == "poll":
                rows = await self.conn.fetch(
                    "SELECT msg_id, message FROM pgmq.read_with_poll($1, $2, $3, $4, $5)",
                    QUEUE,
                    VISIBILITY_SECONDS,
                    self.args.batch,
                    WAIT_SECONDS,
                    self.args.pgmq_poll_ms,
                )
            else:
                self.woken.clear()  # before the read: a notify during it is not lost
                rows = await self._read()
                if not rows:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.woken.wait(), WAIT_SECONDS)
                    continue
            await self._delete(rows, received, time.monotonic())

    async def close(self) -> None:
        for conn in (self.listen, self.conn):
            if conn is not None:
                await conn.close()


class OrchConsumer(Consumer):
    """orch.bus.receive (with wait_seconds when waiting), then orch.bus.ack of each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.orch: Any = None

    async def open(self) -> None:
        from orchcore import Orch
        from orchcore.bus.models import ReceiveRequest

        self.orch = await Orch.open(dsn=self.args.dsn)
        self.drain_request = ReceiveRequest(
            max_messages=self.args.batch, visibility_timeout_seconds=VISIBILITY_SECONDS
        )
        self.wait_request = ReceiveRequest(
            max_messages=self.args.batch,
            visibility_timeout_seconds=VISIBILITY_SECONDS,
            wait_seconds=WAIT_SECONDS,
        )
        await self.orch.bus.get_queue(QUEUE)

    async def _take(self, request: Any, received: Received) -> int:
        bus = self.orch.bus
        response = await bus.receive(QUEUE, request, consumer=None)
        at = time.monotonic()
        if self.args.ack_batch and response.messages:
            ids = [message.message_id for message in response.messages]
            acked = await bus.ack_batch(QUEUE, ids, consumer=None)
            if len(acked) != len(ids):
                raise RuntimeError(f"ack_batch of {len(ids)} acked {len(acked)}")
        for message in response.messages:
            if not self.args.ack_batch:
                await bus.ack(QUEUE, message.message_id, consumer=None)
            received.add(int(message.message_payload["seq"]), at)
        return len(response.messages)

    async def drain(self, received: Received) -> None:
        while await self._take(self.drain_request, received):
            pass
        # Its message_logs rows are written in batches off the hot path: the work is
        # done once they are written, so the clock stops after that.
        await self.orch.bus.logs.flush()

    async def wait_for(self, count: int, received: Received) -> None:
        while len(received.seqs) < count:
            await self._take(self.wait_request, received)

    async def close(self) -> None:
        if self.orch is not None:
            await self.orch.close()


class ProcrastinateConsumer(Consumer):
    """A procrastinate worker: ``wait=False`` to drain (it stops once it has caught up),
    listening (LISTEN/NOTIFY, its default) to wait; finished jobs are deleted, as an ack
    deletes a PGMQ message."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.received: Received | None = None
        self.enough = asyncio.Event()
        self.count = 0
        self.app: Any = None

    def _on_job(self, seq: int) -> None:
        assert self.received is not None
        self.received.add(seq, time.monotonic())
        if self.count and len(self.received.seqs) >= self.count:
            self.enough.set()

    async def open(self) -> None:
        self.app = procrastinate_app(self.args.dsn, self._on_job)
        await self.app.open_async()
        await self.app.check_connection_async()

    def _options(self, *, wait: bool) -> dict[str, Any]:
        return {
            "queues": [QUEUE],
            "name": f"bench-{self.args.index}",
            "concurrency": self.args.concurrency,
            "wait": wait,
            "delete_jobs": "always",
            "install_signal_handlers": False,
        }

    async def drain(self, received: Received) -> None:
        self.received = received
        await self.app.run_worker_async(**self._options(wait=False))

    async def wait_for(self, count: int, received: Received) -> None:
        self.received, self.count = received, count
        # Held at the task's start (the stamp), but "got" only once the worker has
        # recorded the job as finished: then it goes back to fetching and waiting, as
        # PGMQ's and orch's consumers do after their ack.
        received.tell = False
        manager = self.app.job_manager
        finish = manager.finish_job

        async def finish_then_tell(*args: Any, **kwargs: Any) -> None:
            await finish(*args, **kwargs)
            print(f"got {received.seqs[-1]}", flush=True)

        manager.finish_job = finish_then_tell
        worker = asyncio.create_task(self.app.run_worker_async(**self._options(wait=True)))
        enough = asyncio.create_task(self.enough.wait())
        await asyncio.wait({worker, enough}, return_when=asyncio.FIRST_COMPLETED)
        if worker.done():
            worker.result()  # it stopped early: say why
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    async def close(self) -> None:
        if self.app is not None:
            await self.app.close_async()


CONSUMERS: dict[str, Callable[[argparse.Namespace], Consumer]] = {
    "pgmq": PgmqConsumer,
    "orch": OrchConsumer,
    "procrastinate": ProcrastinateConsumer,
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def read_line(reader: asyncio.StreamReader) -> str:
    return (await reader.readline()).decode().strip()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    consumer = CONSUMERS[args.system](args)
    await consumer.open()
    try:
        print("ready", flush=True)
        if await read_line(reader) != "go":
            return
        received = Received(tell=args.mode == "latency")
        cpu_before, began = cpu_seconds(), time.monotonic()
        if args.mode == "drain":
            await consumer.drain(received)
        else:
            await consumer.wait_for(args.count, received)
        ended = time.monotonic()
        result = {
            "seqs": received.seqs,
            "at": received.at if args.mode == "latency" else [],
            "began": began,
            "ended": ended,
            "cpu": cpu_seconds() - cpu_before,
        }
        print(json.dumps(result), flush=True)
        await read_line(reader)  # "exit" (or the end of stdin)
    finally:
        await consumer.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", choices=sorted(CONSUMERS), required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--mode", choices=("drain", "latency"), default="drain")
    parser.add_argument("--count", type=int, default=0, help="latency: messages to wait for")
    parser.add_argument("--batch", type=int, default=10, help="messages a read (PGMQ, orch)")
    parser.add_argument("--pgmq-wait", choices=("notify", "poll"), default="notify")
    parser.add_argument("--pgmq-poll-ms", type=int, default=10, help="read_with_poll interval")
    parser.add_argument("--ack-batch", action="store_true", help="one ack a read (PGMQ, orch)")
    parser.add_argument("--concurrency", type=int, default=1, help="procrastinate worker")
    parser.add_argument("--index", type=int, default=1, help="this consumer's number")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
