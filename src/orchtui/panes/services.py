"""Services: every active service, how many of its instances are healthy, and its state.

Fetch: :meth:`ServiceRegistry.list_services`. Render: one row per service, keyed by
name. Enter opens the service's Instances; ``D`` deactivates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable

from orchcore.registry import Service
from orchtui.actions import ConsoleAction, Mutation
from orchtui.formatting import plural
from orchtui.pane import Pane
from orchtui.panes.instances import InstancesPane
from orchtui.source import ConsoleSource
from orchtui.symbols import service_text
from orchtui.widgets import Column, KeyedTable, Row

COLUMNS = (
    Column("service", "SERVICE"),
    Column("version", "VERSION"),
    Column("type", "TYPE"),
    Column("environment", "ENVIRONMENT"),
    Column("instances", "HEALTHY"),
    Column("status", "STATUS"),
)


@dataclass(frozen=True)
class ServicesSnapshot:
    services: list[Service]
    taken_at: datetime

    def named(self, name: str) -> Service | None:
        return next((s for s in self.services if s.service_name == name), None)


async def fetch_services(orch: ConsoleSource) -> ServicesSnapshot:
    return ServicesSnapshot(services=await orch.registry.list_services(), taken_at=orch.clock.now())


def service_row(service: Service) -> Row:
    return Row(
        key=service.service_name,
        cells=(
            service.service_name,
            service.service_version,
            service.service_type,
            service.deployment_environment,
            f"{service.healthy_instances}/{service.live_instances}",
            service_text(service.health_status, service.live_instances, active=service.is_active),
        ),
    )


class ServicesPane(Pane[ServicesSnapshot]):
    NAME = "services"
    ALIASES = ("svc", "service")
    TITLE = "Services"
    SUMMARY = "registered services and the health of their instances"
    TOPICS = frozenset({"service", "instance"})
    ACTIONS = (
        ConsoleAction(
            "enter",
            "open_instances",
            "Instances",
            "Show the service's instances and recent state changes",
            key_display="⏎",
        ),
        ConsoleAction(
            "D",
            "deactivate",
            "Deactivate",
            "Deactivate the service and deregister its instances",
            mutating=True,
        ),
    )

    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="services-table")

    async def fetch(self, orch: ConsoleSource) -> ServicesSnapshot:
        return await fetch_services(orch)

    def show(self, snapshot: ServicesSnapshot) -> None:
        self.query_one(KeyedTable).show_rows([service_row(s) for s in snapshot.services])

    @property
    def selected_service(self) -> Service | None:
        name = self.query_one(KeyedTable).selected_key
        if name is None or self.snapshot is None:
            return None
        return self.snapshot.named(name)

    @on(DataTable.RowSelected)
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        # Enter reaches action_open_instances through the binding; a click comes here.
        event.stop()
        self.action_open_instances()

    def action_open_instances(self) -> None:
        service = self.selected_service
        if service is None:
            self.notify("No service selected.", severity="warning")
            return
        self.console.open_detail(InstancesPane(service.service_name))

    def mutation_deactivate(self) -> Mutation | None:
        service = self.selected_service
        if service is None:
            return None
        name = service.service_name
        registry = self.console.engine.registry

        async def deactivate(actor: str, reason: str) -> None:
            await registry.deactivate_service(name, actor=actor, reason=reason)

        live = service.live_instances
        return Mutation(
            title="Deactivate service",
            question=f"Deactivate service {name}?",
            consequence=(
                f"It leaves discovery and its {plural(live, 'live instance')} "
                f"{'is' if live == 1 else 'are'} deregistered."
            ),
            verb="Deactivate",
            perform=deactivate,
            done=f"Deactivated service {name}",
        )
