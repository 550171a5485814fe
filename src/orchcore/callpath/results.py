"""What a call comes to: its answer, its attempts, and for a call that got no answer,
whether the service may have acted on it anyway.

An attempt's outcome is unknown when the request was (or may have been) written and
no complete answer came: a read or write timeout, a connection cut mid-exchange, a
garbled answer. It is known not to have reached the service when the connection
never opened (refused, connect timeout, no free connection in the pool) or the call
was refused before sending. A saga reads :attr:`CallFailed.outcome_unknown` to tell
"the payment was not taken" from "the payment may have been taken".
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchcore.errors import OrchError

if TYPE_CHECKING:
    import httpx


class CallFailed(OrchError):
    """No HTTP answer after the last attempt (connection failures, timeouts)."""

    http_status = 502

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.attempts = attempts

    @property
    def outcome_unknown(self) -> bool:
        """Whether the service may have received a request and acted on it: a saga must
        not compensate (or give up on) such a step as if it never happened."""
        return any(attempt.outcome_unknown for attempt in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "outcome_unknown": self.outcome_unknown,
            "attempts": [a.as_dict() for a in self.attempts],
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    instance_id: str | None
    status_code: int | None
    error: str | None
    duration_ms: float
    span_id: str
    #: True when the request was (or may have been) sent and no complete answer came
    #: (read timeout, connection lost mid-exchange); False when the answer came or
    #: nothing was sent (connection refused, connect or pool timeout, a refusal).
    outcome_unknown: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "instance_id": self.instance_id,
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 3),
            "span_id": self.span_id,
            "outcome_unknown": self.outcome_unknown,
        }


@dataclass
class CallResult:
    status_code: int
    headers: httpx.Headers
    content: bytes
    instance_id: str
    trace_id: str
    correlation_id: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return jsonlib.loads(self.content) if self.content else None

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def as_dict(self) -> dict[str, Any]:
        try:
            body: Any = self.json()
        except ValueError:
            body = self.text
        return {
            "status_code": self.status_code,
            "instance_id": self.instance_id,
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "attempts": [a.as_dict() for a in self.attempts],
            "body": body,
        }


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt came to: an answer, or no answer and why."""

    status_code: int | None
    error_kind: str | None  # "timeout" | "connect" | "protocol"
    error: str | None
    response: httpx.Response | None
    unknown: bool = False  # sent (or maybe sent) and not answered: see Attempt


def no_answer(exc: httpx.HTTPError, timeout: float) -> AttemptOutcome:
    """The outcome of an attempt httpx (or orch's transport) ended with ``exc``."""
    # Imported here: a saga's reads import CallFailed, and httpx costs a CLI verb more
    # than its query.
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return _timed_out(exc, timeout)
    if isinstance(exc, httpx.ConnectError):
        return AttemptOutcome(None, "connect", f"connection failed: {exc or 'refused'}", None)
    # Refused before a byte left (no such scheme, a request h11 will not write);
    # anything else broke an exchange that had begun.
    unsent = isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError)
    error = f"{type(exc).__name__}: {exc}"
    return AttemptOutcome(None, "protocol", error, None, unknown=not unsent)


def _timed_out(exc: httpx.TimeoutException, timeout: float) -> AttemptOutcome:
    """Connect and pool timeouts end before a byte is sent; read and write ones after."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return AttemptOutcome(None, "timeout", f"timed out after {timeout:g}s connecting", None)
    if isinstance(exc, httpx.PoolTimeout):
        error = f"timed out after {timeout:g}s waiting for a free connection"
        return AttemptOutcome(None, "timeout", error, None)
    doing = "sending the request" if isinstance(exc, httpx.WriteTimeout) else "awaiting the answer"
    return AttemptOutcome(
        None, "timeout", f"timed out after {timeout:g}s {doing}", None, unknown=True
    )


def event_type(outcome: AttemptOutcome) -> str:
    if outcome.error_kind == "timeout":
        return "timeout"
    if outcome.error_kind is not None or (outcome.status_code or 0) >= 500:
        return "error"
    return "response"
