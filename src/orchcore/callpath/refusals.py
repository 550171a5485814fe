"""Why the call path refuses a call before anything is sent.

Every refusal here is final for the call as asked: retrying it unchanged cannot
succeed, so a saga step that meets one fails instead of retrying. They share
:class:`CallDenied`, which saga execution already treats that way.
"""

from __future__ import annotations

from typing import Any

from orchcore.errors import OrchError, ValidationFailed


class CallDenied(OrchError):
    """A mesh authorization policy, or orch's own rules, do not let this call happen."""

    http_status = 403


class UnknownCallerError(CallDenied):
    """The calling service is neither registered nor one of orch's own identities.

    Breakers, rate-limit buckets and policy caches are kept per caller; a name
    nobody registered must not make new ones (see ``ServiceCaller.call``).
    """

    def __init__(self, source: str, own: tuple[str, ...]) -> None:
        super().__init__(
            f"unknown calling service {shown(source)}: not a registered service "
            f"nor one of orch's own ({', '.join(own)})"
        )
        self.source = source


class InvalidCallError(CallDenied, ValidationFailed):
    """The call as asked has no single meaning (an endpoint with a dot segment, a header
    value with a line break): refused like a denied call, named like a bad field."""

    http_status = 422

    def to_dict(self) -> dict[str, Any]:
        return {**ValidationFailed.to_dict(self), "error": type(self).__name__}


def shown(value: str, limit: int = 120) -> str:
    """A caller-supplied value fit for a one-line message: quoted, escaped, cut short."""
    text = repr(value[:limit])
    return text + "…" if len(value) > limit else text
