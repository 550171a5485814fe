"""Map: who calls whom over the last hour, how much and how well, and what that makes of
the dependency graph (its cycles, and the call chains whose failure hurts most).

Fetch: :class:`~orchcore.tracing.servicemap.ServiceMapReader` (the seed's
GetServiceMapResponse), built from the engine's database and clock as ``orch map`` does;
the console writes no SQL. Render: the figures of the map, one row per connection keyed
by ``source→target`` (requests, errors, latency, strength as a bar, declared or only
observed), one row per service (health, instances, requests in, errors, latency), and
below them the critical paths and the cycles.

A connection is **unhealthy** when any request over it failed in the last hour (as the
CLI marks it): ``✖`` and red, listed first. One that carried nothing is ``○`` and dim.
Calls are recorded without a notification, so the pane polls while it is seen; a
service registered or changed makes it stale at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from orchcore.tracing.servicemap_models import (
    Connection,
    DependencyGraph,
    GetServiceMapResponse,
    ServiceNode,
)
from orchtui.formatting import plural
from orchtui.pane import Pane
from orchtui.source import ConsoleSource
from orchtui.symbols import service_text, state_style, state_symbol
from orchtui.widgets import Column, KeyedTable, Row

#: Calls arrive without a notification: a visible pane asks again this often.
MAP_REFRESH_SECONDS = 5.0
#: Long names are cut in the tables.
SERVICE_WIDTH = 14
#: The strength bar: this many cells at 100.
BAR_WIDTH = 8
#: What the panel below lists, at most, of each.
SHOWN_PATHS = 3
SHOWN_CYCLES = 3

#: Edge states borrow a service's symbols: failing calls, calls, none.
_UNHEALTHY, _HEALTHY, _IDLE = "unhealthy", "healthy", "no_instances"

CONNECTION_COLUMNS = (
    Column("route", "FROM → TO"),
    Column("requests", "REQ/H"),
    Column("errors", "ERR %"),
    Column("latency", "LATENCY"),
    Column("strength", "STRENGTH"),
    Column("seen", "SEEN"),
)
SERVICE_COLUMNS = (
    Column("service", "SERVICE"),
    Column("health", "HEALTH"),
    Column("instances", "INST"),
    Column("rate", "REQ/MIN"),
    Column("errors", "ERR %"),
    Column("latency", "AVG"),
)


@dataclass(frozen=True)
class MapSnapshot:
    found: GetServiceMapResponse
    taken_at: datetime


async def fetch_map(orch: ConsoleSource) -> MapSnapshot:
    found = await orch.service_map()
    return MapSnapshot(found=found, taken_at=orch.clock.now())


# -- rows and lines -----------------------------------------------------------------------------


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def unhealthy(connection: Connection) -> bool:
    """Any request over it failed in the last hour."""
    return connection.error_count_1h > 0


def edge_state(connection: Connection) -> str:
    if unhealthy(connection):
        return _UNHEALTHY
    return _HEALTHY if connection.request_count_1h else _IDLE


def connection_key(connection: Connection) -> str:
    return f"{connection.source_service}→{connection.target_service}"


def ordered(connections: list[Connection]) -> list[Connection]:
    """Unhealthy first (most errors first), then the busiest; ties by name."""
    return sorted(
        connections,
        key=lambda c: (
            not unhealthy(c),
            -c.error_count_1h,
            -c.request_count_1h,
            c.source_service,
            c.target_service,
        ),
    )


def percent(share: float) -> str:
    return f"{share:.1%}"


def strength_bar(strength: int) -> Text:
    """``█████▏``: the connection's strength (1-100) on BAR_WIDTH cells, at least one."""
    cells = max(1, round(strength * BAR_WIDTH / 100))
    return Text("█" * cells, style="cyan")


def seen_word(connection: Connection) -> str:
    if connection.declared and connection.request_count_1h:
        return "both"
    return "declared" if connection.declared else "observed"


def connection_row(connection: Connection) -> Row:
    state = edge_state(connection)
    route = Text(f"{state_symbol(state)} ", style=state_style(state))
    route.append(
        f"{_cut(connection.source_service, SERVICE_WIDTH)} → "
        f"{_cut(connection.target_service, SERVICE_WIDTH)}",
        style="",
    )
    requests = connection.request_count_1h
    errors = (
        Text(percent(connection.error_count_1h / requests), style=state_style(_UNHEALTHY))
        if connection.error_count_1h and requests
        else Text("0%" if requests else "–", style="bright_black")
    )
    return Row(
        key=connection_key(connection),
        cells=(
            route,
            str(requests),
            errors,
            f"{connection.avg_latency_ms:.1f}ms" if requests else "–",
            strength_bar(connection.connection_strength),
            seen_word(connection),
        ),
    )


def health_text(service: ServiceNode) -> Text:
    """As ``orch map`` says it: the registry's word, ``–`` for a name seen only in traffic."""
    if service.health_status == "unknown":
        return Text(f"– {service.service_type}", style="bright_black")
    return service_text(service.health_status, service.instance_count)


def service_row(service: ServiceNode) -> Row:
    errors = (
        Text(percent(service.error_rate), style=state_style(_UNHEALTHY))
        if service.error_rate
        else Text(percent(0), style="bright_black")
    )
    return Row(
        key=service.service_name,
        cells=(
            _cut(service.service_name, SERVICE_WIDTH),
            health_text(service),
            str(service.instance_count),
            f"{service.request_rate_per_minute:.1f}",
            errors,
            f"{service.avg_response_time_ms:.1f}ms",
        ),
    )


def totals_text(found: GetServiceMapResponse) -> Text:
    """``6 services · 6 connections · ✖ 3 unhealthy · ⟲ 1 cycle`` over the last hour."""
    if not found.services and not found.connections:
        return Text(
            "no services or calls in the last hour: register services, or declare their "
            "dependencies",
            style="bright_black",
        )
    text = Text(
        f"{plural(len(found.services), 'service')} · "
        f"{plural(len(found.connections), 'connection')} in the last hour · "
    )
    failing = sum(1 for c in found.connections if unhealthy(c))
    if failing:
        text.append(
            f"{state_symbol(_UNHEALTHY)} {failing} unhealthy", style=state_style(_UNHEALTHY)
        )
    else:
        text.append("0 unhealthy", style="bright_black")
    cycles = len(found.dependency_graph.circular_dependencies)
    text.append(f" · ⟲ {plural(cycles, 'cycle')}", style="yellow" if cycles else "bright_black")
    return text


def graph_text(graph: DependencyGraph) -> Text:
    """The critical paths (``◆ booking → venue → payment  score 69.6``), then the cycles
    (``⟲ booking → venue → booking``), the first few of each."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("critical paths", style="bold")
    text.append(" (failure impact 0-100)", style="bright_black")
    for path in graph.critical_paths[:SHOWN_PATHS]:
        text.append("\n◆ ", style="magenta")
        text.append(" → ".join(path.path))
        text.append(f"  score {path.failure_impact_score:.1f}", style="bright_black")
    if not graph.critical_paths:
        text.append("\n  none", style="bright_black")
    hidden = len(graph.critical_paths) - SHOWN_PATHS
    if hidden > 0:
        text.append(f"  +{hidden} more", style="bright_black")
    cycles = graph.circular_dependencies
    text.append("\ncycles ", style="bold")
    if not cycles:
        text.append("none", style="bright_black")
    for index, cycle in enumerate(cycles[:SHOWN_CYCLES]):
        text.append("  " if index else "")
        text.append(f"⟲ {' → '.join([*cycle, cycle[0]])}", style="yellow")
    if len(cycles) > SHOWN_CYCLES:
        text.append(f"  +{len(cycles) - SHOWN_CYCLES} more", style="bright_black")
    return text


# -- the pane -----------------------------------------------------------------------------------


class ServiceMapPane(Pane[MapSnapshot]):
    NAME = "map"
    ALIASES = ("servicemap",)
    TITLE = "Service map"
    SUMMARY = "who calls whom: requests, errors, latency; unhealthy edges, cycles, critical paths"
    TOPICS = frozenset({"service", "instance"})

    def compose(self) -> ComposeResult:
        yield Static("", id="map-totals")
        yield KeyedTable(CONNECTION_COLUMNS, id="map-connections")
        with Vertical(id="map-services-section") as section:
            section.border_title = "Services (calls into each)"
            yield KeyedTable(SERVICE_COLUMNS, id="map-services", cursor=False)
        yield Static("", id="map-graph")

    @property
    def filter_table(self) -> KeyedTable:
        return self.query_one("#map-connections", KeyedTable)

    def needs_refresh(self, every_seconds: float) -> bool:
        return super().needs_refresh(min(every_seconds, MAP_REFRESH_SECONDS))

    async def fetch(self, orch: ConsoleSource) -> MapSnapshot:
        return await fetch_map(orch)

    def show(self, snapshot: MapSnapshot) -> None:
        found = snapshot.found
        self.query_one("#map-totals", Static).update(totals_text(found))
        self.filter_table.show_rows([connection_row(c) for c in ordered(found.connections)])
        self.query_one("#map-services", KeyedTable).show_rows(
            [service_row(s) for s in found.services]
        )
        self.query_one("#map-graph", Static).update(graph_text(found.dependency_graph))


__all__ = ["MapSnapshot", "ServiceMapPane", "fetch_map"]
