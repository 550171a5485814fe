"""ASGI apps (orch's HTTP API among them) served by a real uvicorn server on a loopback
port, in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from orchcore import Orch
from orchcore.api import create_app
from orchcore.daemon.runner import EmbeddedServer


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any, *, backlog: int = 64, force_exit: bool = False
) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1 at a free port, until the block ends; yields its base URL.
    ``force_exit``: end without waiting for requests still open (a held consumer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = force_exit
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serve_api(orch: Orch) -> AsyncIterator[str]:
    async with serve_asgi(create_app(orch, daemon_name="test")) as base_url:
        yield base_url


async def token(orch: Orch, role: str, service: str | None = None) -> dict[str, str]:
    """Headers of a fresh bearer token of ``role`` (for ``service``, a service token)."""
    name = f"{role}-{service}" if service else role
    secret, _ = await orch.tokens.create(name=name, role=role, service_name=service, actor="t")
    return {"Authorization": f"Bearer {secret}"}
