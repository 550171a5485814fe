"""A saga participant over real HTTP on loopback: records every call, dedupes by
Idempotency-Key the way a careful service does, and fails on demand.

``fail[path] = [503, 503]`` answers the next calls to ``path`` with those statuses
(then succeeds); ``always_fail[path] = 500`` fails every call. Effects (a stored
answer per key) happen once per key; calls are counted raw.

``stall_after_effect[path] = s`` applies the effect, then answers only after ``s``
seconds (a caller that times out first cannot know the effect happened).
``remember_refusals`` stores a refusal (4xx) under its key too and replays it, as
services that store every definite answer do. ``answer_body[path] = bytes`` answers raw bytes (200).
``held[path] = asyncio.Event()`` keeps each call to ``path`` waiting until the test sets it.
"""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchcore.daemon.runner import EmbeddedServer
from tests.support.polling import eventually


def _raise_if_done(task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return False


@dataclass
class Call:
    method: str
    path: str
    key: str | None
    body: Any
    correlation_id: str | None
    traceparent: str | None


@dataclass
class Participant:
    name: str
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    always_fail: dict[str, int] = field(default_factory=dict)
    stall_after_effect: dict[str, float] = field(default_factory=dict)
    answer_body: dict[str, bytes] = field(default_factory=dict)
    remember_refusals: bool = False
    refusals: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    delay: float = 0.0
    held: dict[str, asyncio.Event] = field(default_factory=dict)

    def calls_to(self, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.path.startswith(path_prefix)]

    def effects_for(self, key: str) -> int:
        return 1 if key in self.effects else 0

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        body = await request.json() if request.method != "GET" and await request.body() else None
        key = request.headers.get("idempotency-key")
        self.calls.append(
            Call(
                request.method,
                path,
                key,
                body,
                request.headers.get("x-correlation-id"),
                request.headers.get("traceparent"),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if path in self.held:
            await self.held[path].wait()
        if path in self.answer_body:
            return Response(self.answer_body[path], media_type="application/json")
        if key is not None and key in self.refusals:
            status, refusal = self.refusals[key]
            return JSONResponse(refusal, status_code=status)
        if path in self.always_fail:
            return self._refuse(key, self.always_fail[path], f"{self.name} is failing")
        if self.fail.get(path):
            status = self.fail[path].pop(0)
            return self._refuse(key, status, f"{self.name} answered {status}")
        if key is not None and key in self.effects:
            await asyncio.sleep(self.stall_after_effect.get(path, 0))
            return JSONResponse(self.effects[key], headers={"Idempotent-Replayed": "true"})
        answer = {
            "service": self.name,
            "path": path,
            "id": f"{self.name}-{len(self.effects) + 1}",
            "echo": body,
        }
        if key is not None:
            self.effects[key] = answer
        if path in self.stall_after_effect:
            await asyncio.sleep(self.stall_after_effect[path])
        return JSONResponse(answer, status_code=201 if request.method == "POST" else 200)

    def _refuse(self, key: str | None, status: int, detail: str) -> JSONResponse:
        body = {"detail": detail}
        if self.remember_refusals and key is not None and status < 500:
            self.refusals[key] = (status, body)
        return JSONResponse(body, status_code=status)


@asynccontextmanager
async def participants(*names: str) -> AsyncIterator[dict[str, Participant]]:
    """Start one HTTP participant per name on loopback ports."""
    started: dict[str, Participant] = {}
    servers: list[tuple[EmbeddedServer, asyncio.Task[None], socket.socket]] = []
    try:
        for name in names:
            participant = Participant(name)
            app = Starlette(
                routes=[
                    Route(
                        "/{path:path}",
                        participant.handle,
                        methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                    )
                ]
            )
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.setblocking(False)
            participant.port = sock.getsockname()[1]
            server = EmbeddedServer(
                uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
            )
            task = asyncio.create_task(server.serve(sockets=[sock]))
            await eventually(lambda s=server, t=task: s.started or _raise_if_done(t), timeout=10)
            servers.append((server, task, sock))
            started[name] = participant
        yield started
    finally:
        for server, task, sock in servers:
            server.should_exit = True
            await task
            sock.close()
