"""The crash test: three daemons, 200 sagas, daemons SIGKILLed and restarted meanwhile.

At the end every saga is terminal, none is stuck, and each participant applied each
idempotency key's effect exactly once (participants dedupe by key and count raw
calls, so a step re-sent after a crash shows as calls > effects, never effects > 1).
"""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from orchcore import Orch, Settings
from orchcore.callpath.identity import SAGA_SOURCE
from tests.examples.platform_process import running_platform
from tests.support.daemons import DaemonProcess
from tests.support.polling import eventually
from tests.support.registry import mark

pytestmark = pytest.mark.slow

SAGAS = 200
DEFINITION = Path(__file__).resolve().parents[1] / "examples/wedding/full_service_booking.yaml"
TERMINAL = {"completed", "compensated", "failed", "compensation_failed", "cancelled"}


def context(i: int) -> dict[str, object]:
    return {
        "wedding_id": f"crash-{i}",
        "date": (date(2027, 1, 1) + timedelta(days=i)).isoformat(),
        "guests": 80 + i % 50,
        "venue_id": f"venue-{i}",
        "menu": "classic",
        "package": "classic",
        "deposit_cents": 250_000,
        "currency": "EUR",
        "channel": "email",
        "confirmation_template": "booking_confirmed",
    }


async def test_three_daemons_killed_and_restarted_lose_nothing(dsn: str) -> None:
    orch = await Orch.open(Settings(database_url=dsn), listen=False, start_discovery=False)
    daemons: list[DaemonProcess] = []
    with running_platform(
        "--instances",
        "venue=2,catering=2,photographer=2,payment=2,notification=2",
        "--knobs",
        "venue:latency_ms=150,catering:latency_ms=150,photographer:latency_ms=150,"
        "payment:latency_ms=150,payment:failure_rate=0.1,notification:latency_ms=50",
        "--seed",
        "7",
    ) as platform:
        try:
            await register_platform(orch, platform)
            await orch.workflow_definitions.register(
                yaml.safe_load(DEFINITION.read_text()), actor="t"
            )
            # This test is about crashes, not breakers: on a loaded machine payment's 10%
            # failures and slow answers once made five in a row, the breaker opened and
            # 57 sagas were (rightly) compensated. A threshold those failures cannot reach
            # keeps "every saga completes" the claim under test.
            await orch.breakers.create(
                {"service_name": SAGA_SOURCE, "target_service": "payment",
                 "failure_threshold": 10_000},
                actor="t",
            )  # fmt: skip
            lease = ("--workflow-lease", "2", "--no-health-checks")
            daemons = [DaemonProcess(dsn, f"d{n}", *lease) for n in range(3)]
            await asyncio.gather(*(d.start() for d in daemons))
            ids = [
                (
                    await orch.workflows.start(
                        {
                            "workflow_name": "full-service-booking",
                            "correlation_id": f"crash-{i}",
                            "initiating_service": "booking",  # the manifest's INITIATOR
                            "context_data": context(i),
                        },
                        actor="t",
                    )
                ).workflow_id
                for i in range(SAGAS)
            ]
            rng = random.Random(42)
            for kill in range(1, 6):  # kill one daemon mid-flight, restart it
                await asyncio.sleep(0.8)
                victim = rng.randrange(len(daemons))
                await daemons[victim].kill()
                daemons[victim] = await DaemonProcess(dsn, f"d{victim}-r{kill}", *lease).start()

            async def all_terminal() -> bool:
                counts = await orch.workflows.status_counts()
                return sum(counts[s] for s in TERMINAL) == SAGAS

            await eventually(all_terminal, timeout=180, interval=0.5, message="every saga terminal")
            counts = await orch.workflows.status_counts()
            # Nothing was meant to fail for good; if something did, say which step and why.
            assert counts["completed"] == SAGAS, (counts, await failure_reasons(orch))
            stuck = await orch.db.fetchval(
                "SELECT count(*) FROM distributed_workflows WHERE lease_owner IS NOT NULL"
            )
            assert stuck == 0
            await check_exactly_once(orch, platform, ids)
            # The outbox under SIGKILL: each saga's booking.confirmed was published once.
            published = await orch.db.fetch(
                "SELECT correlation_id, count(*) AS n FROM message_logs"
                " WHERE queue_name = 'booking_events' AND message_type = 'booking.confirmed'"
                " GROUP BY correlation_id"
            )
            assert len(published) == SAGAS and {r["n"] for r in published} == {1}
        finally:
            for daemon in daemons:
                await daemon.ensure_stopped()
            await orch.close()


async def failure_reasons(orch: Orch) -> list[tuple[str, str, int]]:
    """Why sagas did not complete: failed steps' errors, and what breakers did."""
    rows = await orch.db.fetch(
        "SELECT s.step_name, left(coalesce(s.error_message, ''), 160) AS why, count(*) AS n"
        " FROM workflow_steps s JOIN distributed_workflows w ON w.id = s.workflow_id"
        " WHERE w.current_status <> 'completed' AND s.error_message IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10"
    )
    opened = await orch.db.fetch(
        "SELECT b.target_service, t.to_state, left(t.trigger, 160) AS why"
        " FROM circuit_breaker_transitions t JOIN circuit_breakers b ON b.id = t.breaker_id"
        " ORDER BY t.occurred_at LIMIT 10"
    )
    return [(r["step_name"], r["why"], r["n"]) for r in rows] + [
        (f"breaker to {r['target_service']}", f"{r['to_state']}: {r['why']}", 1) for r in opened
    ]


async def register_platform(orch: Orch, platform: object) -> None:
    from examples.wedding import manifest  # type: ignore[import-not-found]

    for request in manifest.registrations():
        await orch.registry.register_service(request, actor="t")
    for queue in manifest.queue_registrations():  # the saga publishes its outcome there
        await orch.bus.create_queue(queue, actor="t")
    for instance in platform.instances.values():  # type: ignore[attr-defined]
        await orch.registry.register_instance(
            instance.service,
            {
                "instance_id": instance.instance_id,
                "ip_address": instance.host,
                "port": instance.port,
                "version": instance.version,
            },
            actor="t",
        )
        await mark(orch, instance.instance_id, "healthy")


async def check_exactly_once(orch: Orch, platform: object, ids: list[object]) -> None:
    instances = platform.instances.values()  # type: ignore[attr-defined]
    stats = {}
    async with httpx.AsyncClient() as client:
        for service in ("venue", "catering", "photographer", "payment", "notification"):
            one = next(i for i in instances if i.service == service)
            stats[service] = (await client.get(f"{one.base_url}/_stats")).json()
    step_service = {
        "reserve_venue": "venue",
        "order_catering": "catering",
        "book_photographer": "photographer",
        "charge_deposit": "payment",
        "send_confirmation": "notification",
    }
    resent = 0
    for workflow_id in ids:
        for step, service in step_service.items():
            key = f"{workflow_id}:{step}:forward"
            seen = stats[service]["by_key"].get(key)
            assert seen is not None, f"{key} never reached {service}"
            assert seen["effects"] == 1, (key, seen)
            resent += seen["calls"] - 1
    for service, data in stats.items():
        assert all(k["effects"] <= 1 for k in data["by_key"].values()), service
    print(f"\ncrash test: {resent} re-sent calls deduplicated by the participants")
