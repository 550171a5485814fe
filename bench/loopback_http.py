"""What the benchmarks' loopback HTTP services share: request framing, serving, the CLI.

A service subclasses :class:`RequestProtocol` and says how it answers one request
(its head, up to the blank line); framing by ``content-length`` over a kept-alive
connection, ``TCP_NODELAY`` on every accepted connection (so Nagle's algorithm never
holds back a reply), printing the port and running until terminated are here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable


class RequestProtocol(asyncio.Protocol):
    """One connection: requests are read off the buffer in order and each is answered."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def answer(self, head: bytes) -> bytes:
        """The whole HTTP response to the request whose head is given."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            total = end + 4 + int(header(head, b"content-length") or 0)
            if len(self._buffer) < total:
                return
            self._buffer = self._buffer[total:]
            assert self._transport is not None
            self._transport.write(self.answer(head))


def header(head: bytes, name: bytes) -> bytes | None:
    """The value of the header ``name`` (lower case) in a request head, if present."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def json_response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


async def serve(protocol: Callable[[], asyncio.Protocol], port: int) -> None:
    """Listen on loopback, print the port on one line, serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(description: str, protocol: Callable[[], asyncio.Protocol]) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(protocol, args.port))
