"""orchcore: the orchestration engine of the wedding-services platform.

Faces (daemon, HTTP API, CLI, console) hold one :class:`Orch` and call it;
everything below it is private to the engine.
"""

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
