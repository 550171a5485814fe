"""Workflow routes over real HTTP, in the seed's shapes, driven by a runner."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

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


# -- the list, page by page (after / next_cursor) ---------------------------------------------

WEDDING = "33333333-3333-3333-3333-333333333333"
OTHER_WEDDING = "44444444-4444-4444-4444-444444444444"


async def _start_many(env: Env, count: int, wedding_id: str, prefix: str) -> list[str]:
    """Workflows of one wedding; every other one a millisecond after the one before, so
    some share a started_at and their order is the id's."""
    started = []
    for i in range(count):
        if i % 2:
            await env.clock.advance(0.001)
        started.append(await env.start(wedding_id=wedding_id, correlation_id=f"{prefix}-{i}"))
    return started


async def _newest_first(env: Env, workflow_ids: list[str]) -> list[str]:
    """The list's order, (started_at, id) descending, from each workflow's own status."""
    keys = {}
    for workflow_id in workflow_ids:
        workflow = (await env.orch.workflows.status(workflow_id)).workflow
        keys[workflow_id] = (workflow.started_at, UUID(workflow_id))
    return sorted(workflow_ids, key=keys.__getitem__, reverse=True)


async def _pages(client: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        answer = await client.get(f"{API}/workflows", params=query, headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append([w["id"] for w in body["workflows"]])
        after = body["next_cursor"]
        if after is None:
            return pages
        assert len(pages) < 10, "the cursor does not move on"


async def test_pages_by_cursor_visit_each_workflow_once_newest_first(
    api: tuple[httpx.AsyncClient, dict[str, str]], env: Env
) -> None:
    client, auth = api
    ours = await _start_many(env, 13, WEDDING, "a")
    others = await _start_many(env, 5, OTHER_WEDDING, "b")  # interleaved in time
    ours += await _start_many(env, 12, WEDDING, "c")
    expected = await _newest_first(env, ours)

    pages = await _pages(client, auth, wedding_id=WEDDING, limit=10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [w for page in pages for w in page] == expected

    # With a second filter: those started at or after the 18th newest of ours.
    since = (await env.orch.workflows.status(expected[17])).workflow.started_at
    narrowed = await _pages(
        client, auth, wedding_id=WEDDING, started_after=since.isoformat(), limit=10
    )
    assert [w for page in narrowed for w in page] == [
        w for w in expected if (await env.orch.workflows.status(w)).workflow.started_at >= since
    ]
    # All of them: the two weddings' pages together are every workflow once.
    everything = await _pages(client, auth, limit=7)
    assert sorted(w for page in everything for w in page) == sorted(ours + others)


async def test_a_cursor_is_url_safe_and_stays_valid_as_workflows_start(
    api: tuple[httpx.AsyncClient, dict[str, str]], env: Env
) -> None:
    client, auth = api
    first_ones = await _newest_first(env, await _start_many(env, 15, WEDDING, "old"))
    first = (await client.get(f"{API}/workflows?limit=10", headers=auth)).json()
    assert [w["id"] for w in first["workflows"]] == first_ones[:10]
    cursor = first["next_cursor"]
    assert re.fullmatch(r"[A-Za-z0-9._:~-]+", cursor), cursor  # as it stands in a URL

    await env.clock.advance(1)
    newer = await _start_many(env, 5, WEDDING, "new")
    # Sent as the page gave it, unescaped: the rest of the old ones, none of the new.
    rest = (await client.get(f"{API}/workflows?limit=10&after={cursor}", headers=auth)).json()
    assert [w["id"] for w in rest["workflows"]] == first_ones[10:]
    assert rest["next_cursor"] is None
    top = (await client.get(f"{API}/workflows?limit=5", headers=auth)).json()
    assert {w["id"] for w in top["workflows"]} == set(newer)


async def test_a_cursor_the_list_did_not_give_is_refused(
    api: tuple[httpx.AsyncClient, dict[str, str]], env: Env
) -> None:
    client, auth = api
    await env.start()
    key = "55555555-5555-5555-5555-555555555555"
    for garbage in (
        "yesterday",
        f"2026-13-01T00:00:00Z_{key}",  # no month 13
        "2026-01-01T00:00:00Z_not-a-uuid",
        f"2026-01-01T00:00:00_{key}",  # no time zone
        f"0001-01-01T00:00:00+01:00_{key}",  # before year 1 in UTC
        key,
    ):
        answer = await client.get(f"{API}/workflows", params={"after": garbage}, headers=auth)
        assert answer.status_code == 422, (garbage, answer.text)
        body = answer.json()
        assert set(body) == {"error", "message", "detail"}
        assert body["error"] == "ValidationFailed"
        assert body["detail"][0]["loc"] == ["after"]
        assert body["message"].startswith("after: not a cursor")
        assert garbage not in answer.text  # not echoed
    too_long = await client.get(f"{API}/workflows", params={"after": "x" * 201}, headers=auth)
    assert too_long.status_code == 422
    assert [p["loc"] for p in too_long.json()["detail"]] == [["query", "after"]]

    cursor = (await client.get(f"{API}/workflows?limit=1", headers=auth)).json()["next_cursor"]
    both = await client.get(
        f"{API}/workflows",
        params={"after": cursor or f"2026-01-01T00:00:00Z_{key}", "offset": 1},
        headers=auth,
    )
    assert both.status_code == 422
    assert both.json()["detail"][0]["loc"] == ["offset"]
    # An empty cursor is the first page (a client may send after= before it has one).
    empty = await client.get(f"{API}/workflows", params={"after": ""}, headers=auth)
    assert empty.status_code == 200
    assert len(empty.json()["workflows"]) == 1
