"""The screen of top-level panes; ``:name`` switches between them in place."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.widgets import ContentSwitcher

from orchtui.pane import Pane
from orchtui.screens.base import ConsoleScreen


class MainScreen(ConsoleScreen):
    def __init__(
        self, panes: Sequence[type[Pane[Any]]], *, first: str, command_names: Iterable[str]
    ) -> None:
        super().__init__(command_names)
        self._panes = {pane.NAME: pane(id=_pane_id(pane.NAME)) for pane in panes}
        self._current = first

    def compose_body(self) -> ComposeResult:
        with ContentSwitcher(initial=_pane_id(self._current), id="panes"):
            yield from self._panes.values()

    @property
    def active_pane(self) -> Pane[Any]:
        return self._panes[self._current]

    def pane_named(self, name: str) -> Pane[Any]:
        return self._panes[name]

    def on_mount(self) -> None:
        self.active_pane.focus_primary()

    def switch_to(self, name: str) -> Pane[Any]:
        pane = self._panes[name]
        self._current = name
        self.query_one(ContentSwitcher).current = _pane_id(name)
        pane.focus_primary()
        self.refresh_bindings()
        return pane


def _pane_id(name: str) -> str:
    return f"pane-{name}"
