"""The console follows the database by itself: notifications, slow refresh, no keys pressed."""

from __future__ import annotations

import time
import uuid

from orchcore import Orch
from orchtui.panes.services import ServicesPane
from orchtui.widgets import KeyedTable
from tests.console.helpers import (
    SIZE,
    mark,
    on_screen,
    pane_loaded,
    register_instances,
    register_service,
    table_keys,
)
from tests.console.sources import SourceOf, console_on
from tests.support.http import SwitchableServer
from tests.support.polling import eventually


async def test_new_service_appears_without_a_key_pressed(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "booking")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE):
        await on_screen(app, "booking")
        await register_service(orch, "venue", service_version="2.0.1")
        text = await on_screen(app, "venue", "2.0.1")
        assert "booking" in text
        assert table_keys(app) == ["booking", "venue"]


async def test_committed_health_change_is_on_screen_within_a_second(
    orch: Orch, http_server: SwitchableServer, as_source: SourceOf
) -> None:
    """A real health check (real HTTP) turns an instance healthy; the pane shows it < 1 s."""
    await register_service(orch, "catering", health_check={"interval_seconds": 10})
    await orch.registry.register_instance(
        "catering",
        {"instance_id": "catering-1", "ip_address": "127.0.0.1", "port": http_server.port,
         "version": "1"},
        actor="test",
    )  # fmt: skip
    app = console_on(await as_source(orch), first_pane="services")
    checker = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:test")
    try:
        async with app.run_test(size=SIZE):
            await on_screen(app, "catering", "0/1", "✖ unhealthy")
            assert await checker.run_once() == 1  # commits starting -> healthy
            committed = time.monotonic()
            await on_screen(app, "1/1", "● healthy", timeout=1.0)
            assert time.monotonic() - committed < 1.0
    finally:
        await checker.close()


async def test_instance_rows_update_in_place_and_keep_the_cursor(
    orch: Orch, as_source: SourceOf
) -> None:
    for name in ("booking", "payments", "venue"):
        await register_service(orch, name)
    await register_instances(orch, "venue", 2)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        table = app.query_one("#services-table", KeyedTable)
        await pilot.press("down", "down")
        assert table.selected_key == "venue"

        await mark(orch, "venue-1", "healthy")
        await on_screen(app, "1/2", "▲ degraded")
        await register_service(orch, "accounts")  # sorts before the cursor's row
        await eventually(lambda: table_keys(app) == ["accounts", "booking", "payments", "venue"])
        assert table.selected_key == "venue"

        await orch.registry.deactivate_service("booking", actor="test")
        await eventually(lambda: "booking" not in table_keys(app))
        assert table.selected_key == "venue"


async def test_instances_screen_shows_instances_and_recent_events(
    orch: Orch, as_source: SourceOf
) -> None:
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 2)
    await mark(orch, "venue-2", "healthy")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("enter")
        await pane_loaded(app, "instances")
        text = await on_screen(app, "Services › venue", "venue-1", "127.0.0.1:9001")
        assert "◌ starting" in text
        assert "● healthy" in text
        assert "starting → ● healthy" in text  # the event below the instances

        await mark(orch, "venue-1", "healthy")
        table = app.screen.query_one("#instances-table", KeyedTable)
        await eventually(lambda: str(table.get_row("venue-1")[2]) == "● healthy")

        await pilot.press("escape")
        await pane_loaded(app, "services")
        assert isinstance(app.active_pane, ServicesPane)
        await on_screen(app, "Services [1]")


async def test_instances_screen_ignores_other_services(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "venue")
    await register_service(orch, "booking")
    await register_instances(orch, "venue", 1)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("enter")  # booking, the first row
        await pane_loaded(app, "instances")
        pane = app.active_pane
        assert pane is not None
        assert pane.concerns({"topic": "instance", "service_id": "elsewhere"}) is False
        snapshot = pane.snapshot
        assert snapshot is not None
        own = {"topic": "instance", "service_id": str(snapshot.service.id)}  # type: ignore[attr-defined]
        assert pane.concerns(own) is True


async def test_refresh_waits_while_a_modal_is_open(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("question_mark")
        pane = app.active_pane
        assert pane is not None
        await register_service(orch, "venue")
        await eventually(lambda: pane.dirty, message="notification not received")
        ticks = app.refresh_ticks
        await eventually(lambda: app.refresh_ticks >= ticks + 3)
        assert pane.dirty, "the pane refreshed under the help screen"
        assert table_keys(app) == []

        await pilot.press("escape")
        await on_screen(app, "venue")
