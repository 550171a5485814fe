"""Peak season at scale: sagas and the console's reads on an empty database and on one
holding a year of history (1,000,000 finished workflows with their steps and events).

Two scratch databases side by side, each with its own ``orch daemon --no-health-checks``,
sharing the loopback participant of ``bench/saga_throughput.py`` (same definition, three
POSTs): **filled**, where ``bench/workflow_history.py`` first writes ``--workflows``
finished workflows by set-based SQL (chunks of ``--chunk``, with progress, then VACUUM
ANALYZE and a CHECKPOINT), and **empty**. On each, after ``--warmup`` sagas, then
alternating between the two (so the load other sessions put on the machine weighs on
both alike), ``--runs`` times each

- *api*: ``--sagas`` sagas started through ``POST /api/orchestration/workflows``
  (``--start-concurrency`` at a time); the daemon drives what its API starts at once;
- *claimed*: ``--sagas`` sagas started by this script's own engine
  (``orch.workflows.start``, no runner here), so the daemon claims each one
  (``claim_workflows``) before driving it;

timed from the first start to the poll that sees the last one ended (completion is
polled by correlation id, through its unique index, so the poll costs the same on both
databases), with each start's own latency;
- then the console's fetches, ``--reads`` times each after two unmeasured: the
  Overview (``orch.overview()``, and the pane's whole fetch) and the Workflows pane
  (its fetch for each quick filter), and ``orch.workflows.status_counts()``.

Printed: each phase's medians, the filled/empty ratios against the targets (sagas within
1.5x, each fetch under 200 ms), and with ``--explain`` the plans of the statements behind
them on the filled database (the claim inside a transaction rolled back).

    .venv/bin/python bench/saga_scale.py [--dsn DSN] [--workflows 1000000] [--sagas 200]
        [--runs 3] [--reads 15] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from http_keepalive import KeepAliveClient
from saga_throughput import INITIATOR, WORKFLOW, OrchSystem, start_participant
from scratch_database import DEFAULT_DSN, scratch_database
from workflow_history import fill_finished_workflows

from orchcore import Orch, Settings
from orchcore.db import Queries
from orchtui.panes.overview import fetch_overview
from orchtui.panes.workflows import QUICK_FILTERS, fetch_workflows

SAGA_TARGET = 1.5
FETCH_TARGET_MS = 200.0

_PROGRESS = """
SELECT count(*) FILTER (WHERE current_status = 'completed') AS completed,
       count(*) FILTER (WHERE current_status IN
           ('failed', 'compensated', 'compensation_failed', 'cancelled')) AS failed
FROM distributed_workflows WHERE correlation_id = ANY($1::text[])
"""


@dataclass
class SagaRun:
    seconds: float
    start_ms: float  # median latency of one start


@dataclass
class Phase:
    label: str
    api: list[SagaRun] = field(default_factory=list)
    claimed: list[SagaRun] = field(default_factory=list)
    reads: dict[str, float] = field(default_factory=dict)  # median ms

    def seconds(self, kind: str) -> float:
        return statistics.median(r.seconds for r in getattr(self, kind))

    def start_ms(self, kind: str) -> float:
        return statistics.median(r.start_ms for r in getattr(self, kind))


async def until_ended(conn: asyncpg.Connection, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = await conn.fetchrow(_PROGRESS, ids)
        assert row is not None
        if row["failed"]:
            raise SystemExit(f"{row['failed']} sagas did not complete")
        if row["completed"] == len(ids):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {row['completed']} of {len(ids)} sagas completed")
        await asyncio.sleep(0.02)


async def run_sagas(
    start: Callable[[int, str], Awaitable[None]],
    conn: asyncpg.Connection,
    *,
    count: int,
    prefix: str,
    concurrency: int,
    timeout: float,
) -> SagaRun:
    """Start ``count`` sagas, ``concurrency`` at a time, and wait until all completed."""
    ids = [f"{prefix}{seq:06d}" for seq in range(count)]
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(seq: int) -> None:
        async with gate:
            began = time.perf_counter()
            await start(seq, ids[seq])
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(one(seq) for seq in range(count)))
    await until_ended(conn, ids, timeout)
    return SagaRun(time.perf_counter() - began, statistics.median(latencies))


class Sagas:
    """Both ways of starting the benchmark's saga."""

    def __init__(self, system: OrchSystem, client: KeepAliveClient, orch: Orch) -> None:
        self.system = system
        self.client = client
        self.orch = orch

    async def through_api(self, seq: int, saga_id: str) -> None:
        await self.system.start_saga(self.client, seq, saga_id)

    async def through_engine(self, seq: int, saga_id: str) -> None:
        await self.orch.workflows.start(
            {
                "workflow_name": WORKFLOW,
                "initiating_service": INITIATOR,
                "context_data": {"saga": seq},
                "correlation_id": saga_id,
            },
            actor="bench",
        )


def reads(orch: Orch) -> dict[str, Callable[[], Awaitable[Any]]]:
    found: dict[str, Callable[[], Awaitable[Any]]] = {
        "status counts": orch.workflows.status_counts,
        "orch.overview()": orch.overview,
        "Overview pane fetch": lambda: fetch_overview(orch),
    }
    for quick in QUICK_FILTERS:
        found[f"Workflows fetch: {quick.name}"] = lambda q=quick: fetch_workflows(orch, q)
    return found


async def median_ms(call: Callable[[], Awaitable[Any]], times: int) -> float:
    for _ in range(2):
        await call()
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


@dataclass
class Database:
    """One scratch database under test, with its daemon and this script's engine on it."""

    label: str
    dsn: str
    system: OrchSystem
    orch: Orch
    conn: asyncpg.Connection
    sagas: Sagas
    phase: Phase


async def open_database(
    label: str, dsn: str, args: argparse.Namespace, port: int, client: KeepAliveClient
) -> Database:
    system = OrchSystem(1, args.orch_command)
    await system.prepare(dsn, port)
    orch = await Orch.open(Settings(database_url=dsn))
    conn = await asyncpg.connect(dsn)
    return Database(label, dsn, system, orch, conn, Sagas(system, client, orch), Phase(label))


async def close_database(db: Database) -> None:
    await db.conn.close()
    await db.orch.close()
    await db.system.shutdown()


async def measure(dbs: list[Database], args: argparse.Namespace) -> None:
    """Both databases in turn, run by run and fetch by fetch (the order swapped each
    run), so whatever else loads the machine weighs on both alike."""
    options = {"count": args.sagas, "concurrency": args.start_concurrency, "timeout": args.timeout}
    for db in dbs:
        await run_sagas(
            db.sagas.through_api,
            db.conn,
            **{**options, "count": args.warmup},
            prefix=f"warm-{db.label}-",
        )
    for run in range(1, args.runs + 1):
        for db in dbs if run % 2 else reversed(dbs):
            tag = f"{db.label}-{run}-"
            api = await run_sagas(db.sagas.through_api, db.conn, **options, prefix=f"api-{tag}")
            claimed = await run_sagas(
                db.sagas.through_engine, db.conn, **options, prefix=f"claim-{tag}"
            )
            db.phase.api.append(api)
            db.phase.claimed.append(claimed)
            print(
                f"  {db.label} run {run}: api {api.seconds:.2f} s (start p50 {api.start_ms:.1f} "
                f"ms), claimed {claimed.seconds:.2f} s (start p50 {claimed.start_ms:.1f} ms)",
                flush=True,
            )
    for name in reads(dbs[0].orch):
        for db in dbs:
            db.phase.reads[name] = await median_ms(reads(db.orch)[name], args.reads)
        print(
            f"  {name}: " + ", ".join(f"{db.label} {db.phase.reads[name]:.1f} ms" for db in dbs),
            flush=True,
        )


# -- plans ----------------------------------------------------------------------------------

Q = Queries("orchcore.saga")


def padded(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    """``params`` cut or padded with NULL to the parameters the statement takes (the
    same plans are asked of the statements before and after migration 0012)."""
    highest = max((int(n) for n in re.findall(r"\$(\d+)", sql)), default=0)
    return params[:highest] + (None,) * (highest - len(params))


async def explain(conn: asyncpg.Connection, label: str, sql: str, *params: Any) -> None:
    params = padded(sql, params)
    tx = conn.transaction()
    await tx.start()
    try:
        # each call's own plan, as the engine's list asks for
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *params)
    finally:
        await tx.rollback()
    print(f"\n-- {label}")
    for row in rows:
        print("   " + row[0])


async def explain_all(conn: asyncpg.Connection, orch: Orch) -> None:
    """The statements behind the fetches, with the parameters the engine gives them."""
    now = orch.clock.now()
    await explain(conn, "status_summary", Q.status_summary)
    for quick in QUICK_FILTERS:
        statuses = [str(s) for s in quick.statuses] if quick.statuses else None
        one = statuses[0] if statuses and len(statuses) == 1 and "$12" in Q.list_workflows else None
        listed = (None if one else statuses, None, None, None, None, None, 100, 0)
        extra = (None, None, None, one) if one else ()
        await explain(conn, f"list_workflows ({quick.name})", Q.list_workflows, *listed, *extra)
    by_name = (None, WORKFLOW, None, None, None, None, None, 10_001)
    await explain(conn, "count_workflows (by name, up to 10,001)", Q.count_workflows, *by_name)
    await explain(conn, "median_duration", Q.median_duration, WORKFLOW)
    await explain(conn, "claim_workflows (nothing due)", Q.claim_workflows, now, "x", 64, 30.0, "x")


#: What migration 0012 builds on distributed_workflows, under its lock.
MIGRATION_INDEXES = (
    "idx_distributed_workflows_listing",
    "idx_distributed_workflows_status_listing",
    "idx_distributed_workflows_active",
)


async def time_upgrade(conn: asyncpg.Connection) -> None:
    """What migration 0012 costs on this history: each index built again and the count
    taken again, inside a transaction rolled back (writers wait meanwhile, as they do
    for the migration)."""
    found = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY($1::text[])",
        list(MIGRATION_INDEXES),
    )
    if not found:
        print("\nupgrade: no index of migration 0012 here")
        return
    print("\nmigration 0012's work on this history (writes wait for each):")
    tx = conn.transaction()
    await tx.start()
    try:
        for row in found:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
            began = time.perf_counter()
            await conn.execute(row["indexdef"])
            print(f"  {row['indexname']}: {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        await conn.execute("SELECT orch_recount_workflows()")
        print(f"  count by status (orch_recount_workflows): {time.perf_counter() - began:.1f} s")
    finally:
        await tx.rollback()


# -- printing -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def report(empty: Phase, filled: Phase) -> None:
    print(f"\n{'':<32}{'empty':>10}{'filled':>10}{'ratio':>8}")
    for kind, what in (("api", "sagas through the API"), ("claimed", "sagas claimed")):
        e, f = empty.seconds(kind), filled.seconds(kind)
        print(
            f"{what + ' (s)':<32}{e:>10.2f}{f:>10.2f}{f / e:>8.2f}  "
            f"{verdict(f / e <= SAGA_TARGET)} the target of {SAGA_TARGET}x"
        )
        e, f = empty.start_ms(kind), filled.start_ms(kind)
        print(f"{'  one start, p50 (ms)':<32}{e:>10.1f}{f:>10.1f}{f / e:>8.2f}")
    for name in empty.reads:
        e, f = empty.reads[name], filled.reads[name]
        print(
            f"{name + ' (ms)':<32}{e:>10.1f}{f:>10.1f}{f / e:>8.2f}  "
            f"{verdict(f < FETCH_TARGET_MS)} the target of {FETCH_TARGET_MS:.0f} ms"
        )


async def main(args: argparse.Namespace) -> None:
    print(
        f"saga scale: {args.sagas} sagas x {args.runs} runs a way, {args.reads} reads a fetch, "
        f"history {args.workflows:,} workflows; Python {platform.python_version()}"
    )
    participant, port = await start_participant()
    client = KeepAliveClient()
    dbs: list[Database] = []
    try:
        async with (
            scratch_database(args.dsn) as empty_dsn,
            scratch_database(args.dsn) as filled_dsn,
        ):
            filled = await open_database("filled", filled_dsn, args, port, client)
            dbs.append(filled)
            began = time.perf_counter()
            counts = await fill_finished_workflows(
                filled_dsn,
                args.workflows,
                template=WORKFLOW,
                now=filled.orch.clock.now(),
                chunk=args.chunk,
            )
            print(f"  filled in {time.perf_counter() - began:.0f} s: {counts}", flush=True)
            dbs.insert(0, await open_database("empty", empty_dsn, args, port, client))
            version = await filled.conn.fetchval("SHOW server_version")
            print(f"PostgreSQL {version}; databases {empty_dsn}, {filled_dsn}")
            for db in dbs:
                await db.system.launch(db.dsn, port)
            await measure(dbs, args)
            if args.explain:
                await explain_all(filled.conn, filled.orch)
                await time_upgrade(filled.conn)
            for db in dbs:
                await close_database(db)
    finally:
        await client.close()
        await participant.stop()
    report(dbs[0].phase, dbs[1].phase)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; a scratch db is made")
    parser.add_argument("--workflows", type=int, default=1_000_000, help="finished history")
    parser.add_argument("--chunk", type=int, default=50_000, help="workflows a fill statement")
    parser.add_argument("--sagas", type=int, default=200, help="sagas a run")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured sagas a phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reads", type=int, default=15, help="timed calls a fetch")
    parser.add_argument("--start-concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--explain", action="store_true", help="plans on the filled database")
    parser.add_argument("--orch-command", default=None, help="how to run orch")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
