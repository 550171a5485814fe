"""Delay from a committed health change to another process's discovery cache showing it.

The parent fills a scratch registry (1,000 services x 5 healthy instances), starts
a child process that opens an Orch with discovery, and flips one instance between
healthy and unhealthy with plain SQL UPDATEs (the NOTIFY trigger fires as for the
registry's own transitions). The child reports the wall-clock time (CLOCK_REALTIME,
shared by processes on one machine) at which its cache changed, and when the
notification arrived. Flips go in lockstep: the next one waits for the child's
report plus a small gap, so no two flips are ever folded into one reload.
Target: p99 < 200 ms.

    .venv/bin/python bench/health_propagation.py [--dsn DSN] [--runs 3] [--flips 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from latency_stats import median_summary, summarise, table
from scratch_database import DEFAULT_DSN, fill_registry, scratch_database, service_name

from orchcore import Orch, Settings

TARGET_P99_MS = 200.0
#: How long the parent waits for the child to see one flip before calling it lost.
FLIP_TIMEOUT_SECONDS = 5.0
WATCHED_SERVICE = service_name(500)
WATCHED_INSTANCE = f"{WATCHED_SERVICE}-1"

_FLIP = "UPDATE service_instances SET status = $2, status_changed_at = now() WHERE id = $1"


# -- child: an Orch whose discovery cache is watched ---------------------------------------


class CacheWatcher:
    """Reports each change of one instance's presence among the healthy, as it happens.

    Discovery has no public change hook, so this wraps the cache's private
    ``_apply`` on this one object (no engine code changes): the report is written
    the moment a lookup would start returning the new answer. Polling the public
    lookup instead would add the polling interval to every figure.
    """

    def __init__(self, orch: Orch, service: str, instance_id: str, instance_uuid: UUID) -> None:
        self._discovery = orch.discovery
        self._service = service
        self._instance_id = instance_id
        self._instance_uuid = str(instance_uuid)
        self._notified_ns = 0
        self._healthy = self._is_healthy()
        apply_changes = self._discovery._apply

        def apply_and_report(*args: Any, **kwargs: Any) -> None:
            apply_changes(*args, **kwargs)
            self._report_if_changed()

        self._discovery._apply = apply_and_report  # type: ignore[method-assign]
        assert orch.listener is not None
        orch.listener.subscribe(self._note_notification)

    def _is_healthy(self) -> bool:
        healthy = self._discovery.healthy_instances(self._service)
        return any(e.instance_id == self._instance_id for e in healthy)

    def _note_notification(self, message: dict[str, Any]) -> None:
        if message.get("id") == self._instance_uuid:
            self._notified_ns = time.time_ns()

    def _report_if_changed(self) -> None:
        seen_ns = time.time_ns()
        healthy = self._is_healthy()
        if healthy != self._healthy:
            self._healthy = healthy
            report = {"healthy": healthy, "seen_ns": seen_ns, "notified_ns": self._notified_ns}
            print(json.dumps(report), flush=True)


async def wait_for_stdin_to_close() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


async def child_main(args: argparse.Namespace) -> None:
    orch = await Orch.open(Settings(database_url=args.dsn))
    try:
        CacheWatcher(orch, WATCHED_SERVICE, WATCHED_INSTANCE, UUID(args.instance_uuid))
        print(json.dumps({"ready": True}), flush=True)
        await wait_for_stdin_to_close()
    finally:
        await orch.close()


# -- parent: flips and timing --------------------------------------------------------------


@dataclass
class RunFigures:
    commit_to_cache_ms: list[float] = field(default_factory=list)
    sent_to_cache_ms: list[float] = field(default_factory=list)
    commit_to_notification_ms: list[float] = field(default_factory=list)
    lost: int = 0

    def series(self) -> list[tuple[str, list[float]]]:
        return [
            # The headline: from the moment the parent holds the commit's answer.
            ("commit -> cache updated", self.commit_to_cache_ms),
            # An upper bound: the parent's own wake-up after the commit is not subtracted.
            ("UPDATE sent -> cache updated", self.sent_to_cache_ms),
            ("commit -> NOTIFY received", self.commit_to_notification_ms),
        ]

    @property
    def slowest_flip(self) -> int:
        """1-based number of the flip with the longest commit -> cache delay."""
        return 1 + max(range(len(self.commit_to_cache_ms)), key=self.commit_to_cache_ms.__getitem__)


async def start_child(dsn: str, instance_uuid: UUID) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        "--dsn",
        dsn,
        "--instance-uuid",
        str(instance_uuid),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    if not json.loads(line or b"{}").get("ready"):
        raise RuntimeError("the child process did not get ready")
    return child


async def stop_child(child: asyncio.subprocess.Process) -> None:
    assert child.stdin is not None
    child.stdin.close()
    try:
        await asyncio.wait_for(child.wait(), timeout=10)
    except TimeoutError:
        child.kill()
        await child.wait()


async def flip_and_time(
    conn: asyncpg.Connection,
    child: asyncio.subprocess.Process,
    instance_uuid: UUID,
    args: argparse.Namespace,
) -> RunFigures:
    assert child.stdout is not None
    figures = RunFigures()
    healthy = True
    for _ in range(args.flips):
        healthy = not healthy
        sent_ns = time.time_ns()
        await conn.execute(_FLIP, instance_uuid, "healthy" if healthy else "unhealthy")
        committed_ns = time.time_ns()  # the commit's answer has arrived
        try:
            line = await asyncio.wait_for(child.stdout.readline(), FLIP_TIMEOUT_SECONDS)
        except TimeoutError:
            figures.lost += 1
            break  # the child's view and ours no longer match; the run stops here
        report = json.loads(line)
        if report["healthy"] != healthy:
            raise RuntimeError(f"child saw healthy={report['healthy']}, expected {healthy}")
        figures.commit_to_cache_ms.append((report["seen_ns"] - committed_ns) / 1e6)
        figures.sent_to_cache_ms.append((report["seen_ns"] - sent_ns) / 1e6)
        figures.commit_to_notification_ms.append((report["notified_ns"] - committed_ns) / 1e6)
        await asyncio.sleep(args.gap_ms / 1000)
    return figures


async def one_run(args: argparse.Namespace) -> RunFigures:
    async with scratch_database(args.dsn) as scratch:
        await fill_registry(scratch, 1000, 5)
        conn = await asyncpg.connect(scratch)
        try:
            instance_uuid = await conn.fetchval(
                "SELECT id FROM service_instances WHERE instance_id = $1", WATCHED_INSTANCE
            )
            child = await start_child(scratch, instance_uuid)
            try:
                return await flip_and_time(conn, child, instance_uuid, args)
            finally:
                await stop_child(child)
        finally:
            await conn.close()


async def parent_main(args: argparse.Namespace) -> None:
    print(
        f"health propagation: {args.flips} flips a run, {args.gap_ms} ms apart, "
        f"{args.runs} runs, commit -> another process's discovery cache"
    )
    runs: list[RunFigures] = []
    for run in range(1, args.runs + 1):
        figures = await one_run(args)
        runs.append(figures)
        rows = [(label, summarise(samples)) for label, samples in figures.series()]
        lost = f", {figures.lost} lost" if figures.lost else ""
        title = f"run {run} (slowest: flip {figures.slowest_flip}{lost})"
        print(table(title, "ms", rows))
    medians = []
    for index, (label, _) in enumerate(runs[0].series()):
        medians.append((label, median_summary([summarise(r.series()[index][1]) for r in runs])))
    print(table(f"median of {args.runs} runs", "ms", medians))
    p99 = medians[0][1].p99
    verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
    print(f"p99 {p99:.2f} ms {verdict} the target of {TARGET_P99_MS} ms")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; a scratch db is made")
    parser.add_argument("--flips", type=int, default=500)
    parser.add_argument("--gap-ms", type=float, default=5.0, help="pause after each flip")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--instance-uuid", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse_args()
    asyncio.run(child_main(options) if options.child else parent_main(options))
