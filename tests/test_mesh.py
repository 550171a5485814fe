"""Mesh policies: validation per type, priority, enable/disable, apply, live reload."""

from __future__ import annotations

from typing import Any

import pytest

from orchcore import ConflictError, ManualClock, NotFoundError, Orch, Settings, ValidationFailed
from tests.support.http import SwitchableServer
from tests.support.polling import eventually
from tests.support.registry import healthy_service


def request(name: str, kind: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "policy_name": name,
        "policy_type": kind,
        "source_services": ["booking"],
        "target_services": ["venue"],
        "policy_config": config,
        **extra,
    }


LIMIT = {"rate_limiting": {"requests_per_second": 5, "burst_size": 10}}


@pytest.mark.parametrize(
    ("kind", "config", "field", "reason"),
    [
        (
            "traffic",
            {"mutual_tls": {"mode": "strict"}},
            "policy_config.mutual_tls",
            "not a traffic setting",
        ),
        ("security", LIMIT, "policy_config.rate_limiting", "not a security setting"),
        ("traffic", {}, "policy_config", "at least one section"),
        (
            "traffic",
            {"traffic_splitting": {"routes": [{"destination": "1", "weight": 70}]}},
            "policy_config.traffic_splitting",
            "add up to 100",
        ),
        (
            "traffic",
            {"rate_limiting": {"requests_per_second": 0, "burst_size": 1}},
            "policy_config.rate_limiting.requests_per_second",
            "greater than 0",
        ),
        (
            "resilience",
            {
                "retry_policy": {
                    "max_attempts": 3,
                    "timeout_per_attempt": 1,
                    "retry_conditions": ["always"],
                }
            },
            "policy_config.retry_policy.retry_conditions.0",
            "connect-failure",
        ),
        (
            "security",
            {"authorization": {"rules": [{"from": ["Bad Name"], "to": ["venue"]}]}},
            "policy_config.authorization.rules.0.from",
            "not a service name",
        ),
        (
            "observability",
            {"tracing": {"sampling_rate": 2}},
            "policy_config.tracing.sampling_rate",
            "less than or equal to 1",
        ),
        (
            "traffic",
            {"load_balancing": {"algorithm": "random"}},
            "policy_config.load_balancing.algorithm",
            "round_robin",
        ),
    ],
)
async def test_config_is_validated_per_type(
    orch: Orch, kind: str, config: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await orch.mesh.create(request("p", kind, config), actor="t")
    assert caught.value.field == field
    assert reason in caught.value.reason


async def test_crud_and_audit(orch: Orch) -> None:
    from orchcore.audit import recent_actions

    created = await orch.mesh.create(request("venue-limit", "traffic", LIMIT), actor="alice")
    assert created.policy_config.rate_limiting is not None
    with pytest.raises(ConflictError):
        await orch.mesh.create(request("venue-limit", "traffic", LIMIT), actor="alice")
    updated = await orch.mesh.update("venue-limit", {"priority": 5}, actor="bob")
    assert (updated.priority, updated.policy_config.rate_limiting) == (
        5,
        created.policy_config.rate_limiting,
    )
    with pytest.raises(ValidationFailed, match="not a traffic setting"):
        await orch.mesh.update(
            "venue-limit", {"policy_config": {"mutual_tls": {"mode": "strict"}}}, actor="bob"
        )
    disabled = await orch.mesh.set_enabled(created.id, False, actor="carol", reason="noisy")
    assert not disabled.is_enabled
    await orch.mesh.delete("venue-limit", actor="dave")
    with pytest.raises(NotFoundError):
        await orch.mesh.get("venue-limit")
    actions = [a.action for a in await recent_actions(orch.db.pool, target_kind="mesh_policy")]
    assert actions == [
        "mesh_policy.delete",
        "mesh_policy.disable",
        "mesh_policy.update",
        "mesh_policy.create",
    ]


async def test_higher_priority_wins_per_setting(orch: Orch) -> None:
    await orch.mesh.create(
        request(
            "low",
            "traffic",
            {
                "rate_limiting": {"requests_per_second": 1, "burst_size": 1},
                "load_balancing": {"algorithm": "weighted"},
            },
            priority=1,
        ),
        actor="t",
    )
    await orch.mesh.create(
        request(
            "high",
            "traffic",
            {"rate_limiting": {"requests_per_second": 50, "burst_size": 100}},
            priority=10,
        ),
        actor="t",
    )
    effective = await orch.mesh.effective("booking", "venue")
    assert effective.rate_limiting is not None
    assert effective.rate_limiting.requests_per_second == 50
    assert effective.load_balancing is not None
    assert effective.load_balancing.algorithm == "weighted"
    assert effective.sources == {"rate_limiting": "high", "load_balancing": "low"}
    assert (await orch.mesh.effective("catering", "venue")).rate_limiting is None
    await orch.mesh.set_enabled("high", False, actor="t")
    effective = await orch.mesh.effective("booking", "venue")
    assert effective.rate_limiting is not None
    assert effective.rate_limiting.requests_per_second == 1


async def test_apply_reports_services_and_instances(
    orch: Orch, http_server: SwitchableServer
) -> None:
    await healthy_service(orch, "venue", [http_server])
    await orch.mesh.create(
        {**request("both", "traffic", LIMIT), "target_services": ["venue", "ghost"]}, actor="t"
    )
    result = await orch.mesh.apply("both", actor="ops")
    assert result.application_status == "partial"
    assert (result.applied_to_services, result.applied_to_instances) == (["venue"], 1)
    assert result.errors is not None
    assert result.errors[0].service == "ghost"
    await orch.mesh.create(request("venue-only", "traffic", LIMIT), actor="t")
    assert (await orch.mesh.apply("venue-only", actor="ops")).application_status == "success"
    assert (await orch.mesh.get("venue-only")).last_applied_by == "ops"
    await orch.mesh.set_enabled("venue-only", False, actor="t")
    assert (await orch.mesh.apply("venue-only", actor="ops")).application_status == "failed"


async def test_overview_has_the_seeds_shape(orch: Orch, http_server: SwitchableServer) -> None:
    await healthy_service(orch, "venue", [http_server])
    await orch.mesh.create(request("venue-limit", "traffic", LIMIT), actor="t")
    await orch.mesh.create(
        request("venue-mtls", "security", {"mutual_tls": {"mode": "strict"}}, is_enabled=False),
        actor="t",
    )
    overview = (await orch.mesh.overview()).model_dump(mode="json")
    entry = overview["policies"][0]
    assert set(entry) == {
        "id",
        "policy_name",
        "policy_type",
        "source_services",
        "target_services",
        "is_enabled",
        "priority",
        "created_at",
        "applied_instances",
        "policy_summary",
    }
    assert entry["policy_summary"] == "rate limit 5/s burst 10"
    assert entry["applied_instances"] == 1
    by_type = {t["type"]: (t["count"], t["enabled_count"]) for t in overview["policy_types"]}
    assert by_type["traffic"] == (1, 1)
    assert by_type["security"] == (1, 0)


async def test_other_process_picks_up_a_new_policy(
    orch: Orch, dsn: str, clock: ManualClock
) -> None:
    await orch.caller()  # starts the policy cache with its NOTIFY subscription
    assert (await orch.mesh.effective("booking", "venue")).rate_limiting is None
    other = await Orch.open(
        Settings(database_url=dsn), clock=clock, listen=False, start_discovery=False
    )
    try:
        await other.mesh.create(request("venue-limit", "traffic", LIMIT), actor="t")
    finally:
        await other.close()

    async def limited() -> bool:
        return (await orch.mesh.effective("booking", "venue")).rate_limiting is not None

    await eventually(limited, timeout=5)
