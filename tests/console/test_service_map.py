"""Map: the service map of the last hour from the real registry, call events and spans
(the platform of tests/test_servicemap.py): connections with their figures, unhealthy
edges marked, services, critical paths and cycles; at 80x24 and under NO_COLOR."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from orchcore import ManualClock, Orch, Settings
from orchtui.app import OrchConsole
from orchtui.panes import command_names, pane_for
from orchtui.panes.service_map import ServiceMapPane
from tests.console.helpers import SIZE, ShowcaseOrch, on_screen, pane_loaded, table_keys
from tests.console.sources import SourceOf, console_on
from tests.support.polling import eventually
from tests.test_servicemap import calls, observe, register_platform

#: The map's connections, unhealthy first (most errors first), then the busiest.
ORDER = [
    "gateway→booking",
    "booking→payment",
    "venue→catering",
    "booking→venue",
    "venue→booking",
    "payment→notification",
]


async def seed_map(orch: Orch) -> None:
    """tests/test_servicemap.py's platform: declared dependencies, an hour of traffic."""
    await register_platform(orch)
    await observe(orch, orch.clock.now())


def row_of(text: str, needle: str) -> str:
    """The first line inside the pane's border with the needle."""
    return next(line for line in text.splitlines() if needle in line and line[0] == "│")


def cells(text: str, needle: str) -> list[str]:
    return row_of(text, needle).strip("│ ").split()


async def test_map_lists_connections_services_critical_paths_and_cycles(
    orch: Orch, as_source: SourceOf
) -> None:
    await seed_map(orch)
    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "overview")
        await pilot.press("colon", *"map", "enter")
        await pane_loaded(app, "map")
        assert isinstance(app.active_pane, ServiceMapPane)
        # The graph's panel is laid out after the tables: waited for too.
        text = await on_screen(
            app, "Service map [6]", "✖ gateway → booking", "cycles ⟲", "▲ degraded"
        )
        for header in ("FROM → TO", "REQ/H", "ERR %", "LATENCY", "STRENGTH", "SEEN"):
            assert header in text
        assert "6 services · 6 connections in the last hour · ✖ 3 unhealthy · ⟲ 1 cycle" in text
        assert table_keys(app) == ORDER  # the unhealthy first
        # route (marked), requests, error rate, latency, strength, declared or observed
        assert cells(text, "gateway → booking") == [
            "✖", "gateway", "→", "booking", "10", "20.0%", "24.0ms", "█" * 8, "both"
        ]  # fmt: skip
        assert cells(text, "booking → payment") == [
            "✖", "booking", "→", "payment", "4", "25.0%", "47.5ms", "███", "both"
        ]  # fmt: skip
        assert cells(text, "venue → catering")[0] == "✖"
        assert cells(text, "venue → catering")[-1] == "observed"
        assert cells(text, "booking → venue") == [
            "●", "booking", "→", "venue", "5", "0%", "10.0ms", "████", "both"
        ]  # fmt: skip
        assert cells(text, "payment → notification") == [
            "○", "payment", "→", "notification", "0", "–", "–", "█", "declared"
        ]  # fmt: skip
        # services: health, instances, requests in per minute, error rate, latency
        assert cells(text, "▲ degraded") == [
            "booking", "▲", "degraded", "2", "0.2", "18.2%", "22.7ms"
        ]  # fmt: skip
        assert cells(text, "– unregistered")[:3] == ["catering", "–", "unregistered"]
        # the graph: critical paths by failure impact, the cycle closed on its start
        assert "◆ gateway → booking → venue → catering  score 71.6" in text
        assert "◆ gateway → booking → payment → notification  score 70.5" in text
        assert "cycles ⟲ booking → venue → booking" in text


async def test_an_edge_turns_unhealthy_when_a_call_over_it_fails(
    orch: Orch, as_source: SourceOf
) -> None:
    await seed_map(orch)
    app = console_on(await as_source(orch), first_pane="map")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "map")
        await on_screen(app, "● booking → venue", "✖ 3 unhealthy")
        # One failed call: the next poll marks the edge and lists it with the unhealthy.
        failed = calls(
            "booking", "venue", orch.clock.now(), count=1, ms=30, event_type="error", status=500
        )
        orch.events.record_many(failed)
        await orch.events.flush()
        text = await on_screen(app, "✖ booking → venue", "✖ 4 unhealthy", timeout=15)
        assert cells(text, "booking → venue")[4:6] == ["6", "16.7%"]
        keys = table_keys(app)
        assert keys.index("booking→venue") < keys.index("venue→booking")


async def test_an_empty_map_says_where_it_comes_from(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch), first_pane="map")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "map")
        await on_screen(
            app, "Service map [0]", "no services or calls in the last hour", "cycles none"
        )


async def test_no_color_reads_by_symbols(
    orch: Orch, monkeypatch: pytest.MonkeyPatch, as_source: SourceOf
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    await seed_map(orch)
    app = console_on(await as_source(orch), first_pane="map")
    assert app.no_color
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "map")
        # Every key row inside 80x24: unhealthy, healthy and idle edges, health, the graph.
        text = await on_screen(
            app,
            "✖ gateway → booking",
            "✖ booking → payment",
            "✖ venue → catering",
            "● booking → venue",
            "○ payment → notification",
            "▲ degraded",
            "● healthy",
            "◆ gateway → booking → venue → catering",
            "⟲ booking → venue → booking",
            "q Quit",
        )
        lines = text.splitlines()
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)


def test_the_pane_is_registered() -> None:
    assert pane_for("map") is ServiceMapPane and pane_for("servicemap") is ServiceMapPane
    assert "map" in command_names()


# -- a snapshot at 80x24 (``--snapshot-update`` renews) -------------------------------------------

SnapCompare = Callable[..., bool]


@pytest.fixture
def mapped(dsn: str) -> tuple[str, ManualClock]:
    """A database holding the platform's services and traffic, and a clock at its end."""

    async def seed() -> ManualClock:
        clock = ManualClock()
        orch = await Orch.open(Settings(database_url=dsn), clock=clock, start_discovery=False)
        try:
            await seed_map(orch)
        finally:
            await orch.close()
        return clock

    clock = asyncio.run(seed())
    return dsn, ManualClock(start=clock.now())


def test_map_snapshot(snap_compare: SnapCompare, mapped: tuple[str, ManualClock]) -> None:
    dsn, clock = mapped

    async def open_orch() -> Orch:
        settings = Settings(database_url=dsn, environment="production")
        return await ShowcaseOrch.open(settings, clock=clock, start_discovery=False)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "map")
        await eventually(lambda: len(table_keys(app)) == len(ORDER))

    app = OrchConsole(open_orch=open_orch, first_pane="map")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
