"""Closed-breaker decision overhead per call: orch's CircuitBreakers against pybreaker.

Both guard the same no-op in the same run. The orch breaker is real: an Orch on a
scratch database, the breaker booking → venue '*' created by the engine through one
admitted and recorded call, closed, its state in the in-process cache that NOTIFY
keeps fresh. What is timed is what the call path does around a call while the
breaker is closed: ``admit_cached`` before it and ``record_cached`` after it.

Each sample times a batch of calls (10,000 by default) with perf_counter_ns and
divides; samples of all variants are interleaved, the order rotated each round, so
drift on a noisy machine affects every variant alike. Overhead is the variant's p50
per call minus the bare no-op's p50 per call of the same kind (sync or async) in the
same run. Target: orch's overhead at or below pybreaker's.

pybreaker is installed into the venv for this benchmark only, not a dependency of orch:

    .venv/bin/pip install 'pybreaker>=1.4,<1.5'
    .venv/bin/python bench/breaker_overhead.py [--dsn DSN] [--runs 3] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pybreaker
from latency_stats import Summary, summarise, table
from scratch_database import DEFAULT_DSN, scratch_database

from orchcore import Orch, Settings
from orchcore.resilience.breakers import BreakerSettings, CircuitBreakers

SOURCE, TARGET, ENDPOINT = "booking", "venue", "/ping"

BARE_SYNC = "bare noop()"
PYBREAKER = "pybreaker breaker.call(noop)"
ORCH_SYNC = "orch admit/record (sync)"
ORCH_CALL_PATH = "orch + is_failure (sync)"
BARE_ASYNC = "bare await anoop()"
ORCH_ASYNC = "orch async wrapper, awaited"

#: Which bare variant each guarded variant's overhead is taken against.
BASELINE = {
    PYBREAKER: BARE_SYNC,
    ORCH_SYNC: BARE_SYNC,
    ORCH_CALL_PATH: BARE_SYNC,
    ORCH_ASYNC: BARE_ASYNC,
}


def noop() -> None:
    return None


async def anoop() -> None:
    return None


# Each loop binds what it calls to locals the same way, so no variant pays attribute
# lookups another does not. A loop returns the nanoseconds its batch took.


def loop_bare(n: int) -> int:
    fn = noop
    started = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return time.perf_counter_ns() - started


def pybreaker_loop(breaker: pybreaker.CircuitBreaker) -> Callable[[int], int]:
    def loop(n: int) -> int:
        call, fn = breaker.call, noop
        started = time.perf_counter_ns()
        for _ in range(n):
            call(fn)
        return time.perf_counter_ns() - started

    return loop


def orch_sync_loop(breakers: CircuitBreakers) -> Callable[[int], int]:
    def loop(n: int) -> int:
        admit, record, fn = breakers.admit_cached, breakers.record_cached, noop
        source, target, endpoint = SOURCE, TARGET, ENDPOINT
        started = time.perf_counter_ns()
        for _ in range(n):
            permit = admit(source, target, endpoint)
            fn()
            record(permit, True)  # type: ignore[arg-type]
        return time.perf_counter_ns() - started

    return loop


def orch_call_path_loop(breakers: CircuitBreakers) -> Callable[[int], int]:
    """As ServiceCaller._attempt does it: is_failure on the status, then record_cached."""

    def loop(n: int) -> int:
        admit, record, fn = breakers.admit_cached, breakers.record_cached, noop
        is_failure = breakers.is_failure
        source, target, endpoint = SOURCE, TARGET, ENDPOINT
        started = time.perf_counter_ns()
        for _ in range(n):
            permit = admit(source, target, endpoint)
            fn()
            record(permit, not is_failure(permit, 200))  # type: ignore[arg-type]
        return time.perf_counter_ns() - started

    return loop


async def aloop_bare(n: int) -> int:
    fn = anoop
    started = time.perf_counter_ns()
    for _ in range(n):
        await fn()
    return time.perf_counter_ns() - started


def orch_async_loop(breakers: CircuitBreakers) -> Callable[[int], Awaitable[int]]:
    """A coroutine guarding an async call the way the call path does, awaited per call."""
    admit_cached, record_cached = breakers.admit_cached, breakers.record_cached

    async def guarded(fn: Callable[[], Awaitable[None]]) -> None:
        permit = admit_cached(SOURCE, TARGET, ENDPOINT)
        if permit is None:  # not taken while closed; the database would decide
            permit = await breakers.admit(SOURCE, TARGET, ENDPOINT)
        await fn()
        if not record_cached(permit, True):  # not taken while closed either
            await breakers.record(permit, success=True)

    async def loop(n: int) -> int:
        wrapper, fn = guarded, anoop
        started = time.perf_counter_ns()
        for _ in range(n):
            await wrapper(fn)
        return time.perf_counter_ns() - started

    return loop


@dataclass(frozen=True)
class RunResult:
    per_call: dict[str, Summary]  # ns a call
    overhead: dict[str, float]  # ns a call over the bare variant's p50
    round_trips: int  # breaker database round trips during the timed loops
    settled_in_process: bool


async def prepare_breaker(orch: Orch) -> CircuitBreakers:
    """The breaker made by the engine, as the first call would, then known closed."""
    breakers = orch.breakers
    await breakers.start()
    await breakers.ensure(SOURCE, TARGET, "*", BreakerSettings())
    permit = await breakers.admit(SOURCE, TARGET, ENDPOINT)  # resolves the endpoint
    await breakers.record(permit, success=True)
    cached = breakers.admit_cached(SOURCE, TARGET, ENDPOINT)
    if (
        cached is None
        or cached.breaker.state != "closed"
        or not breakers.record_cached(cached, True)
    ):
        raise SystemExit("the breaker is not closed and cached; the benchmark would be unfair")
    return breakers


async def one_run(dsn: str, args: argparse.Namespace) -> RunResult:
    async with scratch_database(dsn) as scratch:
        orch = await Orch.open(Settings(database_url=scratch))
        try:
            breakers = await prepare_breaker(orch)
            py_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
            sync_loops: dict[str, Callable[[int], int]] = {
                BARE_SYNC: loop_bare,
                PYBREAKER: pybreaker_loop(py_breaker),
                ORCH_SYNC: orch_sync_loop(breakers),
                ORCH_CALL_PATH: orch_call_path_loop(breakers),
            }
            async_loops: dict[str, Callable[[int], Awaitable[int]]] = {
                BARE_ASYNC: aloop_bare,
                ORCH_ASYNC: orch_async_loop(breakers),
            }
            names = [*sync_loops, *async_loops]

            async def sample(name: str, n: int) -> int:
                if name in sync_loops:
                    return sync_loops[name](n)
                return await async_loops[name](n)

            for name in names:  # warm-up
                for _ in range(args.warmup):
                    await sample(name, args.batch)
            trips_before = breakers.database_round_trips
            samples: dict[str, list[float]] = {name: [] for name in names}
            for round_number in range(args.samples):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    samples[name].append(await sample(name, args.batch) / args.batch)
                await asyncio.sleep(0)  # let the listener and the event flusher run
            round_trips = breakers.database_round_trips - trips_before
            still_closed = breakers.admit_cached(SOURCE, TARGET, ENDPOINT)
            settled = still_closed is not None and breakers.record_cached(still_closed, True)
            if py_breaker.current_state != pybreaker.STATE_CLOSED:
                raise SystemExit("pybreaker left the closed state; the benchmark would be unfair")
        finally:
            await orch.close()
    per_call = {name: summarise(values) for name, values in samples.items()}
    overhead = {name: per_call[name].p50 - per_call[bare].p50 for name, bare in BASELINE.items()}
    return RunResult(per_call, overhead, round_trips, settled)


def overhead_table(title: str, per_call: dict[str, float], overhead: dict[str, float]) -> str:
    lines = [
        title,
        f"{'':<30}{'p50 ns/call':>13}{'overhead ns':>13}{'vs pybreaker':>14}",
    ]
    reference = overhead[PYBREAKER]
    for name, p50 in per_call.items():
        if name in overhead:
            ratio = overhead[name] / reference if reference > 0 else float("nan")
            lines.append(f"{name:<30}{p50:>13.1f}{overhead[name]:>13.1f}{ratio:>13.2f}x")
        else:
            lines.append(f"{name:<30}{p50:>13.1f}{'(baseline)':>13}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    pybreaker_version = importlib.metadata.version("pybreaker")
    print(
        f"breaker overhead: {args.samples} samples of {args.batch} calls a variant, interleaved, "
        f"{args.runs} runs, Python {platform.python_version()}, pybreaker {pybreaker_version}"
    )
    print(
        "pybreaker call_async: "
        + (
            "available (tornado installed)"
            if pybreaker.HAS_TORNADO_SUPPORT
            else "needs tornado (not installed): not measured"
        )
    )
    runs: list[RunResult] = []
    for run in range(1, args.runs + 1):
        result = await one_run(args.dsn, args)
        runs.append(result)
        print(table(f"run {run}: time a call", "ns", list(result.per_call.items())))
        print(
            overhead_table(
                f"run {run}: overhead",
                {k: s.p50 for k, s in result.per_call.items()},
                result.overhead,
            )
        )
        print(
            f"run {run}: breaker database round trips while timed: {result.round_trips}; "
            f"closed and settled in process at the end: {result.settled_in_process}"
        )
    names = list(runs[0].per_call)
    median_p50 = {n: statistics.median(r.per_call[n].p50 for r in runs) for n in names}
    median_overhead = {n: statistics.median(r.overhead[n] for r in runs) for n in BASELINE}
    print(overhead_table(f"median of {args.runs} runs", median_p50, median_overhead))
    reference = median_overhead[PYBREAKER]
    for name in (ORCH_SYNC, ORCH_CALL_PATH, ORCH_ASYNC):
        ratio = median_overhead[name] / reference
        verdict = "meets" if ratio <= 1.0 else "MISSES"
        print(
            f"{name}: {median_overhead[name]:.1f} ns vs pybreaker {reference:.1f} ns a call, "
            f"ratio {ratio:.2f}: {verdict} the target (at or below pybreaker)"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; a scratch db is made")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200, help="timed batches a variant")
    parser.add_argument("--batch", type=int, default=10_000, help="calls a timed batch")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches a variant")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
