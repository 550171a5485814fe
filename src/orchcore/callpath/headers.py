"""The method and headers a call sends, checked before they reach the wire.

orch's own transport writes the request line and header bytes as they are, so a
space in a method or a CR/LF in a correlation id would start a header (or a
request) of the caller's choosing; a character beyond latin-1 would fail deep
inside httpx with a UnicodeEncodeError. Both are refused up front, naming the
field, like any other bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from orchcore.callpath.refusals import InvalidCallError, shown

#: RFC 9110 field-name: a token.
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 9110 field-value: visible latin-1, spaces and tabs; no CR, LF, NUL or DEL.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
MAX_VALUE_LENGTH = 4096


def check_method(method: str) -> str:
    """``method`` upper-cased if it is a token, else :class:`InvalidCallError`."""
    if not _NAME.fullmatch(method) or len(method) > 32:
        raise InvalidCallError("method", f"{shown(method)} is not an HTTP method")
    return method.upper()


def check_header_value(field: str, value: str) -> str:
    """``value`` if it may be sent as one header value, else :class:`InvalidCallError`."""
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidCallError(field, f"is longer than {MAX_VALUE_LENGTH} characters")
    bad = _BAD_VALUE.search(value)
    if bad is not None:
        kind = "a line break" if bad.group() in "\r\n" else f"the character {bad.group()!r}"
        raise InvalidCallError(
            field, f"{shown(value)} holds {kind}, which a header value may not hold"
        )
    return value


def outbound_headers(
    given: Mapping[str, str] | None, correlation_id: str, idempotency_key: str | None
) -> dict[str, str]:
    """The caller's headers plus orch's own, every name and value checked."""
    headers: dict[str, str] = {}
    for name, value in (given or {}).items():
        if not _NAME.fullmatch(name):
            raise InvalidCallError("headers", f"{shown(name)} is not a valid header name")
        headers[name] = check_header_value(f"headers.{name}", value)
    headers["X-Correlation-ID"] = check_header_value("correlation_id", correlation_id)
    if idempotency_key:
        headers["Idempotency-Key"] = check_header_value("idempotency_key", idempotency_key)
    return headers
