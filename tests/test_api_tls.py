"""`orch daemon --tls-cert --tls-key`: https on the API and OTLP listeners, and a pair it
cannot use refused in one line (exit 2) before anything listens."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from orchcore import Orch
from tests.support.api import token
from tests.support.cli import run_orch
from tests.support.daemons import DaemonProcess


@dataclass(frozen=True)
class ServerPki:
    ca_file: str
    cert_file: str
    key_file: str
    other_key_file: str  # a key of another certificate


@pytest.fixture
def pki(tmp_path: Path) -> ServerPki:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: str(tmp_path / name) for name in ("ca.pem", "cert.pem", "key.pem", "o.pem")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    for blob in server.cert_chain_pems:
        blob.write_to_path(paths["cert.pem"], append=True)
    server.private_key_pem.write_to_path(paths["key.pem"])
    ca.issue_cert("elsewhere.example").private_key_pem.write_to_path(paths["o.pem"])
    return ServerPki(paths["ca.pem"], paths["cert.pem"], paths["key.pem"], paths["o.pem"])


async def test_the_daemon_answers_over_https_only(orch: Orch, dsn: str, pki: ServerPki) -> None:
    daemon = DaemonProcess(
        dsn,
        "tls",
        "--tls-cert",
        pki.cert_file,
        "--tls-key",
        pki.key_file,
        "--otlp-listen",
        "127.0.0.1:0",
    )
    await daemon.start()
    try:
        (started,) = daemon.events("daemon started")
        assert started["tls"] is True
        trusting = ssl.create_default_context(cafile=pki.ca_file)
        headers = await token(orch, "platform_engineer")
        async with httpx.AsyncClient(verify=trusting) as client:
            ready = await client.get(f"https://{daemon.listen}/readyz")
            assert ready.status_code == 200, ready.text
            services = await client.get(
                f"https://{daemon.listen}/api/orchestration/services", headers=headers
            )
            assert services.status_code == 200, services.text
            export = await client.post(
                f"https://{started['otlp_listen']}/v1/traces",
                content=b"{}",
                headers={**headers, "Content-Type": "application/json"},
            )
            assert export.status_code == 200, export.text

        async with httpx.AsyncClient() as plain:
            for listener in (daemon.listen, started["otlp_listen"]):
                with pytest.raises(httpx.TransportError):
                    await plain.get(f"http://{listener}/healthz")
                # A client that does not trust the CA refuses the certificate.
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await plain.get(f"https://{listener}/healthz")
    finally:
        assert await daemon.terminate() == 0
        await daemon.ensure_stopped()


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("cert", "missing", "--tls-key: cannot read {missing}: No such file or directory"),
        ("missing", "key", "--tls-cert: cannot read {missing}: No such file or directory"),
        ("cert", "other", "--tls-key: {other} does not match the certificate in {cert}"),
        ("key", "key", "--tls-cert: {key} holds no PEM certificate"),
        ("cert", "cert", "--tls-key: {cert} holds no PEM private key"),
        ("cert", None, "--tls-key: --tls-cert and --tls-key go together"),
    ],
)
async def test_a_pair_it_cannot_use_is_one_line_and_exit_2(
    dsn: str, pki: ServerPki, tmp_path: Path, cert: str, key: str | None, message: str
) -> None:
    files = {
        "cert": pki.cert_file,
        "key": pki.key_file,
        "other": pki.other_key_file,
        "missing": str(tmp_path / "missing.pem"),
    }
    args = ["daemon", "--listen", "127.0.0.1:0", "--tls-cert", files[cert]]
    if key is not None:
        args += ["--tls-key", files[key]]
    refused = await run_orch(dsn, *args, timeout=60)
    assert refused.code == 2, refused.stderr
    assert refused.stderr.splitlines() == [f"orch: error: {message.format(**files)}"]
