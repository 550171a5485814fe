"""Saga throughput and latency: orch daemons against DBOS Transact, side by side in one run.

The same 3-step saga (each step one POST to ``/step/{n}`` of one loopback participant,
``bench/saga_participant.py``) runs on

- orch x1 and x2: ``orch daemon --no-health-checks`` subprocesses on a scratch database,
  the participant registered as a service with one instance made healthy by a TTL
  heartbeat (no checker runs: health checks would add load of their own), the
  definition ``bench-saga`` (three service_call steps, default retry policy, no
  compensation); sagas are started with ``POST /api/orchestration/workflows``,
  round-robin across the daemons, so each runs in the daemon that took it;
- DBOS x1 and x2: ``bench/saga_dbos_app.py`` processes (DBOS Transact, an async
  workflow of three async steps) on a scratch database of their own, started with
  their ``POST /start`` (``DBOS.start_workflow_async``), round-robin across processes.

Each system in turn: a fresh scratch database, its processes, ``--warmup`` sagas,
then ``--sagas`` measured ones, then ``--solo`` sagas one at a time. Load is a closed
loop: at most ``--window`` sagas in flight (started, not yet seen completed), at most
``--start-concurrency`` start requests at a time, sent by a lean keep-alive client
(``bench/http_keepalive.py``) so the load generator costs little CPU. Completion is
counted by one query every ``--poll`` seconds; per-saga latency (start -> completed)
is read afterwards from each system's own table, stamped by the engine's clock, and
throughput is sagas / (last completion - first start) from the same stamps. CPU is
each process's user+system time over the measured run, per saga: the system's
processes, every postgres process on the machine, the participant, this script.

Database commits: ``xact_commit`` of the system's scratch database in
``pg_stat_database``, read from the admin database (so reading it adds nothing), after
waiting ``--settle`` seconds for backends to flush their pending statistics (PostgreSQL
15 flushes at most once a second while busy, within 10 s once idle). Before the run,
the system sits idle for ``--idle`` seconds to measure its background rate (polling,
heartbeats); "/saga" takes this script's own queries out, "net" the background too.
``bench/saga_statements.py`` shows what the commits are.

    .venv/bin/python bench/saga_throughput.py [--dsn DSN] [--runs 3] [--sagas 2000]
        [--window 128] [--systems orch1,orch2,dbos1,dbos2]

DBOS is not one of orch's dependencies; install it into the venv first:
``.venv/bin/pip install dbos==3.4.0``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from http_keepalive import KeepAliveClient
from latency_stats import Summary, median_summary, summarise
from scratch_database import (
    DEFAULT_DSN,
    register_caller,
    register_loopback_service,
    scratch_database,
    with_database,
)

from orchcore import Orch, Settings

HERE = Path(__file__).parent
PARTICIPANT = HERE / "saga_participant.py"
DBOS_APP = HERE / "saga_dbos_app.py"
#: Tracing on may cost sagas at most this share of their throughput (issue 11).
TRACING_COST = 0.10
TARGET_RATIO = 5.0
TARGET_COMMITS = 6.0
WORKFLOW = "bench-saga"
SERVICE = "participant"
#: The service the benchmark starts its sagas as (their calls come from it).
INITIATOR = "bench"

DEFINITION = {
    "name": WORKFLOW,
    "version": "1.0.0",
    "description": "saga_throughput.py: three POSTs to one participant",
    "timeout_minutes": 30,
    "steps": [
        {
            "name": f"step_{n}",
            "type": "service_call",
            "order": n,
            "service_name": SERVICE,
            "endpoint": f"/step/{n}",
            "input_mapping": {"saga": "saga"},
            "output_mapping": {f"step_{n}_id": "id"},
        }
        for n in (1, 2, 3)
    ],
}


# -- processes ------------------------------------------------------------------------------


class Child:
    """A subprocess whose output is drained (a full pipe would stall it) and kept in part."""

    def __init__(self, label: str, process: asyncio.subprocess.Process) -> None:
        self.label = label
        self.process = process
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self._readers: list[asyncio.Task[None]] = []
        self.first_line: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # Daemons say nothing on stdout: nobody awaits their first line, so its failure
        # at exit must not be reported as never retrieved.
        self.first_line.add_done_callback(lambda f: f.cancelled() or f.exception())

    @classmethod
    async def spawn(cls, label: str, *argv: str, env: dict[str, str] | None = None) -> Child:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        child = cls(label, process)
        assert process.stdout is not None and process.stderr is not None
        child._readers = [
            asyncio.create_task(child._drain(process.stdout, first=True)),
            asyncio.create_task(child._drain(process.stderr, first=False)),
        ]
        return child

    async def _drain(self, stream: asyncio.StreamReader, *, first: bool) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if first and not self.first_line.done():
                self.first_line.set_result(line)
        if first and not self.first_line.done():
            self.first_line.set_exception(
                RuntimeError(f"{self.label} exited: " + " | ".join(list(self.lines)[-5:]))
            )

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    async def stop(self, timeout: float = 20.0) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 2)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU of every process named postgres on the machine (other sessions included)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += process_cpu_seconds(int(entry.name))
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def orch_command() -> list[str]:
    script = Path(sys.executable).with_name("orch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "orchcore.cli.main"]


# -- the systems ----------------------------------------------------------------------------


class System:
    """One system under test in one configuration (its processes on one scratch database)."""

    label: str
    processes: int
    progress_sql: str  # $1: id prefix -> (completed, failed)
    latency_sql: str  # $1: id prefix -> (ms, started epoch s, completed epoch s)
    children: list[Child]

    def database(self, admin_dsn: str) -> contextlib.AbstractAsyncContextManager[str]:
        """A scratch database for this system, dropped afterwards."""
        raise NotImplementedError

    async def prepare(self, dsn: str, participant_port: int) -> None:
        return None

    async def launch(self, dsn: str, participant_port: int) -> None:
        raise NotImplementedError

    async def start_saga(self, client: KeepAliveClient, seq: int, saga_id: str) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        for child in self.children:
            await child.stop()
        self.children = []

    def cpu_seconds(self) -> float:
        return sum(child.cpu_seconds() for child in self.children)


class OrchSystem(System):
    progress_sql = """
        SELECT count(*) FILTER (WHERE current_status = 'completed'),
               count(*) FILTER (WHERE current_status IN
                   ('failed', 'compensated', 'compensation_failed', 'cancelled'))
        FROM distributed_workflows WHERE correlation_id LIKE $1"""
    latency_sql = """
        SELECT extract(epoch FROM completed_at - started_at) * 1000,
               extract(epoch FROM started_at), extract(epoch FROM completed_at)
        FROM distributed_workflows WHERE correlation_id LIKE $1 AND current_status = 'completed'"""

    def __init__(self, processes: int, command: str | None = None, *, tracing: bool = True) -> None:
        self.label = f"orch x{processes}" + ("" if tracing else " untraced")
        self.processes = processes
        self.tracing = tracing
        self.command = shlex.split(command) if command else orch_command()
        self.children = []
        self.urls: list[str] = []
        self.token = ""

    @contextlib.asynccontextmanager
    async def database(self, admin_dsn: str) -> AsyncIterator[str]:
        async with scratch_database(admin_dsn) as dsn:
            yield dsn

    async def prepare(self, dsn: str, participant_port: int) -> None:
        orch = await Orch.open(Settings(database_url=dsn))
        try:
            # Healthy by a TTL heartbeat; with --no-health-checks nothing expires it.
            await register_caller(orch, INITIATOR)
            await register_loopback_service(orch, SERVICE, participant_port)
            await orch.workflow_definitions.register(DEFINITION, actor="bench")
            self.token, _ = await orch.tokens.create(
                name="saga-bench", role="platform_engineer", actor="bench"
            )
        finally:
            await orch.close()

    async def launch(self, dsn: str, participant_port: int) -> None:
        env = {"ORCH_DATABASE_URL": dsn, "ORCH_LOG_FORMAT": "json"}
        if not self.tracing:
            env["ORCH_TRACING"] = "off"  # spans of workflows, steps and calls not recorded
        for number in range(1, self.processes + 1):
            argv = [
                *self.command,
                "daemon",
                "--listen",
                "127.0.0.1:0",
                "--name",
                f"saga-bench-{number}",
                "--no-health-checks",
            ]
            child = await Child.spawn(f"orch daemon {number}", *argv, env=env)
            self.children.append(child)
            listen = await self._started(child)
            self.urls.append(f"http://{listen}")

    @staticmethod
    async def _started(child: Child, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(child.lines):
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == "daemon started":
                        return str(entry["listen"])
            if child.process.returncode is not None:
                raise SystemExit(f"{child.label} exited: " + " | ".join(child.lines))
            await asyncio.sleep(0.05)
        raise SystemExit(f"{child.label} did not start: " + " | ".join(child.lines))

    async def start_saga(self, client: KeepAliveClient, seq: int, saga_id: str) -> None:
        status, body = await client.post(
            f"{self.urls[seq % len(self.urls)]}/api/orchestration/workflows",
            {
                "workflow_name": WORKFLOW,
                "initiating_service": INITIATOR,
                "context_data": {"saga": seq},
                "correlation_id": saga_id,
            },
            {"Authorization": f"Bearer {self.token}"},
        )
        if status not in (200, 201, 202):
            raise RuntimeError(f"orch start: HTTP {status} {body[:300]!r}")

    async def shutdown(self) -> None:
        await super().shutdown()
        self.urls = []


class DbosSystem(System):
    progress_sql = """
        SELECT count(*) FILTER (WHERE status = 'SUCCESS'),
               count(*) FILTER (WHERE status IN
                   ('ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'))
        FROM dbos.workflow_status WHERE workflow_uuid LIKE $1"""
    latency_sql = """
        SELECT (completed_at - created_at)::float8, created_at / 1000.0, completed_at / 1000.0
        FROM dbos.workflow_status WHERE workflow_uuid LIKE $1 AND status = 'SUCCESS'"""

    def __init__(self, processes: int, app_args: str | None = None) -> None:
        self.label = f"DBOS x{processes}"
        self.processes = processes
        self.app_args = shlex.split(app_args) if app_args else []
        self.children = []
        self.urls: list[str] = []

    @contextlib.asynccontextmanager
    async def database(self, admin_dsn: str) -> AsyncIterator[str]:
        name = f"dbos_bench_{secrets.token_hex(5)}"
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                yield with_database(admin_dsn, name)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def launch(self, dsn: str, participant_port: int) -> None:
        # One after the other: the first one creates DBOS's schema.
        for number in range(1, self.processes + 1):
            argv = [
                sys.executable,
                str(DBOS_APP),
                "--dsn",
                dsn,
                "--participant",
                f"http://127.0.0.1:{participant_port}",
                "--executor-id",
                f"dbos-{number}",
                *self.app_args,
            ]
            child = await Child.spawn(f"DBOS app {number}", *argv)
            self.children.append(child)
            port = int(await asyncio.wait_for(child.first_line, 90))
            self.urls.append(f"http://127.0.0.1:{port}")

    async def start_saga(self, client: KeepAliveClient, seq: int, saga_id: str) -> None:
        status, body = await client.post(
            f"{self.urls[seq % len(self.urls)]}/start",
            {"id": saga_id, "context": {"saga": seq}},
        )
        if status not in (200, 201):
            raise RuntimeError(f"DBOS start: HTTP {status} {body[:300]!r}")

    async def shutdown(self) -> None:
        await super().shutdown()
        self.urls = []


SYSTEMS: dict[str, Callable[[argparse.Namespace], System]] = {
    "orch1": lambda args: OrchSystem(1, args.orch_command),
    "orch2": lambda args: OrchSystem(2, args.orch_command),
    # Tracing off (ORCH_TRACING=off): what recording spans costs the same sagas.
    "orch1-untraced": lambda args: OrchSystem(1, args.orch_command, tracing=False),
    "orch2-untraced": lambda args: OrchSystem(2, args.orch_command, tracing=False),
    "dbos1": lambda args: DbosSystem(1, args.dbos_app_args),
    "dbos2": lambda args: DbosSystem(2, args.dbos_app_args),
}


# -- load and measurement --------------------------------------------------------------------


@dataclass
class Drive:
    wall_seconds: float
    polls: int
    failed: int


async def drive(
    system: System,
    client: KeepAliveClient,
    dsn: str,
    *,
    count: int,
    prefix: str,
    args: argparse.Namespace,
) -> Drive:
    """Start ``count`` sagas in a closed loop and wait until every one has ended."""
    conn = await asyncpg.connect(dsn)
    completed = failed = polls = started = 0
    progress = asyncio.Event()
    finished = asyncio.Event()

    async def poll() -> None:
        nonlocal completed, failed, polls
        while True:
            row = await conn.fetchrow(system.progress_sql, prefix + "%")
            polls += 1
            assert row is not None
            completed, failed = row[0], row[1]
            progress.set()
            if completed + failed >= count:
                finished.set()
                return
            await asyncio.sleep(args.poll)

    gate = asyncio.Semaphore(args.start_concurrency)
    starts: set[asyncio.Task[None]] = set()
    start_errors: list[BaseException] = []

    async def start_one(seq: int) -> None:
        try:
            await system.start_saga(client, seq, f"{prefix}{seq:06d}")
        except BaseException as exc:
            start_errors.append(exc)
            progress.set()
        finally:
            gate.release()

    began = time.perf_counter()
    poller = asyncio.create_task(poll())
    try:
        for seq in range(count):
            while args.window and started - (completed + failed) >= args.window:
                progress.clear()
                if poller.done():
                    poller.result()
                await asyncio.wait_for(progress.wait(), args.timeout)
                if start_errors:
                    raise start_errors[0]
            await gate.acquire()
            if start_errors:
                raise start_errors[0]
            task = asyncio.create_task(start_one(seq))
            starts.add(task)
            task.add_done_callback(starts.discard)
            started += 1
        if starts:
            await asyncio.gather(*starts)
        if start_errors:
            raise start_errors[0]
        await asyncio.wait_for(finished.wait(), args.timeout)
        wall = time.perf_counter() - began
    except TimeoutError:
        raise SystemExit(
            f"{system.label}: only {completed} of {count} sagas completed ({failed} failed) "
            f"after {args.timeout:.0f} s without progress"
        ) from None
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await poller
        await conn.close()
    return Drive(wall, polls, failed)


async def commits(admin: asyncpg.Connection, database: str) -> tuple[int, int]:
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    row = await admin.fetchrow(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", database
    )
    assert row is not None
    return int(row[0]), int(row[1])


_TABLE_WRITES = """
SELECT schemaname || '.' || relname AS name, n_tup_ins AS ins, n_tup_upd AS upd,
       n_tup_del AS del
FROM pg_stat_user_tables
"""


async def table_writes(dsn: str) -> dict[str, tuple[int, int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(_TABLE_WRITES)
    finally:
        await conn.close()
    return {r["name"]: (r["ins"], r["upd"], r["del"]) for r in rows}


@dataclass
class Result:
    label: str
    sagas: int
    throughput: float  # sagas/s, from the engine's stamps
    wall_throughput: float  # sagas/s, from this script's clock (start of the first request
    # to the poll that saw the last one)
    latency: Summary  # ms
    solo: Summary | None  # ms, one saga in flight at a time
    raw_commits: int
    own_commits: int
    background_commits: float
    idle_rate: float  # commits/s while idle
    rollbacks: int
    participant: dict[str, Any]
    cpu: dict[str, float]  # seconds during the run
    writes: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    per_saga: tuple[float, float] | None = None  # (raw, net) given, for medians

    @property
    def raw_per_saga(self) -> float:
        if self.per_saga is not None:
            return self.per_saga[0]
        return (self.raw_commits - self.own_commits) / self.sagas

    @property
    def net_per_saga(self) -> float:
        if self.per_saga is not None:
            return self.per_saga[1]
        return (self.raw_commits - self.own_commits - self.background_commits) / self.sagas

    def with_per_saga(self, raw: float, net: float) -> Result:
        self.per_saga = (raw, net)
        return self


@dataclass
class Bench:
    """What every measurement shares: the server, the participant and the load generator."""

    admin: asyncpg.Connection
    admin_dsn: str
    participant: Child
    participant_port: int
    client: KeepAliveClient
    args: argparse.Namespace

    @property
    def participant_url(self) -> str:
        return f"http://127.0.0.1:{self.participant_port}"

    def cpu(self, system: System) -> dict[str, float]:
        return {
            "system": system.cpu_seconds(),
            "postgres": postgres_cpu_seconds(),
            "participant": self.participant.cpu_seconds(),
            "bench": own_cpu_seconds(),
        }


async def measure(system: System, bench: Bench) -> Result:
    args, client = bench.args, bench.client
    async with system.database(bench.admin_dsn) as dsn:
        database = dsn.rsplit("/", 1)[1]
        await system.prepare(dsn, bench.participant_port)
        await system.launch(dsn, bench.participant_port)
        try:
            # Ids unique to this system and run: the participant remembers every key.
            tag = secrets.token_hex(3)
            await drive(system, client, dsn, count=args.warmup, prefix=f"warm-{tag}-", args=args)
            await asyncio.sleep(args.settle)
            idle_from, _ = await commits(bench.admin, database)
            idle_began = time.monotonic()
            await asyncio.sleep(args.idle)
            before, rollbacks_before = await commits(bench.admin, database)
            run_began = time.monotonic()
            idle_rate = (before - idle_from) / (run_began - idle_began)
            writes_before = await table_writes(dsn)  # one transaction of ours
            await client.post(f"{bench.participant_url}/stats/reset", {})
            cpu_before = bench.cpu(system)
            run_prefix = f"run-{tag}-"
            result = await drive(
                system, client, dsn, count=args.sagas, prefix=run_prefix, args=args
            )
            cpu_after = bench.cpu(system)
            stats = json.loads((await client.get(f"{bench.participant_url}/stats"))[1])
            await asyncio.sleep(args.settle)
            after, rollbacks_after = await commits(bench.admin, database)
            elapsed = time.monotonic() - run_began
            writes_after = await table_writes(dsn)
            # A saga alone: one in flight at a time, after the measured run.
            solo_prefix = f"solo-{tag}-"
            alone = argparse.Namespace(**{**vars(args), "window": 1, "start_concurrency": 1})
            await drive(system, client, dsn, count=args.solo, prefix=solo_prefix, args=alone)
            conn = await asyncpg.connect(dsn)
            try:
                rows = await conn.fetch(system.latency_sql, run_prefix + "%")
                solo_rows = await conn.fetch(system.latency_sql, solo_prefix + "%")
            finally:
                await conn.close()
        finally:
            await system.shutdown()
    if len(rows) != args.sagas:
        raise SystemExit(f"{system.label}: {len(rows)} of {args.sagas} sagas completed")
    first_start = min(r[1] for r in rows)
    last_end = max(r[2] for r in rows)
    zero = (0, 0, 0)
    return Result(
        label=system.label,
        sagas=args.sagas,
        throughput=args.sagas / float(last_end - first_start),
        wall_throughput=args.sagas / result.wall_seconds,
        latency=summarise([float(r[0]) for r in rows]),
        solo=summarise([float(r[0]) for r in solo_rows]) if solo_rows else None,
        raw_commits=after - before,
        own_commits=result.polls + 1,  # the polls, and reading the table statistics
        background_commits=idle_rate * elapsed,
        idle_rate=idle_rate,
        rollbacks=rollbacks_after - rollbacks_before,
        participant=stats,
        cpu={k: cpu_after[k] - cpu_before[k] for k in cpu_before},
        writes={
            name: (ins - b[0], upd - b[1], dels - b[2])
            for name, (ins, upd, dels) in writes_after.items()
            for b in [writes_before.get(name, zero)]
        },
    )


# -- printing --------------------------------------------------------------------------------

HEADER = (
    f"{'':<10}{'sagas/s':>9}{'(wall)':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    f"{'alone p50':>10}{'p99':>6}"
    f"{'commits':>9}{'/saga':>7}{'net':>7}{'idle/s':>8}"
    f"{'cpu ms/saga: sys':>18}{'pg':>6}{'part':>6}{'bench':>7}"
)


def row(r: Result) -> str:
    cpu = {k: 1000 * v / r.sagas for k, v in r.cpu.items()}
    alone = (r.solo.p50, r.solo.p99) if r.solo else (float("nan"), float("nan"))
    return (
        f"{r.label:<10}{r.throughput:>9.1f}{r.wall_throughput:>8.1f}{r.latency.p50:>9.1f}"
        f"{r.latency.p99:>9.1f}{r.latency.max:>9.1f}"
        f"{alone[0]:>10.1f}{alone[1]:>6.1f}"
        f"{r.raw_commits:>9}{r.raw_per_saga:>7.2f}"
        f"{r.net_per_saga:>7.2f}{r.idle_rate:>8.2f}{cpu['system']:>18.2f}{cpu['postgres']:>6.2f}"
        f"{cpu['participant']:>6.2f}{cpu['bench']:>7.2f}"
    )


def details(r: Result) -> str:
    top = sorted(r.writes.items(), key=lambda kv: -sum(kv[1]))[:6]
    writes = ", ".join(f"{name} +{i}/~{u}/-{d}" for name, (i, u, d) in top if i or u or d)
    return (
        f"  {r.label}: participant {r.participant['requests']} requests "
        f"{r.participant['per_step']}, {r.participant['replays']} replays, "
        f"{r.participant['without_key']} without a key; commits raw {r.raw_commits} - ours "
        f"{r.own_commits} - background {r.background_commits:.0f} ({r.idle_rate:.2f}/s idle); "
        f"rollbacks {r.rollbacks}\n"
        f"    rows written (inserted/updated/deleted): {writes}"
    )


def median_row(results: Sequence[Result]) -> Result:
    """Each figure's median across runs (commits as the median per-saga figures)."""
    first = results[0]
    sagas = first.sagas
    raw = statistics.median(r.raw_per_saga for r in results)
    net = statistics.median(r.net_per_saga for r in results)
    return Result(
        label=first.label,
        sagas=sagas,
        throughput=statistics.median(r.throughput for r in results),
        wall_throughput=statistics.median(r.wall_throughput for r in results),
        latency=median_summary([r.latency for r in results]),
        solo=median_summary([r.solo for r in results if r.solo]) if first.solo else None,
        raw_commits=round(statistics.median(r.raw_commits for r in results)),
        own_commits=0,
        background_commits=0,
        idle_rate=statistics.median(r.idle_rate for r in results),
        rollbacks=round(statistics.median(r.rollbacks for r in results)),
        participant={},
        cpu={k: statistics.median(r.cpu[k] for r in results) for k in first.cpu},
    ).with_per_saga(raw, net)


async def start_participant() -> tuple[Child, int]:
    child = await Child.spawn("participant", sys.executable, str(PARTICIPANT))
    port = int(await asyncio.wait_for(child.first_line, 10))
    return child, port


def versions() -> str:
    found = []
    for package in (
        "dbos",
        "sqlalchemy",
        "psycopg",
        "asyncpg",
        "httpx",
        "uvicorn",
        "starlette",
        "uvloop",
        "httptools",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{package} {importlib.metadata.version(package)}")
    return ", ".join(found)


async def main(args: argparse.Namespace) -> None:
    chosen = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SYSTEMS]
    if unknown:
        raise SystemExit(f"--systems: unknown {unknown[0]!r} (choose from {', '.join(SYSTEMS)})")
    if any(name.startswith("dbos") for name in chosen):
        try:
            importlib.metadata.version("dbos")
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit("DBOS is not installed: .venv/bin/pip install dbos==3.4.0") from None
    print(
        f"saga throughput: {args.sagas} sagas a system and run (after {args.warmup} warm-up), "
        f"window {args.window or 'none'}, start concurrency {args.start_concurrency}, "
        f"poll {args.poll * 1000:.0f} ms, {args.runs} runs; Python {platform.python_version()}, "
        f"{versions()}"
    )
    participant, port = await start_participant()
    admin = await asyncpg.connect(args.dsn)
    print(f"PostgreSQL {await admin.fetchval('SHOW server_version')}; participant on :{port}")
    client = KeepAliveClient()
    bench = Bench(admin, args.dsn, participant, port, client, args)
    results: dict[str, list[Result]] = {name: [] for name in chosen}
    try:
        for run in range(1, args.runs + 1):
            order = chosen[run - 1 :] + chosen[: run - 1]  # rotate: drift hits all alike
            print(f"\nrun {run} (order: {', '.join(order)})\n{HEADER}")
            finished = []
            for name in order:
                result = await measure(SYSTEMS[name](args), bench)
                results[name].append(result)
                finished.append(result)
                print(row(result), flush=True)
            for result in finished:
                print(details(result))
    finally:
        await client.close()
        await admin.close()
        await participant.stop()
    medians = {name: median_row(found) for name, found in results.items()}
    print(f"\nmedian of {args.runs} runs\n{HEADER}")
    for median in medians.values():
        print(row(median))
    for processes in (1, 2):
        orch, dbos = medians.get(f"orch{processes}"), medians.get(f"dbos{processes}")
        if orch and dbos:
            ratio = orch.throughput / dbos.throughput
            verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
            print(
                f"x{processes}: orch/DBOS throughput {ratio:.2f}: {verdict} the target of "
                f"{TARGET_RATIO:.0f}x"
            )
    for processes in (1, 2):
        traced = medians.get(f"orch{processes}")
        untraced = medians.get(f"orch{processes}-untraced")
        if traced and untraced:
            ratio = traced.throughput / untraced.throughput
            verdict = "meets" if ratio >= 1 - TRACING_COST else "MISSES"
            per_run = ", ".join(
                f"{t.throughput / u.throughput:.2f}"
                for t, u in zip(
                    results[f"orch{processes}"], results[f"orch{processes}-untraced"], strict=False
                )
            )
            print(
                f"x{processes}: orch traced/untraced throughput {ratio:.2f} (runs: {per_run}): "
                f"{verdict} the target of at most {TRACING_COST:.0%} lower"
            )
    for name, median in medians.items():
        if name.startswith("orch"):
            verdict = "meets" if median.net_per_saga <= TARGET_COMMITS else "MISSES"
            print(
                f"{median.label}: {median.net_per_saga:.2f} commits a saga (net; "
                f"{median.raw_per_saga:.2f} with background): {verdict} the target of at most "
                f"{TARGET_COMMITS:.0f}"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; scratch dbs are made")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sagas", type=int, default=2000, help="measured sagas a system")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured sagas first")
    parser.add_argument("--solo", type=int, default=100, help="sagas run one at a time after")
    parser.add_argument(
        "--window",
        type=int,
        default=128,  # at 32, orch ran into the loop's own bound: 32 / (latency + poll)
        help="sagas in flight (0: no bound)",
    )
    parser.add_argument("--start-concurrency", type=int, default=16, help="start requests")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between counts")
    parser.add_argument("--settle", type=float, default=11.0, help="seconds for stats to flush")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle background")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds without progress")
    parser.add_argument("--systems", default="orch1,orch2,dbos1,dbos2")
    parser.add_argument(
        "--orch-command",
        default=None,
        help="how to run orch (default: the orch script next to this Python)",
    )
    parser.add_argument(
        "--dbos-app-args", default=None, help="more arguments for bench/saga_dbos_app.py"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
