"""An embedded PostgreSQL server, so a new user needs nothing set up.

The server binaries come from the ``pgserver`` wheel (PostgreSQL 16 shipped on
PyPI), else from ``ORCH_PG_BIN``, else from the system's installation. The cluster
lives in ``<data_dir>/postgres`` and listens on a unix socket only, so it never
fights another server for a TCP port.

Lifetime: every orch process that uses the server holds a shared ``flock`` on
``clients.lock``. On exit a process takes the ``control.lock`` and, if no other
process still holds ``clients.lock``, stops the server. Start and stop both happen
under ``control.lock``, so a process starting never races one stopping. A process
killed with SIGKILL loses its lock with its life; the server then stops when the
last remaining user exits.

Root: ``initdb`` and ``postgres`` refuse to run as root, so as root the server runs
as an unprivileged user (``ORCH_PG_USER``, default ``nobody``). That user must be
able to reach the data directory; orch never loosens permissions of folders it did
not create, and says so in one line when it cannot proceed. Binaries that user
cannot run where they are (a venv in ``/root``) are copied into the data directory.

Who reaches the server: the cluster's folder (data, log, socket) is the server user's
alone, mode 0700, and so is the socket (``unix_socket_permissions``): with trust
authentication, whoever could open the socket would be the database's superuser. Only
that user and root (who passes any mode) get in; as root, orch's own processes are root.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("orch.embedded")

SOCKET_PORT = 5432
DATABASE = "orch"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"
_TOOLS = ("initdb", "pg_ctl", "postgres", "psql")  # what orch runs
_COPY_STAMP = "orch-copy.json"
_COPY_LAYOUT = 2  # 1: pginstall/ alone (pre-stamp copies, whose initdb cannot load libpq)


class EmbeddedUnavailable(RuntimeError):
    """The embedded server cannot be used here; the message says what to do."""


@dataclass(frozen=True)
class ServerUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def for_current_process(cls) -> ServerUser | None:
        """None when we may run the server as ourselves; the unprivileged user as root."""
        if os.geteuid() != 0:
            return None
        name = os.environ.get("ORCH_PG_USER", "nobody")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedUnavailable(
                f"running as root, orch runs PostgreSQL as user {name!r}, which does not "
                "exist; set ORCH_PG_USER to an unprivileged user or ORCH_DATABASE_URL"
            ) from None
        if entry.pw_uid == 0:
            raise EmbeddedUnavailable(f"ORCH_PG_USER={name!r} is root; PostgreSQL refuses root")
        return cls(name, entry.pw_uid, entry.pw_gid)


def find_server_binaries() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    candidates: list[Path] = []
    if os.environ.get("ORCH_PG_BIN"):
        candidates.append(Path(os.environ["ORCH_PG_BIN"]))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True
            ).stdout.strip()
            candidates.append(Path(out))
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_version, reverse=True)
    candidates.extend(system)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise EmbeddedUnavailable(
        "no PostgreSQL server binaries found: `pip install pgserver` (ships PostgreSQL 16) "
        "or install your distribution's postgresql server package, "
        "or point ORCH_DATABASE_URL at an existing server"
    )


def _major_version(bin_dir: Path) -> int:
    try:
        return int(bin_dir.parent.name.split(".")[0])
    except ValueError:
        return 0


def reachable_by(path: Path, user: ServerUser) -> bool:
    """Can ``user`` traverse every ancestor of ``path`` (and read it)?"""
    groups = {user.gid} | {g.gr_gid for g in _groups_of(user.name)}
    current = Path("/")
    for part in path.resolve().parts[1:]:
        current = current / part
        if not current.exists():
            return True  # we will create it, owned by the server user
        if not _may_search(current.stat(), user.uid, groups):
            return False
    return True


def _groups_of(name: str) -> list[Any]:
    import grp

    return [g for g in grp.getgrall() if name in g.gr_mem]


def _may_search(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def binaries_copy_dir(data_dir: Path, install: Path) -> Path:
    """Where the server user's copy of ``install`` (a folder holding ``bin/``) lives."""
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    return data_dir / f"pgbin-{digest}"


def _install_layout(install: Path) -> list[tuple[Path, Path]]:
    """What to copy, each with its place in the copy; the install itself comes first.

    Wheels repaired by auditwheel (pgserver's) keep their libraries in a
    ``<package>.libs`` folder beside the package and find them by an RPATH relative to
    each binary (``$ORIGIN/../../../pgserver.libs``; its name is mangled, so the
    system's libpq cannot stand in): the copy keeps that relative layout.
    """
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        return [(install, Path(package.name) / install.name), (libs, Path(libs.name))]
    return [(install, Path(install.name))]


def _source_stamp(install: Path, parts: list[tuple[Path, Path]]) -> dict[str, Any]:
    """Enough of the source to notice it changed: an upgrade rewrites these files."""
    files = [install / "bin" / tool for tool in _TOOLS]
    files += [entry for libs, _ in parts[1:] for entry in libs.iterdir()]
    seen: dict[str, list[int]] = {}
    for path in sorted(files):
        with contextlib.suppress(OSError):  # a missing tool fails the copy's check instead
            info = path.stat()
            seen[str(path)] = [info.st_size, info.st_mtime_ns]
    return {"layout": _COPY_LAYOUT, "source": str(install), "files": seen}


def _read_stamp(target: Path) -> Any:
    try:
        return json.loads((target / _COPY_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no copy, or one from before stamps (layout 1): copy again


def _make_readable(folder: Path) -> None:
    """Let the server user read the copy, which stays root's so that user cannot alter it."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        search = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        wanted = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if path.is_dir() or mode & stat.S_IXUSR:
            wanted |= search
        path.chmod(stat.S_IMODE(mode) | wanted)


def _swap_in(staging: Path, target: Path) -> None:
    """Put the finished copy in place; a previous one is moved aside first, then removed."""
    aside: Path | None = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(aside / "copy")
    staging.rename(target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _tools_fail(bin_dir: Path, user: ServerUser) -> str | None:
    """None if every tool orch runs starts as ``user``; else the first failure, one line."""
    for tool in _TOOLS:
        try:
            result = subprocess.run(
                [str(bin_dir / tool), "--version"],
                capture_output=True,
                text=True,
                cwd="/",
                stdin=subprocess.DEVNULL,
                user=user.uid,
                group=user.gid,
                extra_groups=[],
            )
        except OSError as error:
            return f"{tool}: {error.strerror or error}"
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            return f"{tool}: {lines[0]}"
    return None


class EmbeddedPostgres:
    """One cluster in one directory, shared by every orch process that uses it."""

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self.root = data_dir / "postgres"
        self.pgdata = self.root / "pgdata"
        self.logfile = self.root / "postgres.log"
        self.durable = durable
        self.user = ServerUser.for_current_process()
        self._client_lock: IO[bytes] | None = None
        self._bin: Path | None = None

    # -- public -----------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        preferred = self.root / "run"
        if len(str(preferred)) < _MAX_SOCKET_PATH - 15:
            return preferred
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"orch-pg-{os.getuid()}-{digest}"

    @property
    def bin_dir(self) -> Path:
        """The folder whose initdb, pg_ctl and postgres this server runs (maybe a copy)."""
        return self._binaries()

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={SOCKET_PORT}"

    def acquire(self) -> str:
        """Start the server unless it runs, register this process as a user; return a DSN."""
        if self._client_lock is not None:
            return self.dsn()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._control_lock():
            if not self.is_running():
                self._start()
            self._client_lock = open(self.root / "clients.lock", "ab")  # noqa: SIM115
            fcntl.flock(self._client_lock, fcntl.LOCK_SH)
        return self.dsn()

    def release(self) -> bool:
        """Stop being a user; stop the server if nobody else uses it. True if stopped."""
        if self._client_lock is None:
            return False
        self._client_lock.close()
        self._client_lock = None
        with self._control_lock(), open(self.root / "clients.lock", "ab") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another orch process still uses the server
            if self.is_running():
                self._stop()
                return True
            return False

    def start(self) -> None:
        """Start the server if it does not run (after :meth:`stop`), registering no user."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._control_lock():
            if not self.is_running():
                self._start()

    def stop(self) -> None:
        """Stop the server whoever uses it (``orch db stop``)."""
        with self._control_lock():
            if self.is_running():
                self._stop()

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = self._run_tool(["pg_ctl", "-D", str(self.pgdata), "status"], check=False)
        return result.returncode == 0

    def status(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.root),
            "initialised": (self.pgdata / "PG_VERSION").exists(),
            "running": self.is_running(),
            "dsn": self.dsn(),
            "server_user": self.user.name if self.user else pwd.getpwuid(os.getuid()).pw_name,
        }

    # -- private ----------------------------------------------------------------

    @contextlib.contextmanager
    def _control_lock(self) -> Any:
        with open(self.root / "control.lock", "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _binaries(self) -> Path:
        if self._bin is None:
            found = find_server_binaries()
            if self.user is not None and not (
                reachable_by(found, self.user) and _tools_fail(found, self.user) is None
            ):
                found = self._copy_binaries_for_server_user(found, self.user)
            self._bin = found
        return self._bin

    def _copy_binaries_for_server_user(self, bin_dir: Path, user: ServerUser) -> Path:
        """As root, binaries in /root or a 0700 folder are out of the server user's reach.

        The copy lives in the data directory, which that user reaches, is made once per
        source (a stamp says which; an upgraded source is copied again) and is checked
        by running the tools as that user, so a copy left broken is replaced.
        """
        self._check_reachable()
        install = bin_dir.parent
        target = binaries_copy_dir(self.root.parent, install)
        parts = _install_layout(install)
        copied_bin = target / parts[0][1] / "bin"
        stamp = _source_stamp(install, parts)
        if _read_stamp(target) == stamp and _tools_fail(copied_bin, user) is None:
            return copied_bin
        log.info("copying PostgreSQL binaries to %s for user %s", target, user.name)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        try:
            for source, relative in parts:
                shutil.copytree(source, staging / relative, symlinks=True)
            (staging / _COPY_STAMP).write_text(json.dumps(stamp), encoding="utf-8")
            _make_readable(staging)
            failure = _tools_fail(staging / parts[0][1] / "bin", user)
            if failure is not None:
                raise EmbeddedUnavailable(
                    f"PostgreSQL binaries from {install} do not run as {user.name!r} even "
                    f"when copied ({failure}); set ORCH_PG_BIN to binaries that user can "
                    "run or ORCH_DATABASE_URL to an existing server"
                )
            _swap_in(staging, target)
        except OSError as error:
            raise EmbeddedUnavailable(
                f"could not copy PostgreSQL binaries to {target} for {user.name!r}: {error}"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return copied_bin

    def _check_reachable(self) -> None:
        if self.user is None:
            return
        if not reachable_by(self.root, self.user):
            raise EmbeddedUnavailable(
                f"the embedded PostgreSQL runs as {self.user.name!r} (PostgreSQL refuses "
                f"root), which cannot reach {self.root}; set ORCH_DATA_DIR to a folder it "
                "can reach (e.g. /var/lib/orch) or ORCH_DATABASE_URL to an existing server"
            )

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.uid, self.user.gid)

    def _make_private(self, path: Path, *, mode: int = 0o700) -> None:
        """``path`` the server user's alone (root passes any mode anyway)."""
        self._own(path)
        path.chmod(mode)

    def _private_socket_dir(self) -> Path:
        """The socket's folder, made or checked. It may be in /tmp, where anyone can make
        a folder first: one that is a link or that someone else made is refused, never
        taken over (a server of theirs could already listen in it)."""
        folder = self.socket_dir
        owners = {os.getuid()} if self.user is None else {0, self.user.uid}
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = folder.lstat()
        except OSError as error:
            raise EmbeddedUnavailable(f"cannot make the socket folder {folder}: {error}") from None
        if (
            stat.S_ISLNK(info.st_mode)
            or not stat.S_ISDIR(info.st_mode)
            or info.st_uid not in owners
        ):
            raise EmbeddedUnavailable(
                f"{folder}, the embedded PostgreSQL's socket folder, is a link or was made by "
                "someone else; remove it (or set a shorter ORCH_DATA_DIR, which keeps the "
                "socket inside it)"
            )
        self._make_private(folder)
        return folder

    def _start(self) -> None:
        self._check_reachable()
        self._make_private(self.root)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._make_private(self.pgdata)  # initdb's 0700, and a 0750 of old tightened
        socket_dir = self._private_socket_dir()
        if not self.logfile.exists():
            self.logfile.touch(mode=0o600)
        self._make_private(self.logfile, mode=0o600)  # statements and user names end up here
        options = (
            f"-c unix_socket_directories='{socket_dir}' -c port={SOCKET_PORT} "
            "-c unix_socket_permissions=0700"
        )
        result = self._run_tool(
            [
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedUnavailable(
                "the embedded PostgreSQL did not start "
                f"({(result.stderr or result.stdout).strip()}); see {self.logfile}"
            )
        self._ensure_database()

    def _initdb(self) -> None:
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.pgdata.mkdir(mode=0o700)
        self._own(self.pgdata)
        self._run_tool(
            [
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
                "--no-sync",
            ],
        )
        settings = [
            "listen_addresses = ''",
            "max_connections = 200",
            "shared_buffers = 128MB",
            "log_min_messages = warning",
        ]
        if not self.durable:
            # Throw-away test clusters: durability buys nothing, speed does.
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# orch embedded server\n" + "\n".join(settings) + "\n")

    def _ensure_database(self) -> None:
        psql = self._binaries() / "psql"
        exists = self._run_tool(
            [
                str(psql),
                "-h",
                str(self.socket_dir),
                "-p",
                str(SOCKET_PORT),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
            ],
        ).stdout.strip()
        if exists != "1":
            self._run_tool(
                [
                    str(psql),
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(SOCKET_PORT),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    f"CREATE DATABASE {DATABASE}",
                ],
            )

    def _stop(self) -> None:
        self._run_tool(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"], check=False)

    def _run_tool(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        tool = argv[0] if os.path.isabs(argv[0]) else str(self._binaries() / argv[0])
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"user": self.user.uid, "group": self.user.gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "PGTZ": "UTC"}
        result = subprocess.run(
            [tool, *argv[1:]],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(self.root) if self.root.exists() else None,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise EmbeddedUnavailable(
                f"{Path(tool).name} failed: {(result.stderr or result.stdout).strip()}"
            )
        return result
