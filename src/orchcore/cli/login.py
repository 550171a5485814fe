"""`orch login URL` and `orch logout [URL]`: keep a daemon's token for the console over
the API (see orchcore/client/credentials.py for where it is kept and how it is found)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
import urllib.parse
from datetime import UTC, datetime

import click

from orchcore.cli.context import json_option
from orchcore.cli.output import emit
from orchcore.client.credentials import (
    ApiCredentials,
    CredentialsFile,
    StoredLogin,
    api_url,
    checked_token,
    http_client,
    read_token_file,
)
from orchcore.client.identity import Identity, whoami


@click.command("login")
@click.argument("url")
@click.option(
    "--ca-file",
    envvar="ORCH_CA_FILE",
    metavar="FILE",
    help="PEM CA(s) to verify an https daemon's certificate by (env ORCH_CA_FILE; "
    "default: the system's).",
)
@click.option(
    "--token-file",
    metavar="FILE",
    help="A file (mode 0600) holding the token; else it is asked for, or read from stdin.",
)
@json_option
def login(url: str, ca_file: str | None, token_file: str | None, as_json: bool) -> None:
    """Check a token against the daemon at URL, then keep it (mode 0600) for
    `orch console --api URL`. The token is never an argument: the process list would
    show it."""
    address = api_url(url)
    ca = None if ca_file is None else os.path.abspath(ca_file)
    token = read_token_file(token_file) if token_file else _ask_for_token()
    if urllib.parse.urlsplit(address).scheme == "http" and not _is_loopback(address):
        click.echo(
            f"orch: warning: {address} is plain http: the token crosses the network "
            "unencrypted; serve https (`orch daemon --tls-cert`)",
            err=True,
        )
    identity = asyncio.run(_identify(ApiCredentials(address, token, ca)))
    store = CredentialsFile.located()
    login_entry = StoredLogin(
        token=token, ca_file=ca, name=identity.name, role=identity.role, saved_at=_now()
    )
    store.save(address, login_entry)

    def human() -> None:
        click.echo(f"logged in to {address} as {identity.name} ({_role_line(identity)})")
        click.echo(f"credentials kept in {store.path}")

    emit({**identity.to_dict(), "credentials_file": str(store.path)}, as_json=as_json, human=human)


@click.command("logout")
@click.argument("url", required=False)
@json_option
def logout(url: str | None, as_json: bool) -> None:
    """Forget the token kept for URL (default: the daemon of the last `orch login`).
    The token itself stays valid until revoked (`orch token revoke`)."""
    store = CredentialsFile.located()
    address = api_url(url) if url else store.default_url()
    removed = address is not None and store.remove(address)

    def human() -> None:
        if address is None:
            click.echo(f"not logged in to any daemon ({store.path} holds none)")
        elif not removed:
            click.echo(f"not logged in to {address}")
        else:
            click.echo(f"logged out of {address}")
            click.echo("(the token stays valid until revoked: `orch token revoke`)", err=True)

    emit({"url": address, "removed": removed}, as_json=as_json, human=human)


async def _identify(creds: ApiCredentials) -> Identity:
    async with http_client(creds) as client:
        return await whoami(client)


def _ask_for_token() -> str:
    if sys.stdin.isatty():
        typed = click.prompt("Token (not shown)", hide_input=True, err=True)
        return checked_token(typed, source="the token typed")
    # A pipe or redirect: `orch login URL < token-file`, or a secret manager's output.
    return checked_token(sys.stdin.readline(), source="the token read from stdin")


def _role_line(identity: Identity) -> str:
    line = f"{identity.role}: {', '.join(sorted(identity.actions)) or 'nothing'}"
    if identity.service:
        line += f"; acts as service {identity.service}"
    if identity.expires_at is not None:
        line += f"; expires {identity.expires_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return line


def _is_loopback(address: str) -> bool:
    host = urllib.parse.urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _now() -> datetime:
    return datetime.now(UTC)
