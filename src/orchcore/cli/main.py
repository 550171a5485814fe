"""The `orch` entry point: verbs, and one place that turns errors into exit codes.

Exit codes: 0 success, 1 failure (not found, conflict, database unreachable),
2 bad input (usage or validation; one line naming the field) or a database schema
this orch cannot use (older: `orch db migrate`; newer or edited), 3 `orch mesh export
--strict` with something left out, 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

import click

from orchcore import __version__
from orchcore.db.embedded import EmbeddedUnavailable
from orchcore.errors import OrchError, ValidationFailed

#: Every verb but the two defined below, by where it lives. A verb's module (and what it
#: imports: the engine, httpx, the API server) is imported only when that verb runs, or
#: when help lists the verbs: `orch --version` imports none of them.
VERBS: Mapping[str, str] = {
    "alert": "orchcore.cli.workflows:alert_group",
    "breaker": "orchcore.cli.breakers:breaker_group",
    "call": "orchcore.cli.call:call",
    "db": "orchcore.cli.db:db_group",
    "demo": "orchcore.cli.demo:demo",
    "dlq": "orchcore.cli.bus:dlq_group",
    "instance": "orchcore.cli.instances:instance_group",
    "login": "orchcore.cli.login:login",
    "logout": "orchcore.cli.login:logout",
    "map": "orchcore.cli.traces:service_map",
    "mesh": "orchcore.cli.mesh:mesh_group",
    "message": "orchcore.cli.bus:message_group",
    "queue": "orchcore.cli.bus:queue_group",
    "service": "orchcore.cli.services:service_group",
    "status": "orchcore.cli.status:status",
    "token": "orchcore.cli.tokens:token_group",
    "trace": "orchcore.cli.traces:trace_group",
    "workflow": "orchcore.cli.workflows:workflow_group",
}


class LazyVerbs(click.Group):
    """A group whose verbs are imported from :data:`VERBS` when first looked up."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self._lazy:
            module, _, name = self._lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), name))
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyVerbs,
    lazy=VERBS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
    from orchcore.cli.context import settings_from
    from orchcore.daemon.eventloop import run_event_loop
    from orchcore.daemon.runner import Daemon, DaemonConfig, install_signal_handlers, parse_listen
    from orchcore.daemon.tls import listener_tls
    from orchcore.db.migrate import SchemaMode
    from orchcore.facade import Orch
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
@click.option(
    "--api",
    "api_url",
    metavar="URL",
    help="Work through a daemon's HTTP API under a token, not on the database "
    "(or ORCH_API_URL, or the URL `orch login` stored).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="A file holding the API token (else ORCH_TOKEN, else `orch login`'s).",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False),
    help="The CA that signed the daemon's https certificate (else the system's).",
)
@click.pass_context
def console(
    ctx: click.Context,
    readonly: bool,
    api_url: str | None,
    token_file: str | None,
    ca_file: str | None,
) -> None:
    """Open the terminal console: on the database, or through a daemon's API (--api,
    ORCH_API_URL or ORCH_TOKEN; or after `orch login` when no database is configured)."""
    if console_goes_through_api(ctx, api_url=api_url, token_file=token_file):
        from orchcore.client.credentials import resolve_credentials
        from orchtui.app import run_api_console

        credentials = resolve_credentials(api_url=api_url, token_file=token_file, ca_file=ca_file)
        code = run_api_console(credentials, readonly=readonly)
    else:
        from orchcore.cli.context import settings_from
        from orchtui.app import run_console

        settings = settings_from(ctx)
        code = run_console(settings, readonly=readonly, dsn=settings.database_url)
    if code:
        sys.exit(code)


def console_goes_through_api(
    ctx: click.Context,
    *,
    api_url: str | None,
    token_file: str | None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Whether `orch console` works through a daemon's API: when told so (an API URL or a
    token), or when no database is configured and `orch login` stored a daemon: an
    on-call engineer's laptop holds a login, not the database's password."""
    import os

    env = os.environ if environ is None else environ
    if api_url or token_file or env.get("ORCH_API_URL") or env.get("ORCH_TOKEN"):
        return True
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if obj.get("dsn") or env.get("ORCH_DATABASE_URL"):
        return False
    from orchcore.client.credentials import CredentialsFile

    return CredentialsFile.located(env).default_url() is not None


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
