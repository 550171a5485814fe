"""The saga benchmark's DBOS side: one DBOS Transact process serving a start endpoint.

The same 3-step saga as orch's benchmark definition, written the DBOS way: an async
``@DBOS.workflow()`` calling an async ``@DBOS.step()`` three times, each step one
httpx POST to the participant's ``/step/{n}`` with an ``Idempotency-Key`` of
``<workflow id>:step<n>:forward`` (the shape orch sends). Steps retry like orch's
default policy (3 retries, 0.5 s initial delay, backoff 2); the happy path never
retries.

``POST /start`` with ``{"id": ..., "context": {...}}`` starts the workflow under that
id with ``DBOS.start_workflow_async``, which answers once the workflow's status row
is durable and runs the workflow on this process's event loop: the counterpart of a
workflow started through an orch daemon's API, which that daemon runs at once. The
server is plain Starlette on uvicorn (no DBOS FastAPI middleware), listening on a
socket made with IPPROTO_TCP so accepted connections get TCP_NODELAY.

DBOS is not one of orch's dependencies: ``pip install dbos==3.4.0`` into the venv.
On start the process prints its port on one line of stdout; it runs until
terminated.

    .venv/bin/python bench/saga_dbos_app.py --dsn DSN --participant http://127.0.0.1:PORT
        [--executor-id dbos-1] [--no-pre-ping]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from typing import Any

import httpx
import uvicorn
from dbos import DBOS, DBOSConfig, SetWorkflowID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_participant = ""
_client: httpx.AsyncClient | None = None


async def _post_step(number: int) -> dict[str, Any]:
    assert _client is not None
    workflow_id = DBOS.workflow_id
    response = await _client.post(
        f"{_participant}/step/{number}",
        json={"saga": workflow_id},
        headers={"Idempotency-Key": f"{workflow_id}:step{number}:forward"},
        timeout=30.0,
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


_RETRIES = {"retries_allowed": True, "max_attempts": 4, "interval_seconds": 0.5, "backoff_rate": 2}


@DBOS.step(**_RETRIES)  # type: ignore[arg-type]
async def step_1() -> dict[str, Any]:
    return await _post_step(1)


@DBOS.step(**_RETRIES)  # type: ignore[arg-type]
async def step_2() -> dict[str, Any]:
    return await _post_step(2)


@DBOS.step(**_RETRIES)  # type: ignore[arg-type]
async def step_3() -> dict[str, Any]:
    return await _post_step(3)


@DBOS.workflow()
async def bench_saga(context: dict[str, Any]) -> dict[str, Any]:
    context["step_1_id"] = (await step_1())["id"]
    context["step_2_id"] = (await step_2())["id"]
    context["step_3_id"] = (await step_3())["id"]
    return context


async def start(request: Request) -> JSONResponse:
    body = await request.json()
    with SetWorkflowID(body["id"]):
        handle = await DBOS.start_workflow_async(bench_saga, body.get("context") or {})
    return JSONResponse({"workflow_id": handle.workflow_id}, status_code=201)


class _QuietServer(uvicorn.Server):
    """uvicorn whose signals belong to this script (it stops on our event)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


async def serve(args: argparse.Namespace) -> None:
    global _client, _participant
    _participant = args.participant.rstrip("/")
    _client = httpx.AsyncClient(limits=httpx.Limits(max_connections=500))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    sock.setblocking(False)
    app = Starlette(routes=[Route("/start", start, methods=["POST"])])
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = _QuietServer(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    print(sock.getsockname()[1], flush=True)
    try:
        await server.serve(sockets=[sock])
    finally:
        await _client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="the DBOS system database")
    parser.add_argument("--participant", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--executor-id", default="dbos-1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--no-pre-ping",
        action="store_true",
        help="turn off SQLAlchemy's pool pre-ping (DBOS turns it on by default)",
    )
    args = parser.parse_args()
    config: DBOSConfig = {
        "name": "saga-bench",
        "system_database_url": args.dsn,
        "executor_id": args.executor_id,
        "log_level": "WARNING",
    }
    if args.no_pre_ping:
        config["db_engine_kwargs"] = {"pool_pre_ping": False}
    DBOS(config=config)
    DBOS.launch()
    try:
        asyncio.run(serve(args))
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
