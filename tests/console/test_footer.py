"""The footer: one line of the keys of the moment, with ``?`` on it at any width."""

from __future__ import annotations

from uuid import uuid4

import pytest

from orchcore import Orch
from orchtui.app import OrchConsole
from orchtui.pane import Pane
from orchtui.panes import PANES
from orchtui.panes.breaker_detail import BreakerDetailPane
from orchtui.panes.instances import InstancesPane
from orchtui.panes.mesh_policy import MeshPolicyPane
from orchtui.panes.queue_detail import QueueDetailPane
from orchtui.panes.trace_waterfall import TraceWaterfallPane
from orchtui.panes.workflow_detail import WorkflowDetailPane
from orchtui.screens import HelpScreen
from orchtui.widgets.footer import ConsoleFooter, FooterItem, fit
from tests.console.helpers import SIZE, on_screen

HELP = FooterItem("question_mark", "?", "Help", enabled=True)


def item(key: str, description: str) -> FooterItem:
    return FooterItem(key, key, description, enabled=True)


def test_keys_keep_their_order_while_they_fit() -> None:
    items = [item("r", "Reset"), HELP, item("q", "Quit")]
    assert fit(items, 80) == items


def test_help_takes_the_last_place_when_the_others_leave_no_room() -> None:
    items = [item("r", "Reset"), item("o", "Force open"), item("x", "Disable"), HELP]
    # " r Reset " is 9 cells, " o Force open " 14, " x Disable " 11, " ? Help " 8
    assert fit(items, 9 + 8) == [items[0], HELP]
    assert fit(items, 9 + 14 + 8) == [items[0], items[1], HELP]
    assert fit(items, 7) == [HELP]  # even with no room at all, help is what is left


def detail_panes() -> list[Pane]:
    """Every kind of detail screen, on things that do not exist (the footer is the point)."""
    return [
        BreakerDetailPane(uuid4(), "booking → venue"),
        InstancesPane("venue"),
        MeshPolicyPane(uuid4(), "venue-limit"),
        QueueDetailPane("booking_events"),
        TraceWaterfallPane("4bf92f3577b34da6a3ce929d0e0e4736"),
        WorkflowDetailPane(uuid4(), "booking"),
    ]


def footer_line(app: OrchConsole) -> str:
    footer = app.screen.query_one(ConsoleFooter)
    return footer.render().plain


@pytest.mark.parametrize("width", [80, 60])
async def test_every_screen_shows_help_in_its_footer(orch: Orch, width: int) -> None:
    app = OrchConsole(orch)
    async with app.run_test(size=(width, SIZE[1])) as pilot:
        for pane in PANES:
            app.show_pane(pane.NAME)
            await pilot.pause()
            assert "? Help" in footer_line(app), pane.NAME
        for detail in detail_panes():
            app.open_detail(detail)
            await pilot.pause()
            line = footer_line(app)
            assert "? Help" in line, type(detail).__name__
            assert len(line) <= width
            app.pop_screen()
            await pilot.pause()


async def test_a_click_on_a_key_presses_it(orch: Orch) -> None:
    app = OrchConsole(orch)
    async with app.run_test(size=SIZE) as pilot:
        await on_screen(app, "? Help")
        line = footer_line(app)
        await pilot.click(ConsoleFooter, offset=(line.index("? Help") + 1, 0))
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
