"""A screen showing one detail pane (Instances of a service, a workflow, a trace, ...).

Esc goes back to where the operator came from; the pane beneath keeps its cursor. The
console keeps one such screen a kind of pane and shows the next pane of that kind in it
(:meth:`PaneScreen.take`): composing and styling a screen's chrome (header, prompts,
footer) was most of what opening a detail cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import ComposeResult

from orchtui.pane import Pane
from orchtui.screens.base import ConsoleScreen
from orchtui.widgets.banner import ConnectionBanner


class PaneScreen(ConsoleScreen):
    def __init__(self, pane: Pane[Any], *, command_names: Iterable[str]) -> None:
        super().__init__(command_names)
        self._pane = pane

    def compose_body(self) -> ComposeResult:
        yield self._pane

    @property
    def active_pane(self) -> Pane[Any]:
        return self._pane

    def on_mount(self) -> None:
        self._pane.focus_primary()

    async def take(self, pane: Pane[Any]) -> None:
        """Show ``pane`` instead of the one shown before, while this screen is off the
        stack: done before it comes back, it never shows the previous pane for a frame."""
        previous, self._pane = self._pane, pane
        self.reset_prompts()
        # Gone before the next comes: panes of a kind share their widget ids.
        await previous.remove()
        await self.mount(pane, after=self.query_one(ConnectionBanner))
        pane.focus_primary()
