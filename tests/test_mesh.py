"""Mesh policies: validation per type, priority, enable/disable, apply, live reload."""

from __future__ import annotations

from typing import Any

import pytest

from orchcore import ConflictError, ManualClock, NotFoundError, Orch, Settings, ValidationFailed
from orchcore.mesh.models import CreateMeshPolicyRequest
from orchcore.mesh.store import Q
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


def split(*destinations: str) -> dict[str, Any]:
    weights = [100 - 10 * (len(destinations) - 1)] + [10] * (len(destinations) - 1)
    return {
        "traffic_splitting": {
            "routes": [
                {"destination": d, "weight": w} for d, w in zip(destinations, weights, strict=True)
            ]
        }
    }


def allow_when(**when: list[str]) -> dict[str, Any]:
    return {"authorization": {"rules": [{"from": ["booking"], "to": ["venue"], "when": when}]}}


DESTINATION = "policy_config.traffic_splitting.routes.0.destination"
WHEN = "policy_config.authorization.rules.0.when"


@pytest.mark.parametrize(
    ("kind", "config", "field", "reason"),
    [
        (
            "traffic",
            split("payment-service:1.0.0", "2.0.0"),
            DESTINATION,
            "'payment-service:1.0.0' holds ':'; the target service is named in "
            "target_services, so write '1.0.0'",
        ),
        ("traffic", split("1.4.0+b7", "2.0.0"), DESTINATION, "'1.4.0+b7' holds '+'"),
        (
            "traffic",
            split("2.0.0", "v 3"),
            "policy_config.traffic_splitting.routes.1.destination",
            "holds ' '",
        ),
        ("traffic", split("1." + "9" * 70), DESTINATION, "this one has 72 characters"),
        ("traffic", split("-rc.1"), DESTINATION, "does not start and end with a letter or digit"),
        ("security", allow_when(endpoint=[""]), f"{WHEN}.endpoint.0", "cannot be empty"),
        (
            "security",
            allow_when(endpoint=["/health", "/bookings/{id}"]),
            f"{WHEN}.endpoint.1",
            "Istio refuses '{' and '}' outside its path templates",
        ),
        ("security", allow_when(method=[""]), f"{WHEN}.method.0", "not an HTTP method"),
        ("security", allow_when(method=["GET POST"]), f"{WHEN}.method.0", "not an HTTP method"),
    ],
    ids=[
        "service:version as destination",
        "build metadata in a destination",
        "space in a destination",
        "destination over 63 characters",
        "destination starting with '-'",
        "empty endpoint",
        "path template braces in an endpoint",
        "empty method",
        "two methods in one",
    ],
)
async def test_what_the_export_cannot_write_is_refused_at_creation(
    orch: Orch, kind: str, config: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await orch.mesh.create(request("p", kind, config), actor="t")
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert caught.value.http_status == 422
    assert await orch.mesh.list_policies() == []


async def test_labels_and_globs_istio_can_use_are_taken_as_given(orch: Orch) -> None:
    canary = await orch.mesh.create(
        request("canary", "traffic", split("1.4.0", "2.0.0-RC.1_b7", "v3")), actor="t"
    )
    assert canary.policy_config.traffic_splitting is not None
    destinations = [r.destination for r in canary.policy_config.traffic_splitting.routes]
    assert destinations == ["1.4.0", "2.0.0-RC.1_b7", "v3"]
    guarded = await orch.mesh.create(
        request("guarded", "security", allow_when(method=["get"], endpoint=["/a/*/b", "*"])),
        actor="t",
    )
    assert guarded.policy_config.authorization is not None
    assert guarded.policy_config.authorization.rules[0].when.method == ["GET"]


async def test_update_refuses_what_creation_refuses(orch: Orch) -> None:
    await orch.mesh.create(request("canary", "traffic", split("1.4.0", "2.0.0")), actor="t")
    with pytest.raises(ValidationFailed) as caught:
        await orch.mesh.update(
            "canary", {"policy_config": split("payment-service:1.0.0", "2.0.0")}, actor="t"
        )
    assert caught.value.field == DESTINATION
    stored = (await orch.mesh.get("canary")).policy_config.traffic_splitting
    assert stored is not None
    assert stored.routes[0].destination == "1.4.0"


async def store_old_row(
    orch: Orch, name: str, kind: str, config: dict[str, Any], *, enabled: bool = True
) -> None:
    """A row as an older orch wrote it, past today's rules (the store's own query)."""
    await orch.db.fetchrow(
        Q.insert_policy,
        name,
        kind,
        ["booking"],
        ["venue"],
        config,
        enabled,
        0,
        "old",
        orch.clock.now(),
    )
    await orch.mesh.reload()


async def test_an_old_row_still_loads_and_is_enforced(orch: Orch) -> None:
    await store_old_row(orch, "old-split", "traffic", split("payment-service:1.0.0", "2.0.0"))
    policy = await orch.mesh.get("old-split")
    assert policy.policy_config.traffic_splitting is not None
    assert policy.policy_config.traffic_splitting.routes[0].destination == "payment-service:1.0.0"
    assert [p.policy_name for p in await orch.mesh.list_policies()] == ["old-split"]
    effective = await orch.mesh.effective("booking", "venue")
    assert effective.sources == {"traffic_splitting": "old-split"}


async def test_an_old_row_is_mended_by_the_update_that_touches_it(orch: Orch) -> None:
    await store_old_row(orch, "old-split", "traffic", split("payment-service:1.0.0", "2.0.0"))
    with pytest.raises(ValidationFailed) as caught:
        await orch.mesh.update("old-split", {"priority": 5}, actor="t")
    assert (caught.value.field, "write '1.0.0'" in caught.value.reason) == (DESTINATION, True)
    mended = await orch.mesh.update(
        "old-split", {"priority": 5, "policy_config": split("1.0.0", "2.0.0")}, actor="t"
    )
    assert mended.priority == 5


async def test_an_old_row_can_be_disabled_but_not_enabled(orch: Orch) -> None:
    await store_old_row(orch, "old-allow", "security", allow_when(endpoint=["/bookings/{id}"]))
    assert not (await orch.mesh.set_enabled("old-allow", False, actor="t")).is_enabled
    with pytest.raises(ValidationFailed) as caught:
        await orch.mesh.set_enabled("old-allow", True, actor="t")
    assert caught.value.field == f"{WHEN}.endpoint.0"
    assert not (await orch.mesh.get("old-allow")).is_enabled
    with pytest.raises(ValidationFailed):
        await orch.mesh.update("old-allow", {"is_enabled": True}, actor="t")
    await store_old_row(orch, "old-split", "traffic", split("a:1", "2"))
    assert not (await orch.mesh.update("old-split", {"is_enabled": False}, actor="t")).is_enabled
    await orch.mesh.delete("old-split", actor="t")


def test_the_json_schema_says_what_a_label_and_a_glob_are() -> None:
    schema = CreateMeshPolicyRequest.model_json_schema()
    destination = schema["$defs"]["TrafficRoute"]["properties"]["destination"]
    assert destination["pattern"] == "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
    assert (destination["minLength"], destination["maxLength"]) == (1, 63)
    when = schema["$defs"]["RuleConditions"]["properties"]
    endpoint = when["endpoint"]["anyOf"][0]["items"]
    assert (endpoint["pattern"], endpoint["minLength"]) == ("^[^{}]+$", 1)
    assert when["method"]["anyOf"][0]["items"]["minLength"] == 1


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
