"""The embedded PostgreSQL: started on demand, shared, stopped by the last user."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchcore.db.embedded import (
    EmbeddedPostgres,
    EmbeddedUnavailable,
    ServerUser,
    binaries_copy_dir,
)
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
    code, _, err = await run_cli(data_dir, "db", "migrate")  # a verb does not migrate
    assert code == 0, err
    code, _, err = await run_cli(data_dir, "service", "register", "venue")
    assert code == 0, err
    assert not server.is_running()  # the CLI was the only user: it stopped the server

    code, out, err = await run_cli(data_dir, "service", "list", "--json")
    assert code == 0, err
    assert '"service_name": "venue"' in out  # reused: the data is still there
    assert not server.is_running()


async def test_server_stays_up_while_a_daemon_uses_it(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    code, _, err = await run_cli(data_dir, "db", "migrate")  # else status races its migration
    assert code == 0, err
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


# -- as root, binaries the server user cannot reach ---------------------------------


@dataclass(frozen=True)
class HiddenPgserver:
    """pgserver's package and libraries in a 0700 folder, as a venv in /root holds them."""

    install: Path  # .../pgserver/pginstall
    hide_system: bool  # whether /usr/lib/postgresql can be hidden (unshare works)


@pytest.fixture(scope="module")
def hidden_pgserver() -> Iterator[HiddenPgserver]:
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user")
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        pytest.skip("pgserver is not installed")
    package = Path(spec.origin).parent
    libs = package.parent / "pgserver.libs"
    if not libs.is_dir():
        pytest.skip(f"pgserver without {libs.name} beside it: not the wheel's layout")
    folder = Path(tempfile.mkdtemp(prefix="orch-root-venv-"))  # 0700: nobody cannot enter
    try:
        site = folder / "site-packages"
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(package, site / package.name, symlinks=True, ignore=ignore)
        shutil.copytree(libs, site / libs.name, symlinks=True)
        yield HiddenPgserver(site / package.name / "pginstall", _can_hide_system_postgres())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _can_hide_system_postgres() -> bool:
    if shutil.which("unshare") is None or not Path("/usr/lib/postgresql").is_dir():
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0


def start_in_fresh_process(data_dir: Path, pg: HiddenPgserver) -> dict[str, Any]:
    """Start, connect, stop in a new process with only ``pg`` to serve; its report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "PG"))}
    env["ORCH_PG_BIN"] = str(pg.install / "bin")
    argv = [sys.executable, "-m", "tests.support.embedded_probe", str(data_dir)]
    with tempfile.TemporaryDirectory(prefix="orch-empty-") as empty:
        if pg.hide_system:
            hide = 'mount --bind "$0" /usr/lib/postgresql && exec "$@"'
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                hide,
                empty,
                *argv,
            ]
        result = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parent.parent,
        )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def assert_started_from_a_copy(report: dict[str, Any], data_dir: Path, pg: HiddenPgserver) -> Path:
    assert report["version"].startswith("PostgreSQL 16"), report
    assert report["stopped"] is True
    assert not (pg.hide_system and report["system_postgres_visible"])
    copy = binaries_copy_dir(data_dir, pg.install)
    assert Path(report["binaries"]) == copy / "pgserver" / "pginstall" / "bin"
    assert (copy / "pgserver.libs").is_dir()  # where the binaries' RPATH looks
    assert copy.stat().st_uid == 0  # the server user may read the copy, not alter it
    return copy


def test_root_starts_from_binaries_the_server_user_cannot_reach(
    data_dir: Path, hidden_pgserver: HiddenPgserver
) -> None:
    report = start_in_fresh_process(data_dir, hidden_pgserver)
    assert_started_from_a_copy(report, data_dir, hidden_pgserver)


def test_root_replaces_a_broken_copy_and_copies_an_upgraded_source_again(
    data_dir: Path, hidden_pgserver: HiddenPgserver
) -> None:
    # What orch before layout 2 left behind: pginstall/ alone, whose initdb cannot load libpq.
    copy = binaries_copy_dir(data_dir, hidden_pgserver.install)
    shutil.copytree(hidden_pgserver.install, copy, symlinks=True)

    report = start_in_fresh_process(data_dir, hidden_pgserver)
    assert_started_from_a_copy(report, data_dir, hidden_pgserver)
    assert not (copy / "bin").exists()  # the broken copy is gone, not merely shadowed
    stamp = (copy / "orch-copy.json").read_text()

    postgres = hidden_pgserver.install / "bin" / "postgres"
    os.utime(postgres, ns=(postgres.stat().st_atime_ns, postgres.stat().st_mtime_ns + 10**9))
    report = start_in_fresh_process(data_dir, hidden_pgserver)  # reopens the cluster
    assert_started_from_a_copy(report, data_dir, hidden_pgserver)
    assert (copy / "orch-copy.json").read_text() != stamp  # the upgraded source was copied
