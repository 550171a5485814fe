"""The console over the daemon's API alone: a process with no database credentials
(no DSN in its environment, every connection to PostgreSQL refused) resets a breaker
and retries a workflow; a monitoring token's console offers no mutating key, and the
daemon refuses what such a token forges."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import trustme

from orchcore import Orch, OrchError
from orchcore.audit import recent_actions
from orchcore.client.credentials import ApiCredentials
from orchcore.client.remote import ApiRefused, RemoteOrch
from orchtui.app import api_console
from tests.console.helpers import SIZE, off_screen, on_screen, pane_loaded, register_service
from tests.console.sources import api_source
from tests.support.api import serve_api
from tests.support.daemons import DaemonProcess
from tests.support.http import free_port
from tests.support.sagas import Env

DRIVER = Path(__file__).with_name("api_console_driver.py")
ROOT = Path(__file__).resolve().parents[2]
#: what the child must not inherit: any way to the database
DATABASE_VARIABLES = ("ORCH_DATABASE_URL", "ORCH_TEST_DSN", "PGHOST", "PGPORT", "PGUSER")


async def test_a_process_without_database_credentials_resets_and_retries(env: Env) -> None:
    orch = env.orch
    # Off the saga's path: the workflow must fail at its payment, not wait on this breaker.
    breaker = await orch.breakers.create(
        {"service_name": "catering", "target_service": "photographers"}, actor="t"
    )
    await orch.breakers.force_open(breaker.id, actor="t", reason="maintenance")
    env.services["payment"].always_fail["/charges"] = 402
    await orch.workflow_definitions.register(
        {**_booking(env), "name": "no-undo", "compensation_strategy": "none"}, actor="t"
    )
    workflow_id = await env.start("no-undo", correlation_id="wed-api")
    await env.until(workflow_id, "failed")
    del env.services["payment"].always_fail["/charges"]
    secret, _ = await orch.tokens.create(name="oncall-ana", role="platform_engineer", actor="t")
    async with serve_api(orch) as url:
        child_env = {k: v for k, v in os.environ.items() if k not in DATABASE_VARIABLES}
        child_env |= {
            "ORCH_API_URL": url,
            "ORCH_TOKEN": secret,
            "ORCH_CREDENTIALS_FILE": "/nonexistent/orch-credentials.json",
            "PYTHONPATH": str(ROOT),
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(DRIVER),
            env=child_env,
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), timeout=120)
    assert child.returncode == 0, err.decode()[:1500] + err.decode()[-800:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["readonly"] is False
    assert seen["actor"] == "token:oncall-ana"
    assert (await orch.breakers.get(breaker.id)).current_state == "closed"
    entry, *_ = await recent_actions(orch.db.pool, target_kind="breaker", target_id=str(breaker.id))
    assert (entry.action, entry.actor, entry.reason) == (
        "breaker.reset",
        "token:oncall-ana",
        "venue fixed",
    )
    await env.until(workflow_id, "completed")
    retried, *_ = await recent_actions(orch.db.pool, target_kind="workflow", target_id=workflow_id)
    assert (retried.action, retried.actor, retried.reason) == (
        "workflow.retry_requested",
        "token:oncall-ana",
        "card limit raised",
    )


def _booking(env: Env) -> dict[str, object]:
    from tests.support.sagas import BOOKING

    return BOOKING


async def test_a_monitoring_token_gets_the_readonly_console_and_forgery_is_refused(
    orch: Orch,
) -> None:
    breaker = await orch.breakers.create(
        {"service_name": "booking", "target_service": "venue"}, actor="t"
    )
    await orch.breakers.force_open(breaker.id, actor="t", reason="maintenance")
    async with api_source(orch, role="monitoring_system") as remote:
        assert isinstance(remote, RemoteOrch)
        app = api_console(remote, readonly=False)
        assert app.readonly
        async with app.run_test(size=SIZE) as pilot:
            app.show_pane("breakers")
            await pane_loaded(app, "breakers")
            text = await on_screen(app, "booking → venue")
            footer = text.splitlines()[-1]
            assert "Reset" not in footer and "Force open" not in footer
            await pilot.press("r")
            assert (await orch.breakers.get(breaker.id)).current_state == "forced_open"
        # What the hidden key would have sent, sent anyway: the daemon says no.
        with pytest.raises(ApiRefused) as refused:
            await remote.breakers.reset(breaker.id, actor="token:someone-else", reason="forged")
        assert refused.value.http_status == 403
    assert (await orch.breakers.get(breaker.id)).current_state == "forced_open"


async def test_a_killed_daemon_is_a_banner_and_its_successor_is_followed(
    orch: Orch, dsn: str
) -> None:
    """SIGKILL the daemon the console talks to: the banner says the daemon is lost; a new
    daemon on the same address is followed again, and what changed meanwhile is shown."""
    await register_service(orch, "venue")
    address = f"127.0.0.1:{free_port()}"
    quiet = ("--no-health-checks", "--no-workflows", "--no-push")
    first = await DaemonProcess(dsn, "api-first", "--listen", address, *quiet).start()
    successor: DaemonProcess | None = None
    secret, _ = await orch.tokens.create(name="oncall-ana", role="platform_engineer", actor="t")
    remote = await RemoteOrch.connect(ApiCredentials(url=f"http://{address}", token=secret))
    try:
        app = api_console(remote, readonly=False)
        async with app.run_test(size=SIZE):
            app.show_pane("services")
            await on_screen(app, "venue", "● live")
            await first.kill()
            await on_screen(app, "✖ daemon connection lost — retrying…", timeout=10)
            await register_service(orch, "catering")  # while no daemon answers
            successor = await DaemonProcess(dsn, "api-next", "--listen", address, *quiet).start()
            await off_screen(app, "connection lost", timeout=10)
            await on_screen(app, "catering", "● live", timeout=10)
    finally:
        await remote.close()
        await first.ensure_stopped()
        if successor is not None:
            await successor.ensure_stopped()


async def test_over_https_the_daemon_is_verified_against_the_ca_file(
    orch: Orch, dsn: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca_file, cert, key = (str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key"))
    ca.cert_pem.write_to_path(ca_file)
    for blob in issued.cert_chain_pems:
        blob.write_to_path(cert, append=True)
    issued.private_key_pem.write_to_path(key)
    await register_service(orch, "venue")
    secret, _ = await orch.tokens.create(name="oncall-ana", role="monitoring_system", actor="t")
    daemon = DaemonProcess(
        dsn, "api-tls", "--tls-cert", cert, "--tls-key", key, "--no-health-checks"
    )
    await daemon.start()
    try:
        url = f"https://{daemon.listen}"
        with pytest.raises(OrchError, match="cannot verify the certificate"):
            await RemoteOrch.connect(ApiCredentials(url=url, token=secret))
        remote = await RemoteOrch.connect(ApiCredentials(url=url, token=secret, ca_file=ca_file))
        try:
            app = api_console(remote, readonly=False)
            async with app.run_test(size=SIZE):
                app.show_pane("services")
                text = await on_screen(app, "venue", "● live")
                assert secret not in text
                # The header names the daemon's environment and URL, and no database.
                assert f"READ-ONLY  env {orch.settings.environment}  api https://127.0.0.1:" in text
        finally:
            await remote.close()
    finally:
        await daemon.ensure_stopped()


async def test_a_service_token_cannot_open_the_console(
    orch: Orch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service's token reads nothing: refused with what to use, not a console of 403s."""
    from orchtui.app import _run_api_console

    await register_service(orch, "venue")
    secret, _ = await orch.tokens.create(
        name="venue-svc", role="service", service_name="venue", actor="t"
    )
    async with serve_api(orch) as url:
        code = await _run_api_console(ApiCredentials(url=url, token=secret), readonly=False)
    assert code == 1
    err = capsys.readouterr().err
    assert "'venue-svc' (service) may not read" in err and secret not in err
