"""The HTTP API over real HTTP: shapes, errors and the authorisation matrix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from orchcore import Orch, Settings
from orchcore.auth.tokens import VERIFIED_TTL_SECONDS
from tests.support.api import serve_api
from tests.support.polling import eventually

SERVICE = {
    "service_name": "venue",
    "service_version": "1.0.0",
    "service_type": "api",
    "deployment_environment": "production",
    "dependencies": ["payment"],
    "resource_requirements": {"cpu_limit": "500m", "memory_limit": "512Mi"},
    "scaling_config": {"min_replicas": 1, "max_replicas": 3, "target_cpu_percent": 70},
}
INSTANCE = {
    "instance_id": "venue-1",
    "node_name": "n1",
    "ip_address": "10.0.0.5",
    "port": 8080,
    "version": "1.0.0",
}


@pytest.fixture
async def api(orch: Orch) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client


async def token(orch: Orch, role: str, service: str | None = None) -> dict[str, str]:
    secret, _ = await orch.tokens.create(name=role, role=role, service_name=service, actor="t")
    return {"Authorization": f"Bearer {secret}"}


async def test_probes_need_no_token(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json()["status"] == "ok"
    assert (await api.get("/readyz")).json()["status"] == "ready"
    spec = (await api.get("/openapi.json")).json()
    assert "/api/orchestration/services" in spec["paths"]


async def test_register_and_list_in_the_seeds_shapes(orch: Orch, api: httpx.AsyncClient) -> None:
    admin = await token(orch, "platform_engineer")
    created = await api.post("/api/orchestration/services", json=SERVICE, headers=admin)
    assert created.status_code == 201, created.text
    service_id = created.json()["id"]
    added = await api.post(
        f"/api/orchestration/services/{service_id}/instances", json=INSTANCE, headers=admin
    )
    assert added.status_code == 201, added.text
    assert added.json()["status"] == "starting"

    listing = (await api.get("/api/orchestration/services", headers=admin)).json()
    assert listing["total_services"] == 1
    assert listing["healthy_services"] == 0
    entry = listing["services"][0]
    assert set(entry) == {
        "id",
        "service_name",
        "service_version",
        "service_type",
        "deployment_environment",
        "health_status",
        "instance_count",
        "healthy_instances",
        "dependencies",
        "resource_usage",
        "last_deployment",
    }
    assert entry["instance_count"] == 1
    assert entry["dependencies"] == ["payment"]
    assert set(entry["resource_usage"]) == {"cpu_percent", "memory_mb", "requests_per_minute"}

    instances = (await api.get("/api/orchestration/services/venue/instances", headers=admin)).json()
    assert instances["total_count"] == 1
    assert instances["instances"][0]["resource_usage"] == {
        "cpu_percent": 0.0,
        "memory_mb": 0.0,
        "disk_mb": 0.0,
    }

    updated = await api.put(
        f"/api/orchestration/services/{service_id}",
        json={"service_version": "1.1.0"},
        headers=admin,
    )
    assert updated.json()["service_version"] == "1.1.0"

    beat = await api.put(
        f"/api/orchestration/services/{service_id}/instances/venue-1/heartbeat",
        json={"resource_usage": {"cpu_percent": 12.5, "memory_mb": 300}},
        headers=admin,
    )
    assert beat.status_code == 200, beat.text
    listing = (await api.get("/api/orchestration/services", headers=admin)).json()
    assert listing["services"][0]["resource_usage"]["cpu_percent"] == 12.5

    gone = await api.delete(
        f"/api/orchestration/services/{service_id}/instances/venue-1", headers=admin
    )
    assert gone.json()["status"] == "terminating"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SERVICE, "service_type": "db"}, "service_type"),
        ({**SERVICE, "service_name": "UPPER"}, "service_name"),
        (
            {k: v for k, v in SERVICE.items() if k != "deployment_environment"},
            "deployment_environment",
        ),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    orch: Orch, api: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    answer = await api.post(
        "/api/orchestration/services", json=body, headers=await token(orch, "system_admin")
    )
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail[0]["loc"][-1] == field
    assert detail[0]["msg"]


async def test_unknown_is_404_and_duplicate_is_409(orch: Orch, api: httpx.AsyncClient) -> None:
    admin = await token(orch, "system_admin")
    assert (await api.get("/api/orchestration/services/nope", headers=admin)).status_code == 404
    missing = await api.get("/api/orchestration/services/nope/instances", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "service 'nope' not found"
    assert (
        await api.post("/api/orchestration/services", json=SERVICE, headers=admin)
    ).status_code == 201
    again = await api.post("/api/orchestration/services", json=SERVICE, headers=admin)
    assert again.status_code == 409
    assert "already registered" in again.json()["detail"]


READ = ("GET", "/api/orchestration/services", None)
WRITE = ("POST", "/api/orchestration/services", {**SERVICE, "service_name": "catering"})
REGISTER_OWN = (
    "POST",
    "/api/orchestration/services/venue/instances",
    {**INSTANCE, "instance_id": "venue-9"},
)
REGISTER_OTHER = (
    "POST",
    "/api/orchestration/services/payment/instances",
    {**INSTANCE, "instance_id": "payment-9"},
)
HEARTBEAT_OWN = ("PUT", "/api/orchestration/services/venue/instances/venue-1/heartbeat", {})
DEREGISTER_OTHER = ("DELETE", "/api/orchestration/services/payment/instances/payment-1", None)

MATRIX = [
    # role, service scope, request, expected status
    (None, None, READ, 401),
    (None, None, WRITE, 401),
    ("system_admin", None, READ, 200),
    ("system_admin", None, WRITE, 201),
    ("platform_engineer", None, READ, 200),
    ("platform_engineer", None, WRITE, 201),
    ("platform_engineer", None, REGISTER_OTHER, 201),
    ("monitoring_system", None, READ, 200),
    ("monitoring_system", None, WRITE, 403),
    ("monitoring_system", None, REGISTER_OWN, 403),
    ("service", "venue", READ, 403),
    ("service", "venue", WRITE, 403),
    ("service", "venue", REGISTER_OWN, 201),
    ("service", "venue", HEARTBEAT_OWN, 200),
    ("service", "venue", REGISTER_OTHER, 403),
    ("service", "venue", DEREGISTER_OTHER, 403),
]


@pytest.mark.parametrize(("role", "scope", "request_", "expected"), MATRIX)
async def test_authorisation_matrix(
    orch: Orch,
    api: httpx.AsyncClient,
    role: str | None,
    scope: str | None,
    request_: tuple[str, str, dict[str, object] | None],
    expected: int,
) -> None:
    for name in ("venue", "payment"):
        await orch.registry.register_service(
            {**SERVICE, "service_name": name, "dependencies": []}, actor="t"
        )
        await orch.registry.register_instance(
            name, {**INSTANCE, "instance_id": f"{name}-1"}, actor="t"
        )
    headers = await token(orch, role, scope) if role else {}
    method, path, body = request_
    answer = await api.request(method, path, json=body, headers=headers)
    assert answer.status_code == expected, answer.text
    if expected == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_bad_and_revoked_tokens_are_401(orch: Orch, api: httpx.AsyncClient) -> None:
    secret, issued = await orch.tokens.create(name="ops", role="system_admin", actor="t")
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await api.get("/api/orchestration/services", headers=headers)).status_code == 200
    garbage = {"Authorization": "Bearer orch_not-a-real-token"}
    assert (await api.get("/api/orchestration/services", headers=garbage)).status_code == 401
    await orch.tokens.revoke(str(issued.id), actor="t")
    revoked = await api.get("/api/orchestration/services", headers=headers)
    assert revoked.status_code == 401
    assert revoked.json()["detail"] == "unknown or revoked token"


async def test_a_token_revoked_by_another_process_stops_working_at_once(
    orch: Orch, dsn: str
) -> None:
    # Verified tokens are cached for a few seconds; a revocation must not wait for that.
    secret, issued = await orch.tokens.create(name="ops", role="system_admin", actor="t")
    assert await orch.tokens.authenticate(secret) is not None  # now cached here
    elsewhere = await Orch.open(Settings(database_url=dsn), start_discovery=False)
    try:
        await elsewhere.tokens.revoke(str(issued.id), actor="t")
    finally:
        await elsewhere.close()

    async def refused() -> bool:
        return await orch.tokens.authenticate(secret) is None

    await eventually(refused, timeout=VERIFIED_TTL_SECONDS / 2, message="the revocation")


async def test_writes_are_audited_with_the_token(orch: Orch, api: httpx.AsyncClient) -> None:
    from orchcore.audit import recent_actions

    await api.post(
        "/api/orchestration/services", json=SERVICE, headers=await token(orch, "platform_engineer")
    )
    entries = await recent_actions(orch.db.pool, target_kind="service", target_id="venue")
    assert entries[0].actor == "token:platform_engineer"
