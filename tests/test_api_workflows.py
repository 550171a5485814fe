"""Workflow routes over real HTTP, in the seed's shapes, driven by a runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.api import serve_api
from tests.support.polling import eventually
from tests.support.sagas import BOOKING, Env

API = "/api/orchestration"


@pytest.fixture
async def api(env: Env) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    secret, _ = await env.orch.tokens.create(name="ops", role="platform_engineer", actor="t")
    async with serve_api(env.orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client, {"Authorization": f"Bearer {secret}"}


async def test_start_status_and_list(
    api: tuple[httpx.AsyncClient, dict[str, str]], env: Env
) -> None:
    client, auth = api
    body = {
        "workflow_name": "booking",
        "correlation_id": "wedding-99",
        "wedding_id": "22222222-2222-2222-2222-222222222222",
        "initiating_service": "booking",
        "context_data": {"wedding_id": "w"},
    }
    started = await client.post(f"{API}/workflows", json=body, headers=auth)
    assert started.status_code == 201, started.text
    answer = started.json()
    assert set(answer) >= {"workflow_id", "correlation_id", "status", "estimated_duration_minutes"}
    again = await client.post(f"{API}/workflows", json=body, headers=auth)
    assert again.status_code == 200
    assert again.json()["workflow_id"] == answer["workflow_id"]

    async def completed() -> bool:
        status = await client.get(f"{API}/workflows/{answer['workflow_id']}/status", headers=auth)
        return bool(status.json()["workflow"]["current_status"] == "completed")

    await eventually(completed)
    status = (await client.get(f"{API}/workflows/wedding-99/status", headers=auth)).json()
    assert set(status) == {"workflow", "steps", "execution_timeline"}
    assert set(status["steps"][0]) >= {
        "id",
        "step_name",
        "step_type",
        "step_order",
        "service_name",
        "status",
        "input_data",
        "output_data",
        "started_at",
        "completed_at",
        "duration_ms",
        "retry_count",
        "error_message",
    }
    assert {"timestamp", "event", "step_name", "details"} <= set(status["execution_timeline"][0])
    listing = (
        await client.get(
            f"{API}/workflows",
            params={
                "status": "completed,failed",
                "wedding_id": "22222222-2222-2222-2222-222222222222",
            },
            headers=auth,
        )
    ).json()
    assert [w["correlation_id"] for w in listing["workflows"]] == ["wedding-99"]
    assert listing["workflows"][0]["progress_percentage"] == 100.0
    assert listing["status_summary"]["completed"] == 1


async def test_definitions_and_validation(api: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, auth = api
    bad = {**BOOKING, "name": "broken", "steps": [{**BOOKING["steps"][0], "endpoint": "nope"}]}
    answer = await client.post(f"{API}/workflows/definitions", json=bad, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "endpoint"
    good = await client.post(
        f"{API}/workflows/definitions", json={**BOOKING, "version": "9.0.0"}, headers=auth
    )
    assert good.status_code == 201
    listed = (await client.get(f"{API}/workflows/definitions", headers=auth)).json()
    assert {d["workflow_version"] for d in listed["definitions"]} == {"1.0.0", "9.0.0"}
    unknown = await client.post(f"{API}/workflows", json={"workflow_name": "nope"}, headers=auth)
    assert unknown.status_code == 404


async def test_operator_routes(api: tuple[httpx.AsyncClient, dict[str, str]], env: Env) -> None:
    client, auth = api
    env.services["payment"].always_fail["/charges"] = 402
    env.services["venue"].always_fail["/reservations/cancel"] = 500
    workflow_id = await env.start()
    await env.advance_until(workflow_id, "compensation_failed", step=0.2)
    alerts = (await client.get(f"{API}/alerts", headers=auth)).json()
    assert alerts[0]["kind"] == "compensation_failed"
    done = await client.post(
        f"{API}/workflows/{workflow_id}/compensation/mark-done",
        json={"note": "refunded by hand"},
        headers=auth,
    )
    assert done.status_code == 200, done.text
    await env.until(workflow_id, "compensated")
    retry = await client.post(f"{API}/workflows/{workflow_id}/retry", json={}, headers=auth)
    assert retry.status_code == 409
    preview = await client.post(
        f"{API}/workflows/batch/cancel",
        json={"status": ["compensated"], "dry_run": True},
        headers=auth,
    )
    assert preview.json()["matched"] == 1
    assert preview.json()["workflow_ids"] == [workflow_id]
    no_filter = await client.post(
        f"{API}/workflows/batch/cancel", json={"dry_run": True}, headers=auth
    )
    assert no_filter.status_code == 422
    assert "give at least one of status" in no_filter.json()["message"]
    unconfirmed = await client.post(
        f"{API}/workflows/batch/cancel",
        json={"status": ["compensated"], "dry_run": False},
        headers=auth,
    )
    assert unconfirmed.status_code == 422
    assert unconfirmed.json()["detail"][0]["loc"] == ["workflow_ids"]
    confirmed = await client.post(
        f"{API}/workflows/batch/cancel",
        json={"status": ["compensated"], "dry_run": False, "workflow_ids": [workflow_id]},
        headers=auth,
    )
    assert [r["workflow_id"] for r in confirmed.json()["results"]] == [workflow_id]
    reader, _ = await env.orch.tokens.create(name="r", role="monitoring_system", actor="t")
    refused = await client.post(
        f"{API}/workflows/{workflow_id}/pause", headers={"Authorization": f"Bearer {reader}"}
    )
    assert refused.status_code == 403
    await asyncio.sleep(0)


async def test_an_action_queued_behind_a_call_in_flight_is_answered_202(
    api: tuple[httpx.AsyncClient, dict[str, str]], env: Env
) -> None:
    client, auth = api
    env.services["catering"].delay = 2.0
    env.orch.workflows.actions.queued_wait_seconds = 0.1
    workflow_id = await env.start()

    async def catering_in_flight() -> bool:
        status = await env.orch.workflows.status(workflow_id)
        return any(s.step_name == "order_catering" and s.status == "running" for s in status.steps)

    await eventually(catering_in_flight)
    paused = await client.post(
        f"{API}/workflows/{workflow_id}/pause", json={"reason": "checking"}, headers=auth
    )
    assert paused.status_code == 202, paused.text
    body = paused.json()
    assert [a["action"] for a in body["pending_actions"]] == ["pause"]
    assert body["in_flight"][0]["step_name"] == "order_catering"
    await env.until(workflow_id, "paused")
