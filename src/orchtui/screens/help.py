"""``?``: every key of the current pane and of the console, from the action registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from orchtui.actions import ConsoleAction

#: Keys of the tables themselves, which are not actions of any pane.
TABLE_KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓ j k", "Move between rows"),
    ("pgup pgdn", "Page up and down"),
    ("g G", "First and last row"),
    ("← →", "Scroll wide rows sideways"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(
        self,
        *,
        pane_title: str,
        pane_actions: Sequence[ConsoleAction],
        global_actions: Sequence[ConsoleAction],
        pane_names: Sequence[str],
        readonly: bool,
    ) -> None:
        super().__init__()
        self._pane_title = pane_title
        self._pane_actions = pane_actions
        self._global_actions = global_actions
        self._pane_names = pane_names
        self._readonly = readonly

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog") as dialog:
            dialog.border_title = "Keys"
            dialog.border_subtitle = "esc closes"
            yield Static(self._keys_table(), id="help-keys")

    def _keys_table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, style="bold")
        table.add_column()
        self._section(table, self._pane_title, _action_rows(self._pane_actions))
        self._section(table, "Tables", list(TABLE_KEYS))
        self._section(table, "Everywhere", _action_rows(self._global_actions))
        table.add_row("", "")
        table.add_row("panes", Text(", ".join(f":{name}" for name in self._pane_names)))
        if self._readonly:
            table.add_row("", "")
            table.add_row(
                Text("READ-ONLY", style="bold reverse"),
                "actions that change state are hidden",
            )
        elif any(action.mutating for action in self._pane_actions):
            table.add_row("!", "changes state: asks to confirm, with a reason")
        return table

    @staticmethod
    def _section(table: Table, title: str, rows: list[tuple[str, str | Text]]) -> None:
        if not rows:
            return
        if table.row_count:
            table.add_row("", "")
        table.add_row(Text(title, style="bold underline"), "")
        for key, description in rows:
            table.add_row(key, description)

    def action_close(self) -> None:
        self.dismiss(None)


def _action_rows(actions: Sequence[ConsoleAction]) -> list[tuple[str, str | Text]]:
    """One row per action; an action with two keys (q and ^c quit) reads ``q ^c``."""
    keys: dict[str, list[str]] = {}
    first: dict[str, ConsoleAction] = {}
    for action in actions:
        keys.setdefault(action.name, []).append(action.shown_key)
        first.setdefault(action.name, action)
    rows: list[tuple[str, str | Text]] = []
    for name, action in first.items():
        description = Text(action.long_description)
        if action.mutating:
            description.append("  !", style="bold")
        rows.append((" ".join(keys[name]), description))
    return rows
