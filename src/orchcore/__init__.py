"""orchcore: the orchestration engine of the wedding-services platform.

Faces (daemon, HTTP API, CLI, console) hold one :class:`Orch` and call it;
everything below it is private to the engine.
"""

from typing import TYPE_CHECKING

from orchcore.lazy import lazy_members

if TYPE_CHECKING:
    from orchcore.clock import Clock, ManualClock, SystemClock
    from orchcore.errors import (
        ConflictError,
        NoHealthyInstanceError,
        NotFoundError,
        OrchError,
        PermissionDeniedError,
        ValidationFailed,
    )
    from orchcore.facade import Orch
    from orchcore.settings import Settings

__all__ = [
    "Clock",
    "ConflictError",
    "ManualClock",
    "NoHealthyInstanceError",
    "NotFoundError",
    "Orch",
    "OrchError",
    "PermissionDeniedError",
    "Settings",
    "SystemClock",
    "ValidationFailed",
]

__version__ = "0.1.0"

# Imported when first read (see orchcore.lazy): `orch --version` imports this package
# for __version__ and must not pay for the whole engine.
__getattr__, __dir__ = lazy_members(
    __name__,
    {
        "orchcore.clock": ("Clock", "ManualClock", "SystemClock"),
        "orchcore.errors": (
            "ConflictError",
            "NoHealthyInstanceError",
            "NotFoundError",
            "OrchError",
            "PermissionDeniedError",
            "ValidationFailed",
        ),
        "orchcore.facade": ("Orch",),
        "orchcore.settings": ("Settings",),
    },
)
