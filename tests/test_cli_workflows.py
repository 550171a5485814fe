"""`orch workflow` verbs against a real daemon process and real participants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from orchcore import Orch
from tests.support.cli import run_orch
from tests.support.daemons import DaemonProcess
from tests.support.participant import Participant, participants
from tests.support.sagas import BOOKING, SERVICES, register_participants

pytestmark = pytest.mark.slow


@pytest.fixture
async def platform(orch: Orch, dsn: str) -> AsyncIterator[dict[str, Participant]]:
    async with participants(*SERVICES) as services:
        await register_participants(orch, services)
        daemon = await DaemonProcess(dsn, "cli-test", "--no-health-checks").start()
        try:
            yield services
        finally:
            await daemon.ensure_stopped()


async def test_register_start_wait_show_list(
    dsn: str, platform: dict[str, Participant], tmp_path: Path
) -> None:
    definition = tmp_path / "booking.yaml"
    definition.write_text(yaml.safe_dump(BOOKING))
    registered = await run_orch(dsn, "workflow", "register", str(definition), "--json")
    assert registered.code == 0, registered.stderr
    assert registered.json()["definition"]["name"] == "booking"

    started = await run_orch(
        dsn,
        "workflow",
        "start",
        "booking",
        "--context",
        "wedding_id=w-9",
        "--correlation-id",
        "cli-1",
        "--wait",
        "--json",
    )
    assert started.code == 0, started.stderr
    assert started.json()["final"]["current_status"] == "completed"
    assert platform["venue"].calls[0].body == {"wedding_id": "w-9"}

    shown = await run_orch(dsn, "workflow", "show", "cli-1")
    assert "● completed" in shown.stdout
    assert "attempt_succeeded" in shown.stdout
    listed = (await run_orch(dsn, "workflow", "list", "--status", "completed", "--json")).json()
    assert [w["correlation_id"] for w in listed["workflows"]] == ["cli-1"]

    platform["payment"].always_fail["/charges"] = 402
    failed = await run_orch(
        dsn,
        "workflow",
        "start",
        "booking",
        "--context",
        "wedding_id=w",
        "--correlation-id",
        "cli-2",
        "--wait",
    )
    assert failed.code == 1  # ended compensated, not completed
    assert "↺ compensated" in failed.stderr

    # Page by page: the first page names the next, --after reads it.
    first = await run_orch(dsn, "workflow", "list", "--limit", "1")
    cursor = first.stdout.rsplit("next page: --after ", 1)[1].strip()
    assert "cli-2" in first.stdout and "cli-1" not in first.stdout
    second = (
        await run_orch(dsn, "workflow", "list", "--limit", "1", "--after", cursor, "--json")
    ).json()
    assert [w["correlation_id"] for w in second["workflows"]] == ["cli-1"]
    assert second["next_cursor"]  # a full page: there may be one more
    bad = await run_orch(dsn, "workflow", "list", "--after", "yesterday")
    assert bad.code != 0 and "after: not a cursor" in bad.stderr

    preview = await run_orch(
        dsn, "workflow", "batch", "cancel", "--status", "compensated", "--dry-run", "--json"
    )
    assert preview.json()["matched"] == 1
    refused = await run_orch(dsn, "workflow", "batch", "retry", "--status", "compensated")
    assert refused.code == 2  # destructive without a terminal: needs --yes
    applied = await run_orch(
        dsn, "workflow", "batch", "retry", "--status", "compensated", "--yes", "--json"
    )
    assert applied.code == 1  # retry refused after compensation, reported per workflow
    assert "start a new workflow instead" in applied.json()["results"][0]["error"]
    no_filter = await run_orch(dsn, "workflow", "batch", "cancel")
    assert no_filter.code == 2
    assert "give at least one of --status" in no_filter.stderr
