"""Which way `orch console` reaches the system: the database, or a daemon's API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from orchcore.cli.main import cli, console_goes_through_api
from orchcore.client.credentials import CredentialsFile, StoredLogin


def _decides(environ: dict[str, str], *, dsn: str | None = None, **options: str | None) -> bool:
    ctx = click.Context(cli, obj={"dsn": dsn} if dsn else {})
    return console_goes_through_api(
        ctx,
        api_url=options.get("api_url"),
        token_file=options.get("token_file"),
        environ=environ,
    )


@pytest.fixture
def logged_in(tmp_path: Path) -> dict[str, str]:
    environ = {"ORCH_CREDENTIALS_FILE": str(tmp_path / "credentials.json")}
    CredentialsFile.located(environ).save(
        "https://orch.wedding.internal:7400",
        StoredLogin(token="t0k", name="ana", role="monitoring_system", saved_at=datetime.now(UTC)),
    )
    return environ


def test_told_so_it_takes_the_api(tmp_path: Path) -> None:
    nothing = {"ORCH_CREDENTIALS_FILE": str(tmp_path / "none.json")}
    assert _decides(nothing, api_url="https://orch.example:7400")
    assert _decides(nothing, token_file="/run/secrets/orch-token")
    assert _decides({**nothing, "ORCH_API_URL": "https://orch.example:7400"})
    assert _decides({**nothing, "ORCH_TOKEN": "t0k"})


def test_with_nothing_stored_it_opens_the_database(tmp_path: Path) -> None:
    assert not _decides({"ORCH_CREDENTIALS_FILE": str(tmp_path / "none.json")})


def test_a_login_is_used_unless_a_database_is_configured(logged_in: dict[str, str]) -> None:
    assert _decides(logged_in)
    assert not _decides({**logged_in, "ORCH_DATABASE_URL": "postgresql://db/orch"})
    assert not _decides(logged_in, dsn="postgresql://db/orch")
