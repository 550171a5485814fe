"""The system at a glance: what the Overview pane and `orch status` show."""

from __future__ import annotations

from pydantic import BaseModel, Field

from orchcore.membership import DaemonInfo
from orchcore.registry.models import LIVE_STATUSES, Service


class SystemOverview(BaseModel):
    services_total: int
    services_healthy: int
    services_degraded: int
    services_unhealthy: int
    services_idle: int = 0  # active, but no live instance at all
    instances_by_state: dict[str, int]
    daemons_alive: int
    daemons: list[DaemonInfo]
    breakers_by_state: dict[str, int] = Field(default_factory=dict)
    workflows_by_status: dict[str, int] = Field(default_factory=dict)
    open_alerts: int = 0

    @property
    def workflows_needing_intervention(self) -> int:
        return self.workflows_by_status.get("compensation_failed", 0)

    @property
    def instances_live(self) -> int:
        return sum(self.instances_by_state.get(s, 0) for s in LIVE_STATUSES)

    @property
    def health_percent(self) -> float:
        """Share of live instances that are healthy (100 with none registered)."""
        live = self.instances_live
        if not live:
            return 100.0
        return 100.0 * self.instances_by_state.get("healthy", 0) / live


def summarise(
    services: list[Service],
    daemons: list[DaemonInfo],
    breakers: dict[str, int] | None = None,
    workflows: dict[str, int] | None = None,
    open_alerts: int = 0,
) -> SystemOverview:
    by_state: dict[str, int] = {}
    for service in services:
        for state, count in service.instance_counts.items():
            by_state[state] = by_state.get(state, 0) + count
    statuses = [s.health_status if s.live_instances else "idle" for s in services]
    return SystemOverview(
        services_total=len(services),
        services_healthy=statuses.count("healthy"),
        services_degraded=statuses.count("degraded"),
        services_unhealthy=statuses.count("unhealthy"),
        services_idle=statuses.count("idle"),
        instances_by_state=by_state,
        daemons_alive=sum(1 for d in daemons if d.alive),
        daemons=daemons,
        breakers_by_state=breakers or {},
        workflows_by_status=workflows or {},
        open_alerts=open_alerts,
    )
