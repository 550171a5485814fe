"""Percentiles and the printed tables of the benchmarks."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Figures of one set of samples, in the unit the samples were converted to."""

    count: int
    mean: float
    p50: float
    p99: float
    p999: float
    max: float


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarise(samples: Sequence[float]) -> Summary:
    ordered = sorted(samples)
    return Summary(
        count=len(ordered),
        mean=statistics.fmean(ordered),
        p50=percentile(ordered, 0.50),
        p99=percentile(ordered, 0.99),
        p999=percentile(ordered, 0.999),
        max=ordered[-1],
    )


def median_summary(runs: Sequence[Summary]) -> Summary:
    """Each figure's median across runs (the figure we report on a noisy machine)."""
    return Summary(
        count=int(statistics.median(r.count for r in runs)),
        mean=statistics.median(r.mean for r in runs),
        p50=statistics.median(r.p50 for r in runs),
        p99=statistics.median(r.p99 for r in runs),
        p999=statistics.median(r.p999 for r in runs),
        max=statistics.median(r.max for r in runs),
    )


def table(title: str, unit: str, rows: Sequence[tuple[str, Summary]]) -> str:
    header = f"{'':<28}{'n':>9}{'mean':>10}{'p50':>10}{'p99':>10}{'p99.9':>10}{'max':>10}"
    lines = [f"{title} ({unit})", header]
    for label, s in rows:
        lines.append(
            f"{label:<28}{s.count:>9}{s.mean:>10.2f}{s.p50:>10.2f}{s.p99:>10.2f}"
            f"{s.p999:>10.2f}{s.max:>10.2f}"
        )
    return "\n".join(lines)
