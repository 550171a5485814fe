"""The example wedding platform as a real subprocess, as the demo runs it.

Its stdout is read line by line on a thread so the test can wait for the
announcements with a deadline instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
WEDDING_DIR = REPO / "examples" / "wedding"
PLATFORM_SCRIPT = WEDDING_DIR / "platform.py"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Announcement:
    service: str
    instance_id: str
    host: str
    port: int
    version: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class PlatformProcess:
    def __init__(self, process: subprocess.Popen[str], stderr: IO[str]) -> None:
        self.process = process
        self._stderr = stderr
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.instances: dict[str, Announcement] = {}
        threading.Thread(target=self._read_stdout, daemon=True).start()

    @classmethod
    def launch(
        cls, *args: str, script: Path = PLATFORM_SCRIPT, cwd: Path | None = None
    ) -> PlatformProcess:
        """Start the platform; call :meth:`wait_ready` before using it."""
        # A file, not a pipe, so a chatty server never blocks; closed by close().
        stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, str(script), "--host", "127.0.0.1", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=cwd or Path(tempfile.gettempdir()),
        )
        return cls(process, stderr)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> PlatformProcess:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"platform not ready within {timeout}s; {self.stderr()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"platform exited before ready; {self.stderr()}")
            message: dict[str, Any] = json.loads(line)
            if message.get("ready"):
                return self
            self.instances[message["instance_id"]] = Announcement(**message)

    def url(self, instance_id: str) -> str:
        return self.instances[instance_id].base_url

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code (failing the test if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"platform ignored SIGTERM for {timeout}s") from None

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.process.wait(timeout=timeout)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return "stderr: " + self._stderr.read()[-2000:]

    def children(self) -> list[int]:
        """Pids whose parent is the platform (there should be none: one process)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                # the command name is in parentheses and may hold spaces: split after it
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    found.append(int(stat.parent.name))
        return found

    def close(self) -> None:
        """Make sure the process is gone (for fixtures' cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self._lines.put(line)
        self._lines.put(None)


@contextlib.contextmanager
def running_platform(*args: str, **kwargs: Any) -> Iterator[PlatformProcess]:
    platform = PlatformProcess.launch(*args, **kwargs)
    try:
        yield platform.wait_ready()
    finally:
        platform.close()


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
