"""The embedded server's data, log and socket belong to the server user alone (mode 0700,
the log 0600): as root that user is not root, and nobody else gets in; as anyone else
the checks are the same with ourselves as the server user."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchcore.db.embedded import SOCKET_PORT, EmbeddedPostgres, EmbeddedUnavailable, ServerUser

pytestmark = pytest.mark.slow

#: A user id no account has: as root, a process of it is "someone else".
STRANGER_UID = 54_321


@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="orch-perm-"))
    folder.chmod(0o755)  # reachable by the unprivileged server user when we are root
    yield folder
    EmbeddedPostgres(folder).stop()
    shutil.rmtree(folder, ignore_errors=True)


def _server_uid() -> int:
    user = ServerUser.for_current_process()
    return os.getuid() if user is None else user.uid


def _private(path: Path, mode: int = 0o700) -> None:
    info = path.lstat()
    assert (oct(stat.S_IMODE(info.st_mode)), info.st_uid) == (oct(mode), _server_uid()), path


def test_data_log_and_socket_are_the_server_users_alone(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    server.start()
    assert server.is_running()
    if os.geteuid() == 0:
        assert _server_uid() != 0  # the server never runs as root
    _private(server.root)
    _private(server.pgdata)
    _private(server.socket_dir)
    _private(server.socket_dir / f".s.PGSQL.{SOCKET_PORT}")
    _private(server.logfile, 0o600)


def test_a_loosened_cluster_is_tightened_at_its_next_start(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    server.start()
    server.stop()
    for path in (server.root, server.socket_dir, server.logfile):
        path.chmod(0o777)
    server.pgdata.chmod(0o750)  # PostgreSQL itself accepts group access
    server.start()
    _private(server.root)
    _private(server.pgdata)
    _private(server.socket_dir)
    _private(server.logfile, 0o600)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can act as another user")
def test_as_root_another_user_cannot_reach_the_socket_or_the_data(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    server.start()
    psql = [str(server.bin_dir / "psql"), "-h", str(server.socket_dir), "-p", str(SOCKET_PORT)]
    user = ServerUser.for_current_process()
    assert user is not None
    as_server_user = _run_as(user.uid, [*psql, "-U", "postgres", "-tAc", "SELECT 1"], user.gid)
    assert as_server_user.stdout.strip() == "1", as_server_user.stderr  # psql itself runs
    connect = _run_as(STRANGER_UID, [*psql, "-U", "postgres", "-tAc", "SELECT 1"])
    assert connect.returncode != 0 and "Permission denied" in connect.stderr
    for folder in (server.root, server.pgdata):
        listing = _run_as(STRANGER_UID, ["ls", str(folder)])
        assert listing.returncode != 0 and "Permission denied" in listing.stderr


def _run_as(uid: int, argv: list[str], gid: int = STRANGER_UID) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        user=uid,
        group=gid,
        extra_groups=[],
        cwd="/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
    )


def test_a_socket_folder_that_is_a_link_is_refused(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    elsewhere = Path(tempfile.mkdtemp(prefix="orch-planted-"))
    try:
        server.root.mkdir(parents=True)
        server.socket_dir.symlink_to(elsewhere)
        with pytest.raises(EmbeddedUnavailable) as refused:
            server.start()
        message = str(refused.value)
        assert "\n" not in message
        assert f"{server.socket_dir}, the embedded PostgreSQL's socket folder, is a link" in message
        assert not server.is_running()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
