"""How audit rows name whoever acted."""

from __future__ import annotations

import getpass
import os
import socket


def local_operator() -> str:
    """The person at this terminal: ``ORCH_OPERATOR`` or ``user@host``."""
    explicit = os.environ.get("ORCH_OPERATOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def daemon_actor(name: str) -> str:
    return f"daemon:{name}"
