"""The example platform's manifest: valid registrations, a sensible graph, no orchcore."""

from __future__ import annotations

import ast
from graphlib import TopologicalSorter

from examples.wedding.manifest import (
    DEPENDENCIES,
    SERVICE_VERSIONS,
    instance_registration,
    registrations,
)

from orchcore import Orch
from orchcore.registry import RegisterInstanceRequest, RegisterServiceRequest
from tests.examples.platform_process import WEDDING_DIR

ACTOR = "test"


def test_every_registration_is_a_valid_request() -> None:
    found = registrations()
    assert [r["service_name"] for r in found] == [
        "notification",
        "payment",
        "venue",
        "catering",
        "photographer",
        "booking",
    ]
    for registration in found:
        request = RegisterServiceRequest.model_validate(registration)
        assert request.service_version == SERVICE_VERSIONS[request.service_name]
        assert request.health_check.interval_seconds == 2
        assert request.health_check.timeout_seconds == 1


def test_dependencies_name_known_services_without_cycles() -> None:
    for service, needs in DEPENDENCIES.items():
        assert set(needs) <= set(SERVICE_VERSIONS) - {service}
    order = list(TopologicalSorter(DEPENDENCIES).static_order())  # raises on a cycle
    assert order[0] == "notification"


def test_registrations_are_fresh_copies() -> None:
    registrations()[0]["dependencies"].append("venue")
    assert registrations()[0]["dependencies"] == []


def test_nothing_in_the_example_imports_orchcore() -> None:
    for path in WEDDING_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "orchcore" for n in names), path.name


async def test_registering_the_manifest_resolves_every_dependency(orch: Orch) -> None:
    for registration in registrations():
        await orch.registry.register_service(registration, actor=ACTOR)

    services = {s.service_name: s for s in await orch.registry.list_services()}
    assert set(services) == set(SERVICE_VERSIONS)
    for name, needs in DEPENDENCIES.items():
        dependencies = await orch.registry.dependencies_of(name)
        assert sorted(d.service_name for d in dependencies) == sorted(needs)
        assert all(d.registered for d in dependencies)
    assert services["photographer"].load_balancing == "least_connections"


async def test_an_announced_instance_registers(orch: Orch) -> None:
    await orch.registry.register_service(registrations()[0], actor=ACTOR)
    announcement = {
        "service": "notification",
        "instance_id": "notification-1",
        "host": "127.0.0.1",
        "port": 41234,
        "version": "1.0.5",
    }
    request = RegisterInstanceRequest.model_validate(instance_registration(announcement))
    instance = await orch.registry.register_instance("notification", request, actor=ACTOR)
    assert (instance.ip_address, instance.port, instance.status) == ("127.0.0.1", 41234, "starting")
