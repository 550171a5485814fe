"""A breaker's last 24 hours (the seed's GetCircuitBreakerMetricsResponse)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.resilience.breakers import Breaker, BreakerTransition

Q = Queries("orchcore.resilience")


class BreakerMetrics(BaseModel):
    total_requests_24h: int
    failed_requests_24h: int
    success_rate_24h: float
    state_changes_24h: int
    average_failure_duration_minutes: float


class StateChange(BaseModel):
    timestamp: datetime
    from_state: str
    to_state: str
    trigger: str
    actor: str


class FailurePattern(BaseModel):
    hour: int
    failure_count: int
    total_requests: int
    failure_rate: float


class GetCircuitBreakerMetricsResponse(BaseModel):
    metrics: BreakerMetrics
    state_history: list[StateChange]
    failure_patterns: list[FailurePattern]


def like_pattern(glob: str) -> str:
    """The breaker's endpoint glob as a LIKE pattern (escape LIKE's own wildcards)."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


async def breaker_metrics(
    db: Database, clock: Clock, breaker: Breaker, *, hours: int = 24
) -> GetCircuitBreakerMetricsResponse:
    now = clock.now()
    since = now - timedelta(hours=hours)
    buckets = await db.fetch(
        Q.call_totals_by_hour,
        breaker.service_name,
        breaker.target_service,
        like_pattern(breaker.endpoint_pattern),
        since,
        now,
    )
    total = sum(row["total"] for row in buckets)
    failed = sum(row["failed"] for row in buckets)
    transitions = [
        BreakerTransition.model_validate(dict(row))
        for row in await db.fetch(Q.transitions_since, breaker.id, since)
    ]
    before = await db.fetchrow(Q.state_before, breaker.id, since)
    return GetCircuitBreakerMetricsResponse(
        metrics=BreakerMetrics(
            total_requests_24h=total,
            failed_requests_24h=failed,
            success_rate_24h=round((total - failed) / total, 4) if total else 1.0,
            state_changes_24h=len(transitions),
            average_failure_duration_minutes=_average_open_minutes(
                transitions, before["to_state"] if before else "closed", since, now
            ),
        ),
        state_history=[
            StateChange(
                timestamp=t.occurred_at,
                from_state=t.from_state,
                to_state=t.to_state,
                trigger=t.trigger,
                actor=t.actor,
            )
            for t in reversed(transitions)
        ],
        failure_patterns=[
            FailurePattern(
                hour=row["hour"].hour,
                failure_count=row["failed"],
                total_requests=row["total"],
                failure_rate=round(row["failed"] / row["total"], 4) if row["total"] else 0.0,
            )
            for row in buckets
        ],
    )


def _average_open_minutes(
    transitions: list[BreakerTransition], state_at_start: str, since: datetime, now: datetime
) -> float:
    """Mean length of the spells away from closed (open, half-open, forced) in the window."""
    spells: list[float] = []
    started = since if state_at_start != "closed" else None
    for t in transitions:
        if t.to_state == "closed" or t.to_state == "disabled":
            if started is not None:
                spells.append((t.occurred_at - started).total_seconds())
                started = None
        elif started is None:
            started = t.occurred_at
    if started is not None:
        spells.append((now - started).total_seconds())
    return round(sum(spells) / len(spells) / 60, 2) if spells else 0.0
