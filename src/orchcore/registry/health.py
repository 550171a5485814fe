"""Active health checking, shared by every daemon through leases in the database.

A daemon claims the instances whose check is due (``FOR UPDATE SKIP LOCKED``),
probes them concurrently, and writes each verdict back guarded by its lease. The
verdict itself is a pure function, :func:`evaluate`, so the state machine is
tested without a network or a database.

State machine (per instance)::

    starting --passes--> healthy --failures--> unhealthy --critical_after--> critical
        ^                   ^                      |                           |
        |                   +-------passes---------+---------------------------+
    registered again                         deregister_critical_after --> deregistered
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.registry.models import CheckResult, HealthCheckConfig, InstanceStatus

Q = Queries("orchcore.registry")
log = logging.getLogger("orch.health")

#: Extra lease time beyond the check timeout before another daemon may take over.
LEASE_MARGIN_SECONDS = 5.0
_OUTPUT_LIMIT = 300


@dataclass(frozen=True)
class Probe:
    result: CheckResult
    output: str


@dataclass(frozen=True)
class CheckState:
    status: InstanceStatus
    successes: int
    failures: int
    unhealthy_since: datetime | None


@dataclass(frozen=True)
class Verdict:
    status: InstanceStatus
    successes: int
    failures: int
    unhealthy_since: datetime | None
    reason: str | None  # set when the status changes


def evaluate(state: CheckState, probe: Probe, config: HealthCheckConfig, now: datetime) -> Verdict:
    """The next health state of an instance after one check."""
    successes, failures = state.successes, state.failures
    status: InstanceStatus = state.status
    reason: str | None = None
    threshold = 1 if config.kind == "ttl" else config.failures_before_critical

    if probe.result == "passing":
        successes, failures = successes + 1, 0
        if status != "healthy" and successes >= config.success_before_passing:
            status = "healthy"
            reason = f"{successes} passing check{'s' if successes > 1 else ''} in a row"
    elif probe.result == "warning":
        # The instance answers but asks us to back off: neither a pass nor a failure.
        failures = 0
    else:
        successes, failures = 0, failures + 1
        if status in ("starting", "healthy") and failures >= threshold:
            status = "unhealthy"
            reason = (
                f"{failures} failed check{'s' if failures > 1 else ''} in a row: {probe.output}"
            )

    since = state.unhealthy_since if status in ("unhealthy", "critical") else None
    if status in ("unhealthy", "critical"):
        since = since or now
        down_for = (now - since).total_seconds()
        if down_for >= config.deregister_critical_after_seconds:
            status = "deregistered"
            reason = f"unhealthy for {_duration(down_for)}: {probe.output}"
        elif status == "unhealthy" and down_for >= config.critical_after_seconds:
            status = "critical"
            reason = f"unhealthy for {_duration(down_for)}: {probe.output}"
    return Verdict(status, successes, failures, since, reason)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m"


async def probe_http(client: httpx.AsyncClient, url: str, timeout: float) -> Probe:
    """GET the health endpoint: 2xx passes, 429 warns, anything else fails."""
    try:
        response = await client.get(url, timeout=timeout)
    except httpx.TimeoutException:
        return Probe("failing", f"timed out after {timeout:g}s")
    except httpx.ConnectError as exc:
        return Probe("failing", f"connection failed: {_short(exc) or 'refused'}")
    except httpx.HTTPError as exc:
        return Probe("failing", f"{type(exc).__name__}: {_short(exc)}")
    code = response.status_code
    if 200 <= code < 300:
        return Probe("passing", f"HTTP {code}")
    if code == 429:
        return Probe("warning", "HTTP 429 Too Many Requests")
    return Probe("failing", f"HTTP {code} {response.reason_phrase}".strip())


def probe_ttl(last_seen_at: datetime, ttl_seconds: float, now: datetime) -> Probe:
    lapsed = (now - last_seen_at).total_seconds() - ttl_seconds
    if lapsed >= 0:
        return Probe("failing", f"TTL of {ttl_seconds:g}s lapsed {lapsed:.0f}s ago")
    return Probe("passing", "TTL heartbeat")


def _short(exc: BaseException) -> str:
    return str(exc)[:_OUTPUT_LIMIT]


def health_url(row: asyncpg.Record | dict[str, Any]) -> str:
    """base_url's scheme, the instance's address, the service's health endpoint."""
    scheme = "https" if (row["base_url"] or "").startswith("https:") else "http"
    host = str(row["ip_address"])
    if ":" in host:
        host = f"[{host}]"
    endpoint = row["health_check_endpoint"] or "/health"
    return f"{scheme}://{host}:{row['port']}{endpoint}"


class InstanceHealthChecker:
    """One daemon's share of the health checking."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        checker_id: UUID,
        actor: str,
        batch_size: int = 200,
        max_idle_seconds: float = 1.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self.checker_id = checker_id
        self._actor = actor
        self._batch_size = batch_size
        self._max_idle = max_idle_seconds
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": f"orch-health/0.1 ({actor})"},
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._wake = asyncio.Event()
        self.checks_done = 0

    def wake(self) -> None:
        """Something changed (an instance registered): look for due checks now."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim due checks, probe them, record verdicts. Returns how many were checked."""
        now = self._clock.now()
        rows = await self._db.fetch(
            Q.claim_due_checks, now, self.checker_id, self._batch_size, LEASE_MARGIN_SECONDS
        )
        if not rows:
            return 0
        await asyncio.gather(*(self._check_one(row) for row in rows))
        self.checks_done += len(rows)
        return len(rows)

    async def run_forever(self) -> None:
        while True:
            try:
                checked = await self.run_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("health check round failed: %s", exc)
                checked = 0
            if checked >= self._batch_size:
                continue
            await self._idle()

    async def _idle(self) -> None:
        next_due = await self._next_due()
        wait = self._max_idle
        if next_due is not None:
            wait = min(wait, max(0.0, (next_due - self._clock.now()).total_seconds()))
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(wait))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _next_due(self) -> datetime | None:
        try:
            value: datetime | None = await self._db.fetchval(Q.next_due_check)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        return value

    async def release(self) -> None:
        """Give back leases so another daemon takes over at once (graceful shutdown)."""
        await self._db.execute(Q.release_check_leases, self.checker_id, self._clock.now())

    async def close(self) -> None:
        await self._client.aclose()

    async def _check_one(self, row: asyncpg.Record) -> None:
        config = HealthCheckConfig.model_validate(row["health_check"] or {})
        if config.kind == "ttl":
            await self._check_ttl(row, config)
            return
        probe = await probe_http(self._client, health_url(row), config.timeout_seconds)
        await self._apply(row, probe, config, guard_last_seen=None)

    async def _check_ttl(self, row: asyncpg.Record, config: HealthCheckConfig) -> None:
        """Only a lapse is news: heartbeats themselves pass the check as they arrive."""
        probe = probe_ttl(row["last_seen_at"], config.ttl_seconds, self._clock.now())
        if probe.result == "passing":
            lapses_at = row["last_seen_at"] + timedelta(seconds=config.ttl_seconds)
            await self._db.execute(Q.reschedule_check, row["id"], self.checker_id, lapses_at)
            return
        await self._apply(row, probe, config, guard_last_seen=row["last_seen_at"])

    async def _apply(
        self,
        row: asyncpg.Record,
        probe: Probe,
        config: HealthCheckConfig,
        *,
        guard_last_seen: datetime | None,
    ) -> None:
        now = self._clock.now()
        state = CheckState(
            row["status"],
            row["health_check_successes"],
            row["health_check_failures"],
            row["unhealthy_since"],
        )
        verdict = evaluate(state, probe, config, now)
        await self._record(row, probe, verdict, now, guard_last_seen)

    async def _record(
        self,
        row: asyncpg.Record,
        probe: Probe,
        verdict: Verdict,
        now: datetime,
        guard_last_seen: datetime | None,
    ) -> None:
        output = probe.output[:_OUTPUT_LIMIT]
        is_http = guard_last_seen is None
        async with self._db.transaction() as conn:
            applied = await conn.fetchval(
                Q.record_check_result,
                row["id"],
                verdict.status,
                verdict.failures,
                verdict.successes,
                probe.result,
                output,
                now,
                verdict.unhealthy_since,
                self.checker_id,
                row["status"],
                is_http,
                guard_last_seen,
            )
            if applied is None or verdict.status == row["status"]:
                return
            await conn.execute(
                Q.insert_state_event,
                row["id"],
                row["microservice_id"],
                row["status"],
                verdict.status,
                verdict.reason or probe.output,
                self._actor,
                now,
            )
        log.info(
            "instance %s of %s: %s -> %s (%s)",
            row["instance_id"],
            row["service_name"],
            row["status"],
            verdict.status,
            verdict.reason,
        )
