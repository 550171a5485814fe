"""Change to API console, on screen: how long a change takes from its commit to the
console over the daemon's API showing it (the Services pane's rows), against the same
console on the database (LISTEN) in the same run.

A daemon (``orch daemon --no-health-checks --no-workflows --no-push``, a subprocess) on
a scratch database. In this process: an engine (no LISTEN of its own) registers
``--changes`` services one at a time, ``--spacing-ms`` apart; a headless console
(Textual's ``run_test``, 120x40) shows the Services pane, on a
:class:`~orchcore.client.remote.RemoteOrch` under a ``monitoring_system`` token (the
event stream, then the pane's fetch through the API) or on an :class:`~orchcore.Orch`
of its own (LISTEN, then the fetch on the database). Each change is timed from the
moment its registration returns (committed) to the moment the pane is handed a
snapshot holding it (``Pane.show``, the render half), on one clock. What it holds: the
NOTIFY, the stream (or LISTEN), the console's refresh tick (250 ms at most), the fetch.

    .venv/bin/python bench/console_api_latency.py [--dsn DSN] [--runs 3] [--changes 150]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

from events_latency import SERVICE
from latency_stats import Summary, median_summary, summarise, table
from otlp_ingest import start_daemon
from scratch_database import DEFAULT_DSN, scratch_database

from orchcore import Orch, Settings
from orchcore.client.credentials import ApiCredentials
from orchcore.client.remote import RemoteOrch
from orchtui.app import OrchConsole, api_console
from orchtui.panes.services import ServicesPane
from orchtui.source import ConsoleSource

TARGET_P99_MS = 1000.0


async def one_run(args: argparse.Namespace, run: int) -> dict[str, Summary]:
    async with scratch_database(args.dsn) as dsn:
        process, listen = await start_daemon(dsn)
        orch = await Orch.open(Settings(database_url=dsn), listen=False, start_discovery=False)
        watcher = await Orch.open(Settings(database_url=dsn), start_discovery=False)
        try:
            secret, _ = await orch.tokens.create(
                name="bench-console", role="monitoring_system", actor="bench"
            )
            remote = await RemoteOrch.connect(ApiCredentials(url=f"http://{listen}", token=secret))
            try:
                # Alternating which goes first, so neither always meets a warmer database.
                order: list[tuple[str, ConsoleSource]] = [("api", remote), ("database", watcher)]
                results = {}
                for kind, source in order if run % 2 else order[::-1]:
                    prefix = f"r{run}-{kind}"
                    results[f"commit -> shown, {kind}"] = await measure(orch, source, prefix, args)
                return results
            finally:
                await remote.close()
        finally:
            await watcher.close()
            await orch.close()
            process.terminate()
            await process.wait()


async def measure(
    orch: Orch, source: ConsoleSource, prefix: str, args: argparse.Namespace
) -> Summary:
    shown: dict[str, float] = {}
    app = (
        api_console(source, readonly=True)
        if isinstance(source, RemoteOrch)
        else OrchConsole(source, readonly=True)
    )
    app._first_pane = "services"
    async with app.run_test(size=(120, 40)):
        pane = await _services_pane(app)
        show = pane.show

        def timed_show(snapshot: Any) -> None:
            now = time.perf_counter()
            for service in snapshot.services:
                shown.setdefault(service.service_name, now)
            show(snapshot)

        pane.show = timed_show  # type: ignore[method-assign]
        committed: dict[str, float] = {}
        for n in range(args.changes):
            name = f"{prefix}-{n:04d}"
            await orch.registry.register_service({**SERVICE, "service_name": name}, actor="b")
            committed[name] = time.perf_counter()
            await asyncio.sleep(args.spacing_ms / 1000)  # the changes' pace, not a wait
        deadline = time.monotonic() + 30
        while not all(name in shown for name in committed):
            if time.monotonic() > deadline:
                raise SystemExit(f"{prefix}: not every change was shown within 30 s")
            await asyncio.sleep(0.01)
    return summarise([max(0.0, shown[n] - committed[n]) * 1000 for n in committed])


async def _services_pane(app: OrchConsole) -> ServicesPane:
    deadline = time.monotonic() + 10
    while True:
        pane = app.active_pane
        if isinstance(pane, ServicesPane) and pane.snapshot is not None:
            return pane
        if time.monotonic() > deadline:
            raise SystemExit("the Services pane did not load")
        await asyncio.sleep(0.01)


async def main(args: argparse.Namespace) -> None:
    print(
        f"Change to console: {args.changes} changes {args.spacing_ms} ms apart, "
        f"{args.runs} runs; {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    runs = []
    for run in range(1, args.runs + 1):
        result = await one_run(args, run)
        runs.append(result)
        print(table(f"run {run}", "ms", sorted(result.items())), flush=True)
    median = {key: median_summary([r[key] for r in runs]) for key in runs[0]}
    print(table("median of the runs", "ms", sorted(median.items())))
    p99 = median["commit -> shown, api"].p99
    verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
    print(f"API console: commit -> shown p99 {p99:.1f} ms: {verdict} the target of under 1 s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changes", type=int, default=150)
    parser.add_argument("--spacing-ms", type=float, default=100.0)
    asyncio.run(main(parser.parse_args()))
