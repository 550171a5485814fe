"""Cost of one balancing decision alone: each strategy's ``pick`` over 5 instances.

Reads the discovery lookup figures apart: no cache, no await, only the strategy.
Beside the engine's strategies it times two references that are not in the engine:
the full-scan least connections that power-of-two-choices replaced (as it was in
commit a473a79) and power-of-two-choices drawing its two indices with two
``random()`` calls instead of ``random.sample``. Samples of all variants are
interleaved (each a batch of picks timed with perf_counter_ns), the order rotated
each round; no in-flight counts are held, as in the discovery lookup benchmark.

    .venv/bin/python bench/balancing_pick.py [--runs 3] [--instances 5]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from latency_stats import Summary, summarise, table

from orchcore.registry.balancing import (
    InFlight,
    PowerOfTwoChoices,
    RoundRobin,
    SmoothWeighted,
    Strategy,
)
from orchcore.registry.endpoint import Endpoint


class FullScanLeastConnections:
    """Reference: least connections by a scan of every instance (before P2C)."""

    def __init__(self, in_flight: InFlight) -> None:
        self._in_flight = in_flight
        self._tiebreak = RoundRobin()

    def pick(
        self, key: str, healthy: Sequence[Endpoint], weights: Mapping[str, int] | None = None
    ) -> Endpoint:
        fewest = min(self._in_flight[e.id] for e in healthy)
        candidates = [e for e in healthy if self._in_flight[e.id] == fewest]
        return self._tiebreak.pick(key, candidates)


class TwoDrawPowerOfTwoChoices:
    """Reference: the engine's rule, two distinct indices from two ``random()`` draws."""

    def __init__(self, in_flight: InFlight, rng: random.Random) -> None:
        self._in_flight = in_flight
        self._random = rng.random

    def pick(
        self, key: str, healthy: Sequence[Endpoint], weights: Mapping[str, int] | None = None
    ) -> Endpoint:
        n = len(healthy)
        if n == 1:
            return healthy[0]
        first = int(self._random() * n)
        second = int(self._random() * (n - 1))
        if second >= first:
            second += 1
        a, b = healthy[first], healthy[second]
        return b if self._in_flight[b.id] < self._in_flight[a.id] else a


def endpoints(count: int) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(
            id=uuid.uuid4(),
            instance_id=f"svc-0001-{i}",
            service_name="svc-0001",
            host="10.0.0.1",
            port=8000 + i,
            version="1.0.0",
            weight=i,
        )
        for i in range(1, count + 1)
    )


def timed_batch(strategy: Strategy, healthy: Sequence[Endpoint], n: int) -> float:
    """ns a pick over a batch of n picks."""
    pick = strategy.pick
    started = time.perf_counter_ns()
    for _ in range(n):
        pick("svc-0001", healthy)
    return (time.perf_counter_ns() - started) / n


def one_run(args: argparse.Namespace, rng: random.Random) -> dict[str, Summary]:
    healthy = endpoints(args.instances)
    in_flight: defaultdict[uuid.UUID, int] = defaultdict(int)
    variants: dict[str, Callable[[], Strategy]] = {
        "round_robin": RoundRobin,
        "least_connections (P2C)": lambda: PowerOfTwoChoices(in_flight, rng),
        "weighted": SmoothWeighted,
        "ref: full scan (before P2C)": lambda: FullScanLeastConnections(in_flight),
        "ref: P2C, two random() draws": lambda: TwoDrawPowerOfTwoChoices(in_flight, rng),
    }
    strategies = {name: make() for name, make in variants.items()}
    names = list(strategies)
    for name in names:
        timed_batch(strategies[name], healthy, args.batch)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(args.samples):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed_batch(strategies[name], healthy, args.batch))
    return {name: summarise(values) for name, values in samples.items()}


def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    print(
        f"balancing pick: {args.instances} instances, {args.samples} samples of {args.batch} "
        f"picks a variant, interleaved, {args.runs} runs, Python {platform.python_version()}"
    )
    runs = []
    for run in range(1, args.runs + 1):
        runs.append(one_run(args, rng))
        print(table(f"run {run}: time a pick", "ns", list(runs[-1].items())))
    print(f"median of {args.runs} runs: p50 ns a pick")
    for name in runs[0]:
        print(f"  {name:<32}{statistics.median(r[name].p50 for r in runs):>10.1f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200, help="timed batches a variant")
    parser.add_argument("--batch", type=int, default=2000, help="picks a timed batch")
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
