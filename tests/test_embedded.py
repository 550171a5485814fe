"""The embedded PostgreSQL: started on demand, shared, stopped by the last user."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchcore.db.embedded import EmbeddedPostgres, EmbeddedUnavailable, ServerUser
from tests.support.polling import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="orch-embedded-"))
    folder.chmod(0o755)  # reachable by the unprivileged server user when we are root
    yield folder
    EmbeddedPostgres(folder).stop()
    shutil.rmtree(folder, ignore_errors=True)


def orch_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DATABASE_URL"}
    return {**env, "ORCH_DATA_DIR": str(data_dir), "ORCH_OPERATOR": "tester"}


async def run_cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchcore.cli.main",
        *args,
        env=orch_env(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_last_process_stops_the_server_and_data_survives(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    code, _, err = await run_cli(data_dir, "service", "register", "venue")
    assert code == 0, err
    assert not server.is_running()  # the CLI was the only user: it stopped the server

    code, out, err = await run_cli(data_dir, "service", "list", "--json")
    assert code == 0, err
    assert '"service_name": "venue"' in out  # reused: the data is still there
    assert not server.is_running()


async def test_server_stays_up_while_a_daemon_uses_it(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchcore.cli.main",
        "daemon",
        "--listen",
        "127.0.0.1:0",
        env=orch_env(data_dir),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(server.is_running, timeout=60)
        code, _, err = await run_cli(data_dir, "status")
        assert code == 0, err
        assert server.is_running()  # the daemon still uses it
        daemon.terminate()
        assert await asyncio.wait_for(daemon.wait(), 30) == 0
        assert not server.is_running()  # the daemon was the last user
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()


def test_same_process_reference_counting(data_dir: Path) -> None:
    first, second = EmbeddedPostgres(data_dir), EmbeddedPostgres(data_dir)
    first.acquire()
    second.acquire()
    assert first.release() is False
    assert second.is_running()
    assert second.release() is True
    assert not first.is_running()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_root_refuses_unreachable_data_dir_with_one_line() -> None:
    hidden = Path(tempfile.mkdtemp(prefix="orch-hidden-"))  # 0700, owned by root
    try:
        with pytest.raises(EmbeddedUnavailable) as caught:
            EmbeddedPostgres(hidden / "orch").acquire()
        user = ServerUser.for_current_process()
        assert user is not None
        message = str(caught.value)
        assert "\n" not in message
        assert f"runs as {user.name!r}" in message
        assert "ORCH_DATA_DIR" in message
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
