"""Mesh policies: listed live, enabled and disabled with a reason, applied, read in full."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Button, Input

from orchcore import Orch
from orchcore.audit import recent_actions
from orchtui.panes.mesh_policy import MeshPolicyPane
from orchtui.screens import ConfirmMutationScreen
from tests.console.helpers import (
    SIZE,
    on_screen,
    pane_loaded,
    register_instances,
    register_service,
    table_keys,
)
from tests.console.sources import SourceOf, console_on

OPERATOR = "alice@console-test"


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_OPERATOR", OPERATOR)


def rate_limit(name: str = "venue-limit", **fields: Any) -> dict[str, Any]:
    return {
        "policy_name": name,
        "policy_type": "traffic",
        "target_services": ["venue"],
        "policy_config": {"rate_limiting": {"requests_per_second": 5, "burst_size": 10}},
        **fields,
    }


TRACING = {
    "policy_name": "trace-all",
    "policy_type": "observability",
    "source_services": ["booking", "payments"],
    "priority": -5,
    "is_enabled": False,
    "policy_config": {"tracing": {"sampling_rate": 0.5}},
}


async def test_policies_are_listed_by_priority_and_follow_changes(
    orch: Orch, as_source: SourceOf
) -> None:
    await orch.mesh.create(rate_limit(priority=10), actor="t")
    await orch.mesh.create(TRACING, actor="t")
    app = console_on(await as_source(orch), first_pane="mesh")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "mesh")
        text = await on_screen(
            app,
            "Mesh policies [2]",
            "traffic 1 · security 0 · resilience 0 · observability 1  ● 1 of 2 enabled",
            "venue-limit ",
            "* → venue",
            "● enabled",
            "trace-all ",
            "booking,payments → *",
            "○ disabled",
            # The highlighted policy in full below the table: what it does, on how much.
            "venue-limit  * → venue · on 0 live instances",
            "rate limit 5/s burst 10",
        )
        for header in ("NAME", "TYPE", "SOURCES → TARGETS", "PRIO", "STATE"):
            assert header in text
        policies = await orch.mesh.list_policies()
        assert table_keys(app) == [str(p.id) for p in policies]  # highest priority first

        await orch.mesh.create(
            rate_limit("catering-limit", target_services=["catering"]), actor="t"
        )
        await on_screen(app, "catering-limit", "* → catering", "Mesh policies [3]", timeout=1.0)


async def test_toggle_names_the_policy_asks_why_and_is_audited(
    orch: Orch, as_source: SourceOf
) -> None:
    await orch.mesh.create(rate_limit(), actor="t")
    app = console_on(await as_source(orch), first_pane="mesh")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "mesh")
        await on_screen(app, "● enabled")
        await pilot.press("e")
        assert isinstance(app.screen, ConfirmMutationScreen)
        text = await on_screen(app, "Disable mesh policy venue-limit (* → venue)?")
        assert "lose it from their next call" in text
        assert "rate limit 5/s burst 10" in text
        focused = app.screen.focused
        assert isinstance(focused, Button)
        assert focused.id == "cancel"
        await pilot.press("shift+tab", *"load test", "enter")
        await on_screen(app, "○ disabled", "Disabled mesh policy venue-limit")
        assert not (await orch.mesh.get("venue-limit")).is_enabled
        entry, *_ = await recent_actions(
            orch.db.pool, target_kind="mesh_policy", target_id="venue-limit"
        )
        assert (entry.action, entry.actor, entry.reason) == (
            "mesh_policy.disable",
            app.actor,
            "load test",
        )

        await pilot.press("e")
        await on_screen(app, "Enable mesh policy venue-limit (* → venue)?")
        await pilot.press("shift+tab", *"load test over", "enter")
        await on_screen(app, "● enabled")
        assert (await orch.mesh.get("venue-limit")).is_enabled
        entry, *_ = await recent_actions(
            orch.db.pool, target_kind="mesh_policy", target_id="venue-limit"
        )
        assert (entry.action, entry.actor) == ("mesh_policy.enable", app.actor)


async def test_apply_asks_no_reason_and_reports_the_result(orch: Orch, as_source: SourceOf) -> None:
    await register_service(orch, "venue")
    await register_instances(orch, "venue", 2)
    await orch.mesh.create(rate_limit(), actor="t")
    await orch.mesh.create(rate_limit("ghost-limit", target_services=["ghost"]), actor="t")
    app = console_on(await as_source(orch), first_pane="mesh")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "mesh")
        await on_screen(app, "venue-limit", "ghost-limit")
        assert table_keys(app)[1] == str((await orch.mesh.get("venue-limit")).id)
        await pilot.press("down", "a")
        assert isinstance(app.screen, ConfirmMutationScreen)
        await on_screen(app, "Apply mesh policy venue-limit (* → venue) now?")
        # The engine keeps no reason for an apply, so none is asked for.
        assert not app.screen.query(Input)
        focused = app.screen.focused
        assert isinstance(focused, Button)
        assert focused.id == "cancel"
        await pilot.press("tab", "enter")  # Cancel -> Apply
        await on_screen(app, "● success: venue-limit on venue (2")  # the toast wraps
        entry, *_ = await recent_actions(
            orch.db.pool, target_kind="mesh_policy", target_id="venue-limit"
        )
        assert (entry.action, entry.actor) == ("mesh_policy.apply", app.actor)
        assert entry.details["status"] == "success"

        await pilot.press("up", "a", "tab", "enter")  # ghost-limit targets no service
        await on_screen(app, "✖ failed: ghost-limit", "nowhere", "✖ ghost:")


async def test_enter_shows_the_whole_policy_as_yaml(orch: Orch, as_source: SourceOf) -> None:
    await orch.mesh.create(rate_limit(priority=3), actor="deploy-bot")
    app = console_on(await as_source(orch), first_pane="mesh")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "mesh")
        await pilot.press("enter")
        await pane_loaded(app, "policy")
        assert isinstance(app.active_pane, MeshPolicyPane)
        text = await on_screen(
            app,
            "Mesh › venue-limit",
            "● enabled · traffic · priority 3 · * → venue",
            "made by deploy-bot 0s ago",
            "policy_name: venue-limit",
            "policy_type: traffic",
            "source_services: []",
            "- venue",
            "priority: 3",
            "is_enabled: true",
            "  rate_limiting:",
            "    requests_per_second: 5.0",
            "    burst_size: 10",
        )
        assert "/ Filter" not in text.splitlines()[-1]  # one document: nothing to filter

        await orch.mesh.set_enabled("venue-limit", False, actor="bob", reason="x")
        await on_screen(app, "○ disabled · traffic", "is_enabled: false", timeout=1.0)

        await pilot.press("e")  # the detail's keys act on its policy
        await on_screen(app, "Enable mesh policy venue-limit (* → venue)?")
        await pilot.press("shift+tab", *"back on", "enter")
        await on_screen(app, "● enabled · traffic")


async def test_readonly_hides_toggle_and_apply(orch: Orch, as_source: SourceOf) -> None:
    await orch.mesh.create(rate_limit(), actor="t")
    app = console_on(await as_source(orch), readonly=True, first_pane="mesh")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "mesh")
        footer = (await on_screen(app, "venue-limit", "⏎ Policy")).splitlines()[-1]
        assert "Enable" not in footer
        assert "Apply" not in footer
        for key in ("e", "a"):
            await pilot.press(key)
            assert not isinstance(app.screen, ConfirmMutationScreen)
        await pilot.press("enter")
        await pane_loaded(app, "policy")
        footer = (await on_screen(app, "Mesh › venue-limit")).splitlines()[-1]
        assert "Apply" not in footer
        await pilot.press("e")
        assert not isinstance(app.screen, ConfirmMutationScreen)
    assert (await orch.mesh.get("venue-limit")).is_enabled


async def test_no_policies(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch), first_pane="mesh")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "mesh")
        await on_screen(app, "no mesh policies", "Mesh policies [0]")
