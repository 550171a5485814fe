"""Latency of a cached discovery lookup: ``await orch.discovery.get_healthy_instance(name)``.

1,000 services x 5 healthy instances in a scratch database, an Orch opened on it
(discovery cache loaded, NOTIFY listener connected), then random lookups timed
one by one with perf_counter_ns, per balancing strategy. Target: p99 < 50 us.

    .venv/bin/python bench/discovery_lookup.py [--dsn DSN] [--runs 3] [--lookups 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import time
from collections.abc import Sequence

from latency_stats import Summary, median_summary, summarise, table
from scratch_database import DEFAULT_DSN, fill_registry, scratch_database, service_name

from orchcore import Orch, Settings
from orchcore.registry.models import LoadBalancing

STRATEGIES: tuple[LoadBalancing, ...] = ("round_robin", "least_connections", "weighted")
TARGET_P99_US = 50.0


async def time_lookups(orch: Orch, names: Sequence[str], strategy: LoadBalancing) -> list[float]:
    """One sample (in microseconds) a lookup; the timer's own cost is included."""
    lookup = orch.discovery.get_healthy_instance
    clock = time.perf_counter_ns
    samples = [0.0] * len(names)
    for index, name in enumerate(names):
        started = clock()
        await lookup(name, strategy)
        samples[index] = (clock() - started) / 1000
    return samples


def timer_overhead(n: int = 100_000) -> Summary:
    """What two perf_counter_ns calls cost alone, to read the figures against."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        started = clock()
        samples.append((clock() - started) / 1000)
    return summarise(samples)


async def one_run(dsn: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Summary]:
    async with scratch_database(dsn) as scratch:
        await fill_registry(scratch, args.services, args.instances)
        orch = await Orch.open(Settings(database_url=scratch))
        try:
            names = [service_name(rng.randint(1, args.services)) for _ in range(args.lookups)]
            results: dict[str, Summary] = {}
            for strategy in STRATEGIES:
                await time_lookups(orch, names[: args.lookups // 10], strategy)  # warm-up
                results[strategy] = summarise(await time_lookups(orch, names, strategy))
            return results
        finally:
            await orch.close()


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    print(
        f"discovery lookup: {args.services} services x {args.instances} instances, "
        f"{args.lookups} lookups a strategy, {args.runs} runs, Python {platform.python_version()}"
    )
    print(table("timer overhead alone", "us", [("perf_counter_ns pair", timer_overhead())]))
    runs: list[dict[str, Summary]] = []
    for run in range(1, args.runs + 1):
        runs.append(await one_run(args.dsn, args, rng))
        print(table(f"run {run}", "us", list(runs[-1].items())))
    medians = [(s, median_summary([r[s] for r in runs])) for s in STRATEGIES]
    print(table(f"median of {args.runs} runs", "us", medians))
    for strategy, summary in medians:
        verdict = "meets" if summary.p99 < TARGET_P99_US else "MISSES"
        print(f"{strategy}: p99 {summary.p99:.2f} us {verdict} the target of {TARGET_P99_US} us")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; a scratch db is made")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=5, help="instances a service")
    parser.add_argument("--lookups", type=int, default=200_000, help="timed lookups a strategy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
