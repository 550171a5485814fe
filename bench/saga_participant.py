"""The saga benchmark's participant: a minimal HTTP/1.1 service on loopback, its own process.

``POST /step/{n}`` answers 200 with ``{"step": n, "id": "<n>-<k>"}`` at once, keeping
connections alive. Idempotency is honoured minimally: the answer is remembered by
its ``Idempotency-Key`` (the last 200,000 keys), and a repeated key gets the same
answer again and is counted as a replay, so a benchmark can tell a duplicated call
from a new one. ``GET /stats`` answers the counts (requests, replays, requests per
step, requests without a key) and ``POST /stats/reset`` zeroes them.

A plain asyncio protocol, not a framework, so the participant costs the systems
under test as little CPU as possible; TCP_NODELAY is set on every accepted
connection so Nagle's algorithm never holds a reply back. On start it prints its
port on one line of stdout; it runs until terminated.

    .venv/bin/python bench/saga_participant.py [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from collections import Counter, OrderedDict

REMEMBERED_KEYS = 200_000


class Ledger:
    """What was asked, and the answer given to each idempotency key."""

    def __init__(self) -> None:
        self.answers: OrderedDict[bytes, bytes] = OrderedDict()
        self.requests = 0
        self.replays = 0
        self.without_key = 0
        self.per_step: Counter[str] = Counter()
        self.issued = 0

    def answer_step(self, step: str, key: bytes | None) -> bytes:
        self.requests += 1
        self.per_step[step] += 1
        if key is None:
            self.without_key += 1
        else:
            known = self.answers.get(key)
            if known is not None:
                self.replays += 1
                return known
        self.issued += 1
        body = b'{"step":' + step.encode() + b',"id":"' + f"{step}-{self.issued}".encode() + b'"}'
        if key is not None:
            self.answers[key] = body
            if len(self.answers) > REMEMBERED_KEYS:
                self.answers.popitem(last=False)
        return body

    def stats(self) -> bytes:
        return json.dumps(
            {
                "requests": self.requests,
                "replays": self.replays,
                "without_key": self.without_key,
                "per_step": dict(sorted(self.per_step.items())),
            }
        ).encode()

    def reset(self) -> None:
        self.requests = self.replays = self.without_key = 0
        self.per_step.clear()


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


class StepProtocol(asyncio.Protocol):
    """One connection: requests are parsed off the buffer in order and answered."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

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
            length, key = _headers(head)
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            self._buffer = self._buffer[total:]
            assert self._transport is not None
            self._transport.write(self._route(head, key))

    def _route(self, head: bytes, key: bytes | None) -> bytes:
        request_line = head.split(b"\r\n", 1)[0]
        method, _, rest = request_line.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        if method == b"POST" and path.startswith(b"/step/"):
            step = path[len(b"/step/") :].decode(errors="replace")
            if step.isdigit():
                return _response(b"200 OK", self._ledger.answer_step(step, key))
        if method == b"GET" and path == b"/stats":
            return _response(b"200 OK", self._ledger.stats())
        if method == b"POST" and path == b"/stats/reset":
            self._ledger.reset()
            return _response(b"200 OK", b"{}")
        return _response(b"404 Not Found", b'{"error":"not found"}')


def _headers(head: bytes) -> tuple[int, bytes | None]:
    length, key = 0, None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"idempotency-key":
            key = value.strip()
    return length, key


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    ledger = Ledger()
    server = await loop.create_server(lambda: StepProtocol(ledger), "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
