"""The application of the daemon's own OTLP listener (``--otlp-listen``, port 4318 by
convention): ``POST /v1/traces`` alone, with the same tokens as the API."""

from __future__ import annotations

from fastapi import FastAPI

from orchcore import __version__
from orchcore.api.errors import install_error_handlers
from orchcore.api.guards import install_guards
from orchcore.api.traces import otlp_router
from orchcore.facade import Orch


def create_otlp_app(orch: Orch) -> FastAPI:
    app = FastAPI(title="orch OTLP/HTTP receiver", version=__version__, openapi_url=None)
    app.state.orch = orch
    install_error_handlers(app)
    install_guards(app, max_body_bytes=None)  # the one route caps its body itself
    app.include_router(otlp_router)
    return app
