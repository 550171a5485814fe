"""A thin layer under httpcore's network streams, for the two costs it found.

- httpcore writes a request's head and its body separately, so each call with a
  JSON body cost two send syscalls and woke the service twice for one request. The
  stream keeps what httpcore writes and sends it all when httpcore turns to read
  the answer (HTTP/1.1: the client reads only once its request is out).
- Before each request httpcore asks every idle connection of the pool whether the
  server closed it; through anyio that question rebuilt a table of socket
  attributes (a getpeername syscall among them) every time. The stream keeps its
  socket and polls it directly.

Socket work was a fifth of a daemon's CPU under the saga benchmark.

It is slid under httpx's transport by wrapping the connection pool's network
backend, which httpx does not expose; should a later httpx or httpcore move it,
``coalesce_writes`` leaves the transport as it is and calls work as before.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Iterable
from ssl import SSLContext
from typing import Any, Protocol

import httpcore
import httpx

log = logging.getLogger("orch.callpath")


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


class _CoalescingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._pending: list[bytes] = []
        self._timeout: float | None = None
        # asyncio hands out a TransportSocket, a socket.socket stand-in with fileno()
        raw = inner.get_extra_info("socket")
        self._socket: _HasFileno | None = raw if hasattr(raw, "fileno") else None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)
            self._timeout = timeout

    async def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            await self._inner.write(data, self._timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush()
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending.clear()
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await self._flush()
        return _CoalescingStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: _HasFileno) -> bool:
    """Whether reading would not block: on an idle connection, the server closed it."""
    if sock.fileno() == -1:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _CoalescingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _CoalescingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _CoalescingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def coalesce_writes(transport: httpx.AsyncHTTPTransport) -> None:
    """Make ``transport`` send each request in one write (see the module's docstring)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, httpcore.AsyncNetworkBackend):
        log.debug("httpx transport without the expected network backend; writes not coalesced")
        return
    if not isinstance(backend, _CoalescingBackend):
        pool._network_backend = _CoalescingBackend(backend)  # type: ignore[union-attr]
