"""Token buckets per (source, target), shared by every daemon through the database.

A full bucket admits exactly ``burst`` calls at once, then ``requests_per_second``.
"""

from __future__ import annotations

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.errors import OrchError

Q = Queries("orchcore.resilience")


class RateLimitedError(OrchError):
    http_status = 429

    def __init__(self, source: str, target: str, rate: float, retry_after: float | None) -> None:
        self.source = source
        self.target = target
        self.retry_after = retry_after
        wait = f"; retry in {retry_after:.2f}s" if retry_after is not None else ""
        super().__init__(f"rate limit {source} → {target} ({rate:g}/s) exceeded{wait}")


class RateLimiter:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def take(self, source: str, target: str, *, rate: float, burst: int) -> float:
        """Take one token or raise :class:`RateLimitedError`; returns the tokens left."""
        row = await self._db.fetchrow(
            Q.rate_limit_take, source, target, float(rate), float(burst), self._clock.now()
        )
        assert row is not None
        if not row["admitted"]:
            raise RateLimitedError(source, target, rate, row["retry_after"])
        left: float = row["tokens_left"]
        return left
