"""https:// on the call path's own transport: TLS under the same keep-alive pool, the
client certificate presented, the service's certificate and name verified."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from orchcore.callpath.tls import TlsSettings, client_context
from orchcore.callpath.transport import HttpTransport, PoolStats
from tests.support.raw_http import RawServer, keep_alive_ok, once_a_connection, raw_server


@dataclass
class Pki:
    """A CA, a certificate it issued to the service, and one it issued to orch."""

    ca: trustme.CA
    service: trustme.LeafCert
    orch: trustme.LeafCert
    folder: Path

    def service_context(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.service.configure_cert(context)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
        return context

    def orch_context(
        self, *, trust: trustme.CA | None = None, present: bool = True
    ) -> ssl.SSLContext:
        """What orch calls with, from files as its settings name them: the CA it
        trusts (ORCH_TLS_CA_FILE) and its client certificate (ORCH_TLS_CERT_FILE)."""
        settings = TlsSettings(
            ca_file=self.write("trust.pem", (trust or self.ca).cert_pem),
            cert_file=self.write("orch.pem", self.orch.cert_chain_pems[0]) if present else None,
            key_file=self.write("orch.key", self.orch.private_key_pem) if present else None,
        )
        return client_context(settings)

    def write(self, name: str, blob: trustme.Blob) -> str:
        path = self.folder / name
        blob.write_to_path(str(path))
        return str(path)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    return Pki(ca, ca.issue_cert("127.0.0.1"), ca.issue_cert("orch@wedding.example"), tmp_path)


@asynccontextmanager
async def client(context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = HttpTransport(ssl_context=context)
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as http:
        yield http


def stats(http: httpx.AsyncClient, port: int) -> PoolStats:
    transport = http._transport
    assert isinstance(transport, HttpTransport)
    return transport.stats()[f"https://127.0.0.1:{port}"]


async def test_requests_over_mtls_share_one_kept_alive_tls_connection(pki: Pki) -> None:
    callers: list[str] = []

    async def who_is_calling(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        names = writer.get_extra_info("peercert")["subjectAltName"]
        callers.extend(value for _, value in names)
        await keep_alive_ok(server, reader, writer)

    async with (
        raw_server(who_is_calling, tls=pki.service_context()) as server,
        client(pki.orch_context()) as http,
    ):
        url = f"https://127.0.0.1:{server.port}/venues"
        first = await http.post(url, json={"venue": "barn"})
        second = await http.get(url)
        third = await http.get(url)
        figures = stats(http, server.port)
    assert first.json() == {"venue": "barn"} and (second.content, third.content) == (b"ok", b"ok")
    assert (figures.opened, figures.requests, figures.reused) == (1, 3, 2)
    assert len(server.connections) == 1  # one handshake for all three
    assert callers == ["orch@wedding.example"]  # the certificate orch presented
    assert server.requests[0].startswith(b"POST /venues HTTP/1.1\r\n")


async def test_a_service_that_requires_a_client_certificate_refuses_a_call_without_one(
    pki: Pki,
) -> None:
    async with (
        raw_server(keep_alive_ok, tls=pki.service_context()) as server,
        client(pki.orch_context(present=False)) as http,
    ):
        with pytest.raises(httpx.HTTPError, match="client certificate") as caught:
            await http.get(f"https://127.0.0.1:{server.port}/")
    assert not server.requests
    # TLS 1.3 refuses after orch's side of the handshake (the request may be out),
    # TLS 1.2 during it: either way one line that says what to look at
    assert "\n" not in str(caught.value)


async def test_a_service_whose_certificate_another_ca_signed_is_refused(pki: Pki) -> None:
    async with (
        raw_server(keep_alive_ok, tls=pki.service_context()) as server,
        client(pki.orch_context(trust=trustme.CA())) as http,
    ):
        with pytest.raises(
            httpx.ConnectError,
            match=rf"127\.0\.0\.1:{server.port}: the TLS handshake failed: "
            r"CERTIFICATE_VERIFY_FAILED: self.signed certificate in certificate chain$",
        ):
            await http.get(f"https://127.0.0.1:{server.port}/")
        assert stats(http, server.port) == PoolStats()
    assert not server.requests


async def test_a_certificate_for_another_name_is_refused(pki: Pki) -> None:
    """The host called must be a name the certificate holds, as httpx checked it."""
    pki.service = pki.ca.issue_cert("venue.internal")
    async with (
        raw_server(keep_alive_ok, tls=pki.service_context()) as server,
        client(pki.orch_context()) as http,
    ):
        with pytest.raises(httpx.ConnectError, match="IP address mismatch"):
            await http.get(f"https://127.0.0.1:{server.port}/")
    assert not server.requests


async def test_a_tls_connection_closed_at_reuse_is_resent_for_a_get(pki: Pki) -> None:
    async with (
        raw_server(once_a_connection, tls=pki.service_context()) as server,
        client(pki.orch_context()) as http,
    ):
        url = f"https://127.0.0.1:{server.port}/"
        assert (await http.get(url)).status_code == 200
        assert (await http.get(url)).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="not sent again: POST"):
            await http.post(url, content=b"charge")
        figures = stats(http, server.port)
    assert (figures.opened, figures.reused, figures.resent) == (2, 2, 1)


def test_https_runs_on_uvloop_as_the_daemon_does(pki: Pki) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def two_calls() -> list[int]:
        async with (
            raw_server(keep_alive_ok, tls=pki.service_context()) as server,
            client(pki.orch_context()) as http,
        ):
            url = f"https://127.0.0.1:{server.port}/"
            statuses = [(await http.post(url, json={"n": n})).status_code for n in range(2)]
            assert len(server.connections) == 1
            return statuses

    assert uvloop.run(two_calls()) == [200, 200]
