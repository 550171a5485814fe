"""Short, fixed-width renderings of times and counts for narrow terminals."""

from __future__ import annotations

from datetime import datetime


def age(since: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit: ``4s``, ``3m``, ``2h``, ``5d``; ``–`` if never."""
    if since is None:
        return "–"
    return duration((now - since).total_seconds())


def duration(seconds: float) -> str:
    """A span in the largest whole unit: ``4s``, ``3m``, ``2h``, ``5d``."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def countdown(until: datetime | None, now: datetime) -> str:
    """How long until, in the largest whole unit: ``in 42s``, ``in 3m``; ``now`` once due."""
    if until is None:
        return "–"
    seconds = int((until - now).total_seconds())
    if seconds <= 0:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds >= size:
            return f"in {seconds // size}{unit}"
    if seconds >= 120:
        return f"in {seconds // 60}m"
    return f"in {seconds}s"


def took(milliseconds: float | None) -> str:
    """How long something ran, precise where it is short: ``350ms``, ``4.2s``, ``3m``."""
    if milliseconds is None:
        return "–"
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f}s"
    return duration(milliseconds / 1000)


def offset(seconds: float) -> str:
    """A moment relative to a start: ``+0.35s``, ``+12.4s``, ``+3m05s``, ``+2h10m``."""
    if seconds < 10:
        return f"+{seconds:.2f}s"
    if seconds < 60:
        return f"+{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"+{whole // 60}m{whole % 60:02d}s"
    return f"+{whole // 3600}h{whole % 3600 // 60:02d}m"


def clock_time(moment: datetime) -> str:
    """A moment as the operator's wall clock shows it: ``12:03:14`` (local time)."""
    return moment.astimezone().strftime("%H:%M:%S")
