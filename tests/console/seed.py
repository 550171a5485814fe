"""A small wedding platform in known states, built through the engine's own paths.

Services use TTL checks, so healthy and failing instances come from real heartbeats
and a real health-check round driven by a ManualClock: no network, fixed addresses,
the same screen every time. Used by the snapshot tests and by ``demo.py``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from orchcore import ManualClock, Orch

#: Where the seeded story starts; a ManualClock at SEED_END + 2s sees fixed ages.
SEED_START = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
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


def address_of(instance_id: str) -> str:
    """10.0.<service>.<n>: fixed, readable and never contacted (TTL checks only)."""
    service_index = list(PLATFORM).index(instance_id.rsplit("-", 1)[0]) + 1
    return f"10.0.{service_index}.{10 + int(instance_id.rsplit('-', 1)[1])}"


async def seed_platform(orch: Orch, clock: ManualClock) -> datetime:
    """Build the platform; returns the engine time at which the story ends."""
    registry = orch.registry
    for name, (version, kind, check, instances) in PLATFORM.items():
        await registry.register_service(
            {
                "service_name": name,
                "service_version": version,
                "service_type": kind,
                "deployment_environment": "production",
                "health_check": check,
            },
            actor=DEPLOYER,
        )
        for instance_id in instances:
            await _register(orch, name, instance_id, version)
            await registry.heartbeat(name, instance_id, actor=instance_id)
    await _register(orch, "booking", "booking-4", "1.4.1")
    await registry.deregister_instance(
        "booking", "booking-4", actor="ops@example", reason="old version drained"
    )

    checker = orch.health_checker(checker_id=uuid.uuid4(), actor=CHECKER)
    try:
        # Lapsed TTLs turn unhealthy in the first round; by the third, payments-2 has been
        # down past its critical_after_seconds and turns critical (venue-3 has longer).
        for _ in range(3):
            await clock.advance(40)
            await _heartbeat_healthy(orch)
            await checker.run_once()
    finally:
        await checker.close()

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


async def _heartbeat_healthy(orch: Orch) -> None:
    for name, (_, _, _, instances) in PLATFORM.items():
        for instance_id, stays_healthy in instances.items():
            if stays_healthy:
                await orch.registry.heartbeat(name, instance_id, actor=instance_id)
