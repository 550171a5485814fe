"""Mesh: every mesh policy, whom it applies to and what it does, highest priority first.

Fetch: :meth:`MeshPolicies.overview` (the seed's GetMeshPoliciesResponse). Render: the
counts by policy type, one row per policy keyed by id, and the highlighted policy in
full below. Enter opens the policy as YAML; ``e`` enables or disables, ``a`` applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from orchcore.mesh.store import GetMeshPoliciesResponse, PolicyListEntry
from orchtui.actions import ConsoleAction, Mutation
from orchtui.formatting import plural
from orchtui.pane import Pane
from orchtui.panes.mesh_policy import MeshPolicyPane
from orchtui.panes.mesh_view import (
    MESH_ACTIONS,
    PolicyRef,
    apply_mutation,
    enabled_text,
    route,
    toggle_mutation,
)
from orchtui.source import ConsoleSource
from orchtui.symbols import state_text
from orchtui.widgets import Column, KeyedTable, Row

#: A long list of services is cut in the table; the line below shows it whole.
ROUTE_WIDTH = 24

COLUMNS = (
    Column("name", "NAME"),
    Column("type", "TYPE"),
    Column("route", "SOURCES → TARGETS"),
    Column("priority", "PRIO"),
    Column("state", "STATE"),
    Column("summary", "SUMMARY"),
)


@dataclass(frozen=True)
class MeshSnapshot:
    overview: GetMeshPoliciesResponse
    taken_at: datetime

    def by_id(self, key: str) -> PolicyListEntry | None:
        return next((p for p in self.overview.policies if str(p.id) == key), None)


async def fetch_mesh(orch: ConsoleSource) -> MeshSnapshot:
    return MeshSnapshot(overview=await orch.mesh.overview(), taken_at=orch.clock.now())


def policy_ref(entry: PolicyListEntry) -> PolicyRef:
    return PolicyRef(
        id=entry.id,
        name=entry.policy_name,
        enabled=entry.is_enabled,
        sources=entry.source_services,
        targets=entry.target_services,
        summary=entry.policy_summary,
    )


def policy_row(entry: PolicyListEntry) -> Row:
    shown_route = route(entry.source_services, entry.target_services)
    if len(shown_route) > ROUTE_WIDTH:
        shown_route = shown_route[: ROUTE_WIDTH - 1] + "…"
    return Row(
        key=str(entry.id),
        cells=(
            entry.policy_name,
            entry.policy_type,
            shown_route,
            str(entry.priority),
            enabled_text(entry.is_enabled),
            entry.policy_summary,
        ),
    )


def types_text(overview: GetMeshPoliciesResponse) -> Text:
    """``traffic 2 · security 1 · resilience 1 · observability 1  ● 4 of 5 enabled``."""
    total = len(overview.policies)
    if not total:
        return Text("no mesh policies: every call goes with orch's defaults", style="bright_black")
    text = Text()
    for index, kind in enumerate(overview.policy_types):
        if index:
            text.append(" · ", style="bright_black")
        text.append(f"{kind.type} {kind.count}", style="" if kind.count else "bright_black")
    enabled = sum(kind.enabled_count for kind in overview.policy_types)
    text.append("  ")
    state = "enabled" if enabled else "disabled"
    text.append_text(state_text(state, f"{enabled} of {total} enabled"))
    return text


def policy_line(entry: PolicyListEntry) -> Text:
    """The highlighted policy in full: whom it applies to, on how much, and what it does."""
    text = Text(entry.policy_name, style="bold")
    text.append(f"  {route(entry.source_services, entry.target_services)}")
    if entry.is_enabled:
        text.append(f" · on {plural(entry.applied_instances, 'live instance')}")
    else:
        text.append(" · disabled: applies to nothing", style="bright_black")
    text.append(f"\n{entry.policy_summary}", style="bright_black")
    return text


class MeshPane(Pane[MeshSnapshot]):
    NAME = "mesh"
    ALIASES = ("policies", "policy")
    TITLE = "Mesh policies"
    SUMMARY = "mesh policies: traffic, security, resilience and observability rules"
    TOPICS = frozenset({"mesh_policy"})
    ACTIONS = (
        ConsoleAction(
            "enter",
            "open_policy",
            "Policy",
            "Show the whole policy, as YAML",
            key_display="⏎",
        ),
        *MESH_ACTIONS,
    )

    def compose(self) -> ComposeResult:
        yield Static("", id="mesh-types")
        yield KeyedTable(COLUMNS, id="mesh-table")
        yield Static("", id="mesh-line")

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#mesh-table", KeyedTable)

    async def fetch(self, orch: ConsoleSource) -> MeshSnapshot:
        return await fetch_mesh(orch)

    def show(self, snapshot: MeshSnapshot) -> None:
        self.query_one("#mesh-types", Static).update(types_text(snapshot.overview))
        self.filter_table.show_rows([policy_row(p) for p in snapshot.overview.policies])
        self._describe_selected()

    @on(DataTable.RowHighlighted, "#mesh-table")
    def _describe_selected(self) -> None:
        entry = self.selected_policy
        self.query_one("#mesh-line", Static).update(policy_line(entry) if entry else "")

    @on(DataTable.RowSelected, "#mesh-table")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        # Enter reaches action_open_policy through the binding; a click comes here.
        event.stop()
        self.action_open_policy()

    @property
    def selected_policy(self) -> PolicyListEntry | None:
        key = self.filter_table.selected_key
        if key is None or self.snapshot is None:
            return None
        return self.snapshot.by_id(key)

    def action_open_policy(self) -> None:
        entry = self.selected_policy
        if entry is None:
            self.notify("No policy selected.", severity="warning")
            return
        self.console.open_detail(MeshPolicyPane(entry.id, entry.policy_name))

    def mutation_toggle(self) -> Mutation | None:
        entry = self.selected_policy
        return toggle_mutation(policy_ref(entry), self.console.engine.mesh) if entry else None

    def mutation_apply(self) -> Mutation | None:
        entry = self.selected_policy
        return apply_mutation(policy_ref(entry), self.console.engine.mesh) if entry else None
