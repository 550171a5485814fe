"""`orch daemon`: the headless process that does the engine's background work."""

from orchcore.daemon.runner import Daemon, DaemonConfig

__all__ = ["Daemon", "DaemonConfig"]
