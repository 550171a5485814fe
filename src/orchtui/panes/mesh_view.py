"""How a mesh policy reads on screen, and the two things an operator does to one.

Shared by the Mesh pane and a policy's detail pane, so both ask the same question
and report an apply the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from rich.text import Text

from orchcore.mesh.store import ApplyPolicyResponse
from orchtui.actions import ConsoleAction, Mutation, Outcome, Severity
from orchtui.formatting import plural
from orchtui.source import MeshSource
from orchtui.symbols import state_text

MESH_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "e",
        "toggle",
        "Enable/disable",
        "Switch the policy on or off, from the next call on",
        mutating=True,
    ),
    ConsoleAction(
        "a",
        "apply",
        "Apply",
        "Check the policy, push it to every daemon now",
        mutating=True,
    ),
)


@dataclass(frozen=True)
class PolicyRef:
    """What the actions need of a policy, from a list entry or the full policy alike."""

    id: UUID
    name: str
    enabled: bool
    sources: list[str]
    targets: list[str]
    summary: str

    @property
    def route(self) -> str:
        return route(self.sources, self.targets)


def services(names: list[str]) -> str:
    """``booking,venue``; an empty list means any service: ``*``."""
    return ",".join(names) or "*"


def route(sources: list[str], targets: list[str]) -> str:
    return f"{services(sources)} → {services(targets)}"


def enabled_text(enabled: bool) -> Text:
    return state_text("enabled") if enabled else state_text("disabled")


def toggle_mutation(policy: PolicyRef, mesh: MeshSource) -> Mutation:
    enable = not policy.enabled

    async def set_enabled(actor: str, reason: str) -> None:
        await mesh.set_enabled(policy.id, enable, actor=actor, reason=reason)

    verb = "Enable" if enable else "Disable"
    if enable:
        consequence = f"Calls {policy.route} get it from their next call: {policy.summary}."
    else:
        consequence = f"Calls {policy.route} lose it from their next call: {policy.summary}."
    return Mutation(
        title=f"{verb} mesh policy",
        question=f"{verb} mesh policy {policy.name} ({policy.route})?",
        consequence=consequence,
        verb=verb,
        perform=set_enabled,
        done=f"{verb}d mesh policy {policy.name}",
    )


def apply_mutation(policy: PolicyRef, mesh: MeshSource) -> Mutation:
    async def apply(actor: str, reason: str) -> ApplyPolicyResponse:
        # The engine's apply keeps no reason; the confirmation asks for none.
        return await mesh.apply(policy.id, actor=actor)

    def report(result: object) -> Outcome:
        assert isinstance(result, ApplyPolicyResponse)
        return apply_outcome(policy.name, result)

    return Mutation(
        title="Apply mesh policy",
        question=f"Apply mesh policy {policy.name} ({policy.route}) now?",
        consequence=(
            "It is checked against the registry and every daemon reloads it at once; "
            "the result is shown when done."
        ),
        verb="Apply",
        perform=apply,
        done=f"Applied mesh policy {policy.name}",
        needs_reason=False,
        report=report,
    )


_SEVERITY: dict[str, Severity] = {"success": "information", "partial": "warning", "failed": "error"}
_STATUS_SYMBOL = {"success": "●", "partial": "▲", "failed": "✖"}


def apply_outcome(name: str, result: ApplyPolicyResponse) -> Outcome:
    """``● success: venue-rate-limit on venue (3 instances)`` and one line per error."""
    status = result.application_status
    if result.applied_to_services:
        where = (
            f"on {', '.join(result.applied_to_services)} "
            f"({plural(result.applied_to_instances, 'instance')})"
        )
    else:
        where = "applied nowhere"
    lines = [f"{_STATUS_SYMBOL[status]} {status}: {name} {where}"]
    for error in result.errors or []:
        at = error.service + (f"/{error.instance}" if error.instance else "")
        lines.append(f"✖ {at}: {error.error}")
    return Outcome("\n".join(lines), _SEVERITY[status])
