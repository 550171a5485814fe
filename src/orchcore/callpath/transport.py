"""The call path's transport for plain-HTTP calls: an asyncio protocol and httptools' parser.

httpx stays the call path's client (requests, responses, headers, errors are
httpx's); what this replaces is the machinery under ``httpx.AsyncHTTPTransport``
for ``http://``: httpcore's connection pool, h11's parser and anyio's streams.
Under the saga benchmark those were a third of a daemon's CPU, for work that on a
keep-alive HTTP/1.1 connection comes down to one write, a parser fed by the event
loop, and a future. httptools (llhttp, the parser uvicorn serves with) parses the
answer; every other step is written here:

- Connections are pooled per origin, last used first, at most ``max_connections``
  at a time (more callers wait, up to the pool timeout) and at most
  ``max_keepalive`` idle ones kept for ``keepalive_expiry`` seconds.
- A connection knows when the service closed it (``connection_lost``), so an idle
  one is never handed out dead and no syscall is spent asking.
- A request leaves in one write: head and body together.
- Timeouts follow httpx's meaning: connect, write (while the socket's buffer is
  full), read (no byte for that long, not the whole answer), pool (waiting for a
  connection). Each raises the httpx exception of that name.
- Whatever goes wrong in an exchange (a timeout, garbage, a cancelled caller, a
  connection cut mid-answer) closes that connection: it is never reused in an
  unknown state.

``https://`` keeps httpx's own transport (TLS, mTLS); see ``caller.py``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import httptools
import httpx

#: Defaults sized for a daemon: a few hundred calls in flight to one service.
MAX_CONNECTIONS = 256
MAX_KEEPALIVE = 64
#: Below the 5 s that uvicorn (and many servers) keep an idle connection: a connection
#: handed out just as the service closes it would fail a call that never reached it.
KEEPALIVE_EXPIRY = 4.0

_Origin = tuple[str, int]
_Headers = list[tuple[bytes, bytes]]


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
                answer.fail(
                    httpx.RemoteProtocolError(
                        "the service closed the connection before a complete response"
                    )
                )
        self._wake_writer()

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


class PlainHttpTransport(httpx.AsyncBaseTransport):
    """``http://`` for httpx over pooled keep-alive connections (see the module)."""

    def __init__(
        self,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_keepalive: int = MAX_KEEPALIVE,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self._max_connections = max_connections
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._pools: dict[_Origin, _OriginPool] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"this transport speaks http://, not {url.scheme}://")
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts = request.extensions.get("timeout", {})
        data = _encode(request, await request.aread())
        origin = (url.host, url.port or 80)
        connection = await self._acquire(origin, timeouts.get("connect"), timeouts.get("pool"))
        try:
            answer = await connection.exchange(
                data,
                head_only=request.method == "HEAD",
                read_timeout=timeouts.get("read"),
                write_timeout=timeouts.get("write"),
            )
        except BaseException:
            connection.abort()
            self._release(connection, reuse=False)
            raise
        self._release(connection, reuse=answer.keep_alive)
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(b"".join(answer.body)),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    # -- the pool ------------------------------------------------------------------

    async def _acquire(
        self, origin: _Origin, connect_timeout: float | None, pool_timeout: float | None
    ) -> _Connection:
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _OriginPool()
        loop = asyncio.get_running_loop()
        connection = self._take_idle(pool, loop.time())
        if connection is not None:
            return connection
        if pool.open >= self._max_connections:
            await self._wait_for_room(pool, pool_timeout)
            connection = self._take_idle(pool, loop.time())
            if connection is not None:
                return connection
        pool.open += 1
        try:
            return await self._connect(origin, loop, connect_timeout)
        except BaseException:
            pool.open -= 1
            self._wake_one(pool)
            raise

    def _take_idle(self, pool: _OriginPool, now: float) -> _Connection | None:
        while pool.idle:
            connection = pool.idle.pop()
            if connection.reusable() and now - connection.idle_since < self._keepalive_expiry:
                pool.open += 1
                return connection
            connection.abort()
        return None

    async def _wait_for_room(self, pool: _OriginPool, timeout: float | None) -> None:
        while pool.open >= self._max_connections and not pool.idle:
            waiter = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise httpx.PoolTimeout(
                    f"no connection free within {timeout:g}s "
                    f"({self._max_connections} in use to this service)"
                ) from None
            finally:
                if waiter in pool.waiters:
                    pool.waiters.remove(waiter)

    async def _connect(
        self, origin: _Origin, loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> _Connection:
        host, port = origin
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, loop), host, port
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"could not connect to {host}:{port} within {timeout:g}s"
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc.strerror or exc}") from exc
        return connection

    def _release(self, connection: _Connection, *, reuse: bool) -> None:
        pool = self._pools[connection.origin]
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
