"""One mesh policy in full: who made it, whom it applies to, and its definition as YAML.

Fetch: :meth:`MeshPolicies.get`. Render: two lines about the policy, then the policy
as the YAML ``orch mesh policy create --file`` takes, so what is read here can be
copied, changed and fed back. ``e`` and ``a`` act as on the Mesh pane. Opened from Mesh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import yaml
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from orchcore.mesh.models import MeshPolicy
from orchcore.mesh.summary import summarise_policy
from orchtui.actions import Mutation
from orchtui.formatting import age
from orchtui.pane import Pane
from orchtui.panes.mesh_view import (
    MESH_ACTIONS,
    PolicyRef,
    apply_mutation,
    enabled_text,
    route,
    toggle_mutation,
)
from orchtui.source import ConsoleSource


@dataclass(frozen=True)
class MeshPolicySnapshot:
    policy: MeshPolicy
    taken_at: datetime


async def fetch_mesh_policy(orch: ConsoleSource, policy_id: UUID) -> MeshPolicySnapshot:
    return MeshPolicySnapshot(policy=await orch.mesh.get(policy_id), taken_at=orch.clock.now())


def policy_yaml(policy: MeshPolicy) -> str:
    """The policy as a CreateMeshPolicyRequest document, unset sections left out."""
    document = {
        "policy_name": policy.policy_name,
        "policy_type": policy.policy_type,
        "source_services": policy.source_services,
        "target_services": policy.target_services,
        "priority": policy.priority,
        "is_enabled": policy.is_enabled,
        "policy_config": _without_empty(
            policy.policy_config.model_dump(mode="json", exclude_none=True, by_alias=True)
        ),
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _without_empty(value: Any) -> Any:
    """Drop sections that say nothing (``when: {}``), keeping empty lists that do."""
    if isinstance(value, dict):
        cleaned = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v != {}}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def policy_header(policy: MeshPolicy, now: datetime) -> Text:
    text = enabled_text(policy.is_enabled)
    text.append(
        f" · {policy.policy_type} · priority {policy.priority} · "
        f"{route(policy.source_services, policy.target_services)}"
    )
    text.append(f"\n{summarise_policy(policy)}", style="bright_black")
    made = f"made by {policy.created_by or 'unknown'} {age(policy.created_at, now)} ago"
    if policy.updated_at != policy.created_at:
        made += f", changed {age(policy.updated_at, now)} ago"
    text.append(f"\n{made}", style="bright_black")
    return text


class MeshPolicyPane(Pane[MeshPolicySnapshot]):
    NAME = "policy"
    TITLE = "Mesh policy"
    SUMMARY = "one mesh policy in full, as YAML"
    TOPICS = frozenset({"mesh_policy"})
    ACTIONS = MESH_ACTIONS

    def __init__(self, policy_id: UUID, name: str) -> None:
        super().__init__(id="pane-policy")
        self.policy_id = policy_id
        self.policy_name = name

    def compose(self) -> ComposeResult:
        yield Static("", id="policy-header")
        with VerticalScroll(id="policy-scroll") as scroll:
            scroll.border_title = "Definition (orch mesh policy create --file)"
            yield Static("", id="policy-yaml")

    @property
    def breadcrumb(self) -> str:
        return f"Mesh › {self.policy_name}"

    @property
    def filter_table(self) -> None:
        return None  # one document: nothing to filter

    def focus_primary(self) -> None:
        # The scroll area takes the keys, so a long policy scrolls with the arrows.
        self.query_one("#policy-scroll", VerticalScroll).focus()

    def concerns(self, notification: Mapping[str, Any]) -> bool:
        return super().concerns(notification) and str(notification.get("id")) == str(self.policy_id)

    async def fetch(self, orch: ConsoleSource) -> MeshPolicySnapshot:
        return await fetch_mesh_policy(orch, self.policy_id)

    def show(self, snapshot: MeshPolicySnapshot) -> None:
        policy = snapshot.policy
        self.query_one("#policy-header", Static).update(policy_header(policy, snapshot.taken_at))
        self.query_one("#policy-yaml", Static).update(Text(policy_yaml(policy)))

    def _ref(self) -> PolicyRef | None:
        if self.snapshot is None:
            return None
        policy = self.snapshot.policy
        return PolicyRef(
            id=policy.id,
            name=policy.policy_name,
            enabled=policy.is_enabled,
            sources=policy.source_services,
            targets=policy.target_services,
            summary=summarise_policy(policy),
        )

    def mutation_toggle(self) -> Mutation | None:
        ref = self._ref()
        return toggle_mutation(ref, self.console.engine.mesh) if ref else None

    def mutation_apply(self) -> Mutation | None:
        ref = self._ref()
        return apply_mutation(ref, self.console.engine.mesh) if ref else None
