"""Registry CRUD and validation against a real database."""

from __future__ import annotations

import pytest

from orchcore import ConflictError, NotFoundError, Orch, ValidationFailed

ACTOR = "test"


def venue(**overrides: object) -> dict[str, object]:
    return {
        "service_name": "venue",
        "service_version": "1.2.0",
        "service_type": "api",
        "deployment_environment": "production",
        "base_url": "http://venue.internal:8080",
        "dependencies": ["payment", "notification"],
        "resource_requirements": {"cpu_limit": "500m", "memory_limit": "512Mi"},
        "scaling_config": {"min_replicas": 1, "max_replicas": 4, "target_cpu_percent": 70},
        **overrides,
    }


def instance(n: int = 1, port: int = 9001, **overrides: object) -> dict[str, object]:
    return {
        "instance_id": f"venue-{n}",
        "node_name": "node-a",
        "ip_address": "127.0.0.1",
        "port": port,
        "version": "1.2.0",
        **overrides,
    }


async def test_register_and_read_back(orch: Orch) -> None:
    service = await orch.registry.register_service(venue(), actor=ACTOR)
    assert service.service_name == "venue"
    assert service.dependencies == ["payment", "notification"]
    assert service.health_check.failures_before_critical == 3
    assert service.resource_requirements == {
        "cpu_limit": "500m",
        "memory_limit": "512Mi",
        "storage_limit": None,
    }
    assert (await orch.registry.get_service("venue")).id == service.id
    assert (await orch.registry.get_service(str(service.id))).service_name == "venue"
    assert [s.service_name for s in await orch.registry.list_services()] == ["venue"]


async def test_duplicate_name_is_a_conflict(orch: Orch) -> None:
    await orch.registry.register_service(venue(), actor=ACTOR)
    with pytest.raises(ConflictError, match="already registered"):
        await orch.registry.register_service(venue(), actor=ACTOR)


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"service_name": "Venue!"}, "service_name", "lower-case"),
        ({"service_type": "database"}, "service_type", "api"),
        ({"deployment_environment": "prod"}, "deployment_environment", "production"),
        ({"base_url": "ftp://x"}, "base_url", "http"),
        ({"health_check_endpoint": "health"}, "health_check_endpoint", "starting with '/'"),
        ({"dependencies": ["payment", "payment"]}, "dependencies", "listed twice"),
        ({"dependencies": ["venue"]}, "dependencies", "itself"),
        (
            {"resource_requirements": {"cpu_limit": "lots", "memory_limit": "1Gi"}},
            "resource_requirements.cpu_limit",
            "quantity",
        ),
        (
            {"scaling_config": {"min_replicas": 3, "max_replicas": 2, "target_cpu_percent": 50}},
            "scaling_config",
            "max_replicas",
        ),
        (
            {"health_check": {"interval_seconds": 1, "timeout_seconds": 5}},
            "health_check",
            "timeout_seconds",
        ),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
async def test_validation_names_the_field(
    orch: Orch, overrides: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await orch.registry.register_service(venue(**overrides), actor=ACTOR)
    assert caught.value.field == field
    assert reason in caught.value.reason


async def test_dependencies_resolve_when_target_registers_later(orch: Orch) -> None:
    await orch.registry.register_service(venue(), actor=ACTOR)
    deps = {d.service_name: d.registered for d in await orch.registry.dependencies_of("venue")}
    assert deps == {"notification": False, "payment": False}

    await orch.registry.register_service(
        venue(service_name="payment", dependencies=[]), actor=ACTOR
    )
    deps = {d.service_name: d.registered for d in await orch.registry.dependencies_of("venue")}
    assert deps == {"notification": False, "payment": True}
    assert await orch.registry.dependents_of("payment") == ["venue"]


async def test_update_changes_only_given_fields(orch: Orch) -> None:
    await orch.registry.register_service(venue(), actor=ACTOR)
    updated = await orch.registry.update_service(
        "venue",
        {
            "service_version": "1.3.0",
            "dependencies": ["payment"],
            "health_check": {"interval_seconds": 2, "timeout_seconds": 1},
        },
        actor=ACTOR,
    )
    assert updated.service_version == "1.3.0"
    assert updated.base_url == "http://venue.internal:8080"
    assert updated.health_check.interval_seconds == 2
    assert updated.health_check.failures_before_critical == 3
    assert [d.service_name for d in await orch.registry.dependencies_of("venue")] == ["payment"]


async def test_unknown_service_is_not_found(orch: Orch) -> None:
    with pytest.raises(NotFoundError, match="service 'nope' not found"):
        await orch.registry.get_service("nope")
    with pytest.raises(NotFoundError):
        await orch.registry.update_service("nope", {"service_version": "2.0.0"}, actor=ACTOR)


async def test_instance_lifecycle_is_recorded(orch: Orch) -> None:
    await orch.registry.register_service(venue(), actor=ACTOR)
    registered = await orch.registry.register_instance("venue", instance(), actor=ACTOR)
    assert registered.status == "starting"
    assert registered.ip_address == "127.0.0.1"

    gone = await orch.registry.deregister_instance("venue", "venue-1", actor=ACTOR, reason="drain")
    assert gone.status == "terminating"
    assert await orch.registry.list_instances("venue") == []
    assert len(await orch.registry.list_instances("venue", include_gone=True)) == 1

    events = await orch.registry.instance_events("venue-1")
    assert [(e.from_status, e.to_status, e.reason) for e in reversed(events)] == [
        (None, "starting", "registered"),
        ("starting", "terminating", "drain"),
    ]

    again = await orch.registry.register_instance("venue", instance(), actor=ACTOR)
    assert again.status == "starting"


async def test_instance_of_another_service_is_a_conflict(orch: Orch) -> None:
    await orch.registry.register_service(venue(), actor=ACTOR)
    await orch.registry.register_service(
        venue(service_name="payment", dependencies=[]), actor=ACTOR
    )
    await orch.registry.register_instance("venue", instance(), actor=ACTOR)
    with pytest.raises(ConflictError, match="belongs to service 'venue'"):
        await orch.registry.register_instance("payment", instance(), actor=ACTOR)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"port": 70000}, "port"),
        ({"ip_address": "not-an-ip"}, "ip_address"),
        ({"metadata": {"weight": -1}}, "metadata"),
        ({"instance_id": ""}, "instance_id"),
    ],
)
async def test_instance_validation(orch: Orch, overrides: dict[str, object], field: str) -> None:
    await orch.registry.register_service(venue(), actor=ACTOR)
    with pytest.raises(ValidationFailed) as caught:
        await orch.registry.register_instance("venue", instance(**overrides), actor=ACTOR)
    assert caught.value.field == field


async def test_deactivation_deregisters_instances_and_register_brings_back(orch: Orch) -> None:
    await orch.registry.register_service(venue(), actor=ACTOR)
    await orch.registry.register_instance("venue", instance(), actor=ACTOR)
    service = await orch.registry.deactivate_service("venue", actor=ACTOR, reason="retired")
    assert not service.is_active
    assert (await orch.registry.get_instance("venue-1")).status == "deregistered"
    assert await orch.registry.list_services() == []

    back = await orch.registry.register_service(venue(service_version="2.0.0"), actor=ACTOR)
    assert back.is_active and back.service_version == "2.0.0"
    assert back.id == service.id


async def test_actions_are_audited(orch: Orch) -> None:
    from orchcore.audit import recent_actions

    await orch.registry.register_service(venue(), actor="alice")
    await orch.registry.update_service("venue", {"owner_team": "weddings"}, actor="bob")
    entries = await recent_actions(orch.db.pool, target_kind="service", target_id="venue")
    assert [(e.actor, e.action) for e in entries] == [
        ("bob", "service.update"),
        ("alice", "service.register"),
    ]
