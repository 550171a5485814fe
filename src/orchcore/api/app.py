"""The FastAPI application the daemon serves."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from orchcore import __version__
from orchcore.api import (
    breakers,
    bus,
    calls,
    events,
    identity,
    mesh,
    overview,
    servicemap,
    services,
    traces,
    workflows,
)
from orchcore.api.auth import optional_principal
from orchcore.api.contract import install_contract
from orchcore.api.errors import install_error_handlers
from orchcore.api.guards import install_guards
from orchcore.auth import Action
from orchcore.events import EventFeed
from orchcore.facade import Orch

#: How long /readyz waits for the database before it says "not ready" (a probe's own
#: timeout is often a second or a few).
READY_TIMEOUT_SECONDS = 3.0


class Alive(BaseModel):
    status: str = Field(description="ok")
    daemon: str | None


class Ready(BaseModel):
    status: str = Field(description="ready")
    daemon: str | None


class NotReady(BaseModel):
    status: str = Field(description="unavailable")
    reason: str
    detail: str | None = Field(
        default=None, description="the database's error, told only to a token that may read"
    )


def create_app(orch: Orch, *, daemon_name: str | None = None) -> FastAPI:
    app = FastAPI(
        title="orch",
        version=__version__,
        description="Orchestration API of the wedding-services platform.",
    )
    app.state.orch = orch
    # Ended by the daemon's shutdown (close_event_streams) before uvicorn waits for
    # its open requests: an event stream would never finish by itself.
    app.state.event_feed = EventFeed(orch.listener)
    app.state.event_feed.open()
    install_error_handlers(app)
    # OTLP ingest keeps its own limit, answered in OTLP's encoding (api/traces.py).
    install_guards(
        app,
        max_body_bytes=orch.settings.api_max_body_bytes,
        own_limits={"/v1/traces"},
        now=orch.clock.now,
    )
    app.include_router(services.router)
    app.include_router(breakers.router)
    app.include_router(mesh.router)
    app.include_router(workflows.router)
    app.include_router(calls.router)
    app.include_router(bus.router)
    app.include_router(traces.router)
    app.include_router(traces.otlp_router)
    app.include_router(servicemap.router)
    app.include_router(overview.router)
    app.include_router(events.router)
    app.include_router(identity.router)
    install_contract(app)

    @app.get("/healthz", tags=["probes"], response_model=Alive)
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "daemon": daemon_name}

    @app.get(
        "/readyz",
        tags=["probes"],
        response_model=Ready,
        responses={503: {"model": NotReady, "description": "the database does not answer"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the database answers. Why it does not is told only to an
        operator's token: the error's text names hosts, databases and users."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await orch.ping()
        except Exception as exc:  # any failure means not ready
            body = {"status": "unavailable", "reason": "the database does not answer"}
            if await _operator_asks(request):
                body["detail"] = str(exc) or type(exc).__name__
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "daemon": daemon_name})

    return app


def close_event_streams(app: FastAPI) -> None:
    """End every event stream of ``app`` (and its feed): before a server stops, which
    waits for open requests."""
    feed: EventFeed = app.state.event_feed
    feed.close()


async def _operator_asks(request: Request) -> bool:
    """Whether the caller is an operator (a token that may read), as far as can be told
    with the database down: a token verified in the last seconds is still known."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            caller = await optional_principal(request)
    except TimeoutError:
        return False
    return caller is not None and caller.may(Action.READ)
