"""The registry of top-level panes: what ``:name``, the palette and the help list.

Adding a pane is writing its module (see :mod:`orchtui.pane` for the contract) and
listing its class here; the order is the order of the palette. Detail panes (such as
Instances, opened from a row) are not listed: their parent pane opens them.
"""

from __future__ import annotations

from typing import Any

from orchtui.pane import Pane
from orchtui.panes.breakers import BreakersPane
from orchtui.panes.mesh import MeshPane
from orchtui.panes.overview import OverviewPane
from orchtui.panes.queues import QueuesPane
from orchtui.panes.service_map import ServiceMapPane
from orchtui.panes.services import ServicesPane
from orchtui.panes.traces import TracesPane
from orchtui.panes.workflows import WorkflowsPane

PANES: tuple[type[Pane[Any]], ...] = (
    OverviewPane,
    ServicesPane,
    WorkflowsPane,
    BreakersPane,
    MeshPane,
    QueuesPane,
    TracesPane,
    ServiceMapPane,
)


def pane_for(name: str) -> type[Pane[Any]] | None:
    """The pane a ``:`` command names, by name or alias, ignoring case."""
    wanted = name.strip().lower()
    for pane in PANES:
        if wanted == pane.NAME or wanted in pane.ALIASES:
            return pane
    return None


def command_names() -> list[str]:
    """What the ``:`` prompt suggests: every pane name, then the aliases."""
    names = [pane.NAME for pane in PANES]
    names += [alias for pane in PANES for alias in pane.ALIASES]
    return [*names, "quit"]
