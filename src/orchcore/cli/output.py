"""How verbs print: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from pydantic import BaseModel

from orchcore.clock import Clock


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def emit(value: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(to_jsonable(value), indent=2, default=str))
    else:
        human()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    if len(cells) == 1:
        click.echo("(none)")
        return
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        click.echo(click.style(line, bold=True) if index == 0 and sys.stdout.isatty() else line)


def age(moment: datetime | None, clock: Clock) -> str:
    """'12s ago', '5m ago', '3h ago', '2d ago' or '-'."""
    if moment is None:
        return "-"
    seconds = max(0.0, (clock.now() - moment).total_seconds())
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


STATUS_SYMBOLS = {
    "healthy": "●",
    "degraded": "▲",
    "unhealthy": "✖",
    "critical": "✖",
    "starting": "○",
    "terminating": "◌",
    "deregistered": "◌",
}


def with_symbol(status: str) -> str:
    return f"{STATUS_SYMBOLS.get(status, '?')} {status}"


def service_status(health_status: str, *, live_instances: int, is_active: bool) -> str:
    """A service's state in words: no instances is not the same as failing ones."""
    if not is_active:
        return "◌ deactivated"
    if live_instances == 0:
        return "○ no instances"
    return with_symbol(health_status)
