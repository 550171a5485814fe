"""`orch mesh ...`: policies and the Istio export."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from orchcore.actors import local_operator
from orchcore.cli.context import confirm_destructive, json_option, load_document, run_with_orch
from orchcore.cli.output import age, emit, table
from orchcore.facade import Orch
from orchcore.mesh.models import MeshPolicy
from orchcore.mesh.summary import summarise_policy


@click.group("mesh")
def mesh_group() -> None:
    """Mesh policies and their export to Istio."""


@mesh_group.group("policy")
def policy_group() -> None:
    """Create, list, enable, disable, apply and delete mesh policies."""


def _enabled(policy: MeshPolicy) -> str:
    return "● enabled" if policy.is_enabled else "○ disabled"


@policy_group.command("create")
@click.option(
    "--file",
    "file_",
    required=True,
    metavar="FILE",
    help="JSON or YAML: the seed's CreateMeshPolicyRequest.",
)
@click.option("--name", help="Override policy_name.")
@click.option("--priority", type=int, help="Override priority (higher applies first).")
@json_option
@run_with_orch
async def create(
    orch: Orch, file_: str, name: str | None, priority: int | None, as_json: bool
) -> None:
    """Create a policy from FILE."""
    request: dict[str, Any] = load_document(file_, option="--file")
    if name:
        request["policy_name"] = name
    if priority is not None:
        request["priority"] = priority
    policy = await orch.mesh.create(request, actor=local_operator())
    emit(
        policy,
        as_json=as_json,
        human=lambda: click.echo(
            f"created {policy.policy_name} ({policy.policy_type}): {summarise_policy(policy)}"
        ),
    )


@policy_group.command("list")
@json_option
@run_with_orch
async def list_policies(orch: Orch, as_json: bool) -> None:
    """Policies by priority, with what they do (the seed's GetMeshPoliciesResponse)."""
    overview = await orch.mesh.overview()
    emit(
        overview,
        as_json=as_json,
        human=lambda: table(
            ["NAME", "TYPE", "SOURCES → TARGETS", "PRIO", "STATE", "INSTANCES", "SUMMARY"],
            [
                (
                    p.policy_name,
                    p.policy_type,
                    f"{','.join(p.source_services) or '*'} → {','.join(p.target_services) or '*'}",
                    p.priority,
                    "● enabled" if p.is_enabled else "○ disabled",
                    p.applied_instances,
                    p.policy_summary,
                )
                for p in overview.policies
            ],
        ),
    )


@policy_group.command("show")
@click.argument("policy")
@json_option
@run_with_orch
async def show(orch: Orch, policy: str, as_json: bool) -> None:
    """POLICY (name or id) in full."""
    found = await orch.mesh.get(policy)

    def human() -> None:
        import yaml

        click.echo(
            f"{found.policy_name} ({found.policy_type}, priority {found.priority}) "
            f"{_enabled(found)}"
        )
        click.echo(
            f"{','.join(found.source_services) or '*'} → "
            f"{','.join(found.target_services) or '*'}: {summarise_policy(found)}"
        )
        applied = age(found.last_applied_at, orch.clock) if found.last_applied_at else "never"
        click.echo(f"last applied: {applied}")
        click.echo(
            yaml.safe_dump(
                found.policy_config.model_dump(mode="json", exclude_none=True, by_alias=True),
                sort_keys=False,
            ).rstrip()
        )

    emit(found, as_json=as_json, human=human)


def _toggle(name: str, enabled: bool) -> click.Command:
    @click.command(name, help=f"{name.capitalize()} POLICY (name or id).")
    @click.argument("policy")
    @click.option("--reason", help="Why (kept in the audit log).")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @json_option
    @run_with_orch
    async def command(
        orch: Orch, policy: str, reason: str | None, yes: bool, as_json: bool
    ) -> None:
        found = await orch.mesh.get(policy)
        confirm_destructive(f"{name.capitalize()} mesh policy {found.policy_name}?", yes=yes)
        changed = await orch.mesh.set_enabled(
            found.id, enabled, actor=local_operator(), reason=reason
        )
        emit(
            changed,
            as_json=as_json,
            human=lambda: click.echo(f"{changed.policy_name}: {_enabled(changed)}"),
        )

    return command


policy_group.add_command(_toggle("enable", True))
policy_group.add_command(_toggle("disable", False))


@policy_group.command("apply")
@click.argument("policy")
@json_option
@run_with_orch
async def apply(orch: Orch, policy: str, as_json: bool) -> None:
    """Check POLICY against the registry and push it to every daemon now."""
    result = await orch.mesh.apply(policy, actor=local_operator())

    def human() -> None:
        click.echo(
            f"{result.application_status}: {len(result.applied_to_services)} service(s), "
            f"{result.applied_to_instances} instance(s)"
        )
        for error in result.errors or []:
            click.echo(f"  {error.service}: {error.error}")

    emit(result, as_json=as_json, human=human)
    if result.application_status == "failed":
        raise SystemExit(1)


@policy_group.command("delete")
@click.argument("policy")
@click.option("--reason", help="Why (kept in the audit log).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@run_with_orch
async def delete(orch: Orch, policy: str, reason: str | None, yes: bool, as_json: bool) -> None:
    """Delete POLICY (name or id)."""
    found = await orch.mesh.get(policy)
    confirm_destructive(f"Delete mesh policy {found.policy_name}?", yes=yes)
    deleted = await orch.mesh.delete(found.id, actor=local_operator(), reason=reason)
    emit(deleted, as_json=as_json, human=lambda: click.echo(f"deleted {deleted.policy_name}"))


#: exit code of `orch mesh export --strict` when policies or services were left out
EXIT_LEFT_OUT = 3


@mesh_group.command("export")
@click.option(
    "--format", "format_", type=click.Choice(["istio"]), default="istio", show_default=True
)
@click.option("--service", help="Only this service.")
@click.option("--namespace", default="default", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to FILE instead of standard output.",
)
@click.option(
    "--strict",
    is_flag=True,
    help=f"Write no YAML and exit {EXIT_LEFT_OUT} when anything had to be left out.",
)
@json_option
@run_with_orch
async def export(
    orch: Orch,
    format_: str,
    service: str | None,
    namespace: str,
    output: str | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Kubernetes YAML (VirtualService, DestinationRule, PeerAuthentication,
    AuthorizationPolicy), checked against Istio's published v1 schemas.

    A stored policy (or service) the export cannot render validly is left out, and the
    others are exported: each one left out is named with the reason on standard error and
    in a comment at the top of the YAML; with --json, in "left_out" beside "documents".
    The exit code is then still 0; with --strict it is 3 and no YAML is written (--json
    still prints its object, which says what was left out).
    """
    from orchcore.mesh.istio_export import export_istio

    result = await export_istio(orch, service=service, namespace=namespace)
    for item in result.left_out:
        click.echo(f"orch: warning: {item.message()}", err=True)
    refused = strict and bool(result.left_out)
    if output and not refused:
        await asyncio.to_thread(Path(output).write_text, result.yaml(), encoding="utf-8")
    if as_json:
        emit(result, as_json=True, human=lambda: None)
    elif not output and not refused:
        click.echo(result.yaml(), nl=False)
    if refused:
        click.echo(
            f"orch: error: {len(result.left_out)} left out of the export; "
            "nothing written (--strict)",
            err=True,
        )
        raise SystemExit(EXIT_LEFT_OUT)
    left_out = f", {len(result.left_out)} left out" if result.left_out else ""
    click.echo(
        f"{len(result.documents)} document(s), valid against Istio v1 schemas{left_out}"
        + (f", written to {output}" if output else ""),
        err=True,
    )
