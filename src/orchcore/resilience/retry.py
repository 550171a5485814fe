"""Retry decisions and backoff delays."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field

from orchcore.mesh.models import RetryCondition

#: Methods that may be sent twice without an idempotency key.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.2  # ± this fraction of the delay
    retry_on: frozenset[RetryCondition] = field(
        default_factory=lambda: frozenset({"connect-failure", "5xx", "429"})
    )
    max_retry_after: float = 30.0  # never wait longer than this for a Retry-After

    @classmethod
    def single_attempt(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry ``retry_number`` (1 for the first retry)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (retry_number - 1))
        if self.jitter:
            base *= 1 + rng.uniform(-self.jitter, self.jitter)
        return max(0.0, base)


def outcome_condition(status_code: int | None, error_kind: str | None) -> RetryCondition | None:
    """Which retry condition an attempt's outcome is (None: a final answer)."""
    if error_kind == "timeout":
        return "timeout"
    if error_kind is not None:
        return "connect-failure"
    if status_code == 429:
        return "429"
    if status_code is not None and status_code >= 500:
        return "5xx"
    return None


def may_retry(method: str, idempotency_key: str | None) -> bool:
    """A non-idempotent call is retried only when it carries an idempotency key."""
    return method.upper() in IDEMPOTENT_METHODS or bool(idempotency_key)


def retry_after_seconds(header: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds form; an HTTP date is read as well)."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def conditions(names: Collection[str]) -> frozenset[RetryCondition]:
    return frozenset(n for n in names if n in ("connect-failure", "5xx", "429", "timeout"))  # type: ignore[misc]
