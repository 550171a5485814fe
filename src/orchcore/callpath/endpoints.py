"""One normal form for a call's endpoint: what authorization matches is what is sent.

httpx resolves dot segments when it builds a URL (RFC 3986 §5.2.4), so
``/reservations/../payments/refund`` would be authorized against a
``/reservations/*`` rule and then sent as ``/payments/refund``. The call path
therefore puts every endpoint in one form before any rule, breaker or instance
sees it, and refuses what has no single meaning instead of guessing:

- the query string is split off: rules and breaker patterns match the path only;
- a dot segment (``.`` or ``..``, literal or as ``%2E``, also between encoded
  slashes ``%2F``/``%5C``), an empty segment (``//``), a backslash, a control
  character (also percent-encoded), ``#`` and a malformed ``%`` escape are refused;
- percent-encoding is normalised (RFC 3986 §6.2.2): escapes of unreserved
  characters are decoded (``%72efund`` is ``refund``), the hex of the others is
  upper-cased, and characters a path may not hold literally (space, non-ASCII) are
  encoded, so httpx sends the path exactly as it was matched.

A trailing slash is kept: ``/reservations/`` and ``/reservations`` are different
resources to many services.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote

from orchcore.callpath.refusals import InvalidCallError, shown

#: Longer endpoints are refused: no service needs one, and they are kept in events.
MAX_ENDPOINT_LENGTH = 2048

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
#: What a path segment may hold literally (RFC 3986 pchar without pct-encoded).
_PCHAR = _UNRESERVED | frozenset("!$&'()*+,;=:@")
_HEX = frozenset(string.hexdigits)
# Nothing to decode or encode: the common case skips the per-character pass.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\\#]")
_ENCODED_SEPARATOR = re.compile(r"%2F|%5C")


@dataclass(frozen=True, slots=True)
class CallEndpoint:
    """An endpoint in normal form: ``path`` is what rules match, ``target`` what is sent."""

    path: str
    query: str = ""

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


def normalize_endpoint(endpoint: str) -> CallEndpoint:
    """The endpoint in normal form, or :class:`InvalidCallError` saying what is wrong."""
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        _refuse(endpoint, f"is longer than {MAX_ENDPOINT_LENGTH} characters")
    bad = _FORBIDDEN.search(endpoint)
    if bad is not None:
        _refuse(endpoint, f"holds {_describe(bad.group())}")
    if not endpoint.startswith("/"):
        endpoint = "/" + endpoint
    path, _, query = endpoint.partition("?")
    if not _PLAIN_PATH.fullmatch(path):
        path = "/".join(_normal_segment(segment, endpoint) for segment in path.split("/"))
    if "/." in path or "//" in path or "%2F" in path or "%5C" in path:
        _check_segments(path, endpoint)
    return CallEndpoint(path, query)


def _normal_segment(segment: str, endpoint: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "%":
            digits = segment[index + 1 : index + 3]
            if len(digits) != 2 or not _HEX.issuperset(digits):
                _refuse(endpoint, f"has a malformed percent-escape {shown(segment[index:][:3])}")
            byte = int(digits, 16)
            if byte < 0x20 or byte == 0x7F:
                _refuse(endpoint, f"holds an encoded control character (%{digits.upper()})")
            decoded = chr(byte)
            out.append(decoded if decoded in _UNRESERVED else "%" + digits.upper())
            index += 3
            continue
        out.append(char if char in _PCHAR else _encoded(char, endpoint))
        index += 1
    return "".join(out)


def _encoded(char: str, endpoint: str) -> str:
    try:
        return quote(char, safe="")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from JSON "\\ud800"
        _refuse(endpoint, f"holds {char!r}, which is not a character UTF-8 can encode")


def _check_segments(path: str, endpoint: str) -> None:
    segments = path.split("/")[1:]
    last = len(segments) - 1
    for position, segment in enumerate(segments):
        if not segment and position != last:
            _refuse(endpoint, "has an empty segment ('//')")
        for piece in _ENCODED_SEPARATOR.split(segment):
            if piece in (".", ".."):
                _refuse(endpoint, f"has a dot segment ({piece!r}); name the path itself")


def _describe(char: str) -> str:
    if char == "\\":
        return "a backslash"
    if char == "#":
        return "a '#' (a fragment is not sent to a service)"
    return f"a control character ({char!r})"


def _refuse(endpoint: str, reason: str) -> NoReturn:
    raise InvalidCallError("endpoint", f"{shown(endpoint)} {reason}")
