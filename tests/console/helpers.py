"""What console tests share: reading the screen, waiting for it, making registry state."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from textual.app import App

from orchcore import Orch
from orchtui.app import OrchConsole
from orchtui.widgets import KeyedTable, LazyRows
from tests.support.polling import eventually

ACTOR = "test"
SIZE = (80, 24)


def screen_text(app: App[Any]) -> str:
    """The terminal as the operator sees it, as plain text (modals over their screen)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        record=True,
        force_terminal=True,
        color_system=None,
        legacy_windows=False,
    )
    # The same render export_screenshot uses, kept as text rather than SVG.
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return console.export_text()


async def on_screen(app: App[Any], *needles: str, timeout: float = 5.0) -> str:
    """Wait until every needle is visible; returns the screen (shown in full on failure)."""
    return await _screen_until(app, lambda text: all(n in text for n in needles), needles, timeout)


async def off_screen(app: App[Any], *needles: str, timeout: float = 5.0) -> str:
    return await _screen_until(
        app, lambda text: not any(n in text for n in needles), needles, timeout
    )


async def _screen_until(
    app: App[Any], wanted: Callable[[str], bool], needles: tuple[str, ...], timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(app)
        if wanted(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {needles!r}; the screen:\n{text}")
        await asyncio.sleep(0.02)


async def pane_loaded(app: OrchConsole, name: str | None = None) -> None:
    """Wait until the visible pane (optionally: the one named) has shown data."""

    def probe() -> bool:
        pane = app.active_pane
        if pane is None or (name is not None and name != pane.NAME):
            return False
        return pane.snapshot is not None

    await eventually(probe, message=f"pane {name or '(active)'} not loaded")


def table_keys(app: OrchConsole) -> list[str]:
    pane = app.active_pane
    assert pane is not None
    table = pane.filter_table
    assert isinstance(table, KeyedTable | LazyRows)
    return table.shown_keys


async def register_service(orch: Orch, name: str, **fields: Any) -> None:
    await orch.registry.register_service(
        {
            "service_name": name,
            "service_type": "api",
            "deployment_environment": "production",
            **fields,
        },
        actor=ACTOR,
    )


async def register_instances(orch: Orch, service: str, count: int, *, port: int = 9000) -> None:
    for index in range(1, count + 1):
        await orch.registry.register_instance(
            service,
            {
                "instance_id": f"{service}-{index}",
                "ip_address": "127.0.0.1",
                "port": port + index,
                "version": "1.0.0",
            },
            actor=ACTOR,
        )


async def mark(orch: Orch, instance_id: str, to_status: str) -> None:
    """Change an instance's status through the registry's transition (as a checker does)."""
    inst = await orch.registry.get_instance(instance_id)
    async with orch.db.transaction() as conn:
        assert await orch.registry._transition(
            conn,
            inst.id,
            inst.service_id,
            inst.status,
            to_status,
            reason="test",
            actor=ACTOR,
            at=orch.clock.now(),
        )


class ShowcaseOrch(Orch):
    """The real engine; only the label in the header is fixed, since test DSNs vary."""

    @property
    def database_label(self) -> str:
        return "db.wedding.internal:5432/orch"
