"""Detail screens: one kept a kind of pane and shown again with the next such pane."""

from __future__ import annotations

from orchcore import Orch
from orchtui.panes.instances import InstancesPane
from orchtui.screens import PaneScreen
from orchtui.widgets.prompts import FilterBar
from tests.console.helpers import SIZE, on_screen, pane_loaded, register_instances, register_service
from tests.console.sources import SourceOf, console_on


async def test_the_next_detail_of_a_kind_comes_in_the_same_screen_fresh(
    orch: Orch, as_source: SourceOf
) -> None:
    for name in ("venue", "catering"):
        await register_service(orch, name)
    await register_instances(orch, "venue", 2)
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "services")
        first = InstancesPane("venue")
        app.open_detail(first)
        await pane_loaded(app, "instances")
        await on_screen(app, "Services › venue")
        kept = app.screen
        assert isinstance(kept, PaneScreen)
        await pilot.press("slash", "v", "e", "enter")  # a filter kept on this pane
        assert kept.query_one(FilterBar).value == "ve"
        app.show_pane("services")  # as `:services` leaves it, filter and all
        await pane_loaded(app, "services")

        second = InstancesPane("catering")
        app.open_detail(second)
        await pane_loaded(app, "instances")
        assert app.screen is kept and app.active_pane is second
        text = await on_screen(app, "Services › catering")
        assert "venue" not in text.splitlines()[1]  # the title is the new pane's
        assert not first.is_attached  # the previous pane is gone, not hidden
        assert kept.query_one(FilterBar).value == ""
        assert app.focused is not None and second in app.focused.ancestors_with_self

        # a detail opened from a detail of its kind gets a screen of its own
        third = InstancesPane("venue")
        app.open_detail(third)
        await pane_loaded(app, "instances")
        assert app.screen is not kept and len(app.screen_stack) == 3
        await pilot.press("escape")
        assert app.screen is kept and app.active_pane is second
