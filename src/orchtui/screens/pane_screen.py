"""A screen showing one detail pane (Instances of a service, later a workflow, ...).

Esc goes back to where the operator came from; the pane beneath keeps its cursor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import ComposeResult

from orchtui.pane import Pane
from orchtui.screens.base import ConsoleScreen


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
