"""The `orch` entry point: verbs, and one place that turns errors into exit codes.

Exit codes: 0 success, 1 failure (not found, conflict, database unreachable),
2 bad input (usage or validation; one line naming the field) or a database schema
this orch cannot use (older: `orch db migrate`; newer or edited), 3 `orch mesh export
--strict` with something left out, 130 interrupted.
"""

from __future__ import annotations

import sys

import click

from orchcore import __version__
from orchcore.cli.breakers import breaker_group
from orchcore.cli.bus import dlq_group, message_group, queue_group
from orchcore.cli.call import call
from orchcore.cli.context import json_option, run_with_orch, settings_from
from orchcore.cli.db import db_group
from orchcore.cli.instances import instance_group
from orchcore.cli.mesh import mesh_group
from orchcore.cli.output import age, emit, table
from orchcore.cli.services import service_group
from orchcore.cli.tokens import token_group
from orchcore.cli.traces import service_map, trace_group
from orchcore.cli.workflows import alert_group, workflow_group
from orchcore.daemon.eventloop import run_event_loop
from orchcore.db.embedded import EmbeddedUnavailable
from orchcore.errors import OrchError, ValidationFailed
from orchcore.facade import Orch


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--dsn",
    envvar="ORCH_DATABASE_URL",
    metavar="URL",
    help="PostgreSQL DSN (env ORCH_DATABASE_URL); unset: the embedded server.",
)
@click.version_option(__version__, prog_name="orch")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None) -> None:
    """orch: orchestration core and console of the wedding-services platform."""
    ctx.ensure_object(dict)["dsn"] = dsn


cli.add_command(db_group)
cli.add_command(service_group)
cli.add_command(instance_group)
cli.add_command(token_group)
cli.add_command(breaker_group)
cli.add_command(mesh_group)
cli.add_command(call)
cli.add_command(workflow_group)
cli.add_command(alert_group)
cli.add_command(queue_group)
cli.add_command(message_group)
cli.add_command(dlq_group)
cli.add_command(trace_group)
cli.add_command(service_map)


@cli.command("status")
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


@cli.command("daemon")
@click.option(
    "--listen",
    envvar="ORCH_LISTEN",
    default="127.0.0.1:7400",
    show_default=True,
    help="HOST:PORT for the HTTP API (port 0 picks a free one).",
)
@click.option("--name", help="Daemon name in membership and logs (default host:listen).")
@click.option("--no-health-checks", is_flag=True, help="Do not take part in health checking.")
@click.option("--no-workflows", is_flag=True, help="Do not run workflows.")
@click.option("--no-push", is_flag=True, help="Do not deliver the bus's push queues.")
@click.option(
    "--no-migrate",
    is_flag=True,
    help="Do not migrate the schema: refuse to start unless it is this orch's.",
)
@click.option(
    "--otlp-listen",
    metavar="HOST:PORT",
    help="Also take OTLP/HTTP span exports on a listener of its own (conventionally :4318).",
)
@click.option(
    "--tls-cert",
    envvar="ORCH_API_TLS_CERT",
    metavar="FILE",
    help="Serve https: this PEM certificate (chain) on the API and OTLP listeners.",
)
@click.option(
    "--tls-key", envvar="ORCH_API_TLS_KEY", metavar="FILE", help="The certificate's PEM key."
)
@click.option(
    "--workflow-lease",
    type=float,
    envvar="ORCH_WORKFLOW_LEASE_SECONDS",
    default=30.0,
    show_default=True,
    help="Seconds a crashed daemon's workflows stay claimed (env ORCH_WORKFLOW_LEASE_SECONDS).",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default=None,
    help="Log line format (default json; env ORCH_LOG_FORMAT).",
)
@click.pass_context
def daemon(
    ctx: click.Context,
    listen: str,
    name: str | None,
    no_health_checks: bool,
    no_workflows: bool,
    no_push: bool,
    no_migrate: bool,
    otlp_listen: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    workflow_lease: float,
    log_format: str | None,
) -> None:
    """Run the background work and serve the HTTP API until SIGTERM/SIGINT."""
    from orchcore.daemon.runner import Daemon, DaemonConfig, install_signal_handlers, parse_listen
    from orchcore.daemon.tls import listener_tls
    from orchcore.db.migrate import SchemaMode
    from orchcore.logging_setup import configure_logging

    settings = settings_from(ctx)
    configure_logging(log_format or settings.log_format)
    parse_listen(listen)  # bad input fails before anything starts
    config = DaemonConfig(
        listen=listen,
        name=name,
        health_checks=not no_health_checks,
        workflows=not no_workflows,
        push=not no_push,
        otlp_listen=otlp_listen,
        tls=listener_tls(tls_cert, tls_key),  # a bad pair fails here, before anything
        workflow_lease_seconds=workflow_lease,
    )

    async def main() -> None:
        schema = SchemaMode.CHECK if no_migrate else SchemaMode.MIGRATE
        orch = await Orch.open(settings, schema=schema)
        try:
            runner = Daemon(orch, config)
            install_signal_handlers(runner)
            await runner.run()
        finally:
            await orch.close()

    run_event_loop(main())


@cli.command("console")
@click.option("--readonly", is_flag=True, help="Hide every action that changes something.")
@click.pass_context
def console(ctx: click.Context, readonly: bool) -> None:
    """Open the terminal console."""
    from orchtui.app import run_console

    settings = settings_from(ctx)
    code = run_console(settings, readonly=readonly, dsn=settings.database_url)
    if code:
        sys.exit(code)


def _register_demo() -> None:
    from orchcore.cli.demo import demo

    cli.add_command(demo)


_register_demo()


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="orch")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("orch: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ValidationFailed as exc:
        click.echo(f"orch: error: {exc}", err=True)
        sys.exit(2)
    except (OrchError, EmbeddedUnavailable) as exc:
        click.echo(f"orch: error: {exc}", err=True)
        sys.exit(getattr(exc, "exit_code", 1))  # a schema to migrate first: 2
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
