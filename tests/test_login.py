"""`orch login URL` / `orch logout` and `GET /api/orchestration/whoami`, against the real
API on a loopback port (https: a real `orch daemon --tls-cert`), the CLI in a subprocess.
The token shows in no output."""

from __future__ import annotations

import asyncio
import os
import pty
import socket
import stat
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import trustme

from orchcore import ManualClock, Orch
from orchcore.auth import Action
from orchcore.client.credentials import ApiCredentials, http_client, resolve_credentials
from orchcore.client.identity import DaemonUnreachable, whoami
from tests.support.api import serve_api
from tests.support.cli import CliResult, run_orch
from tests.support.daemons import DaemonProcess
from tests.support.http import SwitchableServer


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `orch login` keeps the token: the default place under a config home of
    the test's own (the CLI subprocesses inherit the environment)."""
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    for name in ("ORCH_CREDENTIALS_FILE", "ORCH_API_URL", "ORCH_TOKEN", "ORCH_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    return config / "orch" / "credentials.json"


@pytest.fixture
async def api(orch: Orch) -> AsyncIterator[str]:
    async with serve_api(orch) as base_url:
        yield base_url


async def secret_of(
    orch: Orch,
    role: str,
    *,
    name: str | None = None,
    service: str | None = None,
    expires_in: timedelta | None = None,
) -> str:
    secret, _ = await orch.tokens.create(
        name=name or role, role=role, service_name=service, actor="t", expires_in=expires_in
    )
    return secret


def token_file(tmp_path: Path, secret: str) -> str:
    path = tmp_path / "token"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return str(path)


def assert_never_shown(secret: str, *results: CliResult) -> None:
    for result in results:
        assert secret not in result.stdout and secret not in result.stderr


def one_error_line(result: CliResult) -> str:
    assert result.code == 1, result
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    return line


# -- whoami ----------------------------------------------------------------------------


async def test_whoami_tells_each_token_its_name_role_and_actions(
    orch: Orch, api: str, clock: ManualClock
) -> None:
    async def whoami(secret: str | None) -> httpx.Response:
        headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=api) as client:
            return await client.get("/api/orchestration/whoami", headers=headers)

    rota = await whoami(await secret_of(orch, "monitoring_system", name="oncall-rota"))
    assert rota.status_code == 200, rota.text
    assert rota.json() == {
        "name": "oncall-rota",
        "role": "monitoring_system",
        "service": None,
        "actions": ["read"],
        "expires_at": None,
        "environment": orch.settings.environment,  # the daemon's: the console's header says it
    }
    venue = (await whoami(await secret_of(orch, "service", service="venue"))).json()
    assert (venue["role"], venue["service"]) == ("service", "venue")
    assert "instance_self" in venue["actions"] and "read" not in venue["actions"]
    admin = (await whoami(await secret_of(orch, "system_admin"))).json()
    assert admin["actions"] == [action.value for action in Action]
    brief = await secret_of(orch, "platform_engineer", expires_in=timedelta(hours=12))
    expiring = (await whoami(brief)).json()
    assert expiring["expires_at"] == (clock.now() + timedelta(hours=12)).isoformat().replace(
        "+00:00", "Z"
    )
    assert "admin" not in expiring["actions"] and "write" in expiring["actions"]

    anonymous = await whoami(None)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "Unauthenticated"
    assert (await whoami("orch_not-a-token")).status_code == 401


# -- login -----------------------------------------------------------------------------


async def test_login_keeps_the_token_0600_in_a_0700_directory_and_it_works_afterwards(
    orch: Orch, dsn: str, api: str, credentials: Path, tmp_path: Path
) -> None:
    secret = await secret_of(orch, "monitoring_system", name="oncall-rota")
    logged_in = await run_orch(
        dsn, "login", api + "/", "--token-file", token_file(tmp_path, secret)
    )
    assert logged_in.code == 0, logged_in.stderr
    assert logged_in.stdout.splitlines() == [
        f"logged in to {api} as oncall-rota (monitoring_system: read)",
        f"credentials kept in {credentials}",
    ]
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700

    # What a console over the API would do next: nothing given, everything found.
    creds = resolve_credentials(api_url=None, token_file=None, ca_file=None)
    assert (creds.url, creds.token, creds.ca_file) == (api, secret, None)
    async with http_client(creds) as client:
        services = await client.get("/api/orchestration/services")
        assert services.status_code == 200, services.text
        # Read only: the daemon refuses the rest.
        refused = await client.post("/api/orchestration/circuit-breakers", json={})
        assert refused.status_code == 403
    assert_never_shown(secret, logged_in)


async def test_login_reads_a_piped_token_and_answers_json(
    orch: Orch, dsn: str, api: str, credentials: Path
) -> None:
    secret = await secret_of(orch, "service", service="venue")
    logged_in = await run_orch(dsn, "login", api, "--json", stdin=secret + "\n")
    assert logged_in.code == 0, logged_in.stderr
    answer = logged_in.json()
    assert answer["url"] == api
    assert (answer["name"], answer["role"], answer["service"]) == (
        "service",
        "service",
        "venue",
    )
    assert answer["credentials_file"] == str(credentials)
    assert "read" not in answer["actions"]
    assert_never_shown(secret, logged_in)
    # The file holds the token, of course; nothing else printed does.
    assert secret in credentials.read_text()


async def test_a_refused_token_is_one_line_and_nothing_is_written(
    orch: Orch, dsn: str, api: str, credentials: Path, tmp_path: Path, clock: ManualClock
) -> None:
    unknown = "orch_" + "x" * 43
    refused = await run_orch(dsn, "login", api, "--token-file", token_file(tmp_path, unknown))
    assert one_error_line(refused) == (
        f"orch: error: {api} refused the token: unknown or revoked token"
    )
    brief = await secret_of(orch, "monitoring_system", expires_in=timedelta(seconds=30))
    await clock.advance(31)
    expired = await run_orch(dsn, "login", api, stdin=brief + "\n")
    assert one_error_line(expired) == f"orch: error: {api} refused the token: token expired"
    assert not credentials.exists() and not credentials.parent.exists()
    assert_never_shown(unknown, refused)
    assert_never_shown(brief, expired)


async def test_a_daemon_that_does_not_answer_is_one_line_and_nothing_is_written(
    orch: Orch, dsn: str, credentials: Path, tmp_path: Path
) -> None:
    secret = await secret_of(orch, "monitoring_system")
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        down = await run_orch(dsn, "login", url, "--token-file", token_file(tmp_path, secret))
    assert one_error_line(down) == f"orch: error: cannot reach {url}: Connection refused"
    assert not credentials.exists()
    assert_never_shown(secret, down)


async def test_a_daemon_that_hangs_is_told_apart_from_a_refused_token(
    http_server: SwitchableServer,
) -> None:
    await http_server.set_mode("hang")
    creds = ApiCredentials(f"http://127.0.0.1:{http_server.port}", "orch_" + "h" * 43)
    async with http_client(creds, timeout=0.2) as client:
        with pytest.raises(DaemonUnreachable) as hung:
            await whoami(client)
    assert str(hung.value) == f"cannot reach {creds.url}: no answer in time (ReadTimeout)"
    await http_server.set_mode("ok")  # answers 200 with a body that is not orch's
    async with http_client(creds) as client:
        with pytest.raises(DaemonUnreachable, match="did not answer as orch does"):
            await whoami(client)


async def test_a_token_on_a_shared_file_is_refused_before_anything_is_sent(
    orch: Orch, dsn: str, api: str, credentials: Path, tmp_path: Path
) -> None:
    secret = await secret_of(orch, "monitoring_system")
    path = token_file(tmp_path, secret)
    os.chmod(path, 0o644)
    refused = await run_orch(dsn, "login", api, "--token-file", path)
    assert refused.code == 2
    assert f"`chmod 600 {path}`" in refused.stderr
    assert not credentials.exists()
    assert_never_shown(secret, refused)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    for blob in server.cert_chain_pems:
        blob.write_to_path(paths["cert"], append=True)
    server.private_key_pem.write_to_path(paths["key"])
    return paths


async def test_https_is_verified_against_the_ca_file_given(
    orch: Orch, dsn: str, pki: dict[str, str], credentials: Path, tmp_path: Path
) -> None:
    secret = await secret_of(orch, "platform_engineer", name="ops")
    tokens = token_file(tmp_path, secret)
    daemon = DaemonProcess(dsn, "tls", "--tls-cert", pki["cert"], "--tls-key", pki["key"])
    await daemon.start()
    try:
        url = f"https://{daemon.listen}"
        untrusted = await run_orch(dsn, "login", url, "--token-file", tokens)
        assert one_error_line(untrusted) == (
            f"orch: error: cannot verify the certificate of {url} (unable to get local issuer "
            "certificate): pass --ca-file with the CA that signed it"
        )
        assert not credentials.exists()
        plain = await run_orch(dsn, "login", f"http://{daemon.listen}", "--token-file", tokens)
        assert one_error_line(plain).startswith(
            f"orch: error: cannot reach http://{daemon.listen}: "
        )

        trusted = await run_orch(dsn, "login", url, "--ca-file", pki["ca"], "--token-file", tokens)
        assert trusted.code == 0, trusted.stderr
        assert trusted.stdout.startswith(f"logged in to {url} as ops (platform_engineer: ")
        # The CA is kept with the token: the console needs neither again.
        creds = resolve_credentials(api_url=url, token_file=None, ca_file=None)
        assert creds.ca_file == pki["ca"]
        async with http_client(creds) as client:
            assert (await client.get("/api/orchestration/services")).status_code == 200
        assert_never_shown(secret, untrusted, plain, trusted)
    finally:
        assert await daemon.terminate() == 0
        await daemon.ensure_stopped()


async def test_the_token_is_asked_for_without_echo_on_a_terminal(
    orch: Orch, api: str, credentials: Path
) -> None:
    """The prompt on a real pseudo-terminal: what is typed is not echoed back."""
    secret = await secret_of(orch, "monitoring_system", name="typed")
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchcore.cli.main",
        "login",
        api,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,  # no controlling terminal but this one on stdin
    )
    os.close(terminal)
    seen = b""
    try:
        seen = await _read_until(controller, b"Token (not shown): ")
        os.write(controller, secret.encode() + b"\n")
        assert await asyncio.wait_for(process.wait(), 60) == 0
        seen += await _read_until(controller, b"credentials kept in")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(controller)
    assert b"logged in to " + api.encode() + b" as typed (monitoring_system: read)" in seen
    assert secret.encode() not in seen
    assert credentials.exists()


async def _read_until(descriptor: int, marker: bytes, timeout: float = 60) -> bytes:
    loop = asyncio.get_running_loop()
    seen = b""
    async with asyncio.timeout(timeout):
        while marker not in seen:
            try:
                chunk = await loop.run_in_executor(None, os.read, descriptor, 4096)
            except OSError:  # the other side closed: all of it was read
                break
            if not chunk:
                break
            seen += chunk
    return seen


# -- logout ----------------------------------------------------------------------------


async def test_logout_forgets_one_daemon_and_keeps_the_others(
    orch: Orch, dsn: str, api: str, credentials: Path, tmp_path: Path
) -> None:
    secret = await secret_of(orch, "monitoring_system")
    tokens = token_file(tmp_path, secret)
    by_name = api.replace("127.0.0.1", "localhost")  # the same daemon, another entry
    for url in (api, by_name):
        assert (await run_orch(dsn, "login", url, "--token-file", tokens)).code == 0

    last = await run_orch(dsn, "logout", "--json")  # the daemon of the last login
    assert last.code == 0, last.stderr
    assert last.json() == {"url": by_name, "removed": True}
    again = await run_orch(dsn, "logout", by_name)
    assert (again.code, again.stdout) == (0, f"not logged in to {by_name}\n")
    creds = resolve_credentials(api_url=None, token_file=None, ca_file=None)
    assert creds.url == api  # the one left

    gone = await run_orch(dsn, "logout", api + "/")
    assert gone.code == 0
    assert gone.stdout == f"logged out of {api}\n"
    assert "orch token revoke" in gone.stderr
    assert not credentials.exists()
    nothing = await run_orch(dsn, "logout", "--json")
    assert nothing.json() == {"url": None, "removed": False}
    assert_never_shown(secret, last, again, gone, nothing)
