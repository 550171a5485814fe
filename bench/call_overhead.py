"""What an orchestrated call adds to a plain HTTP request to the same loopback service.

A minimal HTTP service runs in its own process (``bench/loopback_service.py``). An
Orch on a scratch database has it registered as ``venue`` with one healthy instance,
and the same event loop times, call by call with perf_counter_ns,

- orch: ``await caller.call("booking", "venue", "/ping", method="GET")``, and
- bare: ``await client.get(url)`` with one ``httpx.AsyncClient()`` kept open,

in alternating blocks (orch, bare, bare, orch, ...) so drift on a noisy machine
affects both alike. Both keep one connection alive to the service. Overhead is orch's
p50 minus bare's p50 in the same run. Target: p50 overhead under 1 ms.

    .venv/bin/python bench/call_overhead.py [--dsn DSN] [--runs 3] [--calls 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from latency_stats import Summary, median_summary, summarise, table
from scratch_database import (
    DEFAULT_DSN,
    register_caller,
    register_loopback_service,
    scratch_database,
)

from orchcore import Orch, Settings
from orchcore.callpath.caller import ServiceCaller

TARGET_P50_OVERHEAD_US = 1000.0
SERVICE = Path(__file__).with_name("loopback_service.py")
SOURCE, TARGET, ENDPOINT = "booking", "venue", "/ping"


@dataclass(frozen=True)
class RunResult:
    orch: Summary  # us
    bare: Summary  # us
    breaker_round_trips: int  # while timed
    events_written: int  # service_events rows flushed while timed
    events_per_flush: float
    nodelay: str


async def start_service() -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVICE), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 10)
    if not line:
        raise SystemExit("the loopback service did not start")
    return process, int(line)


async def stop_service(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await process.wait()


async def register_target(orch: Orch, port: int) -> None:
    """``venue`` with one instance on the service's port, healthy by a TTL heartbeat."""
    await register_caller(orch, SOURCE)
    await register_loopback_service(orch, TARGET, port)
    await orch.discovery.refresh_all()


def orch_nodelay(caller: Any) -> str:
    """TCP_NODELAY of the call path's idle connections (read through its transport)."""
    try:
        values = []
        for pool in caller.transport._pools.values():
            for connection in pool.idle:
                sock: socket.socket = connection._transport.get_extra_info("socket")
                values.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return ",".join(str(v) for v in values) or "no connection"
    except (AttributeError, OSError):
        return "unknown"


def socket_nodelay(client: httpx.AsyncClient) -> str:
    """TCP_NODELAY of the client's pooled connections (read through httpcore internals)."""
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        values = []
        for connection in pool.connections:
            stream = connection._connection._network_stream
            sock: socket.socket = stream.get_extra_info("socket")
            values.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return ",".join(str(v) for v in values) or "no connection"
    except (AttributeError, OSError):
        return "unknown"


async def time_block(call: Callable[[], Awaitable[int]], n: int, into: list[float]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        started = clock()
        status = await call()
        into.append((clock() - started) / 1000)
        if status != 200:
            raise SystemExit(f"unexpected HTTP {status}")


async def one_run(dsn: str, port: int, args: argparse.Namespace) -> RunResult:
    async with scratch_database(dsn) as scratch:
        orch = await Orch.open(Settings(database_url=scratch))
        try:
            await register_target(orch, port)
            caller: ServiceCaller = await orch.caller()
            url = f"http://127.0.0.1:{port}{ENDPOINT}"
            async with httpx.AsyncClient() as client:

                async def orch_call() -> int:
                    result = await caller.call(SOURCE, TARGET, ENDPOINT, method="GET")
                    return result.status_code

                async def bare_call() -> int:
                    response = await client.get(url)
                    return response.status_code

                warmup_samples: list[float] = []
                for _ in range(args.warmup):
                    await time_block(orch_call, 1, warmup_samples)
                    await time_block(bare_call, 1, warmup_samples)
                trips = orch.breakers.database_round_trips
                await orch.events.flush()
                written = orch.events.written
                flushes = _FlushCounter(orch)
                orch_samples: list[float] = []
                bare_samples: list[float] = []
                blocks = max(1, args.calls // args.block)
                for index in range(blocks):
                    pair = [(orch_call, orch_samples), (bare_call, bare_samples)]
                    if index % 2:
                        pair.reverse()
                    for call, samples in pair:
                        await time_block(call, args.block, samples)
                await orch.events.flush()
                nodelay = f"orch {orch_nodelay(caller)}, bare {socket_nodelay(client)}"
                written = orch.events.written - written
                result = RunResult(
                    orch=summarise(orch_samples),
                    bare=summarise(bare_samples),
                    breaker_round_trips=orch.breakers.database_round_trips - trips,
                    events_written=written,
                    events_per_flush=written / max(1, flushes.stop()),
                    nodelay=nodelay,
                )
        finally:
            await orch.close()
    return result


class _FlushCounter:
    """Counts the recorder's non-empty flushes by wrapping this one object's ``flush``."""

    def __init__(self, orch: Orch) -> None:
        self._events = orch.events
        self._original = orch.events.flush
        self.count = 0

        async def counting_flush() -> None:
            if self._events._buffer:
                self.count += 1
            await self._original()

        self._events.flush = counting_flush  # type: ignore[method-assign]

    def stop(self) -> int:
        del self._events.flush  # back to the class's method
        return self.count


def overhead_line(label: str, orch: Summary, bare: Summary) -> str:
    return (
        f"{label}: p50 overhead {orch.p50 - bare.p50:.1f} us "
        f"(orch {orch.p50:.1f} us, bare {bare.p50:.1f} us), "
        f"p99 difference {orch.p99 - bare.p99:.1f} us"
    )


async def main(args: argparse.Namespace) -> None:
    print(
        f"call overhead: {args.calls} calls each a run in blocks of {args.block}, alternating, "
        f"{args.runs} runs, Python {platform.python_version()}, httpx {httpx.__version__}"
    )
    sniffio = importlib.util.find_spec("sniffio") is not None
    print(
        "sniffio importable: "
        + ("yes" if sniffio else "no (httpcore retries the failed import on every request)")
    )
    process, port = await start_service()
    try:
        runs: list[RunResult] = []
        for run in range(1, args.runs + 1):
            result = await one_run(args.dsn, port, args)
            runs.append(result)
            rows: list[tuple[str, Any]] = [("orch caller.call", result.orch)]
            rows.append(("bare httpx get", result.bare))
            print(table(f"run {run}", "us", rows))
            print(overhead_line(f"run {run}", result.orch, result.bare))
            print(
                f"run {run}: breaker database round trips while timed: "
                f"{result.breaker_round_trips}; service_events rows written: "
                f"{result.events_written} ({result.events_per_flush:.0f} a flush); "
                f"TCP_NODELAY: {result.nodelay}"
            )
    finally:
        await stop_service(process)
    orch_median = median_summary([r.orch for r in runs])
    bare_median = median_summary([r.bare for r in runs])
    print(
        table(
            f"median of {args.runs} runs",
            "us",
            [("orch caller.call", orch_median), ("bare httpx get", bare_median)],
        )
    )
    overhead = statistics.median(r.orch.p50 - r.bare.p50 for r in runs)
    verdict = "meets" if overhead < TARGET_P50_OVERHEAD_US else "MISSES"
    print(
        f"p50 overhead (median of runs): {overhead:.1f} us: {verdict} the target of "
        f"{TARGET_P50_OVERHEAD_US:.0f} us"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; a scratch db is made")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5000, help="timed calls of each kind a run")
    parser.add_argument("--block", type=int, default=100, help="calls in a row of one kind")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls of each kind")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
