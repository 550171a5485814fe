"""The HTTP API: FastAPI routers over the engine, the seed's request/response shapes."""

from orchcore.api.app import create_app

__all__ = ["create_app"]
