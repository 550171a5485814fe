"""ctrl+p: every pane and every action of the current pane, by name.

The palette reads the same registry as the footer and help, so under
``--readonly`` it offers nothing that changes state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from orchtui.actions import allowed


@dataclass(frozen=True)
class PaletteEntry:
    text: str
    help: str
    run: Callable[[], object]


class ConsoleCommands(Provider):
    def entries(self) -> list[PaletteEntry]:
        from orchtui.app import GLOBAL_ACTIONS, OrchConsole

        console = self.app
        assert isinstance(console, OrchConsole)
        entries = [
            PaletteEntry(
                f"Go to {pane.TITLE}",
                f":{pane.NAME} · {pane.SUMMARY}",
                partial(console.show_pane, pane.NAME),
            )
            for pane in console.pane_classes
        ]
        pane = console.active_pane
        if pane is not None:
            for action in allowed(pane.ACTIONS, readonly=console.readonly):
                note = " · changes state" if action.mutating else ""
                entries.append(
                    PaletteEntry(
                        f"{pane.TITLE}: {action.description}",
                        f"{action.shown_key} · {action.long_description}{note}",
                        partial(console.run_pane_action, pane, action),
                    )
                )
        listed = {"command_palette"}  # the palette is open already
        for action in GLOBAL_ACTIONS:
            if action.name not in listed:
                listed.add(action.name)
                entries.append(
                    PaletteEntry(
                        action.description,
                        f"{action.shown_key} · {action.long_description}",
                        partial(console.run_global_action, action),
                    )
                )
        return entries

    async def discover(self) -> Hits:
        for entry in self.entries():
            yield DiscoveryHit(entry.text, entry.run, help=entry.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self.entries():
            score = matcher.match(entry.text)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.text), entry.run, help=entry.help)
