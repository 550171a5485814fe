"""Instances of one service, with the service's recent state changes below.

Fetch: the service, its live instances and its latest state events. Render: an
instances table keyed by instance id and an events table keyed by event id.
``d`` deregisters the selected instance. Opened from Services with Enter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from orchcore.registry import Instance, InstanceStateEvent, Service
from orchtui.actions import ConsoleAction, Mutation
from orchtui.formatting import age
from orchtui.pane import Pane
from orchtui.source import ConsoleSource
from orchtui.symbols import check_text, service_text, state_text
from orchtui.widgets import Column, KeyedTable, Row

#: How many of the service's latest state changes to show.
EVENT_LIMIT = 30

# Free text (check output, reasons) goes last: it is what may run off an 80-column
# screen, and the highlighted instance's line below the table shows it in full.
INSTANCE_COLUMNS = (
    Column("instance", "INSTANCE"),
    Column("address", "ADDRESS"),
    Column("status", "STATUS"),
    Column("version", "VERSION"),
    Column("checked", "CHECKED"),
    Column("failures", "FAILS"),
    Column("check", "LAST CHECK"),
)
EVENT_COLUMNS = (
    Column("age", "AGE"),
    Column("instance", "INSTANCE"),
    Column("change", "CHANGE"),
    Column("actor", "BY"),
    Column("reason", "REASON"),
)


@dataclass(frozen=True)
class InstancesSnapshot:
    service: Service
    instances: list[Instance]
    events: list[InstanceStateEvent]
    taken_at: datetime


async def fetch_instances(orch: ConsoleSource, service_name: str) -> InstancesSnapshot:
    service, instances, events = await asyncio.gather(
        orch.registry.get_service(service_name),
        orch.registry.list_instances(service_name),
        orch.registry.service_events(service_name, limit=EVENT_LIMIT),
    )
    return InstancesSnapshot(service, instances, events, taken_at=orch.clock.now())


def instance_row(instance: Instance, now: datetime) -> Row:
    return Row(
        key=instance.instance_id,
        cells=(
            instance.instance_id,
            f"{instance.ip_address}:{instance.port}",
            state_text(instance.status),
            instance.version,
            age(instance.last_health_check, now),
            str(instance.health_check_failures),
            check_text(instance.last_check_result, instance.last_check_output),
        ),
    )


def instance_detail(instance: Instance, now: datetime) -> Text:
    """The highlighted instance in one or two lines, check output in full."""
    text = Text(f"{instance.instance_id} ", style="bold")
    since = instance.unhealthy_since or instance.status_changed_at
    text.append_text(state_text(instance.status, f"{instance.status} for {age(since, now)}"))
    if instance.node_name:
        text.append(f" · node {instance.node_name}")
    if instance.last_health_check is None:
        text.append(" · never checked")
        return text
    text.append(f" · checked {age(instance.last_health_check, now)} ago: ")
    text.append_text(check_text(instance.last_check_result, instance.last_check_output))
    return text


def event_row(event: InstanceStateEvent, now: datetime) -> Row:
    change = Text(f"{event.from_status or 'new'} → ", style="bright_black")
    change.append_text(state_text(event.to_status))
    return Row(
        key=str(event.id),
        cells=(age(event.occurred_at, now), event.instance_id, change, event.actor, event.reason),
    )


def service_summary(service: Service) -> Text:
    check = service.health_check
    if check.kind == "http":
        how = f"http {service.health_check_endpoint or '/'} every {check.interval_seconds:g}s"
    else:
        how = f"ttl heartbeat within {check.ttl_seconds:g}s"
    text = service_text(service.health_status, service.live_instances)
    text.append(
        f"  {service.service_version} · {service.service_type} · "
        f"{service.deployment_environment} · {how}",
        style="bright_black",
    )
    if not service.is_active:
        text.append("  DEACTIVATED", style="bold reverse")
    return text


class InstancesPane(Pane[InstancesSnapshot]):
    NAME = "instances"
    TITLE = "Instances"
    SUMMARY = "the instances of one service and its recent state changes"
    TOPICS = frozenset({"instance", "service"})
    ACTIONS = (
        ConsoleAction(
            "d",
            "deregister",
            "Deregister",
            "Deregister the instance (it goes to terminating)",
            mutating=True,
        ),
    )

    def __init__(self, service_name: str) -> None:
        super().__init__(id="pane-instances")
        self.service_name = service_name

    def compose(self) -> ComposeResult:
        yield Static("", id="service-summary")
        yield KeyedTable(INSTANCE_COLUMNS, id="instances-table")
        yield Static("", id="instance-detail")
        with Vertical(id="events-section") as events:
            events.border_title = "Recent state changes"
            # A log to read, not rows to act on: no cursor to suggest otherwise.
            yield KeyedTable(EVENT_COLUMNS, id="events-table", cursor=False)

    @property
    def breadcrumb(self) -> str:
        return f"Services › {self.service_name}"

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#instances-table", KeyedTable)

    def concerns(self, notification: Mapping[str, Any]) -> bool:
        if not super().concerns(notification):
            return False
        if self.snapshot is None:
            return True
        return notification.get("service_id") == str(self.snapshot.service.id)

    async def fetch(self, orch: ConsoleSource) -> InstancesSnapshot:
        return await fetch_instances(orch, self.service_name)

    def show(self, snapshot: InstancesSnapshot) -> None:
        now = snapshot.taken_at
        self.query_one("#service-summary", Static).update(service_summary(snapshot.service))
        self.filter_table.show_rows([instance_row(i, now) for i in snapshot.instances])
        self.query_one("#events-table", KeyedTable).show_rows(
            [event_row(e, now) for e in snapshot.events]
        )
        self._describe_selected()

    @on(DataTable.RowHighlighted, "#instances-table")
    def _describe_selected(self) -> None:
        instance = self.selected_instance
        detail = self.query_one("#instance-detail", Static)
        if instance is None or self.snapshot is None:
            detail.update("")
        else:
            detail.update(instance_detail(instance, self.snapshot.taken_at))

    @property
    def selected_instance(self) -> Instance | None:
        instance_id = self.filter_table.selected_key
        if instance_id is None or self.snapshot is None:
            return None
        return next((i for i in self.snapshot.instances if i.instance_id == instance_id), None)

    def mutation_deregister(self) -> Mutation | None:
        instance = self.selected_instance
        if instance is None:
            return None
        service, instance_id = self.service_name, instance.instance_id
        registry = self.console.engine.registry

        async def deregister(actor: str, reason: str) -> None:
            await registry.deregister_instance(service, instance_id, actor=actor, reason=reason)

        return Mutation(
            title="Deregister instance",
            question=f"Deregister instance {instance_id} of service {service}?",
            consequence=(
                f"{instance.ip_address}:{instance.port} stops receiving traffic at once "
                "and goes to terminating."
            ),
            verb="Deregister",
            perform=deregister,
            done=f"Deregistered instance {instance_id} of service {service}",
        )
