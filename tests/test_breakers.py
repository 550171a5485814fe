"""Circuit breakers: the state machine with a driven clock, shared state, operators."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from orchcore import ManualClock, Orch, Settings
from orchcore.callpath import ServiceCaller
from orchcore.resilience.breakers import BreakerOpenError
from orchcore.resilience.retry import RetryPolicy
from tests.support.callers import known_callers
from tests.support.http import SwitchableServer
from tests.support.polling import eventually
from tests.support.registry import healthy_service

ONCE = RetryPolicy.single_attempt()


@pytest.fixture
async def caller(orch: Orch, http_server: SwitchableServer) -> ServiceCaller:
    await healthy_service(orch, "venue", [http_server])
    await known_callers(orch, "booking")
    return await orch.caller()


async def call(caller: ServiceCaller, endpoint: str = "/reservations") -> int:
    result = await caller.call("booking", "venue", endpoint, method="GET", retry=ONCE, timeout=2)
    return result.status_code


async def breaker_state(orch: Orch) -> str:
    return (await orch.breakers.find("booking", "venue")).current_state


async def test_opens_after_consecutive_failures_and_rejects_without_calling(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer, clock: ManualClock
) -> None:
    await http_server.set_mode("error")
    for _ in range(5):
        assert await call(caller) == 500
    opened = await orch.breakers.find("booking", "venue")
    assert (opened.current_state, opened.failure_count) == ("open", 5)
    reached = http_server.count()
    with pytest.raises(BreakerOpenError) as caught:
        await call(caller)
    assert http_server.count() == reached  # the target was not contacted
    message = str(caught.value)
    assert "booking → venue *" in message
    assert caught.value.next_attempt_at == clock.now() + timedelta(seconds=60)
    assert "is open: calls rejected until" in message


async def test_a_success_resets_the_consecutive_count(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer
) -> None:
    http_server.script = [(500, {})] * 4 + [(200, {})] + [(500, {})] * 4
    for _ in range(9):
        await call(caller)
    breaker = await orch.breakers.find("booking", "venue")
    assert (breaker.current_state, breaker.failure_count) == ("closed", 4)


async def test_half_open_closes_after_success_threshold(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer, clock: ManualClock
) -> None:
    await http_server.set_mode("error")
    for _ in range(5):
        await call(caller)
    await http_server.set_mode("ok")
    await clock.advance(59)
    with pytest.raises(BreakerOpenError):
        await call(caller)
    await clock.advance(1)
    assert await call(caller) == 200  # trial 1 moves it to half-open
    assert await breaker_state(orch) == "half_open"
    assert await call(caller) == 200
    assert await call(caller) == 200  # third success: closed
    breaker = await orch.breakers.find("booking", "venue")
    assert (breaker.current_state, breaker.failure_count, breaker.success_count) == (
        "closed",
        0,
        0,
    )
    history = await orch.breakers.history(breaker.id)
    assert [(h.from_state, h.to_state) for h in reversed(history)] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert history[-1].trigger.startswith("5 consecutive failures; last: HTTP 500")
    assert history[0].trigger == "3 successful trial calls"


async def test_failed_trial_reopens_and_restarts_the_timer(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer, clock: ManualClock
) -> None:
    await http_server.set_mode("error")
    for _ in range(5):
        await call(caller)
    await clock.advance(60)
    assert await call(caller) == 500
    breaker = await orch.breakers.find("booking", "venue")
    assert breaker.current_state == "open"
    assert breaker.next_attempt_at == clock.now() + timedelta(seconds=60)
    assert (await orch.breakers.history(breaker.id))[0].trigger == "trial call failed: HTTP 500"


async def test_half_open_admits_only_max_calls_at_once(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer, clock: ManualClock
) -> None:
    await http_server.set_mode("error")
    for _ in range(5):
        await call(caller)
    await clock.advance(60)
    http_server.mode, http_server.delay = "slow", 0.5
    reached = http_server.count()
    outcomes = await asyncio.gather(*(call(caller) for _ in range(5)), return_exceptions=True)
    assert sum(1 for o in outcomes if o == 200) == 1
    assert sum(1 for o in outcomes if isinstance(o, BreakerOpenError)) == 4
    assert http_server.count() - reached == 1


async def test_four_xx_is_success_and_429_only_if_configured(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer
) -> None:
    http_server.script = [(404, {})] * 6 + [(429, {})] * 6
    for _ in range(12):
        await call(caller)
    assert await breaker_state(orch) == "closed"

    breaker = await orch.breakers.find("booking", "venue")
    from orchcore.resilience.breakers import BreakerSettings

    await orch.breakers.update_settings(
        breaker.id, BreakerSettings(count_429_as_failure=True), actor="t"
    )
    http_server.script = [(429, {})] * 5
    for _ in range(5):
        await call(caller)
    assert await breaker_state(orch) == "open"


async def test_result_of_an_earlier_generation_is_ignored(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer
) -> None:
    await call(caller)  # creates the breaker
    breakers = orch.breakers
    permit = breakers.admit_cached("booking", "venue", "/reservations")
    assert permit is not None
    breaker = await breakers.find("booking", "venue")
    await breakers.force_open(breaker.id, actor="ops", reason="maintenance")
    await breakers.reset(breaker.id, actor="ops", reason="done")
    for _ in range(10):  # failures reported for the old generation
        await breakers.record(permit, success=False, detail="late")
    after = await breakers.find("booking", "venue")
    assert (after.current_state, after.failure_count) == ("closed", 0)
    assert after.generation == permit.generation + 2


async def test_operator_actions_are_recorded_and_take_effect(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer
) -> None:
    from orchcore.audit import recent_actions

    await call(caller)
    breaker = await orch.breakers.find("booking", "venue")
    await orch.breakers.force_open(breaker.id, actor="alice", reason="venue DB migration")
    with pytest.raises(BreakerOpenError, match="until an operator resets it"):
        await call(caller)
    await orch.breakers.disable(breaker.id, actor="bob", reason="flapping")
    await http_server.set_mode("error")
    for _ in range(10):
        assert await call(caller) == 500
    assert await breaker_state(orch) == "disabled"
    await orch.breakers.reset(breaker.id, actor="carol", reason="fixed")
    assert await breaker_state(orch) == "closed"
    history = await orch.breakers.history(breaker.id)
    assert [(h.to_state, h.actor) for h in history] == [
        ("closed", "carol"),
        ("disabled", "bob"),
        ("forced_open", "alice"),
    ]
    assert history[2].trigger == "force-open by operator: venue DB migration"
    audit = await recent_actions(orch.db.pool, target_kind="breaker")
    assert [a.action for a in audit] == ["breaker.reset", "breaker.disable", "breaker.force-open"]


async def test_reset_needs_a_reason(orch: Orch, caller: ServiceCaller) -> None:
    from orchcore.errors import ValidationFailed

    await call(caller)
    breaker = await orch.breakers.find("booking", "venue")
    with pytest.raises(ValidationFailed, match="reason"):
        await orch.breakers.reset(breaker.id, actor="x", reason=" ")


async def test_closed_breaker_decides_without_the_database(
    orch: Orch, caller: ServiceCaller
) -> None:
    await call(caller)
    trips = orch.breakers.database_round_trips
    for _ in range(50):
        await call(caller)
    assert orch.breakers.database_round_trips == trips


async def test_another_process_sees_transitions_through_notify(
    orch: Orch,
    caller: ServiceCaller,
    http_server: SwitchableServer,
    dsn: str,
    clock: ManualClock,
) -> None:
    other = await Orch.open(Settings(database_url=dsn), clock=clock)
    try:
        other_caller = await other.caller()
        assert await call(other_caller) == 200
        await http_server.set_mode("error")
        for _ in range(5):
            await call(caller)
        # The other engine's cache learns the breaker opened, and rejects in process.
        breaker = await orch.breakers.find("booking", "venue")
        await eventually(
            lambda: (c := other.breakers.cached(breaker.id)) is not None and c.state == "open",
            timeout=5,
        )
        reached = http_server.count()
        with pytest.raises(BreakerOpenError):
            await call(other_caller)
        assert http_server.count() == reached
    finally:
        await other.close()


async def test_most_specific_endpoint_pattern_wins(
    orch: Orch, caller: ServiceCaller, http_server: SwitchableServer
) -> None:
    created = await orch.breakers.create(
        {
            "service_name": "booking",
            "target_service": "venue",
            "endpoint_pattern": "/reservations*",
            "failure_threshold": 2,
            "success_threshold": 1,
            "timeout_duration": 30,
        },
        actor="t",
    )
    await http_server.set_mode("error")
    await call(caller, "/reservations/1")
    await call(caller, "/reservations/2")
    assert (await orch.breakers.get(created.id)).current_state == "open"
    assert await call(caller, "/availability") == 500  # guarded by the '*' breaker, still closed


@pytest.mark.slow
async def test_processes_racing_in_half_open_send_exactly_the_allowed_trials(
    orch: Orch, dsn: str, http_server: SwitchableServer
) -> None:
    """Four orch processes call through one open breaker whose timeout has elapsed:
    exactly half_open_max_calls trial calls reach the target, the rest are rejected."""
    from tests.support.cli import run_orch

    await healthy_service(orch, "venue", [http_server])
    await known_callers(orch, "booking")
    created = await orch.breakers.create(
        {
            "service_name": "booking",
            "target_service": "venue",
            "failure_threshold": 1,
            "success_threshold": 1,
            "timeout_duration": 1,
            "half_open_max_calls": 1,
        },
        actor="t",
    )
    await orch.db.execute(
        "UPDATE circuit_breakers SET current_state = 'open', generation = generation + 1, "
        "next_attempt_at = now() - interval '1 second' WHERE id = $1",
        created.id,
    )
    http_server.mode, http_server.delay = "slow", 6.0  # trials stay in flight meanwhile
    results = await asyncio.gather(
        *(
            run_orch(
                dsn,
                "call",
                "venue",
                "/availability",
                "--source",
                "booking",
                "--timeout",
                "15",
                "--attempts",
                "1",
            )
            for _ in range(4)
        )
    )
    assert http_server.count() == 1
    assert sorted(r.code for r in results) == [0, 1, 1, 1]
    rejected = [r.stderr for r in results if r.code == 1]
    assert all("circuit breaker booking → venue * is half-open" in e for e in rejected), rejected
    assert (await orch.breakers.get(created.id)).current_state == "closed"
