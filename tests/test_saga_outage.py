"""PostgreSQL stops for a few seconds while sagas run: none is lost, no effect happens
twice, and every saga goes on by itself as soon as the server is back, in the drives
that held it (not after its lease expired and another claim picked it up).

The server is a private one the test stops and starts; time is real (leases of 30 s).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchcore import Orch, Settings
from orchcore.db.embedded import EmbeddedPostgres
from orchcore.db.migrate import SchemaMode
from orchcore.saga.runner import SagaRunner
from tests.support.participant import participants
from tests.support.polling import eventually
from tests.support.sagas import BOOKING, SERVICES, register_participants

pytestmark = pytest.mark.slow

SAGAS = 60
OUTAGE_SECONDS = 3.0
LEASE_SECONDS = 30.0


@pytest.fixture
def private_server() -> Iterator[EmbeddedPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="orch-outage-"))
    folder.chmod(0o755)  # as root, the server runs as an unprivileged user
    server = EmbeddedPostgres(folder, durable=False)
    server.acquire()
    try:
        yield server
    finally:
        server.release()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def test_sagas_resume_within_seconds_of_a_postgresql_restart(
    private_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orch")
    orch = await Orch.open(Settings(database_url=private_server.dsn()), schema=SchemaMode.MIGRATE)
    async with participants(*SERVICES) as services:
        for participant in services.values():
            participant.delay = 0.3  # calls in flight when the server goes
        await register_participants(orch, services)
        await orch.workflow_definitions.register(BOOKING, actor="t")
        runner = SagaRunner(
            orch, owner="runner", actor="daemon:runner", lease_seconds=LEASE_SECONDS
        )
        orch.workflows.attach_runner(runner)
        loop = asyncio.create_task(runner.run_forever())
        try:
            ids = [
                str(
                    (
                        await orch.workflows.start(
                            {
                                "workflow_name": "booking",
                                "correlation_id": f"outage-{i}",
                                "initiating_service": "booking",
                                "context_data": {"wedding_id": f"w-{i}"},
                            },
                            actor="t",
                        )
                    ).workflow_id
                )
                for i in range(SAGAS)
            ]
            await eventually(lambda: len(services["catering"].calls) >= SAGAS // 3)
            await asyncio.to_thread(private_server.stop)
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a result
            await asyncio.to_thread(private_server.start)
            back = time.monotonic()

            async def all_completed() -> bool:
                try:
                    counts = await orch.workflows.status_counts()
                except OSError:
                    return False
                return counts["completed"] == SAGAS

            await eventually(all_completed, timeout=LEASE_SECONDS - 5, interval=0.1)
            resumed_after = time.monotonic() - back
        finally:
            await runner.stop()
            await loop
        # A claim is fine after a retry the drive scheduled itself (a call whose call
        # path met the outage is a failed attempt of unknown outcome, retried with its
        # key); a claim of a workflow nobody released is a lease that expired.
        claimed = await orch.db.fetchval(
            """
            SELECT count(*) FROM workflow_events c
            WHERE c.event = 'claimed' AND NOT EXISTS (
                SELECT 1 FROM workflow_events r
                WHERE r.workflow_id = c.workflow_id AND r.event = 'retry_scheduled'
                  AND r.occurred_at <= c.occurred_at)
            """
        )
        effects = {name: dict(p.effects) for name, p in services.items()}
    await orch.close()

    print(f"every saga completed {resumed_after:.2f}s after the server came back")
    assert claimed == 0  # carried on by the drives that held them, no lease expired
    for name, path in [
        ("venue", "reserve_venue"),
        ("catering", "order_catering"),
        ("payment", "charge_deposit"),
        ("notification", "confirm"),
    ]:
        # each participant dedupes by key: one effect per saga's step, none missing
        assert sorted(effects[name]) == sorted(f"{w}:{path}:forward" for w in ids), name
    lines = [r.getMessage() for r in caplog.records if r.name == "orch.saga"]
    # Told when it went and when it came back; on a slow machine a statement can succeed
    # between two failures inside the restart window, and then each flip is told once.
    flips = [
        "down" if "database unreachable" in line else "up"
        for line in lines
        if "database unreachable" in line or "database reachable again" in line
    ]
    assert flips and flips == ["down", "up"] * (len(flips) // 2), flips
    assert len(flips) <= 4, flips  # told per flip, never per failed statement
