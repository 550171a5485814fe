"""A lean HTTP/1.1 client for load generators: keep-alive connections, JSON in, bytes out.

A benchmark's load generator shares the machine with what it measures; httpx costs
about 1-2 ms of CPU a request here (see the saga benchmark's "bench" CPU column), a
plain asyncio stream a fraction of that. Each (host, port) keeps a stack of idle
connections; a request takes one or opens a new one (asyncio sets TCP_NODELAY on
TCP connections it opens), so concurrency is bounded by the caller. A request on a
reused connection that the server closed meanwhile (keep-alive timeout) is sent
once more on a fresh connection: use it for idempotent requests only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class KeepAliveClient:
    def __init__(self, *, timeout: float = 60.0) -> None:
        self._idle: dict[tuple[str, int], list[_Stream]] = {}
        self._timeout = timeout

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {target} HTTP/1.1", f"host: {host}:{port}"]
        if body is not None:
            head.append("content-type: application/json")
        head.append(f"content-length: {len(payload)}")
        head.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        message = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        idle = self._idle.setdefault((host, port), [])
        while idle:
            stream = idle.pop()
            try:
                answer = await asyncio.wait_for(self._exchange(stream, message), self._timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                stream[1].close()
                continue  # closed by the server while idle: try the next one
            self._put_back(idle, stream, keep=answer[2])
            return answer[0], answer[1]
        stream = await asyncio.open_connection(host, port)
        try:
            answer = await asyncio.wait_for(self._exchange(stream, message), self._timeout)
        except BaseException:
            stream[1].close()
            raise
        self._put_back(idle, stream, keep=answer[2])
        return answer[0], answer[1]

    @staticmethod
    def _put_back(idle: list[_Stream], stream: _Stream, *, keep: bool) -> None:
        if keep:
            idle.append(stream)
        else:
            stream[1].close()

    async def post(
        self, url: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        return await self.request("POST", url, body, headers)

    async def get(self, url: str) -> tuple[int, bytes]:
        return await self.request("GET", url)

    @staticmethod
    async def _exchange(stream: _Stream, message: bytes) -> tuple[int, bytes, bool]:
        reader, writer = stream
        writer.write(message)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            content = b"".join(chunks)
        else:
            content = await reader.readexactly(int(fields.get("content-length", "0")))
        keep = fields.get("connection", "").lower() != "close"
        return status, content, keep

    async def close(self) -> None:
        for streams in self._idle.values():
            for _, writer in streams:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()
