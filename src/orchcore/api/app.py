"""The FastAPI application the daemon serves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from orchcore import __version__
from orchcore.api import breakers, bus, calls, mesh, servicemap, services, traces, workflows
from orchcore.api.errors import install_error_handlers
from orchcore.facade import Orch


def create_app(orch: Orch, *, daemon_name: str | None = None) -> FastAPI:
    app = FastAPI(
        title="orch",
        version=__version__,
        description="Orchestration API of the wedding-services platform.",
    )
    app.state.orch = orch
    install_error_handlers(app)
    app.include_router(services.router)
    app.include_router(breakers.router)
    app.include_router(mesh.router)
    app.include_router(workflows.router)
    app.include_router(calls.router)
    app.include_router(bus.router)
    app.include_router(traces.router)
    app.include_router(traces.otlp_router)
    app.include_router(servicemap.router)

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "daemon": daemon_name}

    @app.get("/readyz", tags=["probes"])
    async def readyz() -> JSONResponse:
        """Readiness: the database answers."""
        try:
            await orch.ping()
        except Exception as exc:  # any failure means not ready; say which
            return JSONResponse(
                {"status": "unavailable", "reason": str(exc) or type(exc).__name__},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "daemon": daemon_name})

    return app
