"""/readyz with the database gone: 503 and a generic reason for anyone, the database's
own error text only for an operator's token."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import httpx

from orchcore import Orch, Settings
from tests.support.api import serve_api, token
from tests.support.daemons import DaemonProcess
from tests.support.polling import eventually

GENERIC = {"status": "unavailable", "reason": "the database does not answer"}


async def _shut_out(admin_dsn: str, database: str) -> None:
    """The database refuses every new connection and loses those it had."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()


def _database_of(dsn: str) -> str:
    # The path, not the text after the last "/": the embedded server's DSN names its
    # socket folder in the query (?host=/run/...).
    return urlsplit(dsn).path.lstrip("/")


async def test_a_daemon_without_its_database_tells_a_stranger_nothing_more(
    dsn: str, pg_admin_dsn: str
) -> None:
    daemon = await DaemonProcess(dsn, "readyz").start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{daemon.listen}") as client:
            assert (await client.get("/readyz")).status_code == 200
            database = _database_of(dsn)
            await _shut_out(pg_admin_dsn, database)

            async def not_ready() -> httpx.Response | None:
                answer = await client.get("/readyz")
                return answer if answer.status_code == 503 else None

            answer = await eventually(not_ready, timeout=30, message="/readyz saying 503")
            assert answer.json() == GENERIC
            assert database not in answer.text
            forged = await client.get(
                "/readyz", headers={"Authorization": "Bearer orch_not-a-real-token"}
            )
            assert forged.status_code == 503 and forged.json() == GENERIC
    finally:
        await daemon.ensure_stopped()


async def test_an_operator_token_is_told_why(dsn: str, pg_admin_dsn: str) -> None:
    orch = await Orch.open(Settings(database_url=dsn), start_discovery=False)
    try:
        operator = await token(orch, "monitoring_system")
        service = await token(orch, "service", "venue")
        async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            for headers in (operator, service):  # verified now, so known for a few seconds
                assert await orch.tokens.authenticate(headers["Authorization"][7:]) is not None
            await _shut_out(pg_admin_dsn, _database_of(dsn))

            told = await client.get("/readyz", headers=operator)
            assert told.status_code == 503
            body = told.json()
            assert {k: body[k] for k in GENERIC} == GENERIC
            assert body["detail"]  # the database's own words

            not_told = await client.get("/readyz", headers=service)  # a service may not read
            assert not_told.status_code == 503 and not_told.json() == GENERIC
    finally:
        await orch.close()


async def test_a_route_whose_database_is_gone_answers_503_not_500(
    dsn: str, pg_admin_dsn: str
) -> None:
    """Any route, not only /readyz: the request will do once the database is back, and
    its error text (hosts, databases, users) stays in the daemon's log."""
    orch = await Orch.open(Settings(database_url=dsn), start_discovery=False)
    try:
        operator = await token(orch, "platform_engineer")
        async with (
            serve_api(orch) as base_url,
            httpx.AsyncClient(base_url=base_url, headers=operator) as client,
        ):
            assert await orch.tokens.authenticate(operator["Authorization"][7:]) is not None
            database = _database_of(dsn)
            await _shut_out(pg_admin_dsn, database)
            answer = await client.get("/api/orchestration/registry/services")
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"] == "DatabaseUnavailable"
            assert database not in answer.text and "error_id" not in answer.json()
    finally:
        await orch.close()
