"""A small wedding platform in known states, built through the engine's own paths.

Services use TTL checks, so healthy and failing instances come from real heartbeats
and a real health-check round driven by a ManualClock: no network, fixed addresses,
the same screen every time. Used by the snapshot tests and by ``demo.py``.

Breakers move through the call path's own breaker half (admit a call, record its
outcome) and operators' resets, force-opens and disables; the calls themselves are
recorded as the call path records them, so a breaker's 24-hour figures have data.
No HTTP is made: the instances' addresses are never contacted.

Workflows (:mod:`tests.console.seed_workflows`) come first: they started during the
45 minutes before the platform's story, which then runs from SEED_START as before.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from orchcore import ConflictError, ManualClock, Orch
from orchcore.callpath.events import CallEvent
from tests.console.seed_workflows import seed_workflows

#: Where the seeded platform's story starts; a ManualClock at SEED_END + 2s sees fixed ages.
SEED_START = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
#: Where the whole story starts: the first workflows, 45 minutes earlier.
STORY_START = SEED_START - timedelta(minutes=45)
DEPLOYER = "deploy-bot"
CHECKER = "daemon:orch-1"

_TTL: dict[str, Any] = {"kind": "ttl", "ttl_seconds": 30, "critical_after_seconds": 60}

# service -> (version, type, health check, {instance: stays healthy?})
PLATFORM: dict[str, tuple[str, str, dict[str, Any], dict[str, bool]]] = {
    "booking": ("1.4.2", "api", _TTL, {"booking-1": True, "booking-2": True, "booking-3": True}),
    "venue": (
        "2.0.1",
        "api",
        {**_TTL, "critical_after_seconds": 300},
        {"venue-1": True, "venue-2": True, "venue-3": False},
    ),
    "payments": ("5.2.0", "api", _TTL, {"payments-1": True, "payments-2": False}),
    "notifications": ("1.0.3", "worker", _TTL, {"notifications-1": True}),
    "catering": ("3.1.0", "worker", {"kind": "http"}, {}),
    "photographer": ("0.9.0", "api", {"kind": "http"}, {}),
}
#: Instances of HTTP-checked services, registered last so no check probes them.
STARTING = {"catering": ["catering-1", "catering-2"]}
OPS = "ops@example"

#: Mesh policies as an operator would write them (CreateMeshPolicyRequest).
POLICIES: list[dict[str, Any]] = [
    {
        "policy_name": "payments-mtls",
        "policy_type": "security",
        "target_services": ["payments"],
        "priority": 100,
        "policy_config": {
            "mutual_tls": {"mode": "strict"},
            "authorization": {
                "action": "allow",
                "rules": [{"from": ["booking"], "to": ["payments"]}],
            },
        },
    },
    {
        "policy_name": "venue-rate-limit",
        "policy_type": "traffic",
        "source_services": ["booking"],
        "target_services": ["venue"],
        "priority": 10,
        "policy_config": {"rate_limiting": {"requests_per_second": 50, "burst_size": 100}},
    },
    {
        "policy_name": "booking-resilience",
        "policy_type": "resilience",
        "source_services": ["booking"],
        "priority": 5,
        "policy_config": {
            "retry_policy": {"max_attempts": 3, "timeout_per_attempt": 2},
            "timeout": 5,
        },
    },
    {
        "policy_name": "venue-canary",
        "policy_type": "traffic",
        "target_services": ["venue"],
        "is_enabled": False,
        "policy_config": {
            "traffic_splitting": {
                "routes": [
                    {"destination": "2.0.1", "weight": 90},
                    {"destination": "2.1.0", "weight": 10},
                ]
            }
        },
    },
    {
        "policy_name": "trace-sampling",
        "policy_type": "observability",
        "priority": -10,
        "policy_config": {"tracing": {"sampling_rate": 0.25}},
    },
]


def address_of(instance_id: str) -> str:
    """10.0.<service>.<n>: fixed, readable and never contacted (TTL checks only)."""
    service_index = list(PLATFORM).index(instance_id.rsplit("-", 1)[0]) + 1
    return f"10.0.{service_index}.{10 + int(instance_id.rsplit('-', 1)[1])}"


async def seed_story(orch: Orch, clock: ManualClock) -> datetime:
    """Workflows, then the platform; the clock starts at STORY_START (or as long before
    the platform's start). Returns the engine time at which the story ends."""
    await seed_workflows(orch, clock, until=clock.now() + (SEED_START - STORY_START))
    return await seed_platform(orch, clock)


async def seed_platform(orch: Orch, clock: ManualClock) -> datetime:
    """Build the platform; returns the engine time at which the story ends."""
    registry = orch.registry
    for name, (version, kind, check, instances) in PLATFORM.items():
        registration = {
            "service_version": version,
            "service_type": kind,
            "deployment_environment": "production",
            "health_check": check,
        }
        try:
            await registry.register_service({"service_name": name, **registration}, actor=DEPLOYER)
        except ConflictError:  # the workflows' initiator, registered when they started
            await registry.update_service(name, registration, actor=DEPLOYER)
        for instance_id in instances:
            await _register(orch, name, instance_id, version)
            await registry.heartbeat(name, instance_id, actor=instance_id)
    await _register(orch, "booking", "booking-4", "1.4.1")
    await registry.deregister_instance(
        "booking", "booking-4", actor="ops@example", reason="old version drained"
    )

    for policy in POLICIES:
        await orch.mesh.create(policy, actor=DEPLOYER)
    await _resilience_before(orch)

    checker = orch.health_checker(checker_id=uuid.uuid4(), actor=CHECKER)
    try:
        # Lapsed TTLs turn unhealthy in the first round; by the third, payments-2 has been
        # down past its critical_after_seconds and turns critical (venue-3 has longer).
        for round_number in range(1, 4):
            await clock.advance(40)
            await _heartbeat_healthy(orch)
            await checker.run_once()
            await _resilience_round(orch, round_number)
    finally:
        await checker.close()
    await orch.events.flush()

    for name, instance_ids in STARTING.items():
        for instance_id in instance_ids:
            await _register(orch, name, instance_id, PLATFORM[name][0])
    return clock.now()


async def _register(orch: Orch, service: str, instance_id: str, version: str) -> None:
    await orch.registry.register_instance(
        service,
        {
            "instance_id": instance_id,
            "ip_address": address_of(instance_id),
            "port": 8080,
            "version": version,
        },
        actor=DEPLOYER,
    )


async def _resilience_before(orch: Orch) -> None:
    """A day of booking → venue traffic, and the breakers' first calls."""
    now = orch.clock.now()
    for hours_ago in range(23, 0, -1):
        failures = {9: 6, 8: 14, 7: 3, 2: 1}.get(hours_ago, 0)
        at = now - timedelta(hours=hours_ago)
        for index in range(40):
            _event(orch, "booking", "venue", "/venues/availability", index < failures, at)
    await _calls(orch, "booking", "notifications", "/messages", [True] * 20)
    await _calls(orch, "booking", "catering", "/menus", [True] * 8 + [False] * 2)
    await _calls(orch, "booking", "photographer", "/slots", [True] * 5)
    await _calls(orch, "booking", "venue", "/venues/availability", [True] * 12)
    await orch.breakers.create(
        {
            "service_name": "booking",
            "target_service": "payments",
            "endpoint_pattern": "/payments/*",
            "failure_threshold": 5,
            "timeout_duration": 60,
        },
        actor=OPS,
    )
    await orch.breakers.create(
        {
            "service_name": "payments",
            "target_service": "notifications",
            "failure_threshold": 3,
            "timeout_duration": 30,
        },
        actor=OPS,
    )


async def _resilience_round(orch: Orch, round_number: int) -> None:
    """What happens to the breakers after each health-check round (40 s apart)."""
    breakers = orch.breakers
    if round_number == 1:
        # payments-2 is failing: charges through it fail until the breaker opens.
        await _calls(orch, "booking", "payments", "/payments/charge", [False] * 5)
        notifications = await breakers.find("payments", "notifications")
        await breakers.force_open(
            notifications.id, actor=OPS, reason="SMS provider outage, INC-4211"
        )
    elif round_number == 2:
        photographer = await breakers.find("booking", "photographer")
        await breakers.disable(
            photographer.id, actor=OPS, reason="photographer API in maintenance until 14:00"
        )
    else:
        # 80 s after opening, the payments breaker lets a trial call through (half-open);
        # venue-3 went critical, and calls to venue fail until its breaker opens.
        await _calls(orch, "booking", "payments", "/payments/charge", [True])
        await _calls(orch, "booking", "venue", "/venues/availability", [False] * 5)


async def _calls(orch: Orch, source: str, target: str, endpoint: str, outcomes: list[bool]) -> None:
    """Calls as the call path makes them: admitted by the breaker, outcome recorded."""
    for ok in outcomes:
        permit = await orch.breakers.admit(source, target, endpoint)
        detail = "HTTP 200" if ok else "HTTP 503 Service Unavailable"
        await orch.breakers.record(permit, success=ok, detail=detail)
        _event(orch, source, target, endpoint, not ok, orch.clock.now())


def _event(orch: Orch, source: str, target: str, endpoint: str, failed: bool, at: datetime) -> None:
    orch.events.record(
        CallEvent(
            event_type="response",
            trace_id=uuid.uuid4().hex,
            span_id=uuid.uuid4().hex[:16],
            parent_span_id=None,
            source=source,
            target=target,
            method="GET",
            endpoint=endpoint,
            status_code=503 if failed else 200,
            duration_ms=40,
            error=None,
            correlation_id=None,
            at=at,
        )
    )


async def _heartbeat_healthy(orch: Orch) -> None:
    for name, (_, _, _, instances) in PLATFORM.items():
        for instance_id, stays_healthy in instances.items():
            if stays_healthy:
                await orch.registry.heartbeat(name, instance_id, actor=instance_id)
