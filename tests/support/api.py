"""The HTTP API served by a real uvicorn server on a loopback port, in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn

from orchcore import Orch
from orchcore.api import create_app
from orchcore.daemon.runner import EmbeddedServer


@contextlib.asynccontextmanager
async def serve_api(orch: Orch) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(orch, daemon_name="test"), log_config=None, access_log=False, lifespan="off"
    )
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
        await task
        sock.close()
