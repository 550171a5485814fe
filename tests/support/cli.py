"""Run the real `orch` command line in a subprocess against a test database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run_orch(
    dsn: str, *args: str, stdin: str | None = None, timeout: float = 60
) -> CliResult:
    env = {**os.environ, "ORCH_DATABASE_URL": dsn, "ORCH_OPERATOR": "tester", "NO_COLOR": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchcore.cli.main",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), timeout
    )
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())
