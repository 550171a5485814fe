"""The guarded call path against real HTTP services: retries, limits, balancing, policies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchcore import ManualClock, Orch
from orchcore.callpath import CallDenied, CallFailed
from orchcore.callpath.tracecontext import TraceContext
from orchcore.resilience.ratelimit import RateLimitedError
from orchcore.resilience.retry import RetryPolicy
from tests.support.callers import known_callers
from tests.support.clockwork import run_driving_clock
from tests.support.http import SwitchableServer
from tests.support.registry import healthy_service

NO_JITTER = RetryPolicy(max_attempts=4, initial_delay=0.1, multiplier=2, max_delay=1, jitter=0)


@pytest.fixture(autouse=True)
async def callers(orch: Orch) -> None:
    await known_callers(orch, "booking", "catering", "marketing")


@pytest.fixture
async def servers() -> AsyncIterator[list[SwitchableServer]]:
    started = [await SwitchableServer().start() for _ in range(4)]
    yield started
    for server in started:
        await server.stop()


async def policy(orch: Orch, name: str, kind: str, config: dict[str, Any], **extra: Any) -> None:
    await orch.mesh.create(
        {
            "policy_name": name,
            "policy_type": kind,
            "target_services": ["venue"],
            "policy_config": config,
            **extra,
        },
        actor="t",
    )


async def test_retries_with_backoff_and_same_idempotency_key(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    caller = await orch.caller()
    http_server.script = [(503, {}), (502, {}), (200, {})]
    result = await run_driving_clock(
        clock,
        caller.call(
            "booking",
            "venue",
            "/reservations",
            json={"date": "2026-06-20"},
            idempotency_key="wf-1:reserve:forward",
            retry=NO_JITTER,
        ),
    )
    assert result.status_code == 200
    assert [a.status_code for a in result.attempts] == [503, 502, 200]
    assert clock.slept[-2:] == [0.1, 0.2]
    keys = {r.headers["idempotency-key"] for r in http_server.requests}
    assert keys == {"wf-1:reserve:forward"}
    assert [r.headers["x-orch-attempt"] for r in http_server.requests] == ["1", "2", "3"]
    assert len({r.headers["x-correlation-id"] for r in http_server.requests}) == 1


async def test_gives_up_after_max_attempts_returning_the_last_answer(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    caller = await orch.caller()
    await http_server.set_mode("error")
    result = await run_driving_clock(
        clock, caller.call("booking", "venue", "/availability", method="GET", retry=NO_JITTER)
    )
    assert result.status_code == 500
    assert len(result.attempts) == 4
    assert clock.slept[-3:] == [0.1, 0.2, 0.4]


async def test_retry_after_is_honoured(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    caller = await orch.caller()
    http_server.script = [(429, {"Retry-After": "3"}), (200, {})]
    result = await run_driving_clock(
        clock, caller.call("booking", "venue", "/availability", method="GET", retry=NO_JITTER)
    )
    assert result.status_code == 200
    assert clock.slept[-1] == 3.0


async def test_non_idempotent_call_without_key_is_not_retried(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    caller = await orch.caller()
    http_server.script = [(503, {}), (200, {})]
    result = await caller.call("booking", "venue", "/reservations", json={}, retry=NO_JITTER)
    assert (result.status_code, len(result.attempts)) == (503, 1)
    assert http_server.count() == 1


async def test_connection_failures_end_in_call_failed(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    caller = await orch.caller()
    await http_server.set_mode("down")
    with pytest.raises(CallFailed) as caught:
        await run_driving_clock(
            clock, caller.call("booking", "venue", "/availability", method="GET", retry=NO_JITTER)
        )
    assert len(caught.value.attempts) == 4
    assert "failed after 4 attempts: connection failed" in str(caught.value)


async def test_timeout_per_attempt(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    caller = await orch.caller()
    await http_server.set_mode("hang")
    with pytest.raises(CallFailed, match=r"timed out after 0\.2s"):
        await caller.call(
            "booking", "venue", "/x", method="GET", timeout=0.2, retry=RetryPolicy.single_attempt()
        )


async def test_token_bucket_admits_exactly_burst_then_rate(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    await policy(
        orch,
        "venue-limit",
        "traffic",
        {"rate_limiting": {"requests_per_second": 2, "burst_size": 5}},
    )
    caller = await orch.caller()

    async def one() -> int | Exception:
        try:
            return (await caller.call("booking", "venue", "/x", method="GET")).status_code
        except RateLimitedError as exc:
            return exc

    burst = await asyncio.gather(*(one() for _ in range(8)))
    assert sum(1 for r in burst if r == 200) == 5
    refused = [r for r in burst if isinstance(r, RateLimitedError)]
    assert len(refused) == 3
    assert "rate limit booking → venue (2/s) exceeded; retry in 0.50s" in str(refused[0])
    assert refused[0].http_status == 429
    await clock.advance(0.5)  # one token refills
    assert await one() == 200
    assert isinstance(await one(), RateLimitedError)
    await clock.advance(10)  # refills up to the burst, no further
    assert [await one() for _ in range(6)].count(200) == 5
    # another source has its own bucket
    assert (await caller.call("catering", "venue", "/x", method="GET")).status_code == 200


async def test_round_robin_is_exact_through_the_call_path(
    orch: Orch, servers: list[SwitchableServer]
) -> None:
    await healthy_service(orch, "venue", servers[:3])
    caller = await orch.caller()
    for _ in range(30):
        await caller.call("booking", "venue", "/x", method="GET")
    assert [s.count() for s in servers[:3]] == [10, 10, 10]


async def test_weighted_policy_follows_weights(orch: Orch, servers: list[SwitchableServer]) -> None:
    ids = await healthy_service(orch, "venue", servers[:2])
    await policy(
        orch,
        "venue-weights",
        "traffic",
        {"load_balancing": {"algorithm": "weighted", "weights": {ids[0]: 1, ids[1]: 3}}},
    )
    caller = await orch.caller()
    for _ in range(40):
        await caller.call("booking", "venue", "/x", method="GET")
    assert [s.count() for s in servers[:2]] == [10, 30]


async def test_outlier_ejection_respects_the_limit_and_grows(
    orch: Orch, clock: ManualClock, servers: list[SwitchableServer]
) -> None:
    ids = await healthy_service(orch, "venue", servers)
    await policy(
        orch,
        "venue-outliers",
        "resilience",
        {
            "outlier_detection": {
                "consecutive_5xx": 2,
                "base_ejection_seconds": 30,
                "max_ejection_percent": 25,
            }
        },
    )
    caller = await orch.caller()
    await servers[0].set_mode("error")
    await servers[1].set_mode("error")

    async def round_of(n: int) -> None:
        for _ in range(n):
            await caller.call(
                "booking", "venue", "/x", method="GET", retry=RetryPolicy.single_attempt()
            )

    await round_of(8)  # round robin: each instance twice → both failing ones hit 2×5xx
    ejected = [
        e for e in orch.discovery.healthy_instances("venue") if caller.outliers.is_ejected(e)
    ]
    assert [e.instance_id for e in ejected] == [ids[0]]  # 25% of 4: only one at a time
    before = servers[0].count()
    await round_of(12)
    assert servers[0].count() == before  # no traffic while ejected
    await clock.advance(30)
    assert not caller.outliers.is_ejected(ejected[0])
    await round_of(20)
    # Ejected again, now for 2 × 30 s (its second ejection); server 1 may take its turn too.
    assert caller.outliers.is_ejected(ejected[0]) or caller.outliers.is_ejected(
        orch.discovery.healthy_instances("venue")[1]
    )


async def test_authorization_deny_refuses_before_calling(
    orch: Orch, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    await policy(
        orch,
        "no-marketing",
        "security",
        {"authorization": {"action": "deny", "rules": [{"from": ["marketing"], "to": ["venue"]}]}},
    )
    caller = await orch.caller()
    with pytest.raises(CallDenied, match="denied by policy no-marketing"):
        await caller.call("marketing", "venue", "/reservations", method="GET")
    assert http_server.count() == 0
    assert (await caller.call("booking", "venue", "/reservations", method="GET")).ok


async def test_authorization_allow_list(orch: Orch, http_server: SwitchableServer) -> None:
    await healthy_service(orch, "venue", [http_server])
    await policy(
        orch,
        "venue-callers",
        "security",
        {
            "authorization": {
                "rules": [{"from": ["booking"], "to": ["venue"], "when": {"method": ["GET"]}}]
            }
        },
    )
    caller = await orch.caller()
    assert (await caller.call("booking", "venue", "/a", method="GET")).ok
    with pytest.raises(CallDenied, match="no allow rule of venue-callers"):
        await caller.call("booking", "venue", "/a", json={}, method="POST")
    with pytest.raises(CallDenied):
        await caller.call("catering", "venue", "/a", method="GET")


async def test_traffic_split_proportions(orch: Orch, servers: list[SwitchableServer]) -> None:
    await healthy_service(orch, "venue", servers[:3], versions=["1.0.0", "1.0.0", "2.0.0"])
    await policy(
        orch,
        "canary",
        "traffic",
        {
            "traffic_splitting": {
                "routes": [
                    {"destination": "1.0.0", "weight": 80},
                    {"destination": "2.0.0", "weight": 20},
                ]
            }
        },
    )
    caller = await orch.caller()
    seen: Counter[str] = Counter()
    for _ in range(1000):
        result = await caller.call("booking", "venue", "/x", method="GET")
        seen[result.instance_id] += 1
    v1 = seen["venue-0"] + seen["venue-1"]
    assert 750 <= v1 <= 850, seen
    assert 150 <= seen["venue-2"] <= 250, seen
    assert abs(seen["venue-0"] - seen["venue-1"]) <= 1  # round robin within the version


async def test_trace_context_and_events(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    caller = await orch.caller()
    parent = TraceContext.new()
    http_server.script = [(500, {})]
    result = await run_driving_clock(
        clock,
        caller.call(
            "booking",
            "venue",
            "/x",
            method="GET",
            traceparent=parent.traceparent,
            correlation_id="wedding-42",
            retry=NO_JITTER,
        ),
    )
    sent = [TraceContext.parse(r.headers["traceparent"]) for r in http_server.requests]
    assert all(t is not None and t.trace_id == parent.trace_id for t in sent)
    assert len({t.span_id for t in sent if t}) == 2  # one span per attempt
    assert result.trace_id == parent.trace_id
    await orch.events.flush()
    rows = await orch.db.fetch(
        "SELECT event_type, status_code, correlation_id, trace_id FROM service_events "
        "ORDER BY created_at, status_code DESC"
    )
    assert [(r["event_type"], r["status_code"]) for r in rows] == [
        ("error", 500),
        ("response", 200),
    ]
    assert {r["correlation_id"] for r in rows} == {"wedding-42"}
    assert {r["trace_id"] for r in rows} == {parent.trace_id}


async def test_retry_policy_from_mesh(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    await policy(
        orch,
        "venue-retries",
        "resilience",
        {
            "retry_policy": {
                "max_attempts": 2,
                "timeout_per_attempt": 1,
                "retry_conditions": ["5xx"],
                "initial_delay": 0.5,
            }
        },
    )
    caller = await orch.caller()
    http_server.script = [(500, {}), (500, {}), (500, {})]
    result = await run_driving_clock(clock, caller.call("booking", "venue", "/x", method="GET"))
    assert len(result.attempts) == 2


async def test_callers_asking_at_once_share_one_call_path(orch: Orch) -> None:
    # Sagas starting together each ask for the caller; a second one would hold
    # connection pools and caches nobody closes.
    callers = await asyncio.gather(*(orch.caller() for _ in range(8)))
    assert all(caller is callers[0] for caller in callers)
