"""How the console looks at 80x24, pinned as SVG snapshots (``--snapshot-update`` renews).

The data is the seeded platform, ages come from a ManualClock and the database label
is fixed, so the same screen comes out every run. Snapshot runs own their event loop
(the plugin calls ``App.run``), so these tests are synchronous and the console opens
the engine itself through ``open_orch``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from textual.pilot import Pilot

from orchcore import ManualClock, Orch, Settings
from orchtui.app import ListenerStateChanged, OrchConsole
from tests.console.helpers import SIZE, ShowcaseOrch, pane_loaded
from tests.console.seed import STORY_START, seed_story
from tests.console.seed_bus import seed_bus

SnapCompare = Callable[..., bool]


@pytest.fixture
def seeded(dsn: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ManualClock]:
    monkeypatch.setenv("ORCH_OPERATOR", "alice@ops")

    async def seed() -> ManualClock:
        clock = ManualClock(start=STORY_START)
        orch = await Orch.open(Settings(database_url=dsn), clock=clock, start_discovery=False)
        try:
            await seed_story(orch, clock)
        finally:
            await orch.close()
        return clock

    clock = asyncio.run(seed())
    return dsn, ManualClock(start=clock.now() + timedelta(seconds=2))


def console(seeded: tuple[str, ManualClock], **options: Any) -> OrchConsole:
    dsn, clock = seeded

    async def open_orch() -> Orch:
        settings = Settings(database_url=dsn, environment="production")
        return await ShowcaseOrch.open(settings, clock=clock, start_discovery=False)

    return OrchConsole(open_orch=open_orch, **options)


def loaded(pane: str, *keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, pane)
        await pilot.press(*keys)

    return run_before


def test_overview(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    app = console(seeded)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("overview"))


def test_services(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    app = console(seeded, first_pane="services")
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("services", "down"))


def test_instances(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "services")
        await pilot.press("G", "enter")  # venue, the last row
        await pane_loaded(app, "instances")
        await pilot.press("G")  # venue-3, the failing one

    app = console(seeded, first_pane="services")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_confirm_deregister(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "services")
        await pilot.press("G", "enter")
        await pane_loaded(app, "instances")
        await pilot.press("G", "d")

    app = console(seeded, first_pane="services")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    app = console(seeded, first_pane="services")
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("services", "question_mark"))


def test_readonly(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    app = console(seeded, first_pane="services", readonly=True)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("services"))


def test_no_color(
    snap_compare: SnapCompare, seeded: tuple[str, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = console(seeded, first_pane="services")
    assert app.no_color
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("services", "down", "down"))


def test_connection_lost_banner(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "services")
        app.post_message(ListenerStateChanged(False))

    app = console(seeded, first_pane="services")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_breakers(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    # booking → venue: opened by failing calls at the end of the story
    app = console(seeded, first_pane="breakers")
    keys = ("down",) * 4
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("breakers", *keys))


def test_breakers_no_color(
    snap_compare: SnapCompare, seeded: tuple[str, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = console(seeded, first_pane="breakers")
    assert app.no_color
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("breakers", "G"))


def test_breaker_detail(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "breakers")
        await pilot.press("down", "down", "down", "down", "enter")  # booking → venue
        await pane_loaded(app, "breaker")

    app = console(seeded, first_pane="breakers")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_confirm_breaker_reset(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    app = console(seeded, first_pane="breakers")
    keys = ("down", "down", "down", "down", "r")
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("breakers", *keys))


def test_mesh(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    app = console(seeded, first_pane="mesh")
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("mesh", "down"))


def test_mesh_policy(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "mesh")
        await pilot.press("enter")  # payments-mtls, the highest priority
        await pane_loaded(app, "policy")

    app = console(seeded, first_pane="mesh")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# Workflows, newest first: bk-1052 (pending) … bk-1045 (compensation failed) is the 8th row,
# dc-1044 (failed) the 9th, bk-1043 (compensated) the 10th.
TO_STUCK = ("down",) * 7
TO_FAILED = ("down",) * 8
TO_COMPENSATED = ("down",) * 9


def test_workflows(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    app = console(seeded, first_pane="workflows")
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("workflows", *TO_STUCK))


def test_workflows_no_color(
    snap_compare: SnapCompare, seeded: tuple[str, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = console(seeded, first_pane="workflows")
    assert app.no_color
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("workflows", *TO_FAILED))


def workflow_detail(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "workflows")
        await pilot.press(*keys, "enter")
        await pane_loaded(app, "workflow")

    return run_before


def test_workflow_detail(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    # compensated after a declined card: the parallel branches overlap, the undos follow
    app = console(seeded, first_pane="workflows")
    assert snap_compare(app, terminal_size=SIZE, run_before=workflow_detail(*TO_COMPENSATED))


def test_workflow_detail_no_color(
    snap_compare: SnapCompare, seeded: tuple[str, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    # needs intervention: the venue refused to cancel a reservation already invoiced
    monkeypatch.setenv("NO_COLOR", "1")
    app = console(seeded, first_pane="workflows")
    assert snap_compare(app, terminal_size=SIZE, run_before=workflow_detail(*TO_STUCK))


def test_confirm_skip(snap_compare: SnapCompare, seeded: tuple[str, ManualClock]) -> None:
    # the failed date change: skipping its step asks for the step's output as well
    app = console(seeded, first_pane="workflows")
    keys = (*TO_FAILED, "s")
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("workflows", *keys))


# -- queues: a quarter of an hour of the bus (tests/console/seed_bus.py) ----------------------

#: Before any real time, so ages the database measures from its own clock read 0s.
BUS_START = datetime(2025, 6, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def bus_seeded(dsn: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ManualClock]:
    monkeypatch.setenv("ORCH_OPERATOR", "alice@ops")

    async def seed() -> ManualClock:
        clock = ManualClock(start=BUS_START)
        orch = await Orch.open(Settings(database_url=dsn), clock=clock, start_discovery=False)
        try:
            await seed_bus(orch, clock)
        finally:
            await orch.close()
        return clock

    clock = asyncio.run(seed())
    return dsn, ManualClock(start=clock.now())


def test_queues(snap_compare: SnapCompare, bus_seeded: tuple[str, ManualClock]) -> None:
    # booking_events: filled faster than drained, three given up on; its depth chart
    app = console(bus_seeded, first_pane="queues")
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded("queues"))


def queue_detail(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, OrchConsole)
        await pane_loaded(app, "queues")
        await pilot.press("down", "down", "enter")  # payment_failed
        await pane_loaded(app, "queue")
        await pilot.press(*keys)

    return run_before


def test_queue_detail(snap_compare: SnapCompare, bus_seeded: tuple[str, ManualClock]) -> None:
    # payment_failed: every message dead, the finance service refusing them
    app = console(bus_seeded, first_pane="queues")
    assert snap_compare(app, terminal_size=SIZE, run_before=queue_detail())


def test_confirm_purge(snap_compare: SnapCompare, bus_seeded: tuple[str, ManualClock]) -> None:
    # purging names the count and asks for the queue's name
    app = console(bus_seeded, first_pane="queues")
    assert snap_compare(app, terminal_size=SIZE, run_before=queue_detail("P"))
