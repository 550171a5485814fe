"""`orch status`: the system at a glance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchcore.cli.context import json_option, run_with_orch
from orchcore.cli.output import age, emit, table

if TYPE_CHECKING:
    from orchcore.facade import Orch


@click.command("status")
@json_option
@run_with_orch
async def status(orch: Orch, as_json: bool) -> None:
    """The system at a glance: services, instances, daemons."""
    overview = await orch.overview()

    def human() -> None:
        click.echo(f"database:  {orch.database_label}")
        click.echo(f"health:    {overview.health_percent:.0f}% of live instances healthy")
        click.echo(
            f"services:  {overview.services_healthy} healthy, "
            f"{overview.services_degraded} degraded, {overview.services_unhealthy} "
            f"unhealthy, {overview.services_idle} without instances of {overview.services_total}"
        )
        states = ", ".join(f"{n} {s}" for s, n in sorted(overview.instances_by_state.items()))
        click.echo(f"instances: {states or 'none'}")
        b = overview.breakers_by_state
        click.echo(
            f"breakers:  {b.get('open', 0) + b.get('forced_open', 0)} open, "
            f"{b.get('half_open', 0)} half-open, {b.get('closed', 0)} closed"
            + (f", {b['disabled']} disabled" if b.get("disabled") else "")
        )
        w = {k: n for k, n in overview.workflows_by_status.items() if n}
        click.echo(
            "workflows: "
            + (", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(w.items())) or "none")
            + (
                f"; {overview.workflows_needing_intervention} need intervention"
                if overview.workflows_needing_intervention
                else ""
            )
        )
        click.echo(f"alerts:    {overview.open_alerts} open")
        click.echo(f"daemons:   {overview.daemons_alive} alive")
        if overview.daemons:
            table(
                ["DAEMON", "LISTEN", "PID", "HEARTBEAT", "STATE"],
                [
                    (
                        d.daemon_name,
                        d.listen or "-",
                        d.pid,
                        age(d.heartbeat_at, orch.clock),
                        "alive" if d.alive else ("stopped" if d.stopped_at else "lost"),
                    )
                    for d in overview.daemons
                ],
            )

    emit(
        {
            **overview.model_dump(mode="json"),
            "health_percent": overview.health_percent,
            "database": orch.database_label,
        },
        as_json=as_json,
        human=human,
    )
