"""Message bus throughput and latency: orch's bus against raw PGMQ and procrastinate.

Side by side in one run, on the same PostgreSQL, each system on a fresh scratch database:

- raw PGMQ: asyncpg calling ``pgmq.send``, ``pgmq.send_batch``, ``pgmq.read`` /
  ``pgmq.read_with_poll`` and ``pgmq.delete`` on a database where the SQL-only build of
  PGMQ that the ``pgmq`` wheel ships is installed; messages in orch's storage shape
  (``{"type", "payload", "correlation_id", "producer"}``) so rows are alike. Twice:
  ``pgmq`` as it comes (no trigger; a waiting consumer calls read_with_poll every
  ``--pgmq-poll-ms``), and ``pgmq-notify`` set up as orch sets up its queues
  (``pgmq.enable_notify_insert(queue, --pgmq-throttle-ms)``; a waiting consumer LISTENs
  on ``pgmq.q_<queue>.INSERT``);
- orch: ``orch.bus.send`` / ``send_batch`` / ``receive`` / ``ack`` through orchcore's
  Python API (``Orch.open(dsn=...)``) on a migrated scratch database, one queue created
  with ``orch.bus.create_queue`` (defaults: dead-letter queue on, 3 retries). Its
  message_logs rows are written in batches off the hot path; each measured phase ends
  after they are written (``orch.bus.logs.flush()``);
- procrastinate: ``defer_async`` / ``batch_defer_async`` of a no-op task, processed by
  its worker (``PsycopgConnector``; finished jobs deleted, as an ack deletes a message).

Each system in turn (the order rotates each run): ``--warmup`` messages sent and
consumed unmeasured, then

1. send, single: ``--messages`` sent one at a time by one producer task (msgs/s);
2. receive+ack x1: one consumer process drains them (msgs/s, from ``go`` to the last
   consumer's final empty read); CPU ms a message of the consumer processes and of the
   server backends connected to the system's database (other work on a shared machine
   is not counted; the WAL writer and checkpointer are not either);
3. send, batched: ``--messages`` more in batches of ``--batch-size``;
4. receive+ack x2: two consumer processes drain those;
5. latency: one consumer process waits (orch: receive with wait_seconds; raw PGMQ:
   LISTEN on PGMQ's notify-insert channel, or read_with_poll; procrastinate: its
   worker, listening), and ``--latency-messages`` are sent one at a time, each
   ``--latency-interval`` seconds after the consumer said it had the previous one (so
   every message finds the consumer waiting, and a slow consumer's backlog does not
   count as latency); latency is the call to send -> the consumer holding the message
   (the same monotonic clock in both processes).

Every phase checks that each message was acknowledged exactly once. Consumers are
``bench/bus_consumer.py`` processes; PGMQ's and orch's read up to ``--receive-batch``
messages a call and acknowledge each on its own, as orch's ack (and its HTTP route)
takes one id, and raw PGMQ makes the same calls; ``--ack-batch`` acknowledges a read's
messages in one call instead (``orch.bus.ack_batch``, ``pgmq.delete(queue, ids[])``).
procrastinate's worker runs ``--procrastinate-concurrency`` jobs at a time.

    .venv/bin/python bench/bus_throughput.py [--dsn DSN] [--runs 3] [--messages 10000]
        [--systems pgmq,pgmq-notify,orch,procrastinate] [--ack-batch]

procrastinate is not one of orch's dependencies; install it into the venv first:
``.venv/bin/pip install procrastinate==3.10.0``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.metadata
import json
import platform
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from bus_consumer import (
    MESSAGE_TYPE,
    PROCRASTINATE_TASK,
    QUEUE,
    payload,
    pgmq_connect,
    pgmq_message,
    procrastinate_app,
)
from latency_stats import Summary, median_summary, summarise
from saga_throughput import process_cpu_seconds
from scratch_database import DEFAULT_DSN, scratch_database, with_database

HERE = Path(__file__).parent
CONSUMER = HERE / "bus_consumer.py"
TARGET_VS_PROCRASTINATE = 3.0
TARGET_VS_PGMQ = 0.85  # orch within 15% of raw PGMQ
TARGET_P99_MS = 50.0
#: Sequence numbers of warm-up messages start here (measured ones start at 0).
WARMUP_BASE = 100_000_000


def bundled_pgmq_sql() -> tuple[str, str]:
    """(version, install script) of PGMQ's SQL-only build in the ``pgmq`` wheel, read
    as files of the distribution (importing ``pgmq`` would import its client)."""
    folder = importlib.metadata.distribution("pgmq").locate_file("pgmq/sql")
    version = folder.joinpath("VERSION").read_text("utf-8").strip().splitlines()[-1].strip()
    return version, folder.joinpath("pgmq.sql").read_text("utf-8")


@contextlib.asynccontextmanager
async def plain_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """An empty database named <prefix>_<random>, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield with_database(admin_dsn, name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# -- the systems (their producer side; consumers are bench/bus_consumer.py) ------------------


class BusSystem:
    key: str
    label: str
    consumer: str  # bus_consumer.py --system

    def database(self, admin_dsn: str) -> contextlib.AbstractAsyncContextManager[str]:
        raise NotImplementedError

    async def open(self, dsn: str) -> None:
        raise NotImplementedError

    async def send_one(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def send_batch(self, bodies: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    async def drain_here(self) -> int:
        """Consume what is queued in this process (the warm-up); how many."""
        raise NotImplementedError

    async def sends_done(self) -> None:
        """Wait for what the sends left to write (inside the measured time)."""
        return None

    async def close(self) -> None:
        raise NotImplementedError

    def consumer_args(self) -> list[str]:
        return []

    async def version(self) -> str:
        return ""


class PgmqSystem(BusSystem):
    """Raw PGMQ as it comes: no trigger; a waiting consumer calls read_with_poll."""

    key, label, consumer = "pgmq", "raw PGMQ", "pgmq"
    wait = "poll"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conn: asyncpg.Connection | None = None
        self.sql_version, self.script = bundled_pgmq_sql()

    @contextlib.asynccontextmanager
    async def database(self, admin_dsn: str) -> AsyncIterator[str]:
        async with plain_database(admin_dsn, "pgmq_bench") as dsn:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(self.script)
            finally:
                await conn.close()
            yield dsn

    async def open(self, dsn: str) -> None:
        self.conn = await pgmq_connect(dsn)
        await self.conn.execute("SELECT pgmq.create($1)", QUEUE)
        if self.wait == "notify":
            # As orch sets up its queues (orchcore.bus.wakeups.NOTIFY_THROTTLE_MS). The
            # latency phase's sends are further apart than that: none goes unnotified.
            await self.conn.execute(
                "SELECT pgmq.enable_notify_insert($1, $2)", QUEUE, self.args.pgmq_throttle_ms
            )

    async def send_one(self, body: dict[str, Any]) -> None:
        assert self.conn is not None
        await self.conn.fetchval("SELECT pgmq.send($1::text, $2::jsonb)", QUEUE, pgmq_message(body))

    async def send_batch(self, bodies: list[dict[str, Any]]) -> None:
        assert self.conn is not None
        await self.conn.fetch(
            "SELECT pgmq.send_batch($1::text, $2::jsonb[])",
            QUEUE,
            [pgmq_message(b) for b in bodies],
        )

    async def drain_here(self) -> int:
        assert self.conn is not None
        taken = 0
        while rows := await self.conn.fetch(
            "SELECT msg_id FROM pgmq.read($1::text, 30, $2::integer)",
            QUEUE,
            self.args.receive_batch,
        ):
            for row in rows:
                await self.conn.fetchval(
                    "SELECT pgmq.delete($1::text, $2::bigint)", QUEUE, row["msg_id"]
                )
            taken += len(rows)
        return taken

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    def consumer_args(self) -> list[str]:
        return [
            "--pgmq-wait",
            self.wait,
            "--pgmq-poll-ms",
            str(self.args.pgmq_poll_ms),
            *(["--ack-batch"] if self.args.ack_batch else []),
        ]

    async def version(self) -> str:
        wait = (
            f"pgmq.enable_notify_insert(queue, {self.args.pgmq_throttle_ms}), LISTEN"
            if self.wait == "notify"
            else f"no trigger, read_with_poll every {self.args.pgmq_poll_ms} ms"
        )
        return f"PGMQ {self.sql_version} (SQL build from the pgmq wheel); waiting: {wait}"


class PgmqNotifySystem(PgmqSystem):
    """Raw PGMQ with its notify-on-insert trigger; a waiting consumer LISTENs."""

    key, label = "pgmq-notify", "raw PGMQ+notify"
    wait = "notify"


class OrchSystem(BusSystem):
    key, label, consumer = "orch", "orch", "orch"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.orch: Any = None

    def database(self, admin_dsn: str) -> contextlib.AbstractAsyncContextManager[str]:
        return scratch_database(admin_dsn)

    async def open(self, dsn: str) -> None:
        from orchcore import Orch

        self.orch = await Orch.open(dsn=dsn)
        if not hasattr(self.orch, "bus"):
            await self.orch.close()
            raise SystemExit(
                "orch has no bus yet (orch.bus): run with --systems pgmq,procrastinate"
            )
        await self.orch.bus.create_queue({"queue_name": QUEUE}, actor="bench")
        self.dsn = dsn

    @staticmethod
    def _request(body: dict[str, Any]) -> dict[str, Any]:
        return {"queue_name": QUEUE, "message_type": MESSAGE_TYPE, "message_payload": body}

    async def send_one(self, body: dict[str, Any]) -> None:
        await self.orch.bus.send(self._request(body), producer=None, actor="bench")

    async def send_batch(self, bodies: list[dict[str, Any]]) -> None:
        await self.orch.bus.send_batch(
            QUEUE, [self._request(b) for b in bodies], producer=None, actor="bench"
        )

    async def sends_done(self) -> None:
        await self.orch.bus.logs.flush()  # their message_logs rows, written in batches

    def consumer_args(self) -> list[str]:
        return ["--ack-batch"] if self.args.ack_batch else []

    async def drain_here(self) -> int:
        from orchcore.bus.models import ReceiveRequest

        request = ReceiveRequest(max_messages=self.args.receive_batch)
        taken = 0
        while messages := (await self.orch.bus.receive(QUEUE, request, consumer=None)).messages:
            for message in messages:
                await self.orch.bus.ack(QUEUE, message.message_id, consumer=None)
            taken += len(messages)
        return taken

    async def close(self) -> None:
        if self.orch is not None:
            await self.orch.close()
            self.orch = None

    async def version(self) -> str:
        conn = await asyncpg.connect(self.dsn)
        try:
            row = await conn.fetchrow("SELECT version, source FROM orch_pgmq")
        except asyncpg.UndefinedTableError:
            row = None
        finally:
            await conn.close()
        pgmq = f"PGMQ {row['version']} ({row['source']})" if row else "PGMQ not recorded"
        return f"orch {importlib.metadata.version('orch')}, {pgmq}"


class ProcrastinateSystem(BusSystem):
    key, label, consumer = "procrastinate", "procrastinate", "procrastinate"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.app: Any = None
        self.taken = 0

    @contextlib.asynccontextmanager
    async def database(self, admin_dsn: str) -> AsyncIterator[str]:
        async with plain_database(admin_dsn, "procrastinate_bench") as dsn:
            app = procrastinate_app(dsn)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
            yield dsn

    def _count(self, seq: int) -> None:
        self.taken += 1

    async def open(self, dsn: str) -> None:
        self.app = procrastinate_app(dsn, self._count)
        await self.app.open_async()
        self.task = self.app.tasks[PROCRASTINATE_TASK]

    async def send_one(self, body: dict[str, Any]) -> None:
        await self.task.defer_async(**body)

    async def send_batch(self, bodies: list[dict[str, Any]]) -> None:
        await self.task.batch_defer_async(*bodies)

    async def drain_here(self) -> int:
        self.taken = 0
        await self.app.run_worker_async(
            queues=[QUEUE],
            concurrency=self.args.procrastinate_concurrency,
            wait=False,
            delete_jobs="always",
            install_signal_handlers=False,
        )
        return self.taken

    async def close(self) -> None:
        if self.app is not None:
            await self.app.close_async()
            self.app = None

    def consumer_args(self) -> list[str]:
        return ["--concurrency", str(self.args.procrastinate_concurrency)]

    async def version(self) -> str:
        return (
            f"procrastinate {importlib.metadata.version('procrastinate')} (PsycopgConnector, "
            f"worker concurrency {self.args.procrastinate_concurrency}, delete_jobs=always)"
        )


SYSTEMS: dict[str, Callable[[argparse.Namespace], BusSystem]] = {
    "pgmq": PgmqSystem,
    "pgmq-notify": PgmqNotifySystem,
    "orch": OrchSystem,
    "procrastinate": ProcrastinateSystem,
}


# -- consumer processes ----------------------------------------------------------------------


class ConsumerProcess:
    """One bus_consumer.py: ``ready`` when connected, ``go`` to start, one JSON result."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.errors: collections.deque[str] = collections.deque(maxlen=40)
        assert process.stderr is not None
        self._stderr = asyncio.create_task(self._drain(process.stderr))

    @classmethod
    async def spawn(cls, argv: list[str]) -> ConsumerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CONSUMER),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,  # the result is one long line
        )
        return cls(process)

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            self.errors.append(raw.decode(errors="replace").rstrip())

    async def line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise SystemExit(f"consumer: no answer in {timeout:.0f} s: {self.tail()}") from None
        if not raw:
            await self.process.wait()
            raise SystemExit(f"consumer exited ({self.process.returncode}): {self.tail()}")
        return raw.decode().strip()

    def tail(self) -> str:
        return " | ".join(list(self.errors)[-8:])

    def say(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{word}\n".encode())

    async def finish(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                self.say("exit")
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._stderr, 2)


async def backend_cpu(dsn: str) -> dict[int, float]:
    """CPU seconds so far of each server backend connected to ``dsn``'s database (this
    query's own backend left out): other work on a shared server is not counted."""
    conn = await asyncpg.connect(dsn)
    try:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {row["pid"]: process_cpu_seconds(row["pid"]) for row in pids}


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """Backends that came up in between count from 0; those that went are lost."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@dataclass
class Consumed:
    rate: float  # messages/s
    consumer_cpu_ms: float  # a message, the consumer processes together
    postgres_cpu_ms: float  # a message, the backends serving the system's database
    check: str  # "ok" or what went wrong
    latency: Summary | None = None  # ms, latency phase only


def exactly_once(expected: range, seqs: Sequence[int]) -> str:
    counts = collections.Counter(seqs)
    twice = sum(1 for n in counts.values() if n > 1)
    missing = sum(1 for seq in expected if seq not in counts)
    stray = sum(1 for seq in counts if seq not in expected)
    if not (twice or missing or stray) and len(seqs) == len(expected):
        return "ok"
    return f"{len(seqs)} acks of {len(expected)}: {missing} missing, {twice} twice, {stray} stray"


async def consume(
    system: BusSystem,
    dsn: str,
    args: argparse.Namespace,
    *,
    consumers: int,
    expected: range,
    latency: Callable[[ConsumerProcess], Any] | None = None,
) -> tuple[Consumed, list[dict[str, Any]]]:
    """Start ``consumers`` processes, let them go, collect what each acknowledged. With
    ``latency`` (a coroutine function that sends the messages to the one consumer and
    reads its ``got`` lines), it waits for new ones."""
    mode = ["--mode", "latency", "--count", str(len(expected))] if latency else ["--mode", "drain"]
    argv = [
        "--system",
        system.consumer,
        "--dsn",
        dsn,
        "--batch",
        str(args.receive_batch),
        *mode,
        *system.consumer_args(),
    ]
    processes = [
        await ConsumerProcess.spawn([*argv, "--index", str(n)]) for n in range(1, consumers + 1)
    ]
    try:
        for process in processes:
            if (word := await process.line(60)) != "ready":
                raise SystemExit(f"{system.label} consumer said {word!r}: {process.tail()}")
        postgres_before = await backend_cpu(dsn)
        for process in processes:
            process.say("go")
        began = time.monotonic()
        if latency is not None:
            await asyncio.sleep(args.latency_settle)  # the consumer is waiting by now
            await latency(processes[0])
        results = [json.loads(await p.line(args.timeout)) for p in processes]
        postgres_after = await backend_cpu(dsn)
    finally:
        for process in processes:
            await process.finish()
    seqs = [seq for result in results for seq in result["seqs"]]
    count = max(1, len(expected))
    ended = max(result["ended"] for result in results)
    return (
        Consumed(
            rate=len(seqs) / (ended - began),
            consumer_cpu_ms=1000 * sum(r["cpu"] for r in results) / count,
            postgres_cpu_ms=1000 * cpu_between(postgres_before, postgres_after) / count,
            check=exactly_once(expected, seqs),
        ),
        results,
    )


# -- one system, one run ---------------------------------------------------------------------


@dataclass
class Result:
    label: str
    send_single: float  # msgs/s
    send_batched: float  # msgs/s
    x1: Consumed
    x2: Consumed
    latency: Summary  # ms
    checks: dict[str, str] = field(default_factory=dict)
    version: str = ""


async def send_all(system: BusSystem, seqs: range, pad: int, batch_size: int) -> float:
    """Send ``seqs`` (one at a time with batch_size 1); msgs/s."""
    began = time.perf_counter()
    if batch_size <= 1:
        for seq in seqs:
            await system.send_one(payload(seq, pad))
    else:
        for start in range(seqs.start, seqs.stop, batch_size):
            chunk = range(start, min(start + batch_size, seqs.stop))
            await system.send_batch([payload(seq, pad) for seq in chunk])
    await system.sends_done()
    return len(seqs) / (time.perf_counter() - began)


async def measure(system: BusSystem, args: argparse.Namespace) -> Result:
    n, pad = args.messages, args.payload_pad
    async with system.database(args.dsn) as dsn:
        await system.open(dsn)
        try:
            await send_all(system, range(WARMUP_BASE, WARMUP_BASE + args.warmup), pad, 1)
            await send_all(
                system, range(WARMUP_BASE + args.warmup, WARMUP_BASE + 2 * args.warmup), pad, 50
            )
            if (warmed := await system.drain_here()) != 2 * args.warmup:
                raise SystemExit(f"{system.label}: warm-up took {warmed} of {2 * args.warmup}")

            single = await send_all(system, range(0, n), pad, 1)
            x1, _ = await consume(system, dsn, args, consumers=1, expected=range(0, n))
            batched = await send_all(system, range(n, 2 * n), pad, args.batch_size)
            x2, _ = await consume(system, dsn, args, consumers=2, expected=range(n, 2 * n))

            wanted = range(2 * n, 2 * n + args.latency_messages)
            sent_at: dict[int, float] = {}

            async def send_one_by_one(consumer: ConsumerProcess) -> None:
                for seq in wanted:
                    sent_at[seq] = time.monotonic()
                    await system.send_one(payload(seq, pad))
                    if (said := await consumer.line(args.timeout)) != f"got {seq}":
                        raise SystemExit(f"{system.label}: sent {seq}, consumer said {said!r}")
                    await asyncio.sleep(args.latency_interval)

            waited, results = await consume(
                system, dsn, args, consumers=1, expected=wanted, latency=send_one_by_one
            )
            samples = [
                1000 * (at - sent_at[seq])
                for result in results
                for seq, at in zip(result["seqs"], result["at"], strict=True)
            ]
            version = await system.version()
        finally:
            await system.close()
    return Result(
        label=system.label,
        send_single=single,
        send_batched=batched,
        x1=x1,
        x2=x2,
        latency=summarise(samples),
        checks={"x1": x1.check, "x2": x2.check, "latency": waited.check},
        version=version,
    )


# -- printing --------------------------------------------------------------------------------

HEADER = (
    f"{'':<17}{'send/s':>9}{'batch/s':>10}{'recv+ack/s x1':>15}{'x2':>9}"
    f"{'lat p50':>9}{'p99':>8}{'max':>8}"
    f"{'cpu ms/msg x1: cons':>21}{'pg':>6}{'x2: cons':>10}{'pg':>6}  checks"
)


def row(r: Result) -> str:
    checks = "ok" if all(v == "ok" for v in r.checks.values()) else "FAILED"
    return (
        f"{r.label:<17}{r.send_single:>9.0f}{r.send_batched:>10.0f}{r.x1.rate:>15.0f}"
        f"{r.x2.rate:>9.0f}{r.latency.p50:>9.1f}{r.latency.p99:>8.1f}{r.latency.max:>8.1f}"
        f"{r.x1.consumer_cpu_ms:>21.3f}{r.x1.postgres_cpu_ms:>6.3f}"
        f"{r.x2.consumer_cpu_ms:>10.3f}{r.x2.postgres_cpu_ms:>6.3f}  {checks}"
    )


def median_consumed(found: Sequence[Consumed]) -> Consumed:
    return Consumed(
        rate=statistics.median(c.rate for c in found),
        consumer_cpu_ms=statistics.median(c.consumer_cpu_ms for c in found),
        postgres_cpu_ms=statistics.median(c.postgres_cpu_ms for c in found),
        check="ok" if all(c.check == "ok" for c in found) else "failed",
    )


def median_result(found: Sequence[Result]) -> Result:
    return Result(
        label=found[0].label,
        send_single=statistics.median(r.send_single for r in found),
        send_batched=statistics.median(r.send_batched for r in found),
        x1=median_consumed([r.x1 for r in found]),
        x2=median_consumed([r.x2 for r in found]),
        latency=median_summary([r.latency for r in found]),
        checks={
            name: "ok" if all(r.checks[name] == "ok" for r in found) else "failed"
            for name in found[0].checks
        },
        version=found[0].version,
    )


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


FIGURES: dict[str, Callable[[Result], float]] = {
    "send": lambda r: r.send_single,
    "send batched": lambda r: r.send_batched,
    "recv+ack x1": lambda r: r.x1.rate,
    "recv+ack x2": lambda r: r.x2.rate,
}


def compare(
    results: dict[str, list[Result]], mine: str, theirs: str, figure: str
) -> tuple[float, list[float]]:
    """(ratio of the medians, each run's own ratio) of one figure of two systems."""
    of = FIGURES[figure]
    median = statistics.median(of(r) for r in results[mine]) / statistics.median(
        of(r) for r in results[theirs]
    )
    return median, [of(a) / of(b) for a, b in zip(results[mine], results[theirs], strict=True)]


def cpu_of(consumed: Consumed) -> float:
    return consumed.consumer_cpu_ms + consumed.postgres_cpu_ms


def report(results: dict[str, list[Result]], medians: dict[str, Result]) -> None:
    def runs(ratios: list[float]) -> str:
        return ", ".join(f"{r:.2f}" for r in ratios)

    if "orch" in results and "procrastinate" in results:
        for figure in FIGURES:
            ratio, each = compare(results, "orch", "procrastinate", figure)
            target = ""
            if figure.startswith("recv"):
                met = verdict(ratio >= TARGET_VS_PROCRASTINATE)
                target = f": {met} the target of {TARGET_VS_PROCRASTINATE:.0f}x"
            print(f"orch / procrastinate, {figure}: {ratio:.2f}x (runs: {runs(each)}){target}")
    for baseline in ("pgmq", "pgmq-notify"):
        if "orch" not in results or baseline not in results:
            continue
        for figure in FIGURES:
            ratio, each = compare(results, "orch", baseline, figure)
            print(
                f"orch / {medians[baseline].label}, {figure}: {ratio:.2f} "
                f"({100 * (ratio - 1):+.0f}%; runs: {runs(each)}): "
                f"{verdict(ratio >= TARGET_VS_PGMQ)} the target of within "
                f"{100 * (1 - TARGET_VS_PGMQ):.0f}%"
            )
    for baseline in ("pgmq", "procrastinate"):
        if "orch" not in medians or baseline not in medians:
            continue
        mine, theirs = medians["orch"], medians[baseline]
        print(
            f"orch / {theirs.label}, CPU a message received+acked (consumers + their "
            f"backends): x1 "
            f"{cpu_of(mine.x1) / cpu_of(theirs.x1):.2f}, "
            f"x2 {cpu_of(mine.x2) / cpu_of(theirs.x2):.2f}"
        )
    if orch := medians.get("orch"):
        print(
            f"orch send -> waiting consumer p99 {orch.latency.p99:.1f} ms (runs: "
            f"{', '.join(f'{r.latency.p99:.1f}' for r in results['orch'])}): "
            f"{verdict(orch.latency.p99 < TARGET_P99_MS)} the target of under "
            f"{TARGET_P99_MS:.0f} ms"
        )


def library_versions() -> str:
    found = []
    for package in ("pgmq", "procrastinate", "asyncpg", "psycopg", "psycopg-pool", "pydantic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{package} {importlib.metadata.version(package)}")
    return ", ".join(found)


async def main(args: argparse.Namespace) -> None:
    chosen = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SYSTEMS]
    if unknown:
        raise SystemExit(f"--systems: unknown {unknown[0]!r} (choose from {', '.join(SYSTEMS)})")
    if "procrastinate" in chosen:
        try:
            importlib.metadata.version("procrastinate")
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(
                "procrastinate is not installed: .venv/bin/pip install procrastinate==3.10.0"
            ) from None
    admin = await asyncpg.connect(args.dsn)
    try:
        server = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    print(
        f"bus throughput: {args.messages} messages a phase and system (after "
        f"{2 * args.warmup} warm-up), batches of {args.batch_size}, reads of "
        f"{args.receive_batch}, {args.latency_messages} latency messages one at a time "
        f"({args.latency_interval * 1000:.0f} ms apart), acks "
        f"{'a read at a time' if args.ack_batch else 'one by one'}, "
        f"{args.runs} runs; consumers are processes\n"
        f"PostgreSQL {server}, Python {platform.python_version()}, {library_versions()}"
    )
    results: dict[str, list[Result]] = {name: [] for name in chosen}
    began = time.monotonic()
    for run in range(1, args.runs + 1):
        order = chosen[run - 1 :] + chosen[: run - 1]  # rotate: drift hits all alike
        print(f"\nrun {run} (order: {', '.join(order)})\n{HEADER}", flush=True)
        for name in order:
            result = await measure(SYSTEMS[name](args), args)
            results[name].append(result)
            print(row(result), flush=True)
            bad = {k: v for k, v in result.checks.items() if v != "ok"}
            if bad:
                print(f"  {result.label}: exactly-once check failed: {bad}")
    medians = {name: median_result(found) for name, found in results.items()}
    print(f"\nmedian of {args.runs} runs ({time.monotonic() - began:.0f} s in all)\n{HEADER}")
    for median in medians.values():
        print(row(median))
    for median in medians.values():
        print(f"  {median.label}: {median.version}")
    report(results, medians)
    failed = [
        f"{r.label} {phase}"
        for found in results.values()
        for r in found
        for phase, check in r.checks.items()
        if check != "ok"
    ]
    if failed:
        raise SystemExit(f"exactly-once check failed: {', '.join(failed)}")
    print("every message acknowledged exactly once, in every phase of every system and run")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; scratch dbs are made")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10_000, help="messages a phase")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured, single and batched")
    parser.add_argument("--batch-size", type=int, default=100, help="messages a batched send")
    parser.add_argument("--receive-batch", type=int, default=10, help="messages a read")
    parser.add_argument("--payload-pad", type=int, default=100, help="filler in each payload")
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument(
        "--latency-interval", type=float, default=0.02, help="seconds from one got to the next send"
    )
    parser.add_argument(
        "--latency-settle", type=float, default=0.5, help="seconds for the consumer to wait"
    )
    parser.add_argument(
        "--pgmq-throttle-ms", type=int, default=10, help="raw PGMQ+notify: notify throttle"
    )
    parser.add_argument(
        "--ack-batch", action="store_true", help="ack a read's messages in one call"
    )
    parser.add_argument("--pgmq-poll-ms", type=int, default=10, help="read_with_poll interval")
    parser.add_argument("--procrastinate-concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for one phase")
    parser.add_argument("--systems", default="pgmq,pgmq-notify,orch,procrastinate")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
