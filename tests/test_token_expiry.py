"""Tokens that expire: refused with 401 "token expired" on the API and on OTLP ingest, and
`orch token create --expires-in` that takes only what it can read exactly."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from orchcore import ManualClock, Orch
from orchcore.api.otlp_app import create_otlp_app
from orchcore.auth import parse_lifetime
from orchcore.errors import ValidationFailed
from tests.support.api import serve_api, serve_asgi
from tests.support.cli import run_orch

SERVICES = "/api/orchestration/services"


def _expired(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.json() == {
        "error": "Unauthenticated",
        "message": "token expired",
        "detail": "token expired",
    }
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_an_expired_token_is_refused_on_the_api_and_on_otlp_ingest(
    orch: Orch, clock: ManualClock
) -> None:
    secret, issued = await orch.tokens.create(
        name="ops", role="platform_engineer", actor="t", expires_in=timedelta(seconds=30)
    )
    assert issued.expires_at == clock.now() + timedelta(seconds=30)
    headers = {"Authorization": f"Bearer {secret}"}
    export = {**headers, "Content-Type": "application/json"}
    async with (
        serve_api(orch) as api_url,
        serve_asgi(create_otlp_app(orch)) as otlp_url,
        httpx.AsyncClient() as client,
    ):
        assert (await client.get(api_url + SERVICES, headers=headers)).status_code == 200
        ingest = await client.post(otlp_url + "/v1/traces", content=b"{}", headers=export)
        assert ingest.status_code == 200, ingest.text

        await clock.advance(29)  # still valid (and now verified, so cached)
        assert (await client.get(api_url + SERVICES, headers=headers)).status_code == 200

        await clock.advance(1)  # the cache does not outlive the token
        _expired(await client.get(api_url + SERVICES, headers=headers))
        _expired(await client.post(otlp_url + "/v1/traces", content=b"{}", headers=export))
        _expired(await client.post(api_url + "/v1/traces", content=b"{}", headers=export))

        orch.tokens.forget_verified()  # looked up afresh: refused the same way
        _expired(await client.get(api_url + SERVICES, headers=headers))


async def test_a_token_without_expiry_keeps_working(orch: Orch, clock: ManualClock) -> None:
    secret, issued = await orch.tokens.create(name="ops", role="platform_engineer", actor="t")
    assert issued.expires_at is None
    await clock.advance(10 * 365 * 86400)
    assert await orch.tokens.authenticate(secret) is not None


@pytest.mark.parametrize(
    ("text", "lifetime"),
    [
        ("30s", timedelta(seconds=30)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("90d", timedelta(days=90)),
    ],
)
def test_lifetimes_read(text: str, lifetime: timedelta) -> None:
    assert parse_lifetime(text) == lifetime


@pytest.mark.parametrize(
    "text", ["", "90", "d", "0d", "1.5h", "-1d", "90 d", " 90d", "90D", "1w", "3651d", "1e3s"]
)
def test_lifetimes_that_are_not_read_exactly_are_refused(text: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_lifetime(text)
    assert refused.value.field == "expires-in"


async def test_cli_creates_lists_and_refuses(dsn: str) -> None:
    created = await run_orch(
        dsn, "token", "create", "--role", "monitoring_system", "--expires-in", "12h", "--json"
    )
    assert created.code == 0, created.stderr
    token = created.json()
    assert token["expires_at"] is not None

    listed = await run_orch(dsn, "token", "list", "--json")
    assert listed.code == 0, listed.stderr
    (row,) = [t for t in listed.json() if t["id"] == token["id"]]
    assert row["expires_at"] == token["expires_at"]

    table = await run_orch(dsn, "token", "list")
    assert "EXPIRES" in table.stdout
    assert "in 12h" in table.stdout

    bad = await run_orch(dsn, "token", "create", "--role", "system_admin", "--expires-in", "1.5h")
    assert bad.code == 2
    assert bad.stderr.strip().splitlines() == [
        "orch: error: expires-in: expected a whole number and s, m, h or d "
        "(30s, 12h, 90d), got '1.5h'"
    ]
    listed_again = await run_orch(dsn, "token", "list", "--json")
    assert len(listed_again.json()) == 1  # nothing made by the refused command


async def test_cli_lists_an_expired_token_as_expired(orch: Orch, dsn: str) -> None:
    created = await run_orch(
        dsn, "token", "create", "--role", "system_admin", "--expires-in", "30s"
    )
    assert created.code == 0, created.stderr
    await orch.db.execute(  # made two hours earlier, by the real clock the CLI reads
        "UPDATE api_tokens SET created_at = created_at - interval '2 hours', "
        "expires_at = expires_at - interval '2 hours'"
    )
    table = await run_orch(dsn, "token", "list")
    assert table.code == 0, table.stderr
    assert "expired 2h ago" in table.stdout
