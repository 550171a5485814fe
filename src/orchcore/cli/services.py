"""`orch service ...`"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchcore.actors import local_operator
from orchcore.cli.context import (
    confirm_destructive,
    json_option,
    load_document,
    parse_pairs,
    run_with_orch,
)
from orchcore.cli.output import age, emit, service_status, table, with_symbol
from orchcore.facade import Orch


@click.group("service")
def service_group() -> None:
    """Register, inspect and deactivate services."""


F = TypeVar("F", bound=Callable[..., Any])


def _registration_options(fn: F) -> F:
    """The flags shared by `register` and `update`."""
    options = [
        click.option(
            "--file",
            "file_",
            metavar="FILE",
            help="JSON or YAML request (the seed's RegisterServiceRequest); "
            "flags override its fields.",
        ),
        click.option("--version", "service_version", help="Service version, e.g. 1.4.2."),
        click.option(
            "--type",
            "service_type",
            type=click.Choice(["api", "worker", "scheduler", "gateway"]),
        ),
        click.option(
            "--env",
            "deployment_environment",
            type=click.Choice(["development", "staging", "production"]),
        ),
        click.option("--description", "service_description"),
        click.option("--base-url", help="http(s)://host[:port] of the service."),
        click.option("--health-endpoint", "health_check_endpoint", help="Default /health."),
        click.option(
            "--depends-on",
            "dependencies",
            multiple=True,
            metavar="SERVICE",
            help="A dependency (repeat for several).",
        ),
        click.option("--cpu", "cpu_limit", help="CPU limit, e.g. 500m."),
        click.option("--memory", "memory_limit", help="Memory limit, e.g. 512Mi."),
        click.option("--replicas", metavar="MIN:MAX", help="Scaling bounds, e.g. 2:6."),
        click.option("--target-cpu", type=int, help="Scaling target CPU percent."),
        click.option(
            "--check",
            "check_pairs",
            multiple=True,
            metavar="KEY=VALUE",
            help="Health check setting, e.g. kind=ttl, interval_seconds=5.",
        ),
        click.option(
            "--lb",
            "load_balancing",
            type=click.Choice(["round_robin", "least_connections", "weighted"]),
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_service_request(
    name: str | None, flags: dict[str, Any], *, for_update: bool
) -> dict[str, Any]:
    """Merge --file and flags into the request dict the registry validates."""
    request: dict[str, Any] = (
        load_document(flags["file_"], option="--file") if flags["file_"] else {}
    )
    if name:
        request["service_name"] = name
    for key in (
        "service_version",
        "service_type",
        "deployment_environment",
        "service_description",
        "base_url",
        "health_check_endpoint",
        "load_balancing",
    ):
        if flags.get(key) is not None:
            request[key] = flags[key]
    if flags.get("dependencies"):
        request["dependencies"] = list(flags["dependencies"])
    if flags.get("cpu_limit") or flags.get("memory_limit"):
        request["resource_requirements"] = {
            **request.get("resource_requirements", {}),
            **{k: flags[k] for k in ("cpu_limit", "memory_limit") if flags.get(k)},
        }
    if flags.get("replicas") or flags.get("target_cpu"):
        scaling = dict(request.get("scaling_config", {}))
        if flags.get("replicas"):
            low, _, high = str(flags["replicas"]).partition(":")
            scaling["min_replicas"], scaling["max_replicas"] = low, high or low
        if flags.get("target_cpu"):
            scaling["target_cpu_percent"] = flags["target_cpu"]
        scaling.setdefault("target_cpu_percent", 70)
        request["scaling_config"] = scaling
    if flags.get("check_pairs"):
        request["health_check"] = {
            **request.get("health_check", {}),
            **parse_pairs(flags["check_pairs"], option="--check"),
        }
    if not for_update:
        request.setdefault("service_type", "api")
        request.setdefault("deployment_environment", "development")
    if for_update:
        request.pop("service_name", None)
    return request


@service_group.command("register")
@click.argument("name", required=False)
@_registration_options
@json_option
@run_with_orch
async def register(orch: Orch, name: str | None, as_json: bool, **flags: Any) -> None:
    """Register service NAME (or the one described by --file)."""
    request = build_service_request(name, flags, for_update=False)
    service = await orch.registry.register_service(request, actor=local_operator())
    emit(
        service,
        as_json=as_json,
        human=lambda: click.echo(f"registered {service.service_name} ({service.id})"),
    )


@service_group.command("update")
@click.argument("name")
@_registration_options
@json_option
@run_with_orch
async def update(orch: Orch, name: str, as_json: bool, **flags: Any) -> None:
    """Change fields of service NAME; unspecified fields keep their value."""
    request = build_service_request(None, flags, for_update=True)
    service = await orch.registry.update_service(name, request, actor=local_operator())
    emit(service, as_json=as_json, human=lambda: click.echo(f"updated {service.service_name}"))


@service_group.command("list")
@click.option("--env", "environment", help="Only this environment.")
@click.option("--all", "include_inactive", is_flag=True, help="Include deactivated services.")
@json_option
@run_with_orch
async def list_services(
    orch: Orch, environment: str | None, include_inactive: bool, as_json: bool
) -> None:
    """Services with their instances' health."""
    services = await orch.registry.list_services(
        environment=environment, include_inactive=include_inactive
    )
    emit(
        services,
        as_json=as_json,
        human=lambda: table(
            ["SERVICE", "VERSION", "TYPE", "ENV", "HEALTHY", "STATUS"],
            [
                (
                    s.service_name,
                    s.service_version,
                    s.service_type,
                    s.deployment_environment,
                    f"{s.healthy_instances}/{s.live_instances}",
                    service_status(
                        s.health_status, live_instances=s.live_instances, is_active=s.is_active
                    ),
                )
                for s in services
            ],
        ),
    )


@service_group.command("show")
@click.argument("name")
@json_option
@run_with_orch
async def show(orch: Orch, name: str, as_json: bool) -> None:
    """Service NAME: settings, dependencies, instances and recent state changes."""
    service = await orch.registry.get_service(name)
    dependencies = await orch.registry.dependencies_of(service.id)
    dependents = await orch.registry.dependents_of(service.service_name)
    instances = await orch.registry.list_instances(service.id)
    events = await orch.registry.service_events(service.id, limit=10)
    data = {
        "service": service,
        "dependencies": dependencies,
        "dependents": dependents,
        "instances": instances,
        "recent_events": events,
    }

    def human() -> None:
        click.echo(
            f"{service.service_name} {service.service_version}  "
            f"{with_symbol(service.health_status)}  "
            f"({service.service_type}, {service.deployment_environment})"
        )
        if not service.is_active:
            click.echo("deactivated")
        click.echo(f"base url:      {service.base_url or '-'}")
        check = service.health_check
        click.echo(
            f"health check:  {check.kind} {service.health_check_endpoint} every "
            f"{check.interval_seconds:g}s, timeout {check.timeout_seconds:g}s, "
            f"unhealthy after {check.failures_before_critical} failures"
        )
        deps = ", ".join(
            d.service_name + ("" if d.registered else " (not registered)") for d in dependencies
        )
        click.echo(f"depends on:    {deps or '-'}")
        click.echo(f"used by:       {', '.join(dependents) or '-'}")
        click.echo("")
        table(
            ["INSTANCE", "ADDRESS", "STATUS", "VERSION", "LAST CHECK", "RESULT", "FAILS"],
            [
                (
                    i.instance_id,
                    f"{i.ip_address}:{i.port}",
                    with_symbol(i.status),
                    i.version,
                    age(i.last_health_check, orch.clock),
                    i.last_check_output or "-",
                    i.health_check_failures,
                )
                for i in instances
            ],
        )
        if events:
            click.echo("")
            table(
                ["WHEN", "INSTANCE", "CHANGE", "REASON", "BY"],
                [
                    (
                        age(e.occurred_at, orch.clock),
                        e.instance_id,
                        f"{e.from_status or '-'} → {e.to_status}",
                        e.reason,
                        e.actor,
                    )
                    for e in events
                ],
            )

    emit(data, as_json=as_json, human=human)


@service_group.command("deactivate")
@click.argument("name")
@click.option("--reason", help="Why (kept in the audit log).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@run_with_orch
async def deactivate(orch: Orch, name: str, reason: str | None, yes: bool, as_json: bool) -> None:
    """Take service NAME out of discovery and deregister its instances."""
    service = await orch.registry.get_service(name)
    confirm_destructive(
        f"Deactivate service {service.service_name} and deregister its "
        f"{service.live_instances} instance(s)?",
        yes=yes,
    )
    service = await orch.registry.deactivate_service(name, actor=local_operator(), reason=reason)
    emit(service, as_json=as_json, human=lambda: click.echo(f"deactivated {service.service_name}"))
