"""A TCP (or TLS) server on a loopback port whose handler writes whatever bytes a test
wants: for transports, which must cope with services that misbehave on cue."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


class RawServer:
    """What the server saw: each connection, each request (head and body), and how many
    connections were open at most at one time."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: list[asyncio.StreamWriter] = []
        self.requests: list[bytes] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.open_now = 0
        self.most_open = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer)
        self.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self.open_now -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(request)
        return request


Handler = Callable[[RawServer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(
    handler: Handler, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    """Serve ``handler`` on 127.0.0.1 (over TLS with ``tls``, a server-side context)."""
    server_state = RawServer(handler)
    server = await asyncio.start_server(server_state._serve, "127.0.0.1", 0, ssl=tls)
    server_state.port = server.sockets[0].getsockname()[1]
    try:
        yield server_state
    finally:
        server.close()
        for task in server_state.tasks:
            task.cancel()
        await asyncio.gather(*server_state.tasks)


async def keep_alive_ok(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer every request 200 on the same connection, echoing its body (``ok`` if none)."""
    while True:
        request = await server.read_request(reader)
        body = b"HEAD" if request.startswith(b"HEAD") else request.split(b"\r\n\r\n", 1)[1] or b"ok"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


async def once_a_connection(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer a connection's first request (keep-alive: no ``Connection: close``), then
    close it when the next request arrives, unanswered: what a client sees when the
    service ends a kept-alive connection just as a request goes out on it."""
    request = await server.read_request(reader)
    body = request.split(b"\r\n\r\n", 1)[1] or b"ok"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    await server.read_request(reader)
