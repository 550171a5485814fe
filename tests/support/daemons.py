"""`orch daemon` as a real subprocess, with its JSON log lines kept for the test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any


class DaemonProcess:
    def __init__(self, dsn: str, name: str, *extra_args: str) -> None:
        self.dsn = dsn
        self.name = name
        self.extra_args = extra_args
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[dict[str, Any]] = []
        self.listen: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def start(self, timeout: float = 30) -> DaemonProcess:
        env = {**os.environ, "ORCH_DATABASE_URL": self.dsn, "ORCH_LOG_FORMAT": "json"}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchcore.cli.main",
            "daemon",
            "--listen",
            "127.0.0.1:0",
            "--name",
            self.name,
            *self.extra_args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._reader = asyncio.create_task(self._read_log())
        await asyncio.wait_for(self._started.wait(), timeout)
        return self

    async def _read_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"event": raw.decode(errors="replace").rstrip()}
            self.log.append(entry)
            if entry.get("event") == "daemon started":
                self.listen = entry.get("listen")
                self._started.set()

    def events(self, text: str) -> list[dict[str, Any]]:
        return [e for e in self.log if text in str(e.get("event", ""))]

    async def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        return code

    async def ensure_stopped(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
