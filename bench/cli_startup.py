"""Wall time of the `orch` CLI answering, from exec to exit, as an on-call engineer sees it.

Each verb runs as a fresh subprocess (``.venv/bin/orch``, the installed console
script), so interpreter start-up and every import the verb pays are inside the
figure. `orch status` and `orch workflow list` run against a scratch migrated
database (ORCH_DATABASE_URL pointed at it) that holds nothing: what is measured is
the CLI's own cost, not a query's. One unmeasured warm-up run a verb first.

Bytecode: an installed orch has its modules compiled (pip writes the .pyc files).
An editable checkout run with PYTHONDONTWRITEBYTECODE=1 (as these sessions are)
compiles every orch module from source on every run, which is not what a user
pays; the verbs get a bytecode cache of their own in a temporary folder
(PYTHONPYCACHEPREFIX), filled by the warm-up run. ``--no-bytecode`` measures the
other way. Target: status and workflow list under 300 ms.

    .venv/bin/python bench/cli_startup.py [--dsn DSN] [--runs 15] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from scratch_database import DEFAULT_DSN, scratch_database

VERBS: tuple[tuple[str, ...], ...] = (
    ("--version",),
    ("status",),
    ("workflow", "list"),
)
#: Not orch: the libraries any verb that reads the database imports, timed the same way,
#: so a figure from a loaded machine can be read against what no change to orch removes.
FLOOR = ("python", "-c", "import asyncio, asyncpg, click, pydantic")
#: The same with one pydantic model made and validated: ``import pydantic`` alone loads
#: next to nothing (its members are imported on first use), while any verb that reads
#: the database builds models (Settings first), which imports pydantic's model machinery
#: and looks up its plugins: the floor such a verb stands on.
FLOOR_WITH_A_MODEL = (
    "python",
    "-c",
    "import asyncio, asyncpg, click\n"
    "from pydantic import BaseModel\n"
    "class Floor(BaseModel):\n"
    "    n: int = 0\n"
    "Floor.model_validate({'n': 1})",
)
TARGET_MS = 300.0


def orch_executable() -> str:
    """The console script beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("orch")
    return str(beside) if beside.exists() else "orch"


class Sample(NamedTuple):
    wall_ms: float
    #: user + system CPU of the verb's process: what it costs, less sensitive than the
    #: wall time to the other processes sharing the machine's two cores
    cpu_ms: float


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_verb(argv: list[str], env: dict[str, str]) -> Sample:
    """From spawn to exit; a failing verb stops the benchmark."""
    cpu_before = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return Sample(elapsed * 1000, (children_cpu() - cpu_before) * 1000)


def measure(dsn: str, runs: int, pycache: str | None) -> dict[str, list[Sample]]:
    env = {**os.environ, "ORCH_DATABASE_URL": dsn}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    orch = orch_executable()
    samples: dict[str, list[Sample]] = {}
    commands = {f"orch {' '.join(verb)}": [orch, *verb] for verb in VERBS}
    commands["(floor) the libraries"] = [sys.executable, *FLOOR[1:]]
    commands["(floor) and a model"] = [sys.executable, *FLOOR_WITH_A_MODEL[1:]]
    for name, argv in commands.items():
        time_verb(argv, env)  # warm-up
        samples[name] = [time_verb(argv, env) for _ in range(runs)]
    return samples


async def main(args: argparse.Namespace) -> None:
    bytecode = "compiled from source each run" if args.no_bytecode else "bytecode cached"
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, {args.runs} runs a verb, "
        f"{bytecode}"
    )
    with tempfile.TemporaryDirectory(prefix="orch-pycache-") as pycache:
        async with scratch_database(args.dsn) as dsn:
            # The verbs run in subprocesses; this loop only holds the scratch database.
            samples = await asyncio.to_thread(
                measure, dsn, args.runs, None if args.no_bytecode else pycache
            )
    print(f"{'':<24} {'wall ms':-^26}  {'cpu ms':-^8}")
    print(f"{'verb':<24} {'median':>8} {'min':>8} {'max':>8}  {'median':>8}")
    for verb, values in samples.items():
        wall = [sample.wall_ms for sample in values]
        median = statistics.median(wall)
        cpu = statistics.median(sample.cpu_ms for sample in values)
        targeted = verb in ("orch status", "orch workflow list")
        mark = ("  ok" if median < TARGET_MS else "  MISS") if targeted else ""
        print(f"{verb:<24} {median:>8.0f} {min(wall):>8.0f} {max(wall):>8.0f}  {cpu:>8.0f}{mark}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN for the scratch database")
    parser.add_argument("--runs", type=int, default=15, help="measured runs a verb")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module from source each run"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
