"""The keys of the moment on one line, ``?`` always among them.

Textual's Footer is a container of one widget a key, composed again whenever the
bindings change (every screen push and focus move), and each key's widget is styled
through the stylesheet: about a fifth of the time a screen takes to open. This footer
is one widget drawing one line, and at any width it keeps the help key: keys are shown
in their order while they fit, and help (which lists every key) takes the last place
when the others do not leave it room.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget

#: The key shown at any width: it leads to every other.
HELP_KEY = "question_mark"
#: A key that does nothing here is drawn dim, as Textual's footer draws it.
DISABLED = Style(dim=True)


@dataclass(frozen=True)
class FooterItem:
    key: str
    key_display: str
    description: str
    enabled: bool

    @property
    def width(self) -> int:
        # " key description " as Textual's footer spaced them.
        return len(self.key_display) + len(self.description) + 3


def fit(items: list[FooterItem], width: int) -> list[FooterItem]:
    """The items shown in ``width`` cells: in order while they fit, help always."""
    if sum(item.width for item in items) <= width:
        return items
    helps = [item for item in items if item.key == HELP_KEY][:1]
    room = width - sum(item.width for item in helps)
    shown: list[FooterItem] = []
    for item in items:
        if item in helps:
            continue
        if item.width > room:
            break
        shown.append(item)
        room -= item.width
    return shown + helps


class ConsoleFooter(Widget, can_focus=False):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "console-footer--key",
        "console-footer--description",
    }
    DEFAULT_CSS = """
    ConsoleFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .console-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .console-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: where each shown key was drawn, for a click: (first cell, cell after, key)
        self._spans: list[tuple[int, int, str]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        self.refresh()

    @property
    def items(self) -> list[FooterItem]:
        """The shown bindings of the focused widget up to the app, one per action."""
        seen: set[str] = set()
        items: list[FooterItem] = []
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            items.append(
                FooterItem(
                    key=binding.key,
                    key_display=self.app.get_key_display(binding),
                    description=binding.description,
                    enabled=active.enabled,
                )
            )
        return items

    def render(self) -> Text:
        key_style = self.get_component_rich_style("console-footer--key")
        description_style = self.get_component_rich_style("console-footer--description")
        line = Text(no_wrap=True, overflow="crop")
        self._spans = []
        for item in fit(self.items, self.size.width):
            start = line.cell_len
            dim = Style() if item.enabled else DISABLED
            line.append(f" {item.key_display} ", style=key_style + dim)
            line.append(f"{item.description} ", style=description_style + dim)
            self._spans.append((start, line.cell_len, item.key))
        return line

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
