"""The API under bad input: bodies over the limit get 413, an unexpected exception gets
500, a missing token 401, each in orch's error body and none with a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from orchcore import ManualClock, Orch, Settings
from orchcore.api import create_app
from orchcore.tracing.tracing import MAX_EXPORT_BYTES
from tests.support.api import serve_api, serve_asgi, token

LIMIT = 4096
SERVICES = "/api/orchestration/services"
SERVICE = {
    "service_name": "venue",
    "service_version": "1.0.0",
    "service_type": "api",
    "deployment_environment": "production",
}


@pytest.fixture
async def small_limit(dsn: str, clock: ManualClock) -> AsyncIterator[Orch]:
    engine = await Orch.open(Settings(database_url=dsn, api_max_body_bytes=LIMIT), clock=clock)
    yield engine
    await engine.close()


def _too_large(answer: httpx.Response, limit: int) -> None:
    assert answer.status_code == 413, answer.text
    message = f"the request body is over {limit} bytes"
    assert answer.json() == {"error": "PayloadTooLarge", "message": message, "detail": message}


async def _chunks(total: int, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b" " * min(size, total - start)


async def test_a_body_over_the_limit_is_refused_by_its_length_or_as_it_streams(
    small_limit: Orch,
) -> None:
    orch = small_limit
    headers = {**await token(orch, "platform_engineer"), "Content-Type": "application/json"}
    padded = b'{"service_name": "venue", "service_version": "1.0.0", "service_type": "api"}'
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        declared = await client.post(SERVICES, content=padded + b" " * LIMIT, headers=headers)
        _too_large(declared, LIMIT)
        # No Content-Length: the body arrives in chunks, counted as they come.
        chunked = await client.post(SERVICES, content=_chunks(LIMIT + 1), headers=headers)
        assert "content-length" not in chunked.request.headers
        assert chunked.request.headers["transfer-encoding"] == "chunked"
        _too_large(chunked, LIMIT)
        # The connection stays usable, and a body within the limit goes through.
        assert not await orch.registry.list_services()
        created = await client.post(SERVICES, json=SERVICE, headers=headers)
        assert created.status_code == 201, created.text
        chunked_ok = await client.post(
            f"{SERVICES}/{created.json()['id']}/instances",
            content=_halves(
                b'{"instance_id": "v-1", "ip_address": "10.0.0.5", "port": 8080, '
                b'"version": "1.0.0"}' + b" " * (LIMIT - 200)
            ),
            headers=headers,
        )
        assert chunked_ok.status_code == 201, chunked_ok.text


async def _halves(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    yield body[len(body) // 2 :]


async def test_the_default_limit_is_ten_mebibytes(orch: Orch) -> None:
    assert orch.settings.api_max_body_bytes == 10 * 1024 * 1024
    headers = {**await token(orch, "platform_engineer"), "Content-Type": "application/json"}
    over = 10 * 1024 * 1024 + 1
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        _too_large(await client.post(SERVICES, content=b" " * over, headers=headers), over - 1)
        chunked = await client.post(SERVICES, content=_chunks(over, 65536), headers=headers)
        _too_large(chunked, over - 1)


async def test_otlp_ingest_keeps_its_own_limit_and_encoding(small_limit: Orch) -> None:
    orch = small_limit
    headers = {**await token(orch, "service", "venue"), "Content-Type": "application/json"}
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        # Past the API's limit but within OTLP's: the export is read (and found empty).
        within = await client.post("/v1/traces", content=b"{}" + b" " * LIMIT, headers=headers)
        assert within.status_code == 200, within.text
        over = await client.post(
            "/v1/traces", content=_chunks(MAX_EXPORT_BYTES + 1, 65536), headers=headers
        )
        assert over.status_code == 413
        assert over.json() == {"code": 8, "message": f"the body is over {MAX_EXPORT_BYTES} bytes"}


async def test_an_unexpected_exception_is_500_in_orchs_body_without_a_traceback(
    orch: Orch, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(orch, daemon_name="test")

    @app.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError("secret-internal-detail at /srv/orch/config.py")

    with caplog.at_level(logging.ERROR, logger="orch.api"):
        async with serve_asgi(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            answer = await client.get("/test-only/boom")
            assert (await client.get("/healthz")).status_code == 200  # still serving
    assert answer.status_code == 500
    body = answer.json()
    assert body["error"] == "InternalError"
    assert set(body) == {"error", "message", "detail", "error_id"}
    for leak in ("Traceback", "secret-internal-detail", "RuntimeError", "config.py"):
        assert leak not in answer.text
    # The daemon's log has what the client was not told, under the same reference.
    (record,) = [r for r in caplog.records if getattr(r, "error_id", None) == body["error_id"]]
    assert record.exc_info is not None and "secret-internal-detail" in str(record.exc_info[1])


async def test_a_missing_token_is_401_in_orchs_body(orch: Orch) -> None:
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        answer = await client.get(SERVICES)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    body = answer.json()
    assert body["error"] == "Unauthenticated"
    assert body["message"].startswith("missing bearer token")
    assert body["detail"] == body["message"]


async def test_text_postgresql_cannot_store_is_bad_input_not_a_500(orch: Orch) -> None:
    headers = await token(orch, "platform_engineer")
    nul = "venue\u0000"
    async with (
        serve_api(orch) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=headers) as client,
    ):
        created = await client.post(SERVICES, json=SERVICE)
        instances = f"{SERVICES}/{created.json()['id']}/instances"
        instance = {"instance_id": "v-1", "ip_address": "10.0.0.5", "port": 80, "version": "1"}
        answers = [
            await client.get(f"{SERVICES}/venue%00"),  # a path parameter
            await client.get("/api/orchestration/traces", params={"service": nul}),  # a query
            await client.post(instances, json={**instance, "node_name": nul}),  # text
            await client.post(instances, json={**instance, "metadata": {"zone": nul}}),  # jsonb
        ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["message"] == (
            "request: text may not contain the NUL character (U+0000)"
        )
