"""A real HTTP server on a loopback port whose behaviour a test switches at will.

Modes: ``ok`` (200), ``error`` (500), ``throttle`` (429), ``hang`` (never answers),
``slow`` (200 after ``delay`` seconds), ``down`` (the port is closed: connections are
refused). ``script`` queues exact answers ``(status, headers)`` used before the mode.
Every request is recorded with its path, headers and arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SwitchableServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mode = "ok"
        self.delay = 0.0
        self.script: list[tuple[int, dict[str, str]]] = []
        self.requests: list[SeenRequest] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> SwitchableServer:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def set_mode(self, mode: str) -> None:
        """Switch behaviour; ``down`` closes the port, anything else reopens it."""
        self.mode = mode
        if mode == "down":
            await self.stop()
        elif self._server is None:
            await self.start()

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r.path == path)

    def _answer(self) -> tuple[int, dict[str, str]]:
        if self.script:
            status, headers = self.script.pop(0)
            return status, {**headers, "_scripted": "1"}
        return {"ok": 200, "error": 500, "throttle": 429}.get(self.mode, 200), {}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                self.requests.append(SeenRequest(method, path, headers))
                status, extra = self._answer()
                scripted = extra.pop("_scripted", None)
                if self.mode == "hang" and not scripted:
                    await asyncio.sleep(3600)
                if self.mode == "slow" and not scripted:
                    await asyncio.sleep(self.delay)
                body = b'{"status":%d,"port":%d}' % (status, self.port)
                head = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Other')}\r\n"
                    f"Content-Type: application/json\r\n{head}"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
