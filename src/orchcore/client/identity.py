"""Who a token is, asked of the daemon (``GET /api/orchestration/whoami``), and the one
line that says why it could not be asked."""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from orchcore.errors import OrchError

WHOAMI_PATH = "/api/orchestration/whoami"


class TokenRefused(OrchError):
    """The daemon answered 401: the token is unknown, revoked or expired."""

    http_status = 401


class DaemonUnreachable(OrchError):
    """No answer from the daemon (refused, timed out, a certificate not trusted), or
    an answer that is not an orch daemon's."""

    http_status = 503


@dataclass(frozen=True)
class Identity:
    url: str
    name: str
    role: str
    service: str | None
    actions: frozenset[str]
    expires_at: datetime | None
    #: the deployment environment the daemon serves ("" from a daemon that does not say)
    environment: str = ""

    def may(self, action: str) -> bool:
        """Whether the role allows ``action`` (an Action's value); the daemon still
        decides each request."""
        return action in self.actions

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "name": self.name,
            "role": self.role,
            "service": self.service,
            "actions": sorted(self.actions),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }


async def whoami(client: httpx.AsyncClient) -> Identity:
    """The identity of the token ``client`` sends (see credentials.http_client)."""
    url = str(client.base_url).rstrip("/")
    try:
        answer = await client.get(WHOAMI_PATH)
    except httpx.TransportError as exc:
        raise DaemonUnreachable(_transport_failure(url, exc)) from None
    if answer.status_code == 401:
        raise TokenRefused(f"{url} refused the token: {_message(answer)}")
    if answer.status_code != 200:
        raise DaemonUnreachable(
            f"{url}{WHOAMI_PATH} answered HTTP {answer.status_code} ({_message(answer)}); "
            "is the URL an orch daemon's (without /api/orchestration), of this version?"
        )
    try:
        body = answer.json()
        expires_at = body["expires_at"]
        return Identity(
            url=url,
            name=str(body["name"]),
            role=str(body["role"]),
            service=body["service"],
            actions=frozenset(str(action) for action in body["actions"]),
            expires_at=None if expires_at is None else datetime.fromisoformat(expires_at),
            environment=str(body.get("environment") or ""),
        )
    except (ValueError, KeyError, TypeError):
        raise DaemonUnreachable(f"{url}{WHOAMI_PATH} did not answer as orch does") from None


def _transport_failure(url: str, exc: httpx.TransportError) -> str:
    causes = _chain(exc)
    tls = next((cause for cause in causes if isinstance(cause, ssl.SSLError)), None)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return (
            f"cannot verify the certificate of {url} ({tls.verify_message}): "
            "pass --ca-file with the CA that signed it"
        )
    if tls is not None and tls.reason == "WRONG_VERSION_NUMBER":
        return f"cannot reach {url}: it does not answer https (is it http://?)"
    if isinstance(exc, httpx.TimeoutException):
        return f"cannot reach {url}: no answer in time ({type(exc).__name__})"
    said = next((words for cause in causes if (words := _socket_words(cause))), None)
    return f"cannot reach {url}: {said or exc or type(exc).__name__}"


def _socket_words(cause: BaseException) -> str | None:
    """What the system said ("Connection refused", "Name or service not known"), not
    httpx's summary of it ("All connection attempts failed")."""
    if not isinstance(cause, OSError):
        return None
    if isinstance(cause, socket.gaierror):  # its errno is the resolver's, not errno's
        return cause.strerror
    # asyncio's text names the address again ("Connect call failed ('127.0.0.1', 9)").
    return os.strerror(cause.errno) if cause.errno else cause.strerror


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: httpx wraps httpcore's error, which wraps the
    socket's or the ssl module's."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def _message(answer: httpx.Response) -> str:
    try:
        message = answer.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message)[:200] if message else answer.reason_phrase or "no reason given"
