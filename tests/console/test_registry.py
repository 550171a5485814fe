"""Every pane keeps the contract: names are unique, every declared key has its method."""

from __future__ import annotations

from typing import Any

import pytest

from orchtui.app import GLOBAL_ACTIONS, OrchConsole
from orchtui.pane import Pane
from orchtui.panes import PANES, command_names, pane_for
from orchtui.panes.breaker_detail import BreakerDetailPane
from orchtui.panes.instances import InstancesPane
from orchtui.panes.mesh_policy import MeshPolicyPane

ALL_PANES: list[type[Pane[Any]]] = [*PANES, InstancesPane, BreakerDetailPane, MeshPolicyPane]


def test_pane_names_and_aliases_are_unique() -> None:
    names = [name for pane in PANES for name in (pane.NAME, *pane.ALIASES)]
    assert len(names) == len(set(names))
    assert all(pane.NAME and pane.TITLE and pane.SUMMARY for pane in PANES)
    assert "quit" in command_names()
    assert pane_for("SVC") is pane_for("services")
    assert pane_for("cb") is pane_for("breakers")
    assert pane_for("policies") is pane_for("mesh")
    assert pane_for("nothing") is None


@pytest.mark.parametrize("pane", ALL_PANES, ids=lambda p: p.__name__)
def test_every_declared_action_has_its_method(pane: type[Pane[Any]]) -> None:
    for action in pane.ACTIONS:
        method = f"mutation_{action.name}" if action.mutating else f"action_{action.name}"
        assert callable(getattr(pane, method, None)), f"{pane.__name__} lacks {method}"


@pytest.mark.parametrize("pane", ALL_PANES, ids=lambda p: p.__name__)
def test_bindings_come_from_the_registry(pane: type[Pane[Any]]) -> None:
    bound = {(b.key, b.action) for _, b in pane._merged_bindings}  # type: ignore[attr-defined]
    assert bound == {(a.key, a.action_string) for a in pane.ACTIONS}


def test_global_keys_do_not_collide_with_pane_keys() -> None:
    global_keys = {action.key for action in GLOBAL_ACTIONS}
    for pane in ALL_PANES:
        assert not global_keys & {action.key for action in pane.ACTIONS}, pane.__name__
    assert all(callable(getattr(OrchConsole, f"action_{a.name}", None)) for a in GLOBAL_ACTIONS)
