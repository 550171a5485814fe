"""The shell around the panes: header, filter, help, `:` command bar, palette, layout."""

from __future__ import annotations

import re

import pytest
from textual.command import CommandList, CommandPalette

from orchcore import Orch
from orchtui.app import OrchConsole
from orchtui.panes.overview import OverviewPane
from orchtui.panes.services import ServicesPane
from orchtui.screens import ConfirmMutationScreen, HelpScreen
from orchtui.widgets import KeyedTable
from orchtui.widgets.header import ConsoleHeader
from tests.console.helpers import (
    SIZE,
    off_screen,
    on_screen,
    pane_loaded,
    register_service,
    table_keys,
)
from tests.console.sources import SourceOf, console_on
from tests.support.polling import eventually


async def test_header_names_database_environment_age_and_connection(orch: Orch) -> None:
    # The database console's header (the API console's: tests/console/test_console_over_api.py)
    app = OrchConsole(orch)
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        header = str(app.screen.query_one(ConsoleHeader).render_line(0).text)
        assert "env development" in header
        assert "data 0s old" in header  # the ManualClock stands still
        assert "● live" in header
        label = orch.database_label
        assert label[:20] in header  # long DSNs are cut at the end, never the state
        assert app.screen.query_one(ConsoleHeader).region.height == 1


async def test_slash_filters_rows_as_typed_and_escape_clears(
    orch: Orch, as_source: SourceOf
) -> None:
    for name in ("booking", "venue", "venue-photos", "payments"):
        await register_service(orch, name)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("slash", "v", "e", "n")
        await eventually(lambda: table_keys(app) == ["venue", "venue-photos"])
        await pilot.press("u", "e", "-")
        await eventually(lambda: table_keys(app) == ["venue-photos"])
        await on_screen(app, "Services [1/4] /venue-")

        await pilot.press("enter")  # keep the filter, back to the rows
        table = app.screen.query_one(KeyedTable)
        assert table.has_focus
        assert table_keys(app) == ["venue-photos"]

        await pilot.press("escape")  # clears the kept filter
        await eventually(lambda: len(table_keys(app)) == 4)
        await on_screen(app, "Services [4]")

        await pilot.press("slash", "x", "y", "z")
        await eventually(lambda: table_keys(app) == [])
        await pilot.press("escape")  # from inside the prompt
        await eventually(lambda: len(table_keys(app)) == 4)


async def test_filter_keeps_up_with_new_rows(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "venue")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("slash", "v", "e", "n", "enter")
        await register_service(orch, "venue-annex")
        await register_service(orch, "booking")
        await eventually(lambda: table_keys(app) == ["venue", "venue-annex"])
        await on_screen(app, "Services [2/3] /ven")


async def test_question_mark_lists_pane_and_global_keys(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = await on_screen(app, "Services", "Everywhere", "Tables")
        for key, description in [
            ("⏎", "Show the service's instances"),
            ("D", "Deactivate the service and deregister its instances  !"),
            ("?", "Show every key"),
            ("/", "Filter the rows as you type"),
            (":", "Go to a pane by name"),
            ("^p", "Find any pane or action by name"),
            ("esc", "Clear the filter, or go back"),
            ("q ^c", "Leave the console"),
        ]:
            row = re.compile(rf"│ {re.escape(key)} +{re.escape(description)} ")
            assert row.search(text), f"{key} {description} missing from help:\n{text}"
        assert ":overview, :services, :workflows, :breakers, :mesh" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_colon_jumps_to_a_pane_by_name_with_completion(
    orch: Orch, as_source: SourceOf
) -> None:
    await register_service(orch, "booking")
    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "overview")
        await pilot.press("colon", "s", "e", "r")
        await on_screen(app, ": services")  # the suggestion, completed by tab
        await pilot.press("tab", "enter")
        await pane_loaded(app, "services")
        assert isinstance(app.active_pane, ServicesPane)
        await on_screen(app, "booking")

        await pilot.press("colon", *"overview", "enter")
        await pane_loaded(app, "overview")

        await pilot.press("colon", *"svc", "enter")  # k9s-style alias
        await pane_loaded(app, "services")

        await pilot.press("colon", *"nope", "enter")
        await on_screen(app, "No pane named 'nope'")
        assert isinstance(app.active_pane, ServicesPane)


async def test_colon_from_a_detail_screen_returns_to_the_panes(
    orch: Orch, as_source: SourceOf
) -> None:
    await register_service(orch, "booking")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("enter")
        await pane_loaded(app, "instances")
        await pilot.press("colon", *"overview", "enter")
        await pane_loaded(app, "overview")
        assert len(app.screen_stack) == 1


async def test_palette_lists_panes_and_the_current_panes_actions(
    orch: Orch, as_source: SourceOf
) -> None:
    await register_service(orch, "booking")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("ctrl+p")
        await eventually(lambda: CommandPalette.is_open(app))
        await on_screen(app, "Go to Overview", "Go to Services", "Go to Queues")
        # The pane's actions come after every pane (each pane adds lines, and at 80x24
        # they are past the bottom): found by typing, as one would.
        for action in ("instances", "deactivate"):
            await pilot.press(*action)
            await on_screen(app, f"Services: {action.capitalize()}")
            await pilot.press(*["backspace"] * len(action))
        await pilot.press(*"overview")
        await on_screen(app, "Go to Overview")
        await eventually(lambda: app.screen.query_one(CommandList).option_count == 1)
        await pilot.press("enter")
        await pane_loaded(app, "overview")
        assert isinstance(app.active_pane, OverviewPane)


async def test_palette_runs_a_pane_action(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "booking")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("ctrl+p", *"services: instances")
        await eventually(lambda: app.screen.query_one(CommandList).option_count >= 1)
        await pilot.press("enter")
        await pane_loaded(app, "instances")
        await on_screen(app, "Services › booking")


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
async def test_everything_fits_80_by_24(
    orch: Orch, monkeypatch: pytest.MonkeyPatch, no_color: bool, as_source: SourceOf
) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    await register_service(orch, "notifications", service_type="scheduler")
    app = console_on(await as_source(orch), first_pane="services")
    assert app.no_color is no_color
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "services")
        row = "notifications  1.0.0    scheduler  production   0/0      ○ no instances"
        text = await on_screen(app, row, "q Quit")  # the footer draws after the rows
        lines = text.splitlines()
        assert len(lines) == 24
        assert all(len(line) <= 80 for line in lines)
        # Every column and every footer key is visible; state reads without colour.
        for header in ("SERVICE", "VERSION", "TYPE", "ENVIRONMENT", "HEALTHY", "STATUS"):
            assert header in lines[2], f"{header} not visible:\n{text}"
        footer = lines[-1]
        for key in ("⏎ Instances", "D Deactivate", "? Help", "/ Filter", ": Pane", "q Quit"):
            assert key in footer, f"{key!r} not in footer {footer!r}"


async def test_escape_on_the_top_pane_does_nothing(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("escape")
        assert app.is_running
        await off_screen(app, "Services ›")


async def test_colon_q_opens_queues_and_colon_quit_leaves(orch: Orch, as_source: SourceOf) -> None:
    """`:q` is the Queues pane's short name; leaving takes `:quit` (or `:q!`, or q)."""
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        await pilot.press("colon", "q", "enter")
        await pane_loaded(app, "queues")
        assert app.is_running
        await pilot.press("colon", *"quit", "enter")
        await eventually(lambda: not app.is_running)
    assert app.return_code == 0


@pytest.mark.parametrize("where", ["pane", "prompt", "question"])
async def test_ctrl_c_quits_from_anywhere(orch: Orch, where: str, as_source: SourceOf) -> None:
    """As the demo's README says: q or Ctrl-C stops it (Textual 8 alone only hints at q)."""
    await register_service(orch, "booking")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        if where == "prompt":
            await pilot.press("slash", "b")  # typing into the filter
        elif where == "question":
            await pilot.press("D")  # the confirmation, Cancel focused
            assert isinstance(app.screen, ConfirmMutationScreen)
        await pilot.press("ctrl+c")
        await eventually(lambda: not app.is_running)
    assert app.return_code == 0
    assert (await orch.registry.get_service("booking")).is_active


async def test_the_console_stops_listening_when_it_exits(orch: Orch) -> None:
    """An engine that outlives the console (as here) no longer calls into it."""
    listener = orch.listener
    assert listener is not None
    before = list(listener._handlers)
    app = OrchConsole(orch, first_pane="services")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "services")
        assert len(listener._handlers) == len(before) + 1
    assert listener._handlers == before


async def test_a_refresh_tick_while_shutting_down_is_ignored(
    orch: Orch, as_source: SourceOf
) -> None:
    # The refresh timer can fire once more after the last screen has gone at exit;
    # that tick must not end the console with a traceback.
    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE):
        await pane_loaded(app)
    assert not app.screen_stack
    ticks = app.refresh_ticks
    app._refresh_visible_pane()
    assert app.refresh_ticks == ticks + 1
