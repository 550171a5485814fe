"""The console's header: where you are connected, and how fresh what you see is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from orchtui.symbols import state_text

if TYPE_CHECKING:
    from orchtui.app import OrchConsole


class ConsoleHeader(Widget):
    """One line: database and environment; the current pane's data age and the connection.

    Where the operator is (the pane and its filter) is the pane's own border title.

    It reads the console's state when drawn; the console asks for a redraw when that
    state changes, and a one-second timer keeps the data age ticking.
    """

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh)

    def render(self) -> RenderableType:
        from orchtui.app import OrchConsole

        console = self.app
        assert isinstance(console, OrchConsole)
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        pane = console.active_pane
        status = Text(pane.data_age(console.now()) if pane is not None else "", style="dim")
        status.append("  ")
        status.append_text(state_text(console.connection_state))
        grid.add_row(_identity(console), status)
        return grid


def _identity(console: OrchConsole) -> Text:
    """Environment first: it is short and the one to notice; a long DSN is cut at the end."""
    text = Text()
    text.append("orch", style="bold")
    if console.readonly:
        text.append(" ")
        text.append("READ-ONLY", style="bold reverse")
    text.append("  env ", style="dim")
    text.append(console.environment, style="bold")
    text.append("  api " if console.over_api else "  db ", style="dim")
    text.append(console.database_label)
    return text
