"""Bounded state from untrusted input: made-up source or target names create no breaker,
rate-limit bucket or cache entry, and per-endpoint memory stays under its cap."""

from __future__ import annotations

import random
import string

import pytest

from orchcore import Orch
from orchcore.callpath import UnknownCallerError
from orchcore.errors import NotFoundError
from orchcore.resilience.breakers import MAX_RESOLVED_ENDPOINTS
from tests.support.callers import known_callers
from tests.support.http import SwitchableServer
from tests.support.registry import healthy_service


def made_up_names(count: int) -> list[str]:
    rng = random.Random(20260620)
    return [
        "".join(rng.choices(string.ascii_lowercase + string.digits + "-", k=12))
        for _ in range(count)
    ]


@pytest.fixture
async def guarded_venue(orch: Orch, http_server: SwitchableServer) -> SwitchableServer:
    """venue behind a rate limit for every caller, so an admitted call would make a bucket."""
    await healthy_service(orch, "venue", [http_server])
    await known_callers(orch, "booking")
    await orch.mesh.create(
        {
            "policy_name": "everyone-limited",
            "policy_type": "traffic",
            "target_services": [],
            "policy_config": {"rate_limiting": {"requests_per_second": 1000, "burst_size": 1000}},
        },
        actor="t",
    )
    return http_server


async def state_sizes(orch: Orch) -> dict[str, int]:
    await orch.events.flush()
    return {
        "breakers": await orch.db.fetchval("SELECT count(*) FROM circuit_breakers"),
        "buckets": await orch.db.fetchval("SELECT count(*) FROM rate_limit_buckets"),
        "events": await orch.db.fetchval("SELECT count(*) FROM service_events"),
        "policy_cache": len(orch.mesh._effective),
        "discovery_cache": len(orch.discovery.cached_services()),
        "resolved_endpoints": orch.breakers.resolved_endpoints,
    }


async def test_a_thousand_made_up_sources_leave_nothing_behind(
    orch: Orch, guarded_venue: SwitchableServer
) -> None:
    caller = await orch.caller()
    before = await state_sizes(orch)
    for name in made_up_names(1000):
        with pytest.raises(UnknownCallerError):
            await caller.call(name, "venue", f"/reservations/{name}", method="GET")
    assert await state_sizes(orch) == before
    assert before["breakers"] == before["buckets"] == before["policy_cache"] == 0
    assert guarded_venue.requests == []
    # A known caller still gets through, making exactly one breaker and one bucket.
    assert (await caller.call("booking", "venue", "/x", method="GET")).ok
    after = await state_sizes(orch)
    assert (after["breakers"], after["buckets"], after["policy_cache"]) == (1, 1, 1)


async def test_a_thousand_made_up_targets_leave_nothing_behind(
    orch: Orch, guarded_venue: SwitchableServer
) -> None:
    caller = await orch.caller()
    before = await state_sizes(orch)
    for name in made_up_names(1000):
        with pytest.raises(NotFoundError, match="not found"):
            await caller.call("booking", name, "/x", method="GET")
    assert await state_sizes(orch) == before


async def test_orchs_own_identities_may_call_without_registering(
    orch: Orch, guarded_venue: SwitchableServer
) -> None:
    caller = await orch.caller()
    for own in ("orch", "orch-api", "orch-cli"):
        assert (await caller.call(own, "venue", "/x", method="GET")).ok


async def test_endpoints_remembered_per_breaker_stay_under_the_cap(
    orch: Orch, guarded_venue: SwitchableServer
) -> None:
    """Endpoints carry ids: each new one must not be remembered for ever."""
    for n in range(MAX_RESOLVED_ENDPOINTS + 500):
        await orch.breakers.admit("booking", "venue", f"/reservations/r-{n}")
    assert orch.breakers.resolved_endpoints == MAX_RESOLVED_ENDPOINTS
    assert await orch.db.fetchval("SELECT count(*) FROM circuit_breakers") == 1
    # a forgotten endpoint resolves again, to the same breaker
    permit = await orch.breakers.admit("booking", "venue", "/reservations/r-0")
    assert permit.breaker.endpoint_pattern == "*"
