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
import ssl
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


async def serve(
    protocol: Callable[[], asyncio.Protocol], port: int, tls: ssl.SSLContext | None = None
) -> None:
    """Listen on loopback (over TLS with ``tls``), print the port on one line, serve
    until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", port, ssl=tls)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def server_tls(cert: str | None, key: str | None, client_ca: str | None) -> ssl.SSLContext | None:
    """The service's TLS: its certificate and key, and with ``client_ca`` a client
    certificate that CA issued required of every caller (mTLS)."""
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def main(description: str, protocol: Callable[[], asyncio.Protocol]) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--tls-cert", help="serve https with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's key (PEM)")
    parser.add_argument("--tls-client-ca", help="require client certificates from this CA")
    args = parser.parse_args()
    tls = server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(protocol, args.port, tls))
