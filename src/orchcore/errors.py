"""Typed errors every face maps to its own way of saying no.

The HTTP API maps them to status codes, the CLI to exit codes and one line,
the console to a notification. Each carries enough to say exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class OrchError(Exception):
    """Base of every error the engine raises on purpose."""

    http_status = 500

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": str(self)}


class ValidationFailed(OrchError):
    """Bad input: names the field and the reason."""

    http_status = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": "ValidationFailed",
            "message": str(self),
            "detail": [{"loc": self.field.split("."), "msg": self.reason}],
        }


class NotFoundError(OrchError):
    http_status = 404

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class ConflictError(OrchError):
    http_status = 409


class PermissionDeniedError(OrchError):
    http_status = 403


class PayloadTooLarge(OrchError):
    """A message over its queue's size limit: refused whole, nothing stored."""

    http_status = 413


class NoHealthyInstanceError(OrchError):
    """Discovery found nothing to route to; says what the instances are doing."""

    http_status = 503

    def __init__(self, service: str, counts: Mapping[str, int]) -> None:
        self.service = service
        self.counts = dict(counts)
        if counts:
            detail = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        else:
            detail = "no instances registered"
        super().__init__(f"no healthy instance of service {service!r} ({detail})")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "service": self.service, "instances": self.counts}


def validation_failed_from(exc: Exception) -> ValidationFailed:
    """Turn a pydantic ValidationError into one ValidationFailed naming the first bad field."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        # Union and function validators add internal names to loc; keep the field path.
        loc = ".".join(
            str(part)
            for part in first.get("loc", ())
            if isinstance(part, int) or str(part).isidentifier()
        )
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if not loc and ": " in message:
            loc, _, message = message.partition(": ")
        return ValidationFailed(loc or "request", message)
    return ValidationFailed("request", str(exc))
