"""Queues: depth and dead letters from the real bus, the depth chart from the daemons'
samples, a queue's dead letters, redrive and purge confirmed and audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.widgets import Button, Input

from orchcore import ManualClock, Orch
from orchcore.audit import recent_actions
from orchcore.bus.models import DepthSample, MessageEvent
from orchtui.app import OrchConsole
from orchtui.panes.depth_chart import depth_chart, legend, nice_top
from orchtui.panes.queue_detail import QueueDetailPane
from orchtui.panes.queue_view import MESSAGE_STATES, QUEUE_STATES
from orchtui.screens import ConfirmMutationScreen, HelpScreen
from orchtui.symbols import state_symbol
from tests.console.helpers import SIZE, on_screen, pane_loaded
from tests.console.seed_bus import BOOKINGS, ERROR, a_queue, dead_letter, send
from tests.console.sources import SourceOf, console_on

OPERATOR = "alice@console-test"
QUEUE = BOOKINGS
DLQ = f"{QUEUE}_dlq"


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_OPERATOR", OPERATOR)


async def confirm_with_reason(app: OrchConsole, pilot: object, reason: str) -> None:
    """The question is up with Cancel focused; give a reason and confirm with Enter."""
    assert isinstance(app.screen, ConfirmMutationScreen)
    focused = app.screen.focused
    assert isinstance(focused, Button)
    assert focused.id == "cancel"
    await pilot.press("shift+tab")  # type: ignore[attr-defined]
    assert isinstance(app.screen.focused, Input)
    assert app.screen.focused.id == "confirm-reason"
    await pilot.press(*reason, "enter")  # type: ignore[attr-defined]
    assert not isinstance(app.screen, ConfirmMutationScreen)


# -- the list --------------------------------------------------------------------------------


async def test_the_pane_lists_queues_with_depth_and_dead_letters(
    orch: Orch, as_source: SourceOf
) -> None:
    await a_queue(orch)
    await a_queue(orch, "guest_updates", monitoring_config={"alert_on_backlog": 1})
    await send(orch, 5)
    await dead_letter(orch, 2)  # two of the five gave up; three wait
    await send(orch, 4, first=6)
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "queues")
        text = await on_screen(app, "Queues [2]", "✖ booking_events", "○ guest_updates")
        for header in ("QUEUE", "READY", "FLIGHT", "DELAYED", "DEAD", "IN/m", "OUT/m", "OLDEST"):
            assert header in text
        row = next(line for line in text.splitlines() if "✖ booking_events" in line)
        # ready, in flight, delayed, dead
        assert row.split()[3:8] == ["7", "0", "0", "✖", "2"], row
        assert "7 ready · 0 in flight · 0 delayed · ✖ 2 dead letters" in text
        # the highlighted queue in words, and where its dead letters go
        await on_screen(app, "✖ dead letters  booking_events · queue", f"1 retry, then {DLQ}")
        assert DLQ not in row  # its dead-letter queue is its DEAD column, not a row

        await send(orch, 1, queue="guest_updates")  # the pane follows by itself
        await on_screen(app, "8 ready", "▲ guest_updates")  # over its backlog threshold


async def test_the_depth_chart_draws_the_daemons_samples(
    orch: Orch, clock: ManualClock, as_source: SourceOf
) -> None:
    await a_queue(orch)
    for batch in range(4):  # a sample each 5 s, the queue deepening
        await send(orch, 3, first=batch * 3 + 1)
        await orch.bus.sample_depths()
        await clock.advance(5)
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "queues")
        text = await on_screen(
            app, f"Depth of {QUEUE}, last 15 min", "▄ ready 12", "× dead letters 0", "now"
        )
        assert "-15m" in text and "-10m" in text and "-5m" in text
        assert "peak 12 5s ago" in text
        plot = text[text.index("┌") :]
        assert set(plot) & set("▀▄█▌▐▖▗▘▝▙▚▛▜▞▟")  # the ready line is drawn


async def test_a_queue_with_no_samples_says_why_there_is_no_chart(
    orch: Orch, as_source: SourceOf
) -> None:
    await a_queue(orch)
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "queues")
        await on_screen(app, "no depth samples in the last 15 minutes", "is a daemon running?")


async def test_an_empty_queues_pane_says_how_to_make_a_queue(
    orch: Orch, as_source: SourceOf
) -> None:
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "queues")
        await on_screen(app, "no queues yet", "Queues [0]")
        await pilot.press("enter")
        await on_screen(app, "No queue selected.")
        await pilot.press("R")
        assert not isinstance(app.screen, ConfirmMutationScreen)


# -- one queue -------------------------------------------------------------------------------


async def test_enter_opens_the_queue_with_its_dead_letters(orch: Orch, as_source: SourceOf) -> None:
    await a_queue(orch)
    await send(orch, 3)
    await dead_letter(orch, 3)
    await send(orch, 1, first=4)
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "queues")
        await pilot.press("enter")
        await pane_loaded(app, "queue")
        assert isinstance(app.active_pane, QueueDetailPane)
        text = await on_screen(
            app,
            f"Queues › {QUEUE}",
            f"Dead letters in {DLQ} (3)",
            "MSG",
            "ATTEMPTS",
            "LAST ERROR",
            f"why: {ERROR}",  # the highlighted dead letter's error, whole
            "Recent messages, newest first",
        )
        dead = text[text.index("Dead letters in") : text.index("why:")]
        assert dead.count("booking.confirmed") == 3
        assert "notification answered 500" in dead  # each row's error, cut to fit
        assert "· 2 attempts ·" in text  # one retry allowed: gave up on the second
        assert "✖ dead lettered" in text  # the log's status of each, with its symbol

        await pilot.press("i")  # the payload, on demand
        text = await on_screen(app, "Payload of message", '"booking_id": "bk-')
        assert '"guests": 120' in text
        await pilot.press("i")
        await on_screen(app, "Recent messages, newest first")

        await pilot.press("escape")
        await pane_loaded(app, "queues")


# -- redrive and purge -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["list", "detail"])
async def test_redrive_names_the_count_and_puts_the_messages_back(
    orch: Orch, where: str, as_source: SourceOf
) -> None:
    await a_queue(orch)
    await send(orch, 2)
    await dead_letter(orch, 2)
    assert (await orch.bus.metrics(QUEUE)).pending_messages == 0
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "queues")
        await on_screen(app, "✖ booking_events")
        if where == "detail":
            await pilot.press("enter")
            await pane_loaded(app, "queue")
        await pilot.press("R")
        text = await on_screen(app, f"Redrive 2 dead letters of queue {QUEUE}?")
        assert f"All 2 go back from {DLQ} to {QUEUE}" in text
        assert f"acting as {app.actor}" in text

        await pilot.press("enter")  # a reflexive Enter lands on Cancel
        assert not isinstance(app.screen, ConfirmMutationScreen)
        assert (await orch.bus.metrics(QUEUE)).failed_messages == 2

        await pilot.press("R")
        await confirm_with_reason(app, pilot, "SMTP relay fixed")
        await on_screen(app, "Redrove 2 dead letters")  # the toast
        metrics = await orch.bus.metrics(QUEUE)
        assert (metrics.failed_messages, metrics.pending_messages) == (0, 2)
        if where == "list":
            await on_screen(app, "● booking_events")
        else:
            await on_screen(app, f"Dead letters in {DLQ} (0)")
    received = await orch.bus.receive(QUEUE, {"max_messages": 10}, consumer=None)
    assert sorted(m.correlation_id or "" for m in received.messages) == ["bk-1", "bk-2"]
    assert all(m.retry_count == 0 for m in received.messages)  # the count starts again
    entry, *_ = await recent_actions(orch.db.pool, target_kind="message_queue", target_id=QUEUE)
    assert (entry.actor, entry.reason) == (app.actor, "SMTP relay fixed")
    assert entry.action == "dead_letters.redrive"


async def test_purge_asks_for_the_queues_name(orch: Orch, as_source: SourceOf) -> None:
    await a_queue(orch)
    await send(orch, 2)
    await dead_letter(orch, 2)
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "queues")
        await on_screen(app, "✖ booking_events")
        await pilot.press("P")
        text = await on_screen(
            app, f"Purge 2 dead letters of queue {QUEUE}?", f"Type the queue's name ({QUEUE})"
        )
        assert "for good and cannot be" in text
        await pilot.press("shift+tab", "shift+tab")  # Cancel -> reason -> the name
        assert isinstance(app.screen, ConfirmMutationScreen)
        assert isinstance(app.screen.focused, Input)
        assert app.screen.focused.id == "confirm-extra"
        await pilot.press(*"booking", "tab", *"poison messages", "enter")
        await on_screen(app, f"type the queue's name, {QUEUE}, to purge")
        assert isinstance(app.screen, ConfirmMutationScreen)  # still asking
        assert (await orch.bus.metrics(QUEUE)).failed_messages == 2

        app.screen.query_one("#confirm-extra", Input).value = QUEUE
        await pilot.press("enter")  # the focus is back on the name
        assert not isinstance(app.screen, ConfirmMutationScreen)
        await on_screen(app, "Purged 2 dead letters")
        await on_screen(app, "○ booking_events")  # nothing left in it at all
    assert (await orch.bus.metrics(QUEUE)).failed_messages == 0
    assert await orch.bus.dead_letters(QUEUE) == []
    entry, *_ = await recent_actions(orch.db.pool, target_kind="message_queue", target_id=QUEUE)
    assert (entry.actor, entry.reason) == (app.actor, "poison messages")
    assert entry.action == "dead_letters.purge"


async def test_nothing_to_redrive_says_so(orch: Orch, as_source: SourceOf) -> None:
    await a_queue(orch)
    await a_queue(orch, "audit_trail", dlq_enabled=False)
    app = console_on(await as_source(orch), first_pane="queues")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pane_loaded(app, "queues")
        await on_screen(app, "○ audit_trail", "○ booking_events")
        await pilot.press("R")  # audit_trail, the first row: dead-lettering is off
        await on_screen(app, "Queue audit_trail has no dead-letter", "nothing to redrive.")
        await pilot.press("down", "P")  # (the toast wraps where it wraps)
        await on_screen(app, f"Queue {QUEUE} has no dead", "letters to purge.")
        assert not isinstance(app.screen, ConfirmMutationScreen)


async def test_readonly_hides_redrive_and_purge(orch: Orch, as_source: SourceOf) -> None:
    await a_queue(orch)
    await send(orch, 1)
    await dead_letter(orch, 1)
    app = console_on(await as_source(orch), readonly=True, first_pane="queues")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "queues")
        footer = (await on_screen(app, "✖ booking_events", "⏎ Open")).splitlines()[-1]
        assert "Redrive" not in footer and "Purge" not in footer
        for key in ("R", "P"):
            await pilot.press(key)
            assert not isinstance(app.screen, ConfirmMutationScreen)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = await on_screen(app, "The queue's recent messages and its dead letters")
        assert "Send every dead letter back" not in help_text
        await pilot.press("escape")

        await pilot.press("enter")  # the queue: the same keys are gone there too
        await pane_loaded(app, "queue")
        footer = (await on_screen(app, f"Queues › {QUEUE}", "i Payload")).splitlines()[-1]
        assert "Redrive" not in footer and "Purge" not in footer
        await pilot.press("R")
        assert not isinstance(app.screen, ConfirmMutationScreen)
    assert (await orch.bus.metrics(QUEUE)).failed_messages == 1


async def test_queues_pane_under_no_color(
    orch: Orch, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, as_source: SourceOf
) -> None:
    """States read by their symbol and word alone, the chart by its marks, in 80x24."""
    monkeypatch.setenv("NO_COLOR", "1")
    await a_queue(orch)
    await a_queue(orch, "guest_updates")
    await send(orch, 3)
    await dead_letter(orch, 1)
    for _ in range(3):
        await orch.bus.sample_depths()
        await clock.advance(5)
    app = console_on(await as_source(orch), first_pane="queues")
    assert app.no_color
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "queues")
        footer = "⏎ Open  R Redrive  P Purge  ? Help  / Filter  : Pane  q Quit"
        text = await on_screen(
            app, "✖ booking_events", "○ guest_updates", "▄ ready 2", "× dead letters 1", footer
        )
        lines = text.splitlines()
        assert len(lines) == 24
        assert all(len(line) <= 80 for line in lines)
        assert footer in lines[-1]
        for header in ("QUEUE", "READY", "FLIGHT", "DELAYED", "DEAD", "IN/m", "OUT/m", "OLDEST"):
            assert header in lines[3], f"{header} not visible:\n{text}"
        assert "✖ dead letters  booking_events" in text  # the state in words too


# -- the Overview ------------------------------------------------------------------------------


async def test_overview_counts_queues_and_lists_a_growing_dead_letter_queue(
    orch: Orch, clock: ManualClock, as_source: SourceOf
) -> None:
    await a_queue(orch)
    await a_queue(orch, "guest_updates")
    await send(orch, 4)
    await dead_letter(orch, 1)
    await orch.bus.sample_depths()  # 1 dead letter at the start of the window
    await clock.advance(60)
    await dead_letter(orch, 2)
    await orch.bus.sample_depths()
    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        await on_screen(
            app,
            "Queues     2 total  depth 2  oldest ",  # (PGMQ's age: the database's clock)
            "s  ✖ 2 dead letters",
            f"✖ {QUEUE}  2 dead letters, +1 in 15m",
        )


async def test_overview_without_queues(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        text = await on_screen(app, "Queues", "none yet")
        assert "dead letters" not in text


# -- pure: the chart at fixed times, the vocabulary ---------------------------------------------


def samples(*ready: int, every: float = 5, dead: int = 0) -> list[DepthSample]:
    start = ManualClock().now() - timedelta(seconds=every * (len(ready) - 1))
    return [
        DepthSample(
            queue_name=QUEUE,
            sampled_at=start + timedelta(seconds=every * index),
            ready=value,
            in_flight=0,
            delayed=0,
            dead_letters=dead,
            sent_total=0,
            acked_total=0,
        )
        for index, value in enumerate(ready)
    ]


def test_the_y_axis_ends_on_a_round_number() -> None:
    assert [nice_top(p) for p in (0, 1, 3, 7, 11, 22, 45, 99, 101, 1234)] == [
        2, 2, 3, 8, 15, 30, 50, 100, 150, 1500,
    ]  # fmt: skip


def test_the_chart_spans_fifteen_minutes_to_now() -> None:
    now = ManualClock().now()
    drawn = depth_chart(samples(0, 5, 10, 20), now, width=60, height=8).plain
    lines = drawn.splitlines()
    assert len(lines) == 8 and all(len(line) <= 60 for line in lines)
    assert lines[-1].split() == ["-15m", "-10m", "-5m", "now"]
    assert lines[1].startswith("20┤")  # the peak is the top
    # Samples of the last 15 seconds only: everything is drawn at the right edge.
    assert all(not line[4:50].strip("│ ") for line in lines[1:-2])


def test_the_chart_breaks_where_nobody_sampled() -> None:
    now = ManualClock().now()
    steady = samples(*([8] * 181))  # every 5 s for 15 minutes
    # Nobody sampled from 10 to 5 minutes ago: far longer than a daemon takes.
    gap = [s for s in steady if not 300 < (now - s.sampled_at).total_seconds() < 600]

    def level(drawn: str) -> str:  # the row the steady line runs along
        return next(line for line in drawn.splitlines() if "▄" in line or "▀" in line)

    whole = level(depth_chart(steady, now, width=64, height=8).plain)
    broken = level(depth_chart(gap, now, width=64, height=8).plain)
    middle = slice(len(whole) // 2 - 5, len(whole) // 2 + 5)
    assert whole[middle].strip() and not broken[middle].strip()


def test_the_legend_gives_the_latest_values_and_the_peak() -> None:
    now = ManualClock().now()
    text = legend(samples(3, 9, 4, dead=2), now).plain
    assert text == "▄ ready 4  · in flight 0  × dead letters 2  peak 9 5s ago"
    stale = legend(samples(3, 9, 4), now + timedelta(minutes=2)).plain
    assert stale.endswith("· last sample 2m ago")
    assert legend([], now).plain == ""  # the chart says why there is nothing


def test_every_message_status_and_queue_state_has_a_symbol() -> None:
    assert set(MESSAGE_STATES) == set(MessageEvent)
    borrowed = [*MESSAGE_STATES.values(), *(state for state, _ in QUEUE_STATES.values())]
    assert all(state_symbol(state) != "?" for state in borrowed)
