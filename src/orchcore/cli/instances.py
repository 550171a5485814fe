"""`orch instance ...`"""

from __future__ import annotations

from typing import Any

import click

from orchcore.actors import local_operator
from orchcore.cli.context import confirm_destructive, json_option, parse_pairs, run_with_orch
from orchcore.cli.output import age, emit, table, with_symbol
from orchcore.facade import Orch


@click.group("instance")
def instance_group() -> None:
    """Register, list, heartbeat and deregister service instances."""


@instance_group.command("register")
@click.argument("service")
@click.option("--id", "instance_id", required=True, help="Instance id (pod/container id).")
@click.option("--address", "ip_address", required=True, help="IP address of the instance.")
@click.option("--port", type=int, required=True)
@click.option("--version", required=True)
@click.option("--node", "node_name", default="", help="Node the instance runs on.")
@click.option("--weight", type=int, help="Weight for weighted balancing (metadata.weight).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Instance metadata.")
@json_option
@run_with_orch
async def register(
    orch: Orch,
    service: str,
    as_json: bool,
    weight: int | None,
    meta: tuple[str, ...],
    **fields: Any,
) -> None:
    """Register an instance of SERVICE (again: update it)."""
    metadata = parse_pairs(meta, option="--meta")
    if weight is not None:
        metadata["weight"] = weight
    instance = await orch.registry.register_instance(
        service, {**fields, "metadata": metadata}, actor=local_operator()
    )
    emit(
        instance,
        as_json=as_json,
        human=lambda: click.echo(f"registered {instance.instance_id} ({instance.status})"),
    )


@instance_group.command("list")
@click.argument("service")
@click.option("--all", "include_gone", is_flag=True, help="Include deregistered instances.")
@json_option
@run_with_orch
async def list_instances(orch: Orch, service: str, include_gone: bool, as_json: bool) -> None:
    """Instances of SERVICE with their health."""
    instances = await orch.registry.list_instances(service, include_gone=include_gone)
    emit(
        instances,
        as_json=as_json,
        human=lambda: table(
            ["INSTANCE", "ADDRESS", "STATUS", "VERSION", "LAST CHECK", "RESULT", "FAILS", "SEEN"],
            [
                (
                    i.instance_id,
                    f"{i.ip_address}:{i.port}",
                    with_symbol(i.status),
                    i.version,
                    age(i.last_health_check, orch.clock),
                    i.last_check_output or "-",
                    i.health_check_failures,
                    age(i.last_seen_at, orch.clock),
                )
                for i in instances
            ],
        ),
    )


@instance_group.command("deregister")
@click.argument("service")
@click.argument("instance_id")
@click.option("--reason", help="Why (kept with the state change).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@run_with_orch
async def deregister(
    orch: Orch, service: str, instance_id: str, reason: str | None, yes: bool, as_json: bool
) -> None:
    """Gracefully deregister INSTANCE_ID of SERVICE (it stops receiving traffic)."""
    confirm_destructive(f"Deregister instance {instance_id} of service {service}?", yes=yes)
    instance = await orch.registry.deregister_instance(
        service, instance_id, actor=local_operator(), reason=reason
    )
    emit(
        instance,
        as_json=as_json,
        human=lambda: click.echo(f"{instance.instance_id} is {instance.status}"),
    )


@instance_group.command("heartbeat")
@click.argument("service")
@click.argument("instance_id")
@click.option(
    "--usage",
    multiple=True,
    metavar="KEY=VALUE",
    help="Resource usage, e.g. cpu_percent=12 memory_mb=300.",
)
@json_option
@run_with_orch
async def heartbeat(
    orch: Orch, service: str, instance_id: str, usage: tuple[str, ...], as_json: bool
) -> None:
    """Report INSTANCE_ID of SERVICE alive (passes a TTL check)."""
    request = {"resource_usage": parse_pairs(usage, option="--usage")} if usage else None
    instance = await orch.registry.heartbeat(service, instance_id, request, actor=local_operator())
    emit(
        instance,
        as_json=as_json,
        human=lambda: click.echo(
            f"{instance.instance_id} {with_symbol(instance.status)}, seen "
            f"{age(instance.last_seen_at, orch.clock)}"
        ),
    )
