"""What every non-modal screen of the console has around its pane."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input, Static

from orchtui.pane import Pane
from orchtui.widgets.banner import ConnectionBanner
from orchtui.widgets.footer import ConsoleFooter
from orchtui.widgets.header import ConsoleHeader
from orchtui.widgets.prompts import CommandBar, FilterBar


class ConsoleScreen(Screen[None]):
    """Header, connection banner, the body, the ``/`` and ``:`` prompts, and the footer."""

    def __init__(self, command_names: Iterable[str]) -> None:
        super().__init__()
        self._command_names = list(command_names)

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield ConnectionBanner(id="banner")
        yield from self.compose_body()
        with Horizontal(id="filter-line", classes="prompt-line"):
            yield Static("/", classes="prompt-prefix")
            yield FilterBar()
        with Horizontal(id="command-line", classes="prompt-line"):
            yield Static(":", classes="prompt-prefix")
            yield CommandBar(self._command_names)
        yield ConsoleFooter()

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    @property
    def active_pane(self) -> Pane[Any] | None:
        raise NotImplementedError

    def refresh_chrome(self, problem: str | None) -> None:
        # Queried, not query_one: while the app shuts down the chrome may be gone already.
        for header in self.query(ConsoleHeader):
            header.refresh()
        for banner in self.query(ConnectionBanner):
            banner.show_problem(problem)

    # -- the filter prompt ----------------------------------------------------------------

    def open_filter(self) -> None:
        pane = self.active_pane
        if pane is None or pane.filter_table is None:
            return
        bar = self.query_one(FilterBar)
        bar.value = pane.filter_text
        self._open_prompt(bar)

    def clear_filter(self) -> bool:
        """Drop the current pane's filter; False if there was none to drop."""
        pane = self.active_pane
        bar = self.query_one(FilterBar)
        had_filter = bool(pane is not None and pane.filter_text) or self._prompt_open(bar)
        if pane is not None:
            pane.set_filter("")
        self._close_prompt(bar)
        return had_filter

    @on(Input.Changed, "#filter-bar")
    def _filter_as_typed(self, event: Input.Changed) -> None:
        pane = self.active_pane
        if pane is not None:
            pane.set_filter(event.value)

    @on(FilterBar.Done)
    def _keep_filter(self) -> None:
        self._close_prompt(self.query_one(FilterBar))

    @on(FilterBar.Cleared)
    def _drop_filter(self) -> None:
        self.clear_filter()

    # -- the command prompt ---------------------------------------------------------------

    def open_command_bar(self) -> None:
        bar = self.query_one(CommandBar)
        bar.value = ""
        self._open_prompt(bar)

    @on(CommandBar.Closed)
    def _close_command_bar(self) -> None:
        self._close_prompt(self.query_one(CommandBar))

    @on(CommandBar.Entered)
    def _run_command(self, event: CommandBar.Entered) -> None:
        from orchtui.app import OrchConsole

        self._close_prompt(self.query_one(CommandBar))
        app = self.app
        assert isinstance(app, OrchConsole)
        app.run_command(event.command)

    def reset_prompts(self) -> None:
        """Both prompts closed and empty, as a new screen has them."""
        for bar in (self.query_one(FilterBar), self.query_one(CommandBar)):
            with bar.prevent(Input.Changed):  # nothing was typed: no pane is to filter
                bar.value = ""
            self._prompt_line(bar).display = False

    @staticmethod
    def _prompt_line(bar: Input) -> Horizontal:
        line = bar.parent
        assert isinstance(line, Horizontal)
        return line

    def _prompt_open(self, bar: Input) -> bool:
        return self._prompt_line(bar).display

    def _open_prompt(self, bar: Input) -> None:
        self._prompt_line(bar).display = True
        bar.focus()

    def _close_prompt(self, bar: Input) -> None:
        self._prompt_line(bar).display = False
        pane = self.active_pane
        if pane is not None:
            pane.focus_primary()
