"""`orch daemon`: the headless process that does the engine's background work."""

from typing import TYPE_CHECKING

from orchcore.lazy import lazy_members

if TYPE_CHECKING:
    from orchcore.daemon.runner import Daemon, DaemonConfig

__all__ = ["Daemon", "DaemonConfig"]

# Imported when first read (see orchcore.lazy): importing one module of the package
# must not import all of them.
__getattr__, __dir__ = lazy_members(
    __name__,
    {
        "orchcore.daemon.runner": ("Daemon", "DaemonConfig"),
    },
)
