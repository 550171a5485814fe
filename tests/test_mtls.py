"""mTLS on the call path: orch presents a client certificate and verifies services."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchcore import ManualClock, Orch, Settings
from orchcore.callpath import CallFailed
from orchcore.daemon.runner import EmbeddedServer
from orchcore.resilience.retry import RetryPolicy
from tests.support.polling import eventually
from tests.support.registry import mark


@dataclass
class Pki:
    ca: trustme.CA
    folder: Path

    def write(self, name: str, blob: trustme.Blob) -> str:
        path = self.folder / name
        blob.write_to_path(str(path))
        return str(path)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(trustme.CA(), tmp_path)


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "scheme": request.url.scheme})


@pytest.fixture
async def https_service(pki: Pki) -> AsyncIterator[int]:
    """An HTTPS service on loopback that requires a client certificate from our CA."""
    server_cert = pki.ca.issue_cert("127.0.0.1", "localhost")
    cert_path = pki.write("server.pem", server_cert.cert_chain_pems[0])
    key_path = pki.write("server.key", server_cert.private_key_pem)
    ca_path = pki.write("ca.pem", pki.ca.cert_pem)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    app = Starlette(routes=[Route("/whoami", whoami)])
    config = uvicorn.Config(
        app,
        ssl_certfile=cert_path,
        ssl_keyfile=key_path,
        ssl_ca_certs=ca_path,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started, timeout=10)
    yield sock.getsockname()[1]
    server.should_exit = True
    await task
    sock.close()


async def engine_with_tls(
    dsn: str, clock: ManualClock, pki: Pki, client_ca: trustme.CA | None
) -> Orch:
    """An engine trusting ``pki``'s CA, presenting a certificate ``client_ca`` issued
    (none without one)."""
    presented: dict[str, str] = {}
    if client_ca is not None:
        client = client_ca.issue_cert("orch@wedding.example")
        presented["tls_cert_file"] = pki.write("client.pem", client.cert_chain_pems[0])
        presented["tls_key_file"] = pki.write("client.key", client.private_key_pem)
    settings = Settings(
        database_url=dsn, tls_ca_file=pki.write("trust.pem", pki.ca.cert_pem), **presented
    )
    return await Orch.open(settings, clock=clock)


async def register_https(orch: Orch, port: int) -> None:
    await orch.registry.register_service(
        {
            "service_name": "payment",
            "service_type": "api",
            "deployment_environment": "staging",
            "base_url": "https://payment.internal",
        },
        actor="t",
    )
    await orch.registry.register_instance(
        "payment",
        {"instance_id": "payment-1", "ip_address": "127.0.0.1", "port": port, "version": "1"},
        actor="t",
    )
    await mark(orch, "payment-1", "healthy")
    await orch.discovery.refresh_all()


async def test_client_certificate_from_the_trusted_ca_is_accepted(
    dsn: str, clock: ManualClock, pki: Pki, https_service: int
) -> None:
    orch = await engine_with_tls(dsn, clock, pki, pki.ca)
    try:
        await register_https(orch, https_service)
        caller = await orch.caller()
        result = await caller.call("orch", "payment", "/whoami", method="GET")
        assert result.status_code == 200
        assert result.json() == {"ok": True, "scheme": "https"}
    finally:
        await orch.close()


async def test_https_calls_go_out_on_orchs_transport_over_one_kept_alive_connection(
    dsn: str, clock: ManualClock, pki: Pki, https_service: int
) -> None:
    orch = await engine_with_tls(dsn, clock, pki, pki.ca)
    try:
        await register_https(orch, https_service)
        caller = await orch.caller()
        for _ in range(3):
            result = await caller.call("orch", "payment", "/whoami", method="GET")
            assert result.json() == {"ok": True, "scheme": "https"}
        figures = caller.transport.stats()[f"https://127.0.0.1:{https_service}"]
    finally:
        await orch.close()
    assert (figures.opened, figures.requests, figures.reused) == (1, 3, 2)


async def test_a_call_without_a_client_certificate_is_refused_and_says_why(
    dsn: str, clock: ManualClock, pki: Pki, https_service: int
) -> None:
    orch = await engine_with_tls(dsn, clock, pki, None)
    try:
        await register_https(orch, https_service)
        caller = await orch.caller()
        with pytest.raises(CallFailed, match=r"orch's client certificate \(ORCH_TLS_CERT_FILE\)"):
            await caller.call(
                "orch", "payment", "/whoami", method="GET", retry=RetryPolicy.single_attempt()
            )
    finally:
        await orch.close()


async def test_a_certificate_from_another_ca_is_refused(
    dsn: str, clock: ManualClock, pki: Pki, https_service: int
) -> None:
    orch = await engine_with_tls(dsn, clock, pki, trustme.CA())
    try:
        await register_https(orch, https_service)
        caller = await orch.caller()
        with pytest.raises(CallFailed, match="orch's client certificate") as caught:
            await caller.call(
                "orch", "payment", "/whoami", method="GET", retry=RetryPolicy.single_attempt()
            )
        assert caught.value.attempts[0].status_code is None
    finally:
        await orch.close()


async def test_a_service_with_an_untrusted_certificate_is_refused(
    dsn: str, clock: ManualClock, https_service: int, tmp_path: Path
) -> None:
    """Our trust store holds another CA: the service cannot prove who it is."""
    other = Pki(trustme.CA(), tmp_path / "other")
    other.folder.mkdir()
    orch = await engine_with_tls(dsn, clock, other, other.ca)
    try:
        await register_https(orch, https_service)
        caller = await orch.caller()
        with pytest.raises(
            CallFailed, match=r"the TLS handshake failed: CERTIFICATE_VERIFY_FAILED: self.signed"
        ):
            await caller.call(
                "orch", "payment", "/whoami", method="GET", retry=RetryPolicy.single_attempt()
            )
    finally:
        await orch.close()
