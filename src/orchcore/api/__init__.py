"""The HTTP API: FastAPI routers over the engine, the seed's request/response shapes."""

from typing import TYPE_CHECKING

from orchcore.lazy import lazy_members

if TYPE_CHECKING:
    from orchcore.api.app import create_app

__all__ = ["create_app"]

# Imported when first read (see orchcore.lazy): importing one module of the package
# must not import all of them.
__getattr__, __dir__ = lazy_members(
    __name__,
    {
        "orchcore.api.app": ("create_app",),
    },
)
