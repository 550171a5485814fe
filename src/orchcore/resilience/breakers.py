"""Circuit breakers shared by every daemon through PostgreSQL.

One breaker per (source service, target service, endpoint pattern). The state
machine lives in SQL functions that lock the breaker row (migration 0002), so every
daemon sees one order of events and every transition is durable, recorded in the
history and NOTIFYed before it takes effect.

The hot path is in process: a breaker known to be closed admits a call and records
its success without a database round trip. Only what can change state touches the
database: a failure, the first success after failures, and every call while the
breaker is open (after its timeout) or half-open. Each daemon's cache follows the
database through NOTIFY payloads that carry the whole cached state.

Every transition bumps the breaker's generation. A call remembers the generation
it was admitted under; its outcome is applied only if the breaker is still in that
generation, so a slow call that began before a transition cannot move the state.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel, Field

from orchcore.audit import record_action
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.db.listen import NotificationListener
from orchcore.errors import ConflictError, NotFoundError, OrchError, ValidationFailed
from orchcore.validation import parse

if TYPE_CHECKING:
    from orchcore.resilience.breaker_metrics import GetCircuitBreakerMetricsResponse

Q = Queries("orchcore.resilience")
log = logging.getLogger("orch.breakers")

BreakerState = Literal["closed", "open", "half_open", "forced_open", "disabled"]
#: Extra life of a half-open permit beyond the call's own timeout.
PERMIT_MARGIN_SECONDS = 5.0
#: Endpoints remembered with the breaker they resolved to. Endpoints carry ids
#: (``/reservations/r-123``), so without a cap this map would grow with every call.
MAX_RESOLVED_ENDPOINTS = 4096


class BreakerSettings(BaseModel):
    """Parameters of a breaker (the seed's defaults: 5 failures, 3 successes, 60 s)."""

    failure_threshold: int = Field(default=5, ge=1, le=10_000)
    success_threshold: int = Field(default=3, ge=1, le=10_000)
    timeout_duration: int = Field(default=60, ge=0, le=86_400, description="seconds open")
    half_open_max_calls: int = Field(default=1, ge=1, le=1_000)
    count_429_as_failure: bool = False


class CreateCircuitBreakerRequest(BreakerSettings):
    """The seed's CreateCircuitBreakerRequest (plus half_open_max_calls, 429 handling)."""

    service_name: str = Field(min_length=1)
    target_service: str = Field(min_length=1)
    endpoint_pattern: str = Field(default="*", min_length=1)


class BreakerOpenError(OrchError):
    """The breaker rejects the call without contacting the target."""

    http_status = 503

    def __init__(self, breaker: CachedBreaker, next_attempt_at: datetime | None) -> None:
        self.breaker_id = breaker.id
        self.state = breaker.state
        self.next_attempt_at = next_attempt_at
        where = f"{breaker.source} → {breaker.target} {breaker.endpoint_pattern}"
        if breaker.state == "forced_open":
            when = "until an operator resets it"
        elif breaker.state == "half_open":
            when = "while its trial calls are in flight"
        elif next_attempt_at is not None:
            when = f"until {next_attempt_at.isoformat(timespec='seconds')}"
        else:
            when = "for now"
        super().__init__(
            f"circuit breaker {where} is {breaker.state.replace('_', '-')}: calls rejected {when}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "breaker_id": str(self.breaker_id),
            "state": self.state,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
        }


@dataclass(frozen=True, slots=True)
class CachedBreaker:
    id: UUID
    source: str
    target: str
    endpoint_pattern: str
    state: BreakerState
    generation: int
    failure_count: int
    success_count: int
    next_attempt_at: datetime | None
    failure_threshold: int
    success_threshold: int
    timeout_duration: int
    half_open_max_calls: int
    count_429_as_failure: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CachedBreaker:
        """From a circuit_breakers row."""
        return cls._build(row, row["service_name"], row["target_service"], row["current_state"])

    @classmethod
    def from_notification(cls, message: dict[str, Any]) -> CachedBreaker:
        """From the JSON payload the circuit_breakers trigger sends."""
        return cls._build(message, message["source"], message["target"], message["state"])

    @classmethod
    def _build(
        cls, row: asyncpg.Record | dict[str, Any], source: str, target: str, state: BreakerState
    ) -> CachedBreaker:
        return cls(
            id=row["id"] if isinstance(row["id"], UUID) else UUID(str(row["id"])),
            source=source,
            target=target,
            endpoint_pattern=row["endpoint_pattern"],
            state=state,
            generation=int(row["generation"]),
            failure_count=int(row["failure_count"]),
            success_count=int(row["success_count"]),
            next_attempt_at=_as_datetime(row["next_attempt_at"]),
            failure_threshold=int(row["failure_threshold"]),
            success_threshold=int(row["success_threshold"]),
            timeout_duration=int(row["timeout_duration"]),
            half_open_max_calls=int(row["half_open_max_calls"]),
            count_429_as_failure=bool(row["count_429_as_failure"]),
        )


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class BreakerPermit:
    """Admission of one call: which breaker, under which generation, with which permit."""

    breaker: CachedBreaker
    generation: int
    permit_id: UUID | None  # set for a half-open trial


class Breaker(BaseModel):
    """A breaker as operators see it (the seed's GetCircuitBreakersResponse entry)."""

    id: UUID
    service_name: str
    target_service: str
    endpoint_pattern: str
    current_state: BreakerState
    failure_count: int
    success_count: int
    failure_threshold: int
    success_threshold: int
    timeout_duration: int
    half_open_max_calls: int
    count_429_as_failure: bool
    generation: int
    last_failure_at: datetime | None
    state_changed_at: datetime
    next_attempt_at: datetime | None
    state_reason: str | None
    state_duration_seconds: float = 0.0


class BreakerTransition(BaseModel):
    id: int
    breaker_id: UUID
    from_state: str
    to_state: str
    trigger: str
    actor: str
    generation: int
    occurred_at: datetime


def glob_matches(pattern: str, endpoint: str) -> bool:
    return pattern == "*" or pattern == endpoint or fnmatch.fnmatchcase(endpoint, pattern)


def specificity(pattern: str) -> tuple[int, int]:
    """Exact patterns beat globs; among globs, the longer literal part wins."""
    literal = len(pattern.replace("*", "").replace("?", ""))
    return (0 if any(c in pattern for c in "*?[") else 1, literal)


class CircuitBreakers:
    def __init__(
        self, db: Database, clock: Clock, listener: NotificationListener | None, *, holder: str
    ) -> None:
        self._db = db
        self._clock = clock
        self._listener = listener
        self._holder = holder
        self._by_id: dict[UUID, CachedBreaker] = {}
        self._by_pair: dict[tuple[str, str], list[UUID]] = {}
        # (source, target, endpoint) -> breaker; insertion-ordered, the oldest goes first
        self._resolved: dict[tuple[str, str, str], UUID] = {}
        # One permit per closed breaker and generation, reused: making a frozen
        # dataclass per call was half the closed-path cost.
        self._closed_permits: dict[UUID, BreakerPermit] = {}
        self.database_round_trips = 0

    async def metrics(
        self, breaker: Breaker, *, hours: int = 24
    ) -> GetCircuitBreakerMetricsResponse:
        """The seed's GetCircuitBreakerMetricsResponse over the last ``hours``."""
        from orchcore.resilience.breaker_metrics import breaker_metrics

        return await breaker_metrics(self._db, self._clock, breaker, hours=hours)

    async def start(self) -> None:
        await self.refresh_all()
        if self._listener is not None:
            self._listener.subscribe(self._on_notification)
            self._listener.on_reconnect(self.refresh_all)

    async def refresh_all(self) -> None:
        rows = await self._db.fetch(Q.all_breakers)
        self._by_id = {}
        self._by_pair = {}
        self._resolved = {}
        self._closed_permits = {}
        for row in rows:
            self._remember(CachedBreaker.from_row(row))

    # -- admission --------------------------------------------------------------------

    def admit_cached(self, source: str, target: str, endpoint: str) -> BreakerPermit | None:
        """The in-process decision: a permit if the cached breaker is closed, an error if
        it is open and its timeout has not elapsed, None when the database must decide."""
        breaker_id = self._resolved.get((source, target, endpoint))
        if breaker_id is None:
            return None
        breaker = self._by_id[breaker_id]
        if breaker.state == "closed" or breaker.state == "disabled":
            return self._closed_permits[breaker_id]
        if breaker.state == "forced_open":
            raise BreakerOpenError(breaker, None)
        if breaker.state == "open" and (
            breaker.next_attempt_at is not None and self._clock.now() < breaker.next_attempt_at
        ):
            raise BreakerOpenError(breaker, breaker.next_attempt_at)
        return None

    async def admit(
        self,
        source: str,
        target: str,
        endpoint: str,
        *,
        settings: BreakerSettings | None = None,
        call_timeout: float = 30.0,
    ) -> BreakerPermit:
        """Admit one call or raise :class:`BreakerOpenError`."""
        permit = self.admit_cached(source, target, endpoint)
        if permit is not None:
            return permit
        breaker = await self._resolve(source, target, endpoint, settings)
        permit = self.admit_cached(source, target, endpoint)
        if permit is not None:
            return permit
        self.database_round_trips += 1
        row = await self._db.fetchrow(
            Q.before_call,
            breaker.id,
            self._clock.now(),
            self._holder,
            call_timeout + PERMIT_MARGIN_SECONDS,
        )
        assert row is not None
        current = self._by_id.get(breaker.id, breaker)
        if row["generation"] >= current.generation:
            current = replace(
                current,
                state=row["state"],
                generation=row["generation"],
                next_attempt_at=row["next_attempt_at"],
            )
            self._remember(current)
        if row["decision"] == "reject":
            raise BreakerOpenError(current, row["next_attempt_at"])
        return BreakerPermit(current, row["generation"], row["permit_id"])

    # -- outcomes ---------------------------------------------------------------------

    def is_failure(self, permit: BreakerPermit, status_code: int | None) -> bool:
        """Connect errors and timeouts (no status), 5xx, and 429 if so configured."""
        if status_code is None or status_code >= 500:
            return True
        return status_code == 429 and permit.breaker.count_429_as_failure

    def record_cached(self, permit: BreakerPermit, success: bool) -> bool:
        """Settle an outcome in process when it cannot change anything; True if settled."""
        breaker = self._by_id.get(permit.breaker.id, permit.breaker)
        if breaker.state == "disabled" and permit.permit_id is None:
            return True
        return (
            success
            and permit.permit_id is None
            and breaker.state == "closed"
            and breaker.generation == permit.generation
            and breaker.failure_count == 0
        )

    async def record(self, permit: BreakerPermit, *, success: bool, detail: str = "") -> None:
        if self.record_cached(permit, success):
            return
        self.database_round_trips += 1
        row = await self._db.fetchrow(
            Q.after_call,
            permit.breaker.id,
            permit.generation,
            permit.permit_id,
            success,
            self._clock.now(),
            detail[:300],
        )
        if row is None:
            return
        current = self._by_id.get(permit.breaker.id, permit.breaker)
        if row["generation"] >= current.generation:
            self._remember(
                replace(
                    current,
                    state=row["state"],
                    generation=row["generation"],
                    failure_count=row["failure_count"],
                    next_attempt_at=row["next_attempt_at"],
                )
            )
            if row["generation"] != permit.generation and row["applied"]:
                log.info(
                    "breaker %s → %s %s is now %s",
                    current.source,
                    current.target,
                    current.endpoint_pattern,
                    row["state"],
                )

    # -- resolution and cache -------------------------------------------------------------

    async def _resolve(
        self, source: str, target: str, endpoint: str, settings: BreakerSettings | None
    ) -> CachedBreaker:
        """The breaker guarding this call: the most specific pattern, or a new '*' one."""
        candidates = [
            self._by_id[i]
            for i in self._by_pair.get((source, target), [])
            if glob_matches(self._by_id[i].endpoint_pattern, endpoint)
        ]
        if candidates:
            chosen = max(candidates, key=lambda b: specificity(b.endpoint_pattern))
        else:
            chosen = await self.ensure(source, target, "*", settings or BreakerSettings())
        resolved = self._resolved
        if len(resolved) >= MAX_RESOLVED_ENDPOINTS:
            del resolved[next(iter(resolved))]  # forgetting only costs a re-resolution
        resolved[(source, target, endpoint)] = chosen.id
        return chosen

    async def ensure(
        self, source: str, target: str, pattern: str, settings: BreakerSettings
    ) -> CachedBreaker:
        row = await self._db.fetchrow(
            Q.ensure_breaker,
            source,
            target,
            pattern,
            settings.failure_threshold,
            settings.success_threshold,
            settings.timeout_duration,
            settings.half_open_max_calls,
            settings.count_429_as_failure,
            self._clock.now(),
        )
        assert row is not None
        breaker = CachedBreaker.from_row(row)
        self._remember(breaker)
        return breaker

    def _remember(self, breaker: CachedBreaker) -> None:
        known = self._by_id.get(breaker.id)
        self._by_id[breaker.id] = breaker
        self._closed_permits[breaker.id] = BreakerPermit(breaker, breaker.generation, None)
        if known is None:
            pair = (breaker.source, breaker.target)
            self._by_pair.setdefault(pair, []).append(breaker.id)
            # A new pattern may be more specific than what endpoints resolved to.
            self._resolved = {k: v for k, v in self._resolved.items() if k[:2] != pair}

    def _forget(self, breaker_id: UUID) -> None:
        self._closed_permits.pop(breaker_id, None)
        breaker = self._by_id.pop(breaker_id, None)
        if breaker is None:
            return
        pair = (breaker.source, breaker.target)
        self._by_pair[pair] = [i for i in self._by_pair.get(pair, []) if i != breaker_id]
        self._resolved = {k: v for k, v in self._resolved.items() if v != breaker_id}

    def _on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") != "breaker":
            return
        try:
            breaker_id = UUID(str(message["id"]))
            if message.get("op") == "delete":
                self._forget(breaker_id)
                return
            incoming = CachedBreaker.from_notification(message)
        except (KeyError, ValueError, TypeError):
            log.warning("ignoring malformed breaker notification %r", message)
            return
        known = self._by_id.get(breaker_id)
        if known is None or incoming.generation >= known.generation:
            self._remember(incoming)

    def cached(self, breaker_id: UUID) -> CachedBreaker | None:
        return self._by_id.get(breaker_id)

    @property
    def resolved_endpoints(self) -> int:
        """How many endpoints are remembered with their breaker (at most the cap)."""
        return len(self._resolved)

    # -- operators and reads --------------------------------------------------------------

    async def create(
        self, request: CreateCircuitBreakerRequest | dict[str, Any], *, actor: str
    ) -> Breaker:
        req = parse(CreateCircuitBreakerRequest, request)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                Q.ensure_breaker,
                req.service_name,
                req.target_service,
                req.endpoint_pattern,
                req.failure_threshold,
                req.success_threshold,
                req.timeout_duration,
                req.half_open_max_calls,
                req.count_429_as_failure,
                now,
            )
            assert row is not None
            if not row["created"]:
                raise ConflictError(
                    f"a breaker {req.service_name} → {req.target_service} "
                    f"{req.endpoint_pattern} exists already ({row['id']})"
                )
            await record_action(
                conn,
                actor=actor,
                action="breaker.create",
                target_kind="breaker",
                target_id=str(row["id"]),
                at=now,
                details=req.model_dump(mode="json"),
            )
        self._remember(CachedBreaker.from_row(row))
        return self._view(row)

    async def reset(self, breaker_id: UUID | str, *, actor: str, reason: str) -> Breaker:
        """Back to closed with counts cleared (the seed's ResetCircuitBreakerRequest)."""
        return await self._operator_transition(breaker_id, "closed", "reset", actor, reason)

    async def force_open(self, breaker_id: UUID | str, *, actor: str, reason: str) -> Breaker:
        """Reject every call until reset; no automatic half-open."""
        return await self._operator_transition(
            breaker_id, "forced_open", "force-open", actor, reason
        )

    async def disable(self, breaker_id: UUID | str, *, actor: str, reason: str) -> Breaker:
        """Let every call through and stop counting until reset."""
        return await self._operator_transition(breaker_id, "disabled", "disable", actor, reason)

    async def _operator_transition(
        self, breaker_id: UUID | str, to_state: BreakerState, verb: str, actor: str, reason: str
    ) -> Breaker:
        if not reason or not reason.strip():
            raise ValidationFailed("reason", "say why (it goes into the breaker's history)")
        key = _uuid(breaker_id)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            current = await conn.fetchrow(Q.lock_breaker, key)
            if current is None:
                raise NotFoundError("circuit breaker", str(breaker_id))
            await conn.fetchval(
                Q.operator_transition, key, to_state, f"{verb} by operator: {reason}", actor, now
            )
            await record_action(
                conn,
                actor=actor,
                action=f"breaker.{verb}",
                target_kind="breaker",
                target_id=str(key),
                at=now,
                reason=reason,
                details={"from": current["current_state"], "to": to_state},
            )
            row = await conn.fetchrow(Q.breaker_by_id, key)
        assert row is not None
        self._remember(CachedBreaker.from_row(row))
        return self._view(row)

    async def update_settings(
        self, breaker_id: UUID | str, settings: BreakerSettings, *, actor: str
    ) -> Breaker:
        key = _uuid(breaker_id)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                Q.update_breaker_settings,
                key,
                settings.failure_threshold,
                settings.success_threshold,
                settings.timeout_duration,
                settings.half_open_max_calls,
                settings.count_429_as_failure,
                now,
            )
            if row is None:
                raise NotFoundError("circuit breaker", str(breaker_id))
            await record_action(
                conn,
                actor=actor,
                action="breaker.update",
                target_kind="breaker",
                target_id=str(key),
                at=now,
                details=settings.model_dump(),
            )
        self._remember(CachedBreaker.from_row(row))
        return self._view(row)

    async def list_breakers(self) -> list[Breaker]:
        return [self._view(row) for row in await self._db.fetch(Q.all_breakers)]

    async def get(self, breaker_id: UUID | str) -> Breaker:
        row = await self._db.fetchrow(Q.breaker_by_id, _uuid(breaker_id))
        if row is None:
            raise NotFoundError("circuit breaker", str(breaker_id))
        return self._view(row)

    async def get_by_ref(self, ref: str) -> Breaker:
        """A breaker by id, id prefix (8+ characters) or ``source:target[:pattern]``."""
        if ref.count(":") >= 1 and not _looks_like_uuid(ref):
            source, _, rest = ref.partition(":")
            target, _, pattern = rest.partition(":")
            return await self.find(source, target, pattern or "*")
        rows = await self._db.fetch(Q.all_breakers)
        matches = [
            r
            for r in rows
            if str(r["id"]) == ref or (len(ref) >= 8 and str(r["id"]).startswith(ref))
        ]
        if not matches:
            raise NotFoundError("circuit breaker", ref)
        if len(matches) > 1:
            raise ConflictError(f"{ref!r} matches {len(matches)} breakers; give more of the id")
        return self._view(matches[0])

    async def find(self, source: str, target: str, pattern: str = "*") -> Breaker:
        for row in await self._db.fetch(Q.all_breakers):
            if (row["service_name"], row["target_service"], row["endpoint_pattern"]) == (
                source,
                target,
                pattern,
            ):
                return self._view(row)
        raise NotFoundError("circuit breaker", f"{source} → {target} {pattern}")

    async def history(self, breaker_id: UUID | str, *, limit: int = 100) -> list[BreakerTransition]:
        rows = await self._db.fetch(Q.breaker_history, _uuid(breaker_id), limit)
        return [BreakerTransition.model_validate(dict(row)) for row in rows]

    def _view(self, row: asyncpg.Record) -> Breaker:
        data = dict(row)
        data.pop("created", None)
        data["state_duration_seconds"] = max(
            0.0, (self._clock.now() - row["state_changed_at"]).total_seconds()
        )
        return Breaker.model_validate(data)

    async def state_counts(self) -> dict[str, int]:
        """How many breakers are in each state (every state present, zero if none)."""
        counts = {"closed": 0, "open": 0, "half_open": 0, "forced_open": 0, "disabled": 0}
        for row in await self._db.fetch(Q.breaker_state_counts):
            counts[row["current_state"]] = row["n"]
        return counts


def _uuid(value: UUID | str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        raise NotFoundError("circuit breaker", value) from None


def _looks_like_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
