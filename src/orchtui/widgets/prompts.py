"""The two one-line prompts at the bottom: ``/`` filter and ``:`` go-to-pane."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input


class FilterBar(Input):
    """Filters the current pane's rows as the operator types; Esc clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Keep filter", key_display="⏎"),
        Binding("escape", "clear", "Clear filter", key_display="esc"),
    ]

    class Cleared(Message):
        """The operator abandoned the filter."""

    class Done(Message):
        """The operator kept the filter and went back to the rows."""

    def __init__(self) -> None:
        super().__init__(placeholder="filter rows…", id="filter-bar", compact=True)

    def action_clear(self) -> None:
        self.post_message(self.Cleared())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Done())


class CommandBar(Input):
    """``:services`` jumps to a pane; suggests names as you type (→ accepts)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Go", key_display="⏎"),
        Binding("tab", "accept_suggestion", "Complete"),
        Binding("escape", "close", "Close", key_display="esc"),
    ]

    class Closed(Message):
        """The operator abandoned the command."""

    class Entered(Message):
        def __init__(self, command: str) -> None:
            super().__init__()
            self.command = command

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__(
            placeholder="pane name (tab completes)",
            id="command-bar",
            compact=True,
            suggester=SuggestFromList(names, case_sensitive=False),
        )

    def action_close(self) -> None:
        self.post_message(self.Closed())

    def action_accept_suggestion(self) -> None:
        # Input's own "right" accepts a suggestion at the end of the text; tab is what
        # shells taught everyone, so it does the same here.
        self.action_cursor_right()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Entered(event.value.strip()))
