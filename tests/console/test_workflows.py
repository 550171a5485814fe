"""Workflows: live sagas on screen, quick filters, the detail, and the operator's actions."""

from __future__ import annotations

import time
from typing import Any

import pytest
from textual.widgets import Button, Input

from orchcore import ManualClock, Orch
from orchcore.audit import recent_actions
from orchtui.app import OrchConsole
from orchtui.panes.workflow_detail import WorkflowDetailPane
from orchtui.panes.workflows import WorkflowsPane
from orchtui.screens import ConfirmMutationScreen, HelpScreen
from orchtui.widgets import KeyedTable
from tests.console.helpers import SIZE, off_screen, on_screen, pane_loaded, table_keys
from tests.console.seed import STORY_START, seed_story
from tests.console.sources import SourceOf, console_on
from tests.support.callers import known_callers
from tests.support.polling import eventually
from tests.support.sagas import BOOKING, Env

OPERATOR = "alice@console-test"


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_OPERATOR", OPERATOR)


async def start_pending(orch: Orch, correlation_id: str) -> str:
    """A booking workflow nobody drives: it stays pending until an operator acts."""
    started = await orch.workflows.start(
        {
            "workflow_name": "booking",
            "correlation_id": correlation_id,
            "initiating_service": "booking",
            "context_data": {"wedding_id": "w-1"},
        },
        actor="planner",
    )
    return str(started.workflow_id)


@pytest.fixture
async def booking(orch: Orch) -> Orch:
    await orch.workflow_definitions.register(BOOKING, actor="t")
    await known_callers(orch, "booking")
    return orch


async def confirm_with_reason(app: OrchConsole, pilot: Any, reason: str) -> None:
    """The question is up with Cancel focused; give a reason and confirm with Enter."""
    assert isinstance(app.screen, ConfirmMutationScreen)
    focused = app.screen.focused
    assert isinstance(focused, Button)
    assert focused.id == "cancel"
    await pilot.press("shift+tab")
    assert isinstance(app.screen.focused, Input)
    assert app.screen.focused.id == "confirm-reason"
    await pilot.press(*reason, "enter")
    assert not isinstance(app.screen, ConfirmMutationScreen)


def cell(app: OrchConsole, key: str, column: int) -> str:
    table = app.screen.query_one("#workflows-table", KeyedTable)
    return str(table.get_row(key)[column])


async def select(app: OrchConsole, pilot: Any, key: str) -> None:
    """Move the cursor to the workflow's row."""
    table = app.screen.query_one("#workflows-table", KeyedTable)
    await eventually(lambda: key in table.shown_keys, message=f"row {key}")
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()
    assert table.selected_key == key


async def timeline(orch: Orch, workflow_id: str) -> list[Any]:
    return (await orch.workflows.status(workflow_id)).execution_timeline


# -- live -------------------------------------------------------------------------------------


async def test_a_retrying_workflow_shows_its_next_try_and_then_its_completion_unprompted(
    env: Env,
    as_source: SourceOf,
) -> None:
    done = await env.start(correlation_id="wed-done")
    await env.until(done, "completed")
    await env.clock.advance(60)
    env.services["catering"].fail["/orders"] = [503]
    moving = await env.start(correlation_id="wed-moving")
    await env.until(moving, "retrying")

    app = console_on(await as_source(env.orch), first_pane="workflows")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "workflows")
        await on_screen(app, "wed-moving", "wed-done", "↻ retrying", "● completed")
        await on_screen(app, "● 1 completed", "↻ 1 retrying")  # the counts
        await on_screen(app, "next now")  # the 100 ms backoff is due (the clock stands still)
        assert table_keys(app) == [moving, done]  # newest first
        assert cell(app, moving, 3) == "1/4"

        await env.clock.advance(1)  # the retry is due: the runner finishes it
        await env.until(moving, "completed")
        committed = time.monotonic()
        await eventually(lambda: cell(app, moving, 0) == "● completed", timeout=1.0)
        assert time.monotonic() - committed < 1.0
        await on_screen(app, "● 2 completed", "↻ 0 retrying", timeout=1.0)
        assert cell(app, moving, 3) == "4/4"


async def test_an_operator_change_elsewhere_is_on_screen_within_a_second(
    booking: Orch, as_source: SourceOf
) -> None:
    workflow_id = await start_pending(booking, "wed-ops")
    app = console_on(await as_source(booking), first_pane="workflows")
    async with app.run_test(size=SIZE):
        await on_screen(app, "○ pending", "wed-ops")
        await booking.workflows.pause(workflow_id, actor="bob@ops", reason="couple called")
        committed = time.monotonic()
        await on_screen(app, "‖ paused", "‖ 1 paused", timeout=1.0)
        assert time.monotonic() - committed < 1.0


# -- quick filters ----------------------------------------------------------------------------


async def test_quick_filters_ask_the_engine_for_statuses(env: Env, as_source: SourceOf) -> None:
    completed = await env.start(correlation_id="wed-completed")
    await env.until(completed, "completed")
    env.services["payment"].always_fail["/charges"] = 402
    compensated = await env.start(correlation_id="wed-compensated")
    await env.until(compensated, "compensated")
    env.services["venue"].always_fail["/reservations/cancel"] = 500
    stuck = await env.start(correlation_id="wed-stuck")
    await env.advance_until(stuck, "compensation_failed", step=0.2)
    del env.services["payment"].always_fail["/charges"]
    env.services["catering"].fail["/orders"] = [503]
    retrying = await env.start(correlation_id="wed-retrying")
    await env.until(retrying, "retrying")
    paused = await env.start(correlation_id="wed-paused")
    await env.until(paused, "completed")
    env.services["catering"].fail["/orders"] = [503]
    paused = await env.start(correlation_id="wed-paused-2")
    await env.until(paused, "retrying")
    await env.orch.workflows.pause(paused, actor="ops", reason="checking")

    app = console_on(await as_source(env.orch), first_pane="workflows")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "workflows")
        text = await on_screen(app, "show [1 all]", "Workflows [6]")
        assert "wed-stuck" in text and "comp failed" in text

        async def shown_after(key: str, title: str) -> list[str]:
            await pilot.press(key)
            await on_screen(app, title)
            pane = app.active_pane
            assert isinstance(pane, WorkflowsPane)
            await eventually(
                lambda: pane.snapshot is not None and pane.snapshot.quick is pane.quick
            )
            return sorted(table_keys(app))

        assert await shown_after("2", "Workflows · active [2]") == sorted([retrying, paused])
        assert await shown_after("3", "Workflows · retrying [1]") == [retrying]
        assert await shown_after("4", "Workflows · intervention [1]") == [stuck]
        assert await shown_after("5", "Workflows · failed [2]") == sorted([stuck, compensated])
        text = await on_screen(app, "[5 failed]")
        assert "[1 all]" not in text

        # ``/`` narrows what the quick filter fetched, by any text on screen.
        await pilot.press("slash", *"stuck", "enter")
        await on_screen(app, "Workflows · failed [1/2] /stuck")
        assert table_keys(app) == [stuck]
        await pilot.press("escape", "1")
        await on_screen(app, "Workflows [6]")


# -- the detail -------------------------------------------------------------------------------


async def test_enter_shows_steps_on_a_time_axis_and_the_timeline(
    dsn: str, as_source: SourceOf
) -> None:
    """The seeded story (scripted participants, a ManualClock): times to the millisecond."""
    from orchcore import Settings

    clock = ManualClock(start=STORY_START)
    orch = await Orch.open(Settings(database_url=dsn), clock=clock, start_discovery=False)
    try:
        await seed_story(orch, clock)
        app = console_on(await as_source(orch), first_pane="workflows")
        async with app.run_test(size=SIZE) as pilot:
            await pane_loaded(app, "workflows")
            listing = await orch.workflows.list_workflows(correlation_id="bk-1043")
            await select(app, pilot, str(listing.workflows[0].id))
            await pilot.press("enter")
            await pane_loaded(app, "workflow")
            pane = app.active_pane
            assert isinstance(pane, WorkflowDetailPane)
            text = await on_screen(
                app,
                "Workflows › full-service-booking bk-1043",
                "↺ compensated · step 2/4 · ran 4.5s",
                "why: charge_deposit: HTTP 402: card declined: insufficient funds",
                "Timeline, newest first",
            )
            # Steps in definition order: the parallel step, then its branches' steps.
            steps = pane.steps_table
            assert steps.shown_keys == [
                "reserve_venue",
                "vendors",
                "order_catering",
                "book_photographer",
                "charge_deposit",
                "send_confirmation",
            ]
            assert "├ order_catering" in text and "└ book_photographer" in text

            bars = {key: str(steps.get_row(key)[5]) for key in steps.shown_keys}
            # One time axis: the branches start together and overlap; the venue's undo
            # comes after everything it undid; what never ran has no bar.
            catering, photos = bars["order_catering"], bars["book_photographer"]
            start = catering.index("█")
            assert photos.index("█") == start
            assert len(photos.rstrip("▒ ")) < len(catering.rstrip("▒ "))
            assert bars["reserve_venue"].index("█") < start
            assert bars["charge_deposit"].index("█") >= len(catering.rstrip("▒ ")) - 1
            assert bars["reserve_venue"].rindex("▒") > bars["order_catering"].rindex("▒")
            assert bars["send_confirmation"].strip() == ""

            # The cursor starts on the step that failed, shown in full with its key.
            assert steps.selected_key == "charge_deposit"
            workflow_id = listing.workflows[0].id
            text = await on_screen(app, f"key {workflow_id}:charge_deposit:forward")
            assert "✖ HTTP 402: card declined" in text
            row = "│ charge_deposit       ✖ failed       1/4    1.1s"
            assert row in text, text

            # The timeline, newest first, with who and what.
            events = text[text.index("Timeline") :]
            assert "+4.50s  daemon:orch-1                     workflow compensated" in events
            log = pane.filter_table
            rows = [[str(c) for c in log.get_row(key)] for key in log.shown_keys]
            assert rows[0][3].startswith("workflow compensated")
            assert rows[-1][:2] == ["+0.00s", "svc:booking"]
            assert rows[-1][3].startswith("workflow started")

            # i swaps the timeline for the step's request and answer, and back.
            await pilot.press("up", "up", "up", "up", "i")  # reserve_venue
            text = await on_screen(app, "Input and output of reserve_venue", '"guests": 120')
            assert "Timeline, newest first" not in text
            await pilot.press("i")
            await on_screen(app, "Timeline, newest first")
    finally:
        await orch.close()


# -- the operator's actions --------------------------------------------------------------------


async def test_compensate_names_the_workflow_defaults_to_cancel_and_is_recorded(
    env: Env, as_source: SourceOf
) -> None:
    workflow_id = await env.start(correlation_id="wed-0612")
    await env.until(workflow_id, "completed")
    app = console_on(await as_source(env.orch), first_pane="workflows")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "workflows")
        await on_screen(app, "wed-0612", "● completed")
        await pilot.press("c")
        text = await on_screen(app, "Compensate workflow booking wed-0612?")
        assert "It is ● completed (step 4/4)" in text
        assert f"acting as {app.actor}" in text

        await pilot.press("enter")  # a reflexive Enter lands on Cancel
        assert not isinstance(app.screen, ConfirmMutationScreen)
        assert await env.status(workflow_id) == "completed"

        await pilot.press("c")
        await confirm_with_reason(app, pilot, "wedding called off")
        await env.until(workflow_id, "compensated")
        await on_screen(app, "↺ compensated")
        requested = [
            e for e in await timeline(env.orch, workflow_id) if e.event == "compensation_requested"
        ]
        assert [(e.actor, e.details["reason"]) for e in requested] == [
            (app.actor, "wedding called off")
        ]
        entry, *_ = await recent_actions(
            env.orch.db.pool, target_kind="workflow", target_id=workflow_id
        )
        assert (entry.action, entry.actor, entry.reason) == (
            "workflow.compensation_requested",
            app.actor,
            "wedding called off",
        )

        # Once undone it cannot be compensated again: the console says so from the core's
        # table before asking anything (a toast wraps its message: the needles are short).
        await pilot.press("c")
        await on_screen(app, "wed-0612 is ↺", "cannot compensate")
        assert not isinstance(app.screen, ConfirmMutationScreen)
        assert app.is_running


async def test_pause_and_resume_with_one_key(booking: Orch, as_source: SourceOf) -> None:
    workflow_id = await start_pending(booking, "wed-pause")
    app = console_on(await as_source(booking), first_pane="workflows")
    async with app.run_test(size=SIZE) as pilot:
        await on_screen(app, "○ pending", "wed-pause")
        await pilot.press("p")
        await on_screen(app, "Pause workflow booking wed-pause?", "It is ○ pending (step 0/4)")
        await confirm_with_reason(app, pilot, "venue double-booked")
        await on_screen(app, "‖ paused")

        await pilot.press("p")
        await on_screen(app, "Resume workflow booking wed-pause?", "It is ‖ paused")
        await confirm_with_reason(app, pilot, "sorted out")
        await on_screen(app, "○ pending", "‖ 0 paused")
    events = [
        (e.event, e.actor, e.details.get("reason")) for e in await timeline(booking, workflow_id)
    ]
    assert events[-2:] == [
        ("paused", app.actor, "venue double-booked"),
        ("resumed", app.actor, "sorted out"),
    ]


async def test_cancel_and_a_second_cancel_refused_before_asking(
    booking: Orch, as_source: SourceOf
) -> None:
    workflow_id = await start_pending(booking, "wed-cancel")
    app = console_on(await as_source(booking), first_pane="workflows")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await on_screen(app, "○ pending", "wed-cancel")
        await pilot.press("x")
        await on_screen(app, "Cancel workflow booking wed-cancel?", "It is ○ pending (step 0/4)")
        await confirm_with_reason(app, pilot, "couple postponed")
        await on_screen(app, "◌ cancelled")
        assert (await booking.workflows.status(workflow_id)).workflow.current_status == "cancelled"

        await pilot.press("x")
        await on_screen(app, "wed-cancel is ◌", "cannot cancel a")
        assert not isinstance(app.screen, ConfirmMutationScreen)
        assert app.is_running
    cancelled = [e for e in await timeline(booking, workflow_id) if e.event == "cancelled"]
    assert [(e.actor, e.details["reason"]) for e in cancelled] == [(app.actor, "couple postponed")]


async def test_skip_takes_the_step_output_as_json(env: Env, as_source: SourceOf) -> None:
    await env.orch.workflow_definitions.register(
        {**BOOKING, "name": "no-undo", "compensation_strategy": "none"}, actor="t"
    )
    env.services["payment"].always_fail["/charges"] = 402
    workflow_id = await env.start("no-undo", correlation_id="wed-skip")
    await env.until(workflow_id, "failed")
    app = console_on(await as_source(env.orch), first_pane="workflows")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "workflows")
        await on_screen(app, "✖ failed", "charge_deposit")  # the step it failed at
        await pilot.press("enter")
        await pane_loaded(app, "workflow")
        pane = app.active_pane
        assert isinstance(pane, WorkflowDetailPane)
        await eventually(lambda: pane.steps_table.selected_key == "charge_deposit")

        await pilot.press("s")
        await on_screen(
            app,
            "Skip step charge_deposit of workflow no-undo wed-skip?",
            "Output of charge_deposit",
        )
        await pilot.press("shift+tab", "shift+tab")  # Cancel -> reason -> output
        assert isinstance(app.screen.focused, Input)
        assert app.screen.focused.id == "confirm-extra"
        await pilot.press(*"[1]", "tab", *"paid by bank transfer", "enter")
        await on_screen(app, "the output must be a JSON object")
        assert isinstance(app.screen, ConfirmMutationScreen)  # still asking
        extra = app.screen.query_one("#confirm-extra", Input)
        extra.value = '{"id": "paid-by-transfer"}'
        await pilot.press("enter")  # the focus is back on the output field
        assert not isinstance(app.screen, ConfirmMutationScreen)

        await env.until(workflow_id, "completed")
        await on_screen(app, "● completed · step 4/4")
    status = await env.orch.workflows.status(workflow_id)
    assert status.workflow.context_data["charge_deposit_id"] == "paid-by-transfer"
    skipped = [e for e in status.execution_timeline if e.event == "step_skipped"]
    assert [(e.actor, e.details["reason"], e.details["output"]) for e in skipped] == [
        (app.actor, "paid by bank transfer", {"id": "paid-by-transfer"})
    ]


async def test_a_stuck_compensation_is_retried_then_marked_done_by_hand(
    env: Env, as_source: SourceOf
) -> None:
    env.services["payment"].always_fail["/charges"] = 402
    env.services["venue"].always_fail["/reservations/cancel"] = 500
    workflow_id = await env.start(correlation_id="wed-stuck")
    await env.advance_until(workflow_id, "compensation_failed", step=0.2)
    app = console_on(await as_source(env.orch), first_pane="workflows")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "workflows")
        await on_screen(app, "⚠ comp failed", "reserve_venue")
        await pilot.press("enter")
        await pane_loaded(app, "workflow")
        text = await on_screen(app, "the undo of reserve_venue failed: needs intervention")
        assert "⚠ failed" in text  # the step's undo column
        pane = app.active_pane
        assert isinstance(pane, WorkflowDetailPane)
        assert pane.steps_table.selected_key == "reserve_venue"

        await pilot.press("C")
        await on_screen(app, "Retry the compensation of workflow booking wed-stuck?")
        await confirm_with_reason(app, pilot, "venue says try again")
        await env.advance_until(workflow_id, "compensating", step=0.2)
        await env.advance_until(workflow_id, "compensation_failed", step=0.2)  # still failing

        def failed_again() -> bool:
            shown = pane.snapshot
            return (
                shown is not None
                and any(
                    s.compensation_status == "failed" and s.compensation_attempts == 2
                    for s in shown.status.steps
                )
                and shown.status.workflow.current_status == "compensation_failed"
            )

        await eventually(failed_again)  # as the operator sees it, before pressing m
        await pilot.press("m")
        await on_screen(
            app,
            "Mark the undo of reserve_venue of workflow booking wed-stuck as",
            "What was done by hand",
        )
        await confirm_with_reason(app, pilot, "cancelled by phone with the venue")
        await env.until(workflow_id, "compensated")
        await on_screen(app, "↺ compensated · step", "✓ by hand")
    events = await timeline(env.orch, workflow_id)
    operator = [(e.event, e.actor, e.details["reason"]) for e in events if e.actor == app.actor]
    assert operator == [
        ("compensation_retry_requested", app.actor, "venue says try again"),
        ("compensation_marked_done", app.actor, "cancelled by phone with the venue"),
    ]


async def test_readonly_hides_every_workflow_action(booking: Orch, as_source: SourceOf) -> None:
    workflow_id = await start_pending(booking, "wed-ro")
    app = console_on(await as_source(booking), readonly=True, first_pane="workflows")
    async with app.run_test(size=SIZE) as pilot:
        footer = (await on_screen(app, "○ pending", "⏎ Detail")).splitlines()[-1]
        for word in ("Retry", "Compensate", "Pause", "Cancel", "Skip"):
            assert word not in footer
        for key in ("R", "c", "p", "x", "s"):
            await pilot.press(key)
            assert not isinstance(app.screen, ConfirmMutationScreen)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = await on_screen(app, "Show workflows needing intervention")
        assert "Undo every completed step" not in help_text
        await pilot.press("escape")

        await pilot.press("enter")
        await pane_loaded(app, "workflow")
        footer = (await on_screen(app, "Workflows › booking wed-ro", "i In/out")).splitlines()[-1]
        for word in ("Retry", "Compensate", "Pause", "Cancel", "Skip", "undo"):
            assert word not in footer
        for key in ("R", "F", "c", "p", "x", "s", "C", "m"):
            await pilot.press(key)
            assert not isinstance(app.screen, ConfirmMutationScreen)
    assert (await booking.workflows.status(workflow_id)).workflow.current_status == "pending"
    assert await recent_actions(booking.db.pool, target_kind="workflow") == []


# -- overview ---------------------------------------------------------------------------------


async def test_overview_counts_workflows_and_names_those_needing_intervention(
    env: Env, as_source: SourceOf
) -> None:
    done = await env.start(correlation_id="wed-done")
    await env.until(done, "completed")
    env.services["payment"].always_fail["/charges"] = 402
    env.services["venue"].always_fail["/reservations/cancel"] = 500
    stuck = await env.start(correlation_id="wed-stuck")
    await env.advance_until(stuck, "compensation_failed", step=0.2)

    app = console_on(await as_source(env.orch))
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        text = await on_screen(
            app,
            "Workflows  2 total  ⚠ 1 needs intervention  ▲ 1 open alert  ● 1 completed",
            "Attention  ⚠ booking wed-stuck  undo of reserve_venue failed",
        )
        assert "comp failed" not in text  # said once, as needing intervention

        del env.services["venue"].always_fail["/reservations/cancel"]
        await env.orch.workflows.retry_compensation(stuck, actor="ops", reason="venue fixed")
        await env.advance_until(stuck, "compensated", step=0.2)
        await on_screen(
            app, "⚠ 0 needs intervention  ▲ 0 open alerts  ● 1 completed", "↺ 1 compensated"
        )
        await off_screen(app, "wed-stuck")
