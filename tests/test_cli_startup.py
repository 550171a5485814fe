"""The CLI loads a verb's machinery only when that verb runs.

`orch --version` used to import the API server, the daemon and the console (about a
second here) because every verb's module was imported to build the command group. Each
check runs the real entry point in a fresh interpreter and reads what it imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orchcore.cli.main import VERBS, cli

#: Run main() as the console script does, then write what was imported to a file.
PROBE = """
import json, os, sys
from orchcore.cli.main import main
sys.argv = ["orch", *sys.argv[2:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""

#: What a verb that reads needs none of: the API server, the daemon, the console and
#: their frameworks, the call path and its HTTP client, the saga engine (its planner,
#: transitions and starter), OTLP's protobuf; nor the models of what it does not read:
#: workflow definitions and requests (saga.models, and through them the bus's and the
#: call path's), a workflow's state and its write path, the mesh.
NEVER_FOR_A_QUICK_VERB = (
    "fastapi",
    "uvicorn",
    "textual",
    "orchtui",
    "orchcore.daemon",
    "orchcore.api",
    "orchcore.callpath",
    "orchcore.bus",
    "orchcore.mesh",
    "orchcore.saga.drive",
    "orchcore.saga.models",
    "orchcore.saga.operator",
    "orchcore.saga.persistence",
    "orchcore.saga.planner",
    "orchcore.saga.starting",
    "orchcore.saga.state",
    "httpx",
    "google.protobuf",
    "opentelemetry",
)
#: And --version none of the engine or the database driver either.
NEVER_FOR_VERSION = (*NEVER_FOR_A_QUICK_VERB, "orchcore.facade", "asyncpg", "pydantic")

EVERY_VERB = {*VERBS, "daemon", "console"}


async def imported_by(tmp_path: Path, *args: str, dsn: str | None = None) -> set[str]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "MODULES_OUT": str(out), "NO_COLOR": "1"}
    if dsn is not None:
        env["ORCH_DATABASE_URL"] = dsn
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        "orch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    found = json.loads(out.read_text())
    assert found["code"] in (0, None), err.decode()
    return set(found["modules"])


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


async def test_version_imports_no_verb_and_no_engine(tmp_path: Path) -> None:
    modules = await imported_by(tmp_path, "--version")
    assert loaded(modules, NEVER_FOR_VERSION) == []
    verb_modules = {target.partition(":")[0] for target in VERBS.values()}
    assert sorted(modules & verb_modules) == []


async def test_status_loads_the_engine_but_not_the_server_daemon_console_or_call_path(
    tmp_path: Path, dsn: str
) -> None:
    modules = await imported_by(tmp_path, "status", "--json", dsn=dsn)
    assert "orchcore.facade" in modules  # it did run
    assert loaded(modules, NEVER_FOR_A_QUICK_VERB) == []


async def test_workflow_list_loads_only_its_own_verb_module(tmp_path: Path, dsn: str) -> None:
    modules = await imported_by(tmp_path, "workflow", "list", "--json", dsn=dsn)
    assert "orchcore.cli.workflows" in modules
    assert loaded(modules, NEVER_FOR_A_QUICK_VERB) == []
    others = {target.partition(":")[0] for target in VERBS.values()} - {"orchcore.cli.workflows"}
    assert sorted(modules & others) == []


def test_every_verb_resolves_under_its_own_name() -> None:
    ctx = click.Context(cli)
    assert set(cli.list_commands(ctx)) == EVERY_VERB
    for name in EVERY_VERB:
        command = cli.get_command(ctx, name)
        assert command is not None, name
        assert command.name == name


@pytest.mark.parametrize("verb", sorted(EVERY_VERB))
def test_every_verb_answers_help(verb: str) -> None:
    result = CliRunner().invoke(cli, [verb, "--help"], prog_name="orch")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: orch {verb}")


def test_top_level_help_lists_every_verb() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="orch")
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line}
    assert listed == EVERY_VERB
