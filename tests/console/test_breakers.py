"""Breakers: live state from real calls, operator actions confirmed and recorded, detail."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Button, Input

from orchcore import ManualClock, Orch
from orchcore.audit import recent_actions
from orchcore.callpath import ServiceCaller
from orchcore.resilience.breakers import Breaker
from orchcore.resilience.retry import RetryPolicy
from orchtui.app import OrchConsole
from orchtui.panes.breaker_detail import BreakerDetailPane
from orchtui.screens import ConfirmMutationScreen, HelpScreen
from tests.console.helpers import SIZE, on_screen, pane_loaded
from tests.console.sources import SourceOf, console_on
from tests.support.callers import known_callers
from tests.support.http import SwitchableServer
from tests.support.registry import healthy_service

OPERATOR = "alice@console-test"
ONCE = RetryPolicy.single_attempt()


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_OPERATOR", OPERATOR)


@pytest.fixture
async def caller(orch: Orch, http_server: SwitchableServer) -> ServiceCaller:
    """booking calls venue, one healthy instance on a real loopback HTTP server."""
    await known_callers(orch, "booking")
    await healthy_service(orch, "venue", [http_server])
    return await orch.caller()


async def call_venue(caller: ServiceCaller, times: int = 1) -> None:
    for _ in range(times):
        await caller.call("booking", "venue", "/x", method="GET", retry=ONCE, timeout=2)


async def a_breaker(orch: Orch, source: str = "booking", target: str = "venue") -> Breaker:
    return await orch.breakers.create({"service_name": source, "target_service": target}, actor="t")


async def confirm_with_reason(app: OrchConsole, pilot: object, reason: str) -> None:
    """The question is up with Cancel focused; give a reason and confirm with Enter."""
    assert isinstance(app.screen, ConfirmMutationScreen)
    focused = app.screen.focused
    assert isinstance(focused, Button)
    assert focused.id == "cancel"
    await pilot.press("shift+tab")  # type: ignore[attr-defined]
    assert isinstance(app.screen.focused, Input)
    await pilot.press(*reason, "enter")  # type: ignore[attr-defined]
    assert not isinstance(app.screen, ConfirmMutationScreen)


async def test_a_breaker_opened_by_real_calls_shows_open_within_a_second(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer, as_source: SourceOf
) -> None:
    await call_venue(caller)  # the first call makes the breaker, closed
    app = console_on(await as_source(orch), first_pane="breakers")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "breakers")
        text = await on_screen(app, "booking → venue", "● closed", "0/5")
        assert "SOURCE → TARGET" in text

        await http_server.set_mode("error")
        await call_venue(caller, 4)
        await on_screen(app, "4/5", "● closed", timeout=1.0)
        await call_venue(caller)  # the fifth failure opens it
        opened = time.monotonic()
        text = await on_screen(app, "✖ open", "next attempt in ", timeout=1.0)
        assert time.monotonic() - opened < 1.0
        # 60 s on the engine's clock (which this test holds still); over the API the
        # console moves the daemon's time on by its own clock since the last answer.
        assert "in 60s" in text or (app.engine is not orch and "in 59s" in text)
        assert "✖ 1 open" in text  # the counts above the table follow too
        assert "why: 5 consecutive failures; last:" in text  # the highlighted row


async def test_reset_names_the_breaker_defaults_to_cancel_and_is_recorded(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer, as_source: SourceOf
) -> None:
    await http_server.set_mode("error")
    await call_venue(caller, 5)
    assert (await orch.breakers.find("booking", "venue")).current_state == "open"
    app = console_on(await as_source(orch), first_pane="breakers")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "breakers")
        await on_screen(app, "✖ open")
        await pilot.press("r")
        text = await on_screen(app, "Reset breaker booking → venue *?")
        assert "It is ✖ open." in text
        assert f"acting as {app.actor}" in text

        await pilot.press("enter")  # a reflexive Enter lands on Cancel
        assert not isinstance(app.screen, ConfirmMutationScreen)
        assert (await orch.breakers.find("booking", "venue")).current_state == "open"

        await pilot.press("r")
        await confirm_with_reason(app, pilot, "venue-3 replaced")
        await on_screen(app, "Breaker booking → venue * is closed")  # the toast
        await on_screen(app, "● closed", "0/5")
        breaker = await orch.breakers.find("booking", "venue")
        assert breaker.current_state == "closed"
        latest, *_ = await orch.breakers.history(breaker.id)
        assert (latest.from_state, latest.to_state, latest.actor) == ("open", "closed", app.actor)
        assert latest.trigger == "reset by operator: venue-3 replaced"
        entry, *_ = await recent_actions(
            orch.db.pool, target_kind="breaker", target_id=str(breaker.id)
        )
        assert (entry.action, entry.actor, entry.reason) == (
            "breaker.reset",
            app.actor,
            "venue-3 replaced",
        )


@pytest.mark.parametrize(
    ("key", "question", "state", "shown"),
    [
        ("o", "Force open breaker booking → venue *?", "forced_open", "✖ forced-open"),
        ("x", "Disable breaker booking → venue *?", "disabled", "○ disabled"),
    ],
    ids=["force-open", "disable"],
)
async def test_force_open_and_disable_are_confirmed_and_recorded(
    orch: Orch, key: str, question: str, state: str, shown: str, as_source: SourceOf
) -> None:
    await a_breaker(orch)
    app = console_on(await as_source(orch), first_pane="breakers")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "breakers")
        await on_screen(app, "● closed")
        await pilot.press(key)
        await on_screen(app, question, "It is ● closed.")
        await confirm_with_reason(app, pilot, "incident 42")
        await on_screen(app, shown)
        breaker = await orch.breakers.find("booking", "venue")
        assert breaker.current_state == state
        latest, *_ = await orch.breakers.history(breaker.id)
        assert (latest.to_state, latest.actor) == (state, app.actor)
        assert latest.trigger.endswith("by operator: incident 42")


async def test_confirming_without_a_reason_changes_nothing(orch: Orch, as_source: SourceOf) -> None:
    await a_breaker(orch)
    app = console_on(await as_source(orch), first_pane="breakers")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "breakers")
        await pilot.press("o", "tab", "enter")  # Cancel -> Force open, no reason given
        await on_screen(app, "a reason is required")
        await pilot.press("escape")
        assert (await orch.breakers.find("booking", "venue")).current_state == "closed"


async def test_readonly_hides_reset_force_open_and_disable(orch: Orch, as_source: SourceOf) -> None:
    breaker = await a_breaker(orch)
    await orch.breakers.force_open(breaker.id, actor="t", reason="drill")
    app = console_on(await as_source(orch), readonly=True, first_pane="breakers")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "breakers")
        footer = (await on_screen(app, "✖ forced-open", "⏎ Detail")).splitlines()[-1]
        for word in ("Reset", "Force open", "Disable"):
            assert word not in footer
        for key in ("r", "o", "x"):
            await pilot.press(key)
            assert not isinstance(app.screen, ConfirmMutationScreen)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = await on_screen(app, "The breaker's settings, 24-hour figures")
        assert "Close the breaker" not in help_text
        await pilot.press("escape")

        await pilot.press("enter")  # the detail: the same keys are gone there too
        await pane_loaded(app, "breaker")
        footer = (await on_screen(app, "Breakers › booking → venue *")).splitlines()[-1]
        assert "Reset" not in footer
        await pilot.press("r")
        assert not isinstance(app.screen, ConfirmMutationScreen)
    assert (await orch.breakers.get(breaker.id)).current_state == "forced_open"


async def test_detail_shows_settings_metrics_and_history(
    orch: Orch,
    caller: ServiceCaller,
    http_server: SwitchableServer,
    clock: ManualClock,
    as_source: SourceOf,
) -> None:
    await call_venue(caller, 3)
    await http_server.set_mode("error")
    await call_venue(caller, 5)
    await clock.advance(90)
    breaker = await orch.breakers.find("booking", "venue")
    await orch.breakers.reset(breaker.id, actor="bob@ops", reason="venue redeployed")
    await orch.events.flush()  # the call path writes its call records in batches
    app = console_on(await as_source(orch), first_pane="breakers")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "breakers")
        await pilot.press("enter")
        await pane_loaded(app, "breaker")
        assert isinstance(app.active_pane, BreakerDetailPane)
        text = await on_screen(
            app,
            "Breakers › booking → venue *",
            "● closed for 0s · 0/5 failures",
            "why: reset by operator: venue redeployed",
            "trips after 5 failures · open 60s · closes after 3 good trials (1 at a time)",
            "24h 8 calls, 5 failed (37.5% ok) · 2 state changes · avg outage 1m",
            "peak 5 at 12:00",  # the ManualClock's day starts at noon UTC
            "bob@ops",
        )
        # The history, newest first, with who and why.
        history = text[text.index("History") :]
        assert history.index("open → ● closed") < history.index("closed → ✖ open")
        assert "reset by operator: venue redeployed" in history
        assert "5 consecutive failures; last:" in history

        await pilot.press("escape")
        await pane_loaded(app, "breakers")


async def test_detail_follows_its_breaker_and_acts_on_it(orch: Orch, as_source: SourceOf) -> None:
    breaker = await a_breaker(orch)
    other = await a_breaker(orch, target="catering")
    app = console_on(await as_source(orch), first_pane="breakers")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "breakers")
        await pilot.press("down", "enter")  # booking → venue, after booking → catering
        await pane_loaded(app, "breaker")
        pane = app.active_pane
        assert isinstance(pane, BreakerDetailPane)
        assert pane.concerns({"topic": "breaker", "id": str(other.id)}) is False
        assert pane.concerns({"topic": "breaker", "id": str(breaker.id)}) is True

        await orch.breakers.disable(breaker.id, actor="carol@ops", reason="load test")
        await on_screen(app, "○ disabled for", "closed → ○ disabled", "carol@ops", timeout=1.0)

        await pilot.press("r")
        await on_screen(app, "Reset breaker booking → venue *?", "It is ○ disabled.")
        await confirm_with_reason(app, pilot, "load test over")
        await on_screen(app, "disabled → ● closed", app.actor)
        assert (await orch.breakers.get(breaker.id)).current_state == "closed"


async def test_an_empty_breakers_pane_says_where_breakers_come_from(
    orch: Orch, as_source: SourceOf
) -> None:
    app = console_on(await as_source(orch), first_pane="breakers")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "breakers")
        await on_screen(app, "no breakers yet", "Breakers [0]")
        await pilot.press("enter")
        await on_screen(app, "No breaker selected.")
        await pilot.press("r")
        assert not isinstance(app.screen, ConfirmMutationScreen)


async def test_breakers_pane_under_no_color(
    orch: Orch, monkeypatch: pytest.MonkeyPatch, as_source: SourceOf
) -> None:
    """Every state reads by its symbol and word alone, and the rows fit 80 columns."""
    monkeypatch.setenv("NO_COLOR", "1")
    states = {"venue": None, "catering": "force_open", "payments": "disable", "photos": "reset"}
    for target, action in states.items():
        breaker = await a_breaker(orch, target=target)
        if action is not None:
            await getattr(orch.breakers, action)(breaker.id, actor="t", reason="r")
    app = console_on(await as_source(orch), first_pane="breakers")
    assert app.no_color
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "breakers")
        footer = "⏎ Detail  r Reset  o Force open  x Disable  ? Help  / Filter  : Pane  q Quit"
        text = await on_screen(app, "✖ forced-open", "○ disabled", "● closed", footer)
        lines = text.splitlines()
        assert len(lines) == 24
        assert all(len(line) <= 80 for line in lines)
        assert footer in lines[-1]
        assert "✖ 1 open (1 forced)  ◐ 0 half-open  ● 2 closed  ○ 1 disabled" in text
        for header in ("SOURCE → TARGET", "ENDPOINT", "STATE", "FAILS", "FOR", "NEXT TRY"):
            assert header in lines[3], f"{header} not visible:\n{text}"
