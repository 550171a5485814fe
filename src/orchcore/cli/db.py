"""`orch db ...`: migrations and the embedded server."""

from __future__ import annotations

import asyncio

import click

from orchcore.cli.context import json_option, settings_from
from orchcore.cli.output import emit
from orchcore.db.embedded import EmbeddedPostgres
from orchcore.db.migrate import (
    available_migrations,
    migrate,
    recorded_migrations,
    refusal,
)
from orchcore.db.pool import connect
from orchcore.facade import DatabaseUnavailable, describe_dsn


@click.group("db")
def db_group() -> None:
    """Schema migrations and the embedded PostgreSQL."""


@db_group.command("migrate")
@json_option
@click.pass_context
def migrate_cmd(ctx: click.Context, as_json: bool) -> None:
    """Apply pending migrations (safe to run concurrently; re-running is a no-op).

    Refuses a database migrated by a newer orch, or whose applied migrations were
    edited since (checksums differ), applying nothing."""
    settings = settings_from(ctx)
    embedded = None if settings.database_url else EmbeddedPostgres(settings.data_dir)

    async def run(dsn: str) -> list[str]:
        try:
            conn = await connect(dsn)
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot connect to {describe_dsn(dsn)}: {exc}") from None
        try:
            return [f"{m.version}_{m.name}" for m in await migrate(conn)]
        finally:
            await conn.close()

    dsn = settings.database_url or embedded.acquire()  # type: ignore[union-attr]
    try:
        applied = asyncio.run(run(dsn))
    finally:
        if embedded is not None:
            embedded.release()
    emit(
        {"applied": applied, "database": describe_dsn(dsn)},
        as_json=as_json,
        human=lambda: click.echo(
            "\n".join(f"applied {name}" for name in applied) or "schema is up to date"
        ),
    )


@db_group.command("status")
@json_option
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Where the database is, its schema against this orch's, and the embedded server."""
    settings = settings_from(ctx)
    info: dict[str, object] = {}
    if settings.database_url is None:
        info["embedded"] = EmbeddedPostgres(settings.data_dir).status()
    dsn = settings.database_url
    if dsn is not None or info["embedded"]["running"]:  # type: ignore[index]
        target = dsn or info["embedded"]["dsn"]  # type: ignore[index]

        info["database"] = describe_dsn(target)
        info.update(asyncio.run(_schema_status(target)))

    def human() -> None:
        for key, value in info.items():
            if isinstance(value, dict):
                for sub, item in value.items():
                    click.echo(f"{key}.{sub}: {item}")
            else:
                click.echo(f"{key}: {value}")

    emit(info, as_json=as_json, human=human)


async def _schema_status(dsn: str) -> dict[str, object]:
    """The schema's version, the one this orch needs, what is pending and what is wrong."""
    conn = await connect(dsn)
    try:
        applied = await recorded_migrations(conn)
    finally:
        await conn.close()
    known = available_migrations()
    problem = refusal(applied, known, pending_allowed=False)
    return {
        "schema_version": max(applied) if applied else None,
        "schema_needed": known[-1].version,
        "pending_migrations": [
            m.file_name.removesuffix(".sql") for m in known if m.version not in applied
        ],
        "schema_problem": str(problem) if problem is not None else None,
    }


@db_group.command("stop")
@json_option
@click.pass_context
def stop_cmd(ctx: click.Context, as_json: bool) -> None:
    """Stop the embedded PostgreSQL even if orch processes still use it."""
    settings = settings_from(ctx)
    if settings.database_url:
        raise click.UsageError("ORCH_DATABASE_URL/--dsn is set: there is no embedded server")
    server = EmbeddedPostgres(settings.data_dir)
    was_running = server.is_running()
    server.stop()
    emit(
        {"stopped": was_running},
        as_json=as_json,
        human=lambda: click.echo(
            "embedded PostgreSQL stopped" if was_running else "embedded PostgreSQL was not running"
        ),
    )
