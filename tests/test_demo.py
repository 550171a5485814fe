"""`orch demo` as a user starts it: embedded PostgreSQL, platform, daemon; Ctrl-C stops all.

The demo's booking sagas publish their outcome to the queue booking_events (the outbox),
the daemon pushes each event to the notification service, and the events it refuses
land in the dead-letter queue."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from orchcore import Orch, Settings
from orchcore.db.embedded import EmbeddedPostgres
from tests.support.polling import eventually

pytestmark = pytest.mark.slow


async def test_demo_headless_starts_everything_and_ctrl_c_stops_it() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="orch-demo-"))
    data_dir.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DATABASE_URL"}
    env |= {"ORCH_DATA_DIR": str(data_dir), "NO_COLOR": "1"}
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchcore.cli.main",
        "demo",
        "--no-console",
        "--no-chaos",
        "--listen",
        "127.0.0.1:0",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []

    async def read() -> None:
        assert demo.stderr is not None
        async for raw in demo.stderr:
            lines.append(raw.decode().rstrip())

    reader = asyncio.create_task(read())
    server = EmbeddedPostgres(data_dir)
    try:
        await eventually(
            lambda: any("running headless" in line for line in lines),
            timeout=90,
            message=f"demo ready ({lines})",
        )
        pids = [int(p) for line in lines for p in re.findall(r"\(pid (\d+)\)", line)]
        assert len(pids) == 2  # the platform and the daemon
        api = next(re.search(r"API on (http://\S+),", line) for line in lines if "API on" in line)
        assert api is not None
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{api.group(1)}/readyz")).status_code == 200

        # The daemon health-checks the platform's instances: all turn healthy.
        orch = await Orch.open(Settings(data_dir=data_dir), listen=False, start_discovery=False)
        try:

            async def all_healthy() -> bool:
                services = await orch.registry.list_services()
                return len(services) == 6 and all(s.health_status == "healthy" for s in services)

            await eventually(all_healthy, timeout=30)
            await _check_events_flow(orch)
        finally:
            await orch.close()

        demo.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(demo.wait(), 60) == 0
        await reader
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"pid {pid} still runs"
        assert not server.is_running(), "the embedded PostgreSQL was left running"
        assert lines[-1].endswith("stopped")
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _check_events_flow(orch: Orch) -> None:
    queue = await orch.bus.get_queue("booking_events")
    assert (queue.push_endpoint, queue.consumer_services) == ("/events", ["notification"])
    assert queue.dead_letter_queue == "booking_events_dlq"

    async def pushed_and_acked() -> int:
        return int(
            await orch.db.fetchval(
                "SELECT count(*) FROM message_logs WHERE queue_name = 'booking_events'"
                " AND message_type = 'booking.confirmed' AND status = 'acked'"
                " AND consumer_service = 'notification'"
            )
        )

    # Sagas complete, publish booking.confirmed with their last step, and the daemon
    # pushes each to the notification service, which acks it.
    await eventually(pushed_and_acked, timeout=60, interval=0.5, message="an event acked")
    # The notification service refuses every event now: they are dead-lettered at once.
    notification = await orch.registry.list_instances("notification")
    async with httpx.AsyncClient() as client:
        for instance in notification:
            url = f"http://{instance.ip_address}:{instance.port}/_knobs"
            (await client.post(url, json={"event_reject_rate": 1.0})).raise_for_status()
    dead = await eventually(
        lambda: orch.bus.dead_letters("booking_events"), timeout=60, interval=0.5
    )
    assert dead[0].last_error is not None and "HTTP 422" in dead[0].last_error
    assert dead[0].attempts == 1
    # The daemon samples queue depths for the console's chart.
    samples = await orch.bus.depth_history("booking_events", since=orch.clock.now() - _HOUR)
    assert samples


_HOUR = timedelta(hours=1)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
