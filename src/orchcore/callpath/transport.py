"""The call path's transport: an asyncio protocol and httptools' parser, for http:// and https://.

httpx stays the call path's client (requests, responses, headers, errors are
httpx's); what this replaces is the machinery under ``httpx.AsyncHTTPTransport``:
httpcore's connection pool, h11's parser and anyio's streams. Under the saga
benchmark those were a third of a daemon's CPU, for work that on a keep-alive
HTTP/1.1 connection comes down to one write, a parser fed by the event loop, and a
future. httptools (llhttp, the parser uvicorn serves with) parses the answer; every
other step is written here:

- Connections are pooled per origin (scheme, host, port), last used first, at most
  ``max_connections`` sockets to an origin at a time, idle ones included (more
  callers wait, up to the pool timeout), and at most ``max_keepalive`` idle ones
  kept for ``keepalive_expiry`` seconds.
- ``https://`` is the same connection with asyncio's TLS under it: the context
  given (the CA that signs the services' certificates and the client certificate
  orch presents, see ``tls.py``), the host checked against the certificate and sent
  as SNI, ALPN ``http/1.1``. A connection is one handshake, kept alive like any.
- A connection knows when the service closed it (``connection_lost``), so an idle
  one is never handed out dead and no syscall is spent asking. A service may still
  close one just as a request goes out on it; when that kept-alive connection then
  ends before any byte of an answer, the request goes once more on a new connection
  if sending it twice is harmless: an idempotent method, or an ``Idempotency-Key``.
  A new connection's failure is never sent again.
- A request leaves in one write: head and body together.
- Timeouts follow httpx's meaning: connect (the TLS handshake included), write
  (while the socket's buffer is full), read (no byte for that long, not the whole
  answer), pool (waiting for a connection). Each raises the httpx exception of
  that name.
- Whatever goes wrong in an exchange (a timeout, garbage, a cancelled caller, a
  connection cut mid-answer) closes that connection: it is never reused in an
  unknown state.
- No proxy: calls go to the instance addresses the registry holds, so
  ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` are not read (as before, when
  httpx's client was given a transport of its own and so ignored them too).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import httpx

from orchcore.callpath.tls import client_context

#: Defaults sized for a daemon: a few hundred calls in flight to one service.
MAX_CONNECTIONS = 256
MAX_KEEPALIVE = 64
#: Below the 5 s that uvicorn (and many servers) keep an idle connection: a connection
#: handed out just as the service closes it would fail a call that never reached it.
KEEPALIVE_EXPIRY = 4.0
#: Methods whose request may be sent twice (RFC 9110, 9.2.2), and the header that
#: makes any other one safe to send again.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
IDEMPOTENCY_HEADER = "idempotency-key"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_Origin = tuple[str, str, int]  # scheme, host, port
_Headers = list[tuple[bytes, bytes]]


class ClosedOnReuse(httpx.RemoteProtocolError):
    """A kept-alive connection ended before any byte of the answer came back: the
    service closed it as the request went out (its keep-alive timeout, a restart)."""


@dataclass(slots=True)
class PoolStats:
    """What the connections to one origin have done, and hold now."""

    opened: int = 0  # connections opened (for https each is a TLS handshake)
    requests: int = 0  # requests sent, resent ones included
    reused: int = 0  # requests sent on a kept-alive connection
    resent: int = 0  # sent again on a new connection after a kept-alive one closed
    in_use: int = 0  # connections in an exchange or being opened, now
    idle: int = 0  # kept-alive connections waiting, now


@dataclass(slots=True)
class _Answer:
    """The response being read on a connection."""

    future: asyncio.Future[_Answer]
    head_only: bool
    status: int = 0
    reason: bytes = b""
    headers: _Headers = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    headers_done: bool = False
    # no Content-Length and not chunked: the body runs until the service closes
    until_close: bool = False
    keep_alive: bool = False
    received: bool = False  # any byte of it
    last_data: float = 0.0

    def finish(self, keep_alive: bool) -> None:
        if not self.future.done():
            self.keep_alive = keep_alive
            self.future.set_result(self)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one exchange at a time."""

    def __init__(self, origin: _Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.closed = False
        self.idle_since = 0.0
        self.exchanges = 0
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: _Answer | None = None
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None:  # bytes nobody asked for: the connection is no longer sane
            self.abort()
            return
        answer.received = True
        answer.last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            answer.fail(httpx.RemoteProtocolError("the service switched protocols"))
            self.abort()
        except httptools.HttpParserError as exc:
            answer.fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if answer is not None and not answer.future.done():
            if answer.headers_done and answer.until_close:
                answer.finish(keep_alive=False)
            else:
                answer.fail(self._lost(answer, exc))
        self._wake_writer()

    def _lost(self, answer: _Answer, exc: Exception | None) -> httpx.RemoteProtocolError:
        """The error for an answer the connection's end cut short."""
        why = f" ({_reason(exc)})" if exc is not None else ""
        if not answer.received and self.exchanges > 1:
            return ClosedOnReuse(
                f"the service closed a kept-alive connection as the request went out{why}"
            )
        message = f"the service closed the connection before a complete response{why}"
        if not answer.received and self.origin[0] == "https":
            # A service that requires a client certificate checks it once the handshake
            # is over on orch's side, and refuses by closing before the first answer.
            message += (
                "; a new TLS connection closed unanswered: does the service accept "
                "orch's client certificate (ORCH_TLS_CERT_FILE)?"
            )
        return httpx.RemoteProtocolError(message)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks -------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        if self._answer is not None:
            self._answer.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._answer is not None:
            self._answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        answer = self._answer
        if answer is None:
            return
        answer.status = self._parser.get_status_code()
        answer.headers_done = True
        names = {name.lower() for name, _ in answer.headers}
        answer.until_close = b"content-length" not in names and b"transfer-encoding" not in names
        if answer.head_only and answer.status >= 200:
            # the parser would wait for the body a HEAD answer announces but never
            # sends; the connection cannot be reused after that
            answer.finish(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        if self._answer is not None:
            self._answer.body.append(body)

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is None:
            return
        if 100 <= answer.status < 200:  # interim (103 Early Hints ...): the answer follows
            answer.reason, answer.headers, answer.body = b"", [], []
            answer.headers_done = False
            return
        answer.finish(keep_alive=self._parser.should_keep_alive())

    # -- the exchange ------------------------------------------------------------

    async def exchange(
        self,
        data: bytes,
        *,
        head_only: bool,
        read_timeout: float | None,
        write_timeout: float | None,
    ) -> _Answer:
        assert self._transport is not None
        answer = _Answer(self._loop.create_future(), head_only, last_data=self._loop.time())
        self._answer = answer
        self.exchanges += 1
        if self.closed:  # closed between being handed out and now: a write would vanish
            answer.fail(self._lost(answer, None))
        else:
            self._transport.write(data)
        if self._writable is not None:
            await self._drain(write_timeout)
        timer = (
            None
            if read_timeout is None
            else self._loop.call_later(read_timeout, self._check_read, answer, read_timeout)
        )
        try:
            return await answer.future
        finally:
            if timer is not None:
                timer.cancel()
            self._answer = None

    async def _drain(self, timeout: float | None) -> None:
        waiter = self._writable
        if waiter is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            raise httpx.WriteTimeout(f"could not send the request within {timeout:g}s") from None

    def _check_read(self, answer: _Answer, timeout: float) -> None:
        if answer.future.done():
            return
        quiet = self._loop.time() - answer.last_data
        if quiet < timeout:
            self._loop.call_later(timeout - quiet, self._check_read, answer, timeout)
            return
        answer.fail(httpx.ReadTimeout(f"no response data for {timeout:g}s"))
        self.abort()

    def reusable(self) -> bool:
        return not self.closed and self._answer is None

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class _OriginPool:
    """The connections to one origin: idle ones last-used first, a cap, and its queue."""

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.open = 0  # connections in use or being opened
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.stats = PoolStats()


class HttpTransport(httpx.AsyncBaseTransport):
    """``http://`` and ``https://`` for httpx over pooled keep-alive connections (see
    the module). ``ssl_context``: what https connections verify services with and
    present; without one, httpx's default (see :func:`~orchcore.callpath.tls.client_context`)."""

    def __init__(
        self,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_keepalive: int = MAX_KEEPALIVE,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._pools: dict[_Origin, _OriginPool] = {}
        self._closed = False

    def stats(self) -> dict[str, PoolStats]:
        """Each origin's figures, keyed ``scheme://host:port``."""
        return {
            f"{scheme}://{host}:{port}": dataclasses.replace(
                pool.stats, in_use=pool.open, idle=len(pool.idle)
            )
            for (scheme, host, port), pool in self._pools.items()
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"this transport speaks http:// and https://, not {url.scheme}://"
            )
        if self._closed:
            raise RuntimeError("the transport is closed")
        data = _encode(request, await request.aread())
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _OriginPool()
        try:
            answer = await self._send(pool, origin, request, data, fresh=False)
        except ClosedOnReuse as exc:
            if not may_resend(request):
                raise ClosedOnReuse(
                    f"{exc}; not sent again: {request.method} is not idempotent and the "
                    "request has no Idempotency-Key"
                ) from None
            pool.stats.resent += 1
            answer = await self._send(pool, origin, request, data, fresh=True)
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(b"".join(answer.body)),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    async def _send(
        self,
        pool: _OriginPool,
        origin: _Origin,
        request: httpx.Request,
        data: bytes,
        *,
        fresh: bool,
    ) -> _Answer:
        """One exchange on a connection from the pool (a new one when ``fresh``)."""
        timeouts = request.extensions.get("timeout", {})
        connection = await self._acquire(
            pool, origin, timeouts.get("connect"), timeouts.get("pool"), fresh=fresh
        )
        pool.stats.requests += 1
        try:
            answer = await connection.exchange(
                data,
                head_only=request.method == "HEAD",
                read_timeout=timeouts.get("read"),
                write_timeout=timeouts.get("write"),
            )
        except BaseException:
            connection.abort()
            self._release(pool, connection, reuse=False)
            raise
        self._release(pool, connection, reuse=answer.keep_alive)
        return answer

    # -- the pool ------------------------------------------------------------------

    async def _acquire(
        self,
        pool: _OriginPool,
        origin: _Origin,
        connect_timeout: float | None,
        pool_timeout: float | None,
        *,
        fresh: bool,
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = None if fresh else self._take_idle(pool, loop.time())
        if connection is not None:
            return connection
        if not self._room_for_one(pool):
            connection = await self._wait_for_room(pool, pool_timeout, fresh=fresh)
            if connection is not None:
                return connection
        pool.open += 1
        try:
            connection = await self._connect(origin, loop, connect_timeout)
        except BaseException:
            pool.open -= 1
            self._wake_one(pool)
            raise
        pool.stats.opened += 1
        return connection

    def _take_idle(self, pool: _OriginPool, now: float) -> _Connection | None:
        while pool.idle:
            connection = pool.idle.pop()
            if connection.reusable() and now - connection.idle_since < self._keepalive_expiry:
                pool.open += 1
                pool.stats.reused += 1
                return connection
            connection.abort()
        return None

    def _room_for_one(self, pool: _OriginPool) -> bool:
        """Whether one more connection may open: every socket to the origin, in use or
        idle, counts against the cap, and the longest idle one goes to make room."""
        if pool.open + len(pool.idle) < self._max_connections:
            return True
        if pool.idle and pool.open < self._max_connections:
            pool.idle.pop(0).abort()
            return True
        return False

    async def _wait_for_room(
        self, pool: _OriginPool, timeout: float | None, *, fresh: bool
    ) -> _Connection | None:
        """Wait until a connection is released: that idle one, or None once a new one
        may be opened."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._wait_turn(pool, loop)
                    connection = None if fresh else self._take_idle(pool, loop.time())
                    if connection is not None or self._room_for_one(pool):
                        return connection
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"no connection free within {timeout:g}s "
                f"({self._max_connections} in use to this service)"
            ) from None

    @staticmethod
    async def _wait_turn(pool: _OriginPool, loop: asyncio.AbstractEventLoop) -> None:
        """Until a released connection wakes this caller (first come, first woken)."""
        waiter: asyncio.Future[None] = loop.create_future()
        pool.waiters.append(waiter)
        try:
            await waiter
        except BaseException:  # timed out or cancelled
            if waiter in pool.waiters:
                pool.waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                HttpTransport._wake_one(pool)  # woken too late to use it: the next one is
            raise

    async def _connect(
        self, origin: _Origin, loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        tls: dict[str, Any] = {}
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = client_context(None)
            tls = {"ssl": self._ssl_context, "server_hostname": host}
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, loop), host, port, **tls
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"could not connect to {host}:{port} within {timeout:g}s"
            ) from None
        except ssl.SSLError as exc:
            raise httpx.ConnectError(
                f"{host}:{port}: the TLS handshake failed: {_reason(exc)}"
            ) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc.strerror or exc}") from exc
        return connection

    def _release(self, pool: _OriginPool, connection: _Connection, *, reuse: bool) -> None:
        pool.open -= 1
        if reuse and connection.reusable() and not self._closed:
            connection.idle_since = asyncio.get_running_loop().time()
            pool.idle.append(connection)
            if len(pool.idle) > self._max_keepalive:
                pool.idle.pop(0).abort()  # the longest idle goes
        else:
            connection.abort()
        self._wake_one(pool)

    @staticmethod
    def _wake_one(pool: _OriginPool) -> None:
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.abort()
            pool.idle.clear()


def may_resend(request: httpx.Request) -> bool:
    """Whether sending ``request`` twice is harmless: an idempotent method, or a key
    by which the service tells the second from a new request."""
    return request.method in IDEMPOTENT_METHODS or IDEMPOTENCY_HEADER in request.headers


def _reason(exc: BaseException) -> str:
    """An OS or TLS error in one line, without OpenSSL's source position."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{exc.reason}: {exc.verify_message}"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or type(exc).__name__


def _encode(request: httpx.Request, body: bytes) -> bytes:
    """The request as it goes on the wire: head and body in one buffer."""
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if name.lower() in (b"transfer-encoding", b"content-length"):
            continue  # the body is whole by now: its length is known
        lines += (name, b": ", value, b"\r\n")
    if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines += (b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n")
    lines += (b"\r\n", body)
    return b"".join(lines)
