"""Breaker and mesh routes over real HTTP, in the seed's shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from orchcore import Orch
from orchcore.resilience.retry import RetryPolicy
from tests.support.api import serve_api
from tests.support.callers import known_callers
from tests.support.http import SwitchableServer
from tests.support.registry import healthy_service


@pytest.fixture
async def api(orch: Orch) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client


async def headers(orch: Orch, role: str = "platform_engineer") -> dict[str, str]:
    secret, _ = await orch.tokens.create(name=role, role=role, actor="t")
    return {"Authorization": f"Bearer {secret}"}


async def open_breaker(orch: Orch, server: SwitchableServer) -> None:
    await healthy_service(orch, "venue", [server])
    await known_callers(orch, "booking")
    caller = await orch.caller()
    await server.set_mode("error")
    for _ in range(5):
        await caller.call(
            "booking", "venue", "/x", method="GET", retry=RetryPolicy.single_attempt()
        )
    await orch.events.flush()


async def test_breakers_list_reset_and_metrics(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    await open_breaker(orch, http_server)
    auth = await headers(orch)
    listing = (await api.get("/api/orchestration/circuit-breakers", headers=auth)).json()
    assert listing["state_summary"]["open"] == 1
    entry = listing["circuit_breakers"][0]
    for key in (
        "id",
        "service_name",
        "target_service",
        "endpoint_pattern",
        "current_state",
        "failure_count",
        "success_count",
        "failure_threshold",
        "last_failure_at",
        "state_changed_at",
        "next_attempt_at",
        "state_duration_seconds",
    ):
        assert key in entry
    breaker_id = entry["id"]

    metrics = (
        await api.get(f"/api/orchestration/circuit-breakers/{breaker_id}/metrics", headers=auth)
    ).json()
    assert metrics["metrics"]["total_requests_24h"] == 5
    assert metrics["metrics"]["failed_requests_24h"] == 5
    assert metrics["metrics"]["success_rate_24h"] == 0.0
    assert metrics["metrics"]["state_changes_24h"] == 1
    assert metrics["state_history"][0]["to_state"] == "open"
    assert metrics["failure_patterns"][0]["failure_count"] == 5

    missing_reason = await api.put(
        f"/api/orchestration/circuit-breakers/{breaker_id}/reset", json={}, headers=auth
    )
    assert missing_reason.status_code == 422
    reset = await api.put(
        f"/api/orchestration/circuit-breakers/{breaker_id}/reset",
        json={"reason": "venue redeployed"},
        headers=auth,
    )
    assert reset.json()["current_state"] == "closed"
    reader = await headers(orch, "monitoring_system")
    refused = await api.put(
        f"/api/orchestration/circuit-breakers/{breaker_id}/reset",
        json={"reason": "x"},
        headers=reader,
    )
    assert refused.status_code == 403


async def test_create_breaker_conflict_and_validation(orch: Orch, api: httpx.AsyncClient) -> None:
    auth = await headers(orch)
    body = {
        "service_name": "booking",
        "target_service": "venue",
        "failure_threshold": 3,
        "success_threshold": 2,
        "timeout_duration": 30,
    }
    created = await api.post("/api/orchestration/circuit-breakers", json=body, headers=auth)
    assert created.status_code == 201
    assert created.json()["endpoint_pattern"] == "*"
    again = await api.post("/api/orchestration/circuit-breakers", json=body, headers=auth)
    assert again.status_code == 409
    bad = await api.post(
        "/api/orchestration/circuit-breakers", json={**body, "failure_threshold": 0}, headers=auth
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-1] == "failure_threshold"


async def test_mesh_policy_routes(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    auth = await headers(orch)
    body = {
        "policy_name": "venue-limit",
        "policy_type": "traffic",
        "source_services": [],
        "target_services": ["venue"],
        "policy_config": {"rate_limiting": {"requests_per_second": 5, "burst_size": 10}},
    }
    created = await api.post("/api/orchestration/mesh/policies", json=body, headers=auth)
    assert created.status_code == 201, created.text
    policy_id = created.json()["id"]
    listing = (await api.get("/api/orchestration/mesh/policies", headers=auth)).json()
    assert listing["policies"][0]["policy_summary"] == "rate limit 5/s burst 10"
    applied = (
        await api.post(f"/api/orchestration/mesh/policies/{policy_id}/apply", headers=auth)
    ).json()
    assert applied == {
        "policy_id": policy_id,
        "applied_to_services": ["venue"],
        "applied_to_instances": 1,
        "application_status": "success",
        "errors": None,
    }
    updated = await api.put(
        f"/api/orchestration/mesh/policies/{policy_id}", json={"is_enabled": False}, headers=auth
    )
    assert updated.json()["is_enabled"] is False
    wrong = await api.post(
        "/api/orchestration/mesh/policies",
        headers=auth,
        json={**body, "policy_name": "bad", "policy_config": {"mutual_tls": {"mode": "strict"}}},
    )
    assert wrong.status_code == 422
    deleted = await api.delete(f"/api/orchestration/mesh/policies/{policy_id}", headers=auth)
    assert deleted.status_code == 200
    assert (
        await api.get(f"/api/orchestration/mesh/policies/{policy_id}", headers=auth)
    ).status_code == 404


async def test_a_call_through_the_api_keeps_refusal_statuses(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    await known_callers(orch, "booking")
    await orch.mesh.create(
        {
            "policy_name": "venue-limit",
            "policy_type": "traffic",
            "target_services": ["venue"],
            "policy_config": {"rate_limiting": {"requests_per_second": 1, "burst_size": 2}},
        },
        actor="t",
    )
    auth = await headers(orch)
    body = {"endpoint": "/reservations", "method": "GET", "source": "booking"}
    answers = [
        await api.post("/api/orchestration/services/venue/call", json=body, headers=auth)
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].json()["status_code"] == 200
    assert "rate limit booking → venue (1/s) exceeded" in answers[2].json()["detail"]
    missing = await api.post("/api/orchestration/services/ghost/call", json=body, headers=auth)
    assert missing.status_code == 404


async def test_a_call_through_the_api_continues_the_requests_trace(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    answer = await api.post(
        "/api/orchestration/services/venue/call",
        json={"endpoint": "/reservations", "method": "GET"},
        headers={**await headers(orch), "traceparent": incoming, "tracestate": "vendor=1"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    [seen] = http_server.requests
    sent = seen.headers["traceparent"]
    assert sent.startswith("00-0af7651916cd43dd8448eb211c80319c-") and sent.endswith("-01")
    assert sent.split("-")[2] != "b7ad6b7169203331"  # the call's own span, a child
    assert seen.headers["tracestate"] == "vendor=1"
    await orch.tracing.flush()
    parent = await orch.db.fetchval(
        "SELECT parent_span_id FROM distributed_traces WHERE span_id = $1", sent.split("-")[2]
    )
    assert parent == "b7ad6b7169203331"
