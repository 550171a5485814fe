"""`orch token ...`"""

from __future__ import annotations

from datetime import timedelta

import click

from orchcore.actors import local_operator
from orchcore.auth import ApiToken, parse_lifetime
from orchcore.cli.context import confirm_destructive, json_option, run_with_orch
from orchcore.cli.output import age, emit, table
from orchcore.clock import Clock
from orchcore.facade import Orch


@click.group("token")
def token_group() -> None:
    """API bearer tokens: create, list, revoke."""


@token_group.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["system_admin", "platform_engineer", "monitoring_system", "service"]),
)
@click.option("--service", "service_name", help="The service a 'service' token acts for.")
@click.option("--name", help="A label for the token (default: role or service).")
@click.option(
    "--expires-in",
    "lifetime",
    callback=lambda _ctx, _param, value: None if value is None else parse_lifetime(value),
    metavar="DURATION",
    help="Refuse the token after this long: 30s, 30m, 12h, 90d (default: until revoked).",
)
@json_option
@run_with_orch
async def create(
    orch: Orch,
    role: str,
    service_name: str | None,
    name: str | None,
    lifetime: timedelta | None,
    as_json: bool,
) -> None:
    """Create a token; the secret is printed once."""
    label = name or (f"{service_name}-service" if service_name else role)
    secret, token = await orch.tokens.create(
        name=label,
        role=role,
        service_name=service_name,
        actor=local_operator(),
        expires_in=lifetime,
    )

    def human() -> None:
        click.echo(secret)
        until = f", expires {token.expires_at:%Y-%m-%d %H:%M:%S} UTC" if token.expires_at else ""
        click.echo(
            f"(token {token.token_name}, role {token.role}{until}; shown once, store it now)",
            err=True,
        )

    emit({"token": secret, **token.model_dump(mode="json")}, as_json=as_json, human=human)


@token_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@json_option
@run_with_orch
async def list_tokens(orch: Orch, include_revoked: bool, as_json: bool) -> None:
    """Tokens (never their secrets)."""
    tokens = await orch.tokens.list_tokens(include_revoked=include_revoked)
    emit(
        tokens,
        as_json=as_json,
        human=lambda: table(
            [
                "ID",
                "NAME",
                "PREFIX",
                "ROLE",
                "SERVICE",
                "CREATED",
                "LAST USED",
                "EXPIRES",
                "REVOKED",
            ],
            [
                (
                    str(t.id)[:8],
                    t.token_name,
                    t.token_prefix + "…",
                    t.role,
                    t.service_name or "-",
                    age(t.created_at, orch.clock),
                    age(t.last_used_at, orch.clock),
                    expiry(t, orch.clock),
                    age(t.revoked_at, orch.clock) if t.revoked_at else "-",
                )
                for t in tokens
            ],
        ),
    )


def expiry(token: ApiToken, clock: Clock) -> str:
    """'never', 'in 3d' or 'expired 2h ago'."""
    if token.expires_at is None:
        return "never"
    if token.expired(clock.now()):
        return f"expired {age(token.expires_at, clock)}"
    return f"in {_span(token.expires_at - clock.now())}"


def _span(left: timedelta) -> str:
    seconds = left.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@token_group.command("revoke")
@click.argument("key")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@run_with_orch
async def revoke(orch: Orch, key: str, yes: bool, as_json: bool) -> None:
    """Revoke the token with this id, name or printed prefix."""
    confirm_destructive(f"Revoke token {key}?", yes=yes)
    revoked = await orch.tokens.revoke(key, actor=local_operator())
    emit(
        revoked,
        as_json=as_json,
        human=lambda: click.echo(f"revoked {revoked.token_name} ({revoked.id})"),
    )
