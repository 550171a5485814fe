"""Where a saga's database commits go: each system's transactions, read from the server log.

A companion to ``bench/saga_throughput.py`` (same participant, same systems, same
closed-loop load), for reading rather than timing: the scratch database gets
``log_statement = 'all'`` (a per-database setting; other databases are untouched),
the systems run ``--sagas`` sagas, and the statements their sessions sent are read
back from the server's log file and grouped into transactions per backend (BEGIN ...
COMMIT, or one statement on its own). Printed per saga: each kind of transaction,
the total logged, and ``xact_commit`` of ``pg_stat_database`` over the same span
minus this script's own polls. What ``xact_commit`` counts beyond the log is work no
statement shows: a LISTEN session reading the notification queue (PostgreSQL runs
each such read in a transaction of its own, one per wake-up) and statement
preparation (Parse is not logged). Logging slows the systems down: do not read
timings here.

The log file must be readable by this script: ``--log`` (default: the Debian
cluster's ``/var/log/postgresql/postgresql-<major>-main.log``).

    .venv/bin/python bench/saga_statements.py [--dsn DSN] [--sagas 300] [--window 32]
        [--systems orch1,orch2,dbos1,dbos2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from http_keepalive import KeepAliveClient
from saga_throughput import SYSTEMS, System, commits, drive, start_participant
from scratch_database import DEFAULT_DSN

_LINE = re.compile(
    r"^\S+ \S+ \S+ \[(\d+)\] (?:\S+@(\S+) )?LOG:  (?:statement|execute [^:]*): (.*)$"
)
_LABELS = [
    # (pattern in the statement, label); first match wins
    ("Everything a drive changed", "orch: commit_progress (step result + next start)"),
    ("One statement: the workflow, its steps", "orch: start_workflow (insert)"),
    ("FROM api_tokens", "orch: API token lookup"),
    ("UPDATE api_tokens", "orch: API token last-used"),
    ("WITH due AS", "orch: claim_workflows"),
    ("'op', $1::text, 'ids'", "orch: progress announcement (NOTIFY)"),
    ('COPY "service_events"', "orch: service_events COPY (call records)"),
    ("pg_advisory_unlock_all", "asyncpg pool reset on release"),
    ("FROM workflow_definitions", "orch: definition lookup"),
    ("UPDATE orch_daemons", "orch: membership heartbeat"),
    ("extend_leases", "orch: lease keeper"),
    ("UPDATE distributed_workflows SET lease_until", "orch: lease keeper"),
    ("pg_try_advisory_xact_lock", "DBOS: queue/leader advisory lock"),
]
_TABLE = re.compile(r"\b(dbos\.\w+)")


def label(statement: str) -> str:
    for needle, name in _LABELS:
        if needle in statement:
            return name
    if statement.strip(" ;") == "":
        return "empty query ';' (SQLAlchemy pool pre-ping)"
    tables = _TABLE.findall(statement)
    if tables:
        verb = statement.split(None, 1)[0].upper()
        return f"DBOS: {verb} {', '.join(t.removeprefix('dbos.') for t in dict.fromkeys(tables))}"
    return "other: " + statement[:70]


def label_transaction(body: list[str]) -> str:
    if not body:
        return "empty transaction"
    names = list(dict.fromkeys(label(statement) for statement in body))
    if len(names) == 1:
        return names[0]
    return "BEGIN; " + "; ".join(name.removeprefix("DBOS: ") for name in names) + "; COMMIT"


@dataclass
class Transactions:
    committed: collections.Counter[str] = field(default_factory=collections.Counter)
    rolled_back: collections.Counter[str] = field(default_factory=collections.Counter)


_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ \[\d+\] ")


def statements(lines: list[str]) -> list[tuple[int, str | None, str]]:
    """(pid, database or None, text) of every logged statement, continuation lines joined."""
    found: list[tuple[int, str | None, str]] = []
    current: list[str] | None = None
    for line in lines:
        if _RECORD.match(line):
            if current is not None:
                found[-1] = (found[-1][0], found[-1][1], " ".join(current))
            current = None
            match = _LINE.match(line)
            if match is not None:
                current = [match.group(3)]
                found.append((int(match.group(1)), match.group(2), ""))
        elif current is not None:
            current.append(line.strip())
    if current is not None:
        found[-1] = (found[-1][0], found[-1][1], " ".join(current))
    return found


def transactions(lines: list[str], database: str, pids: set[int], skip: str) -> Transactions:
    """Group each backend's logged statements into transactions, labelled by content.

    A statement is ours when the log prefix names the database, or else (a prefix
    without it) when it comes from a backend seen connected to the database."""
    found = Transactions()
    open_: dict[int, list[str]] = {}
    for pid, db, text in statements(lines):
        statement = " ".join(text.split())
        ours = db == database if db else pid in pids
        if not ours or skip in statement:
            continue
        words = statement.rstrip(";").split(None, 1)
        word = words[0].upper() if words else ""
        if word in ("BEGIN", "START"):
            open_[pid] = []
        elif word in ("COMMIT", "END", "ROLLBACK") and pid in open_:
            body = open_.pop(pid)
            name = label_transaction(body)
            (found.rolled_back if word == "ROLLBACK" else found.committed)[name] += 1
        elif pid in open_:
            open_[pid].append(statement)
        elif statement:
            found.committed[label(statement)] += 1
    return found


def read_from(log: Path, offset: int) -> list[str]:
    with log.open(errors="replace") as handle:
        handle.seek(offset)
        return handle.read().splitlines()


async def backend_pids(admin: asyncpg.Connection, database: str) -> set[int]:
    rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    return {int(r["pid"]) for r in rows}


async def trace(system: System, args: argparse.Namespace, port: int, log: Path) -> None:
    admin = await asyncpg.connect(args.dsn)
    client = KeepAliveClient()
    try:
        async with system.database(args.dsn) as dsn:
            database = dsn.rsplit("/", 1)[1]
            await system.prepare(dsn, port)
            await admin.execute(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
            await system.launch(dsn, port)
            try:
                tag = secrets.token_hex(3)
                await drive(system, client, dsn, count=50, prefix=f"warm-{tag}-", args=args)
                await asyncio.sleep(args.settle)
                before, _ = await commits(admin, database)
                offset = await asyncio.to_thread(os.path.getsize, log)
                pids = await backend_pids(admin, database)
                done = await drive(
                    system, client, dsn, count=args.sagas, prefix=f"run-{tag}-", args=args
                )
                pids |= await backend_pids(admin, database)
                await asyncio.sleep(args.settle)
                after, _ = await commits(admin, database)
                lines = await asyncio.to_thread(read_from, log, offset)
            finally:
                await system.shutdown()
    finally:
        await client.close()
        await admin.close()
    found = transactions(lines, database, pids, skip="count(*) FILTER (WHERE")
    n = args.sagas
    logged = sum(found.committed.values())
    xacts = after - before - done.polls
    print(f"\n{system.label}: {n} sagas; committed transactions a saga, from the statement log")
    for name, count in found.committed.most_common():
        print(f"  {count / n:7.2f}  {name}")
    for name, count in found.rolled_back.most_common():
        print(f"  {count / n:7.2f}  rolled back: {name}")
    print(f"  {logged / n:7.2f}  in all, logged")
    print(
        f"  {xacts / n:7.2f}  xact_commit over the same span, less {done.polls} polls of ours "
        f"(background included)"
    )
    print(f"  {(xacts - logged) / n:7.2f}  not in the log (notification reads, preparation)")


async def main(args: argparse.Namespace) -> None:
    admin = await asyncpg.connect(args.dsn)
    major = str(await admin.fetchval("SHOW server_version_num"))[:2]
    await admin.close()
    log = Path(args.log or f"/var/log/postgresql/postgresql-{major}-main.log")
    if not os.access(log, os.R_OK):
        raise SystemExit(f"cannot read the server log {log} (give it with --log)")
    participant, port = await start_participant()
    try:
        for name in [n.strip() for n in args.systems.split(",") if n.strip()]:
            await trace(SYSTEMS[name](args), args, port, log)
    finally:
        await participant.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; scratch dbs are made")
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--window", type=int, default=32, help="sagas in flight")
    parser.add_argument("--start-concurrency", type=int, default=16)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--settle", type=float, default=11.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--log", default=None, help="the server's log file")
    parser.add_argument("--systems", default="orch1,orch2,dbos1,dbos2")
    parser.add_argument("--orch-command", default=None, help="how to run orch")
    parser.add_argument("--dbos-app-args", default=None, help="more arguments for the DBOS app")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
