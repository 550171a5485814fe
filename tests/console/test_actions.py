"""Mutating actions: confirmed with a named target and a reason, audited, gone in readonly."""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import Button, Input

from orchcore import Orch
from orchcore.audit import recent_actions
from orchtui.app import OrchConsole
from orchtui.screens import ConfirmMutationScreen, HelpScreen
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
from tests.support.polling import eventually

OPERATOR = "alice@console-test"


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_OPERATOR", OPERATOR)


async def open_instances_of(app: OrchConsole, pilot: object, service_row: int = 0) -> None:
    await pane_loaded(app, "services")
    for _ in range(service_row):
        await pilot.press("down")  # type: ignore[attr-defined]
    await pilot.press("enter")  # type: ignore[attr-defined]
    await pane_loaded(app, "instances")


async def test_deregister_names_the_target_defaults_to_cancel_and_is_audited(
    orch: Orch, as_source: SourceOf
) -> None:
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 3)
    await mark(orch, "venue-2", "healthy")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_instances_of(app, pilot)
        await pilot.press("down")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmMutationScreen)
        text = await on_screen(app, "Deregister instance venue-2 of service venue?")
        assert f"acting as {app.actor}" in text
        focused = app.screen.focused
        assert isinstance(focused, Button)
        assert focused.id == "cancel"

        await pilot.press("shift+tab")  # Cancel -> the reason
        assert isinstance(app.screen.focused, Input)
        await pilot.press(*"host retired", "enter")
        assert not isinstance(app.screen, ConfirmMutationScreen)

        await on_screen(app, "Deregistered instance venue-2")  # the toast (it wraps)
        await eventually(lambda: table_keys(app) == ["venue-1", "venue-3"])
        instance = await orch.registry.get_instance("venue-2")
        assert instance.status == "terminating"
        entry, *_ = await recent_actions(orch.db.pool, target_kind="instance", target_id="venue-2")
        assert (entry.action, entry.actor, entry.reason) == (
            "instance.deregister",
            app.actor,
            "host retired",
        )
        await on_screen(app, "healthy → ⊘ terminating")


async def test_enter_on_the_default_focus_cancels(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 1)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await open_instances_of(app, pilot)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmMutationScreen)
        await pilot.press("enter")
        assert not isinstance(app.screen, ConfirmMutationScreen)
        assert (await orch.registry.get_instance("venue-1")).status == "starting"
        audited = await recent_actions(orch.db.pool, target_kind="instance", target_id="venue-1")
        assert [e.action for e in audited] == ["instance.register"]


async def test_confirming_needs_a_reason(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 1)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await open_instances_of(app, pilot)
        await pilot.press("d", "tab")  # Cancel -> Deregister
        focused = app.screen.focused
        assert isinstance(focused, Button)
        assert focused.id == "confirm"
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmMutationScreen)
        await on_screen(app, "a reason is required")
        assert isinstance(app.screen.focused, Input)
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmMutationScreen)
        assert (await orch.registry.get_instance("venue-1")).status == "starting"


async def test_deactivate_service_from_the_services_pane(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "booking")
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 2)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("down", "D")
        text = await on_screen(app, "Deactivate service venue?")
        assert "2 live instances are deregistered" in text
        await pilot.press("shift+tab", *"replaced by venue-v2", "enter")
        await eventually(lambda: table_keys(app) == ["booking"])
        service = await orch.registry.get_service("venue")
        assert not service.is_active
        entry, *_ = await recent_actions(orch.db.pool, target_kind="service", target_id="venue")
        assert (entry.action, entry.actor, entry.reason) == (
            "service.deactivate",
            app.actor,
            "replaced by venue-v2",
        )


async def test_a_failed_action_is_reported_not_fatal(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 1)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_instances_of(app, pilot)
        await pilot.press("d")
        # Someone else deregisters it while the question is open.
        await orch.registry.deregister_instance("venue", "venue-1", actor="bob")
        await pilot.press("shift+tab", *"duplicate", "enter")
        await on_screen(app, "Deregister instance failed", "is already")
        assert app.is_running


async def test_readonly_hides_mutating_actions_everywhere(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 1)
    app = console_on(await as_source(orch), readonly=True, first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        text = await on_screen(app, "READ-ONLY", "⏎ Instances")
        assert "READ-ONLY" in text.splitlines()[0]
        footer = text.splitlines()[-1]
        assert "Instances" in footer
        assert "Deactivate" not in footer

        await pilot.press("D")  # the key is dead
        assert not isinstance(app.screen, ConfirmMutationScreen)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = await on_screen(
            app, "Show the service's instances", "actions that change state are hidden"
        )
        assert "Deactivate" not in help_text
        await pilot.press("escape")

        await pilot.press("ctrl+p")
        await eventually(lambda: CommandPalette.is_open(app))
        # (six panes' "Go to" entries fill an 80x24 palette: the pane's own actions are
        # found by typing, as an operator would)
        await pilot.press(*"services")
        palette = await on_screen(app, "Go to Services", "Services: Instances")
        assert "Deactivate" not in palette
        await pilot.press(*["backspace"] * len("services"), *"deactivate")
        await eventually(lambda: app.screen.query_one(CommandList).option_count == 0)
        await pilot.press("escape")

        await pilot.press("enter")
        await pane_loaded(app, "instances")
        footer = (await on_screen(app, "Services › venue", "? Help")).splitlines()[-1]
        assert "Deregister" not in footer
        await pilot.press("d")
        assert not isinstance(app.screen, ConfirmMutationScreen)
        # Even asked for directly, a mutating action does nothing under --readonly.
        pane = app.active_pane
        assert pane is not None
        assert await app.run_action("mutate('deregister')", pane) is False
        assert not isinstance(app.screen, ConfirmMutationScreen)

    assert (await orch.registry.get_instance("venue-1")).status == "starting"
    assert (await orch.registry.get_service("venue")).is_active
