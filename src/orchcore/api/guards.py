"""What every request to orch's HTTP listeners passes: a limit on its body, and answers
in orch's error body where Starlette would give its own.

- A body over the limit gets 413 before the route reads it whole: at once when its
  ``Content-Length`` says so, else as soon as the bytes streamed in (a chunked body)
  pass the limit. Routes that keep a limit of their own (OTLP ingest answers in
  OTLP's encoding) are left to it.
- An unexpected exception gets 500 with a reference the daemon's log repeats beside
  the traceback; the client never sees the exception's text. A database that went away
  is 503 (with Retry-After), not 500: the request will do once it is back.
- A refused token gets 401 with the ``WWW-Authenticate`` challenge RFC 6750 asks for.
- Text PostgreSQL cannot store (U+0000, in a path, a query or a body) gets 422, not
  the 500 the database's refusal would otherwise become.
- Every answer says the engine's time (``Orch-Now``): a console over the API measures
  ages against the daemon's clock, not the laptop's it runs on.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchcore.api.errors import error_body
from orchcore.auth import Unauthenticated
from orchcore.db.failures import is_transient
from orchcore.errors import PayloadTooLarge, ValidationFailed
from orchcore.facade import DatabaseUnavailable

log = logging.getLogger("orch.api")


#: The response header carrying the engine's time (ISO 8601, UTC).
NOW_HEADER = "orch-now"


def install_guards(
    app: FastAPI,
    *,
    max_body_bytes: int | None,
    own_limits: Collection[str] = (),
    now: Callable[[], datetime] | None = None,
) -> None:
    """Guard ``app``: bodies up to ``max_body_bytes`` (None: no limit here) except on
    the paths in ``own_limits``; orch's error body for 401 and 500."""
    app.add_exception_handler(Unauthenticated, _unauthenticated)
    for unstorable in _UNSTORABLE_TEXT:
        app.add_exception_handler(unstorable, _unstorable_text)
    app.add_middleware(
        RequestGuard, max_body_bytes=max_body_bytes, own_limits=frozenset(own_limits), now=now
    )


async def _unauthenticated(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unauthenticated)
    return JSONResponse(
        error_body(exc), status_code=401, headers={"WWW-Authenticate": exc.challenge}
    )


#: What PostgreSQL answers to U+0000 in text (22021) and in jsonb (22P05): no value can
#: hold it, so it is always the request's fault.
_UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


async def _unstorable_text(_request: Request, _exc: Exception) -> JSONResponse:
    refusal = ValidationFailed("request", "text may not contain the NUL character (U+0000)")
    return JSONResponse(error_body(refusal), status_code=422)


class RequestGuard:
    """A plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which would buffer
    and re-stream every body through a task of its own)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int | None,
        own_limits: frozenset[str],
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.own_limits = own_limits
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = None if scope["path"] in self.own_limits else self.max_body_bytes
        await _Exchange(scope, receive, send, limit, self.now).run(self.app)


class _Exchange:
    """One request and its answer: counts the body's bytes as they arrive, and knows
    whether an answer has begun (after which nothing else can be said)."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int | None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.scope = scope
        self._now = now
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.started = False  # the app began its answer
        self.answered = False  # we answered in its place; what it sends goes nowhere

    async def run(self, app: ASGIApp) -> None:
        if self.limit is not None and _declared_length(self.scope) > self.limit:
            await self._answer(413, self._too_large())
            return
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self.answered:
                return  # the app's reaction to the body we cut off
            if self.started:
                raise  # too late for another answer: the server drops the connection
            if is_transient(exc):
                await self._database_unavailable(exc)
                return
            reference = uuid.uuid4().hex[:16]
            log.error(
                "unexpected error answering %s %s (error_id %s)",
                self.scope.get("method"),
                self.scope.get("path"),
                reference,
                exc_info=exc,
                extra={"error_id": reference},
            )
            await self._answer(
                500,
                {
                    "error": "InternalError",
                    "message": "unexpected error; the daemon's log names it by its error_id",
                    "detail": "unexpected error",
                    "error_id": reference,
                },
            )

    async def _database_unavailable(self, exc: Exception) -> None:
        """503, not 500: the database went away (or refused, or cancelled the statement);
        the same request will do once it is back. Its text names hosts and users, so it
        goes to the daemon's log, not to the client."""
        log.warning(
            "database unavailable answering %s %s: %s",
            self.scope.get("method"),
            self.scope.get("path"),
            " ".join(str(exc).split()) or type(exc).__name__,
        )
        refusal = DatabaseUnavailable("the daemon cannot reach its database; try again shortly")
        await self._answer(503, error_body(refusal), headers=[(b"retry-after", b"1")])

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or self.limit is None:
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.limit:
            return message
        if not self.started and not self.answered:
            await self._answer(413, self._too_large())
        # The route reads no further: to it, the client has gone.
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if self._now is not None:
                stamp = (NOW_HEADER.encode(), self._now().isoformat().encode())
                message = {**message, "headers": [*message.get("headers", ()), stamp]}
        await self._send(message)

    def _too_large(self) -> dict[str, Any]:
        return error_body(PayloadTooLarge(f"the request body is over {self.limit} bytes"))

    async def _answer(
        self, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        self.answered = True
        payload = json.dumps(body).encode()
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *headers,
                ],
            }
        )
        await self._send({"type": "http.response.body", "body": payload})


def _declared_length(scope: Scope) -> int:
    """The request's Content-Length, or -1 without one (a chunked body)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return -1
