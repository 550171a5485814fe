"""Short, fixed-width renderings of times and counts for narrow terminals."""

from __future__ import annotations

from datetime import datetime


def age(since: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit: ``4s``, ``3m``, ``2h``, ``5d``; ``–`` if never."""
    if since is None:
        return "–"
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
