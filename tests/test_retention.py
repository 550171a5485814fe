"""History retention: call events, finished workflows' timelines, breaker transitions and
the audit log removed in batches once past their windows; nothing newer, nothing of a
workflow still running; one daemon at a time a table; windows validated."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from orchcore import ManualClock, Orch, Settings
from orchcore.callpath.events import CallEvent
from orchcore.daemon.runner import Daemon, DaemonConfig
from orchcore.errors import ValidationFailed
from orchcore.retention import History
from orchcore.retention.history import LOCK_KEYS, RETENTION_LOCK_CLASS
from orchcore.saga.status import WorkflowStatus
from tests.support.cli import run_orch
from tests.support.polling import eventually

DAY = 86_400.0


def call_event(at: datetime) -> CallEvent:
    return CallEvent(
        event_type="response",
        trace_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        parent_span_id=None,
        source="booking",
        target="venue",
        method="POST",
        endpoint="/reserve",
        status_code=200,
        duration_ms=3,
        error=None,
        correlation_id=None,
        at=at,
    )


async def record_calls(orch: Orch, count: int) -> None:
    orch.events.record_many(call_event(orch.clock.now()) for _ in range(count))
    await orch.events.flush()


async def count_rows(orch: Orch, table: History) -> int:
    # The table name comes from the enum, never from input.
    return int(await orch.db.fetchval(f"SELECT count(*) FROM {table.value}"))


async def test_call_events_past_the_window_go_in_batches(orch: Orch, clock: ManualClock) -> None:
    await record_calls(orch, 7)
    await clock.advance(31 * DAY)  # those seven are past the 30-day default now
    await record_calls(orch, 2)
    orch.retention.batch_size = 3

    assert await orch.retention.prune_batch(History.SERVICE_EVENTS) == 3  # one batch
    removed = await orch.retention.prune(max_batches=20)
    assert removed[History.SERVICE_EVENTS] == 4  # the rest: 3, then 1 (a short batch ends it)
    assert await count_rows(orch, History.SERVICE_EVENTS) == 2  # the recent ones stay
    assert await orch.retention.prune_batch(History.SERVICE_EVENTS) == 0


async def test_a_round_stops_at_max_batches(orch: Orch, clock: ManualClock) -> None:
    await record_calls(orch, 5)
    await clock.advance(31 * DAY)
    orch.retention.batch_size = 2
    assert (await orch.retention.prune(max_batches=2))[History.SERVICE_EVENTS] == 4
    assert await count_rows(orch, History.SERVICE_EVENTS) == 1  # waits for the next round


async def add_workflow(
    orch: Orch,
    status: WorkflowStatus,
    *,
    started: datetime,
    finished: datetime | None,
    events: int = 3,
) -> uuid.UUID:
    """A workflow row and its timeline (``events`` entries a minute apart from ``started``)."""
    workflow_id = uuid.uuid4()
    await orch.db.execute(
        "INSERT INTO distributed_workflows (id, workflow_name, workflow_definition,"
        " initiating_service, total_steps, current_status, started_at, completed_at)"
        " VALUES ($1, 'booking', '{}', 'booking', 1, $2, $3, $4)",
        workflow_id,
        str(status),
        started,
        finished,
    )
    await orch.db.execute(
        "INSERT INTO workflow_events (workflow_id, event, actor, occurred_at)"
        " SELECT $1, 'step_completed', 'test', $2::timestamptz + n * interval '1 minute'"
        " FROM generate_series(0, $3 - 1) AS n",
        workflow_id,
        started,
        events,
    )
    return workflow_id


async def timeline_lengths(orch: Orch) -> dict[uuid.UUID, int]:
    rows = await orch.db.fetch(
        "SELECT workflow_id, count(*) AS n FROM workflow_events GROUP BY workflow_id"
    )
    return {row["workflow_id"]: row["n"] for row in rows}


async def test_only_finished_workflows_lose_their_old_timelines(
    orch: Orch, clock: ManualClock
) -> None:
    now = clock.now()
    long_ago = now - timedelta(days=100)  # past the 90-day default
    done = await add_workflow(
        orch, WorkflowStatus.COMPLETED, started=long_ago, finished=long_ago, events=5
    )
    cancelled = await add_workflow(
        orch, WorkflowStatus.CANCELLED, started=long_ago, finished=long_ago
    )
    running = await add_workflow(orch, WorkflowStatus.RUNNING, started=long_ago, finished=None)
    paused = await add_workflow(orch, WorkflowStatus.PAUSED, started=long_ago, finished=None)
    needs_person = await add_workflow(
        orch, WorkflowStatus.COMPENSATION_FAILED, started=long_ago, finished=long_ago
    )
    # Started long ago but finished last week: its timeline stays whole until it is old.
    recent = await add_workflow(
        orch, WorkflowStatus.COMPLETED, started=long_ago, finished=now - timedelta(days=7)
    )
    orch.retention.batch_size = 2

    removed = await orch.retention.prune(max_batches=20)

    assert removed[History.WORKFLOW_EVENTS] == 8  # 5 + 3, two at a time
    left = await timeline_lengths(orch)
    assert done not in left and cancelled not in left
    assert left == {running: 3, paused: 3, needs_person: 3, recent: 3}


async def test_breaker_transitions_and_audit_entries_past_their_windows_go(
    orch: Orch, clock: ManualClock
) -> None:
    breaker = await orch.breakers.create(
        {"service_name": "booking", "target_service": "venue"}, actor="tester"
    )
    await orch.breakers.force_open(breaker.id, actor="tester", reason="venue maintenance")
    await clock.advance(100 * DAY)
    await orch.breakers.reset(breaker.id, actor="tester", reason="maintenance over")

    await orch.retention.prune()
    history = await orch.breakers.history(breaker.id)
    assert [t.to_state for t in history] == ["closed"]  # the 100-day-old force-open went
    audit = "SELECT action FROM audit_log ORDER BY id"
    assert [r["action"] for r in await orch.db.fetch(audit)] == [
        "breaker.create",
        "breaker.force-open",
        "breaker.reset",
    ]  # the audit log keeps a year

    await clock.advance(300 * DAY)
    await orch.retention.prune()
    assert [r["action"] for r in await orch.db.fetch(audit)] == ["breaker.reset"]
    assert await orch.breakers.history(breaker.id) == []  # its reset is 300 days old too


async def test_zero_keeps_history_forever(dsn: str, clock: ManualClock) -> None:
    settings = Settings(database_url=dsn, service_event_retention_days=0)
    orch = await Orch.open(settings, clock=clock, start_discovery=False)
    try:
        await record_calls(orch, 3)
        await clock.advance(3650 * DAY)
        assert (await orch.retention.prune())[History.SERVICE_EVENTS] == 0
        assert await count_rows(orch, History.SERVICE_EVENTS) == 3
    finally:
        await orch.close()


async def test_a_table_another_daemon_prunes_is_left_to_it(
    orch: Orch, clock: ManualClock, dsn: str
) -> None:
    await record_calls(orch, 4)
    await clock.advance(31 * DAY)
    other = await asyncpg.connect(dsn)  # another daemon, in the middle of a batch
    try:
        key = LOCK_KEYS[History.SERVICE_EVENTS]
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1, $2)", RETENTION_LOCK_CLASS, key)
            assert await orch.retention.prune_batch(History.SERVICE_EVENTS) is None
            assert (await orch.retention.prune())[History.SERVICE_EVENTS] == 0
            assert await count_rows(orch, History.SERVICE_EVENTS) == 4
        assert (await orch.retention.prune())[History.SERVICE_EVENTS] == 4  # let go at commit
    finally:
        await other.close()


async def test_the_daemon_prunes_history(orch: Orch, clock: ManualClock) -> None:
    await record_calls(orch, 3)
    await clock.advance(31 * DAY)
    await record_calls(orch, 1)
    config = DaemonConfig(
        name="retention-test",
        serve_api=False,
        health_checks=False,
        workflows=False,
        push=False,
        bus_upkeep=False,
    )
    daemon = Daemon(orch, config)
    running = asyncio.create_task(daemon.run())
    try:

        async def pruned() -> bool:
            return await count_rows(orch, History.SERVICE_EVENTS) == 1

        await eventually(pruned, timeout=10)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(running, 15)


@pytest.mark.parametrize(
    "variable",
    [
        "ORCH_SERVICE_EVENT_RETENTION_DAYS",
        "ORCH_WORKFLOW_EVENT_RETENTION_DAYS",
        "ORCH_BREAKER_TRANSITION_RETENTION_DAYS",
        "ORCH_AUDIT_RETENTION_DAYS",
    ],
)
def test_a_negative_window_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "-1")
    with pytest.raises(ValidationFailed) as refused:
        Settings.from_env()
    assert str(refused.value) == (
        f"{variable}: input should be greater than or equal to 0, got '-1'"
    )


def test_windows_have_defaults_and_take_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (
        defaults.service_event_retention_days,
        defaults.workflow_event_retention_days,
        defaults.breaker_transition_retention_days,
        defaults.audit_retention_days,
    ) == (30, 90, 90, 365)
    monkeypatch.setenv("ORCH_AUDIT_RETENTION_DAYS", "0")
    monkeypatch.setenv("ORCH_SERVICE_EVENT_RETENTION_DAYS", "7.5")
    settings = Settings.from_env()
    assert settings.audit_retention_days == 0
    assert settings.service_event_retention_days == 7.5


async def test_the_cli_says_which_window_is_wrong(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_WORKFLOW_EVENT_RETENTION_DAYS", "soon")
    result = await run_orch(dsn, "status")
    assert result.code == 2
    assert result.stderr == (
        "orch: error: ORCH_WORKFLOW_EVENT_RETENTION_DAYS: input should be a valid number,"
        " unable to parse string as a number, got 'soon'\n"
    )
