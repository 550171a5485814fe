"""Change to API console: how long a change takes from its commit to a client of the
daemon's event stream (``GET /api/orchestration/events``), as an API console gets it.

A daemon (``orch daemon --no-health-checks --no-workflows --no-push``, a subprocess) on
a scratch database; in this process an engine (no LISTEN of its own) makes
``--changes`` changes one at a time, ``--spacing-ms`` apart: each registers a service
(its own name, so every change is a distinct notification and none is coalesced away),
and an :class:`orchcore.client.events.EventStream` on loopback, under a
``monitoring_system`` token, follows the stream. Each change is timed from the moment
the registration returns (committed) to the moment the stream's subscriber is called
with its payload, on one clock (``time.perf_counter``, same process); the time from the
statement sent is printed too (it holds the commit itself). The path measured: the
trigger's NOTIFY, the daemon's LISTEN connection, the feed's ~50 ms coalescing window,
the SSE write, the client's parse.

    .venv/bin/python bench/events_latency.py [--dsn DSN] [--runs 3] [--changes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from latency_stats import Summary, median_summary, summarise, table
from otlp_ingest import start_daemon
from scratch_database import DEFAULT_DSN, scratch_database

from orchcore import Orch, Settings
from orchcore.client.events import EventStream

TARGET_P99_MS = 1000.0
SERVICE = {
    "service_version": "1.0.0",
    "service_type": "api",
    "deployment_environment": "production",
    "dependencies": [],
}


async def one_run(args: argparse.Namespace) -> dict[str, Summary]:
    async with scratch_database(args.dsn) as dsn:
        process, listen = await start_daemon(dsn)
        orch = await Orch.open(Settings(database_url=dsn), listen=False, start_discovery=False)
        try:
            secret, _ = await orch.tokens.create(
                name="bench-console", role="monitoring_system", actor="bench"
            )
            headers = {"Authorization": f"Bearer {secret}"}
            async with httpx.AsyncClient(base_url=f"http://{listen}", headers=headers) as client:
                return await measure(orch, client, args)
        finally:
            await orch.close()
            process.terminate()
            await process.wait()


async def measure(
    orch: Orch, client: httpx.AsyncClient, args: argparse.Namespace
) -> dict[str, Summary]:
    received: dict[str, float] = {}
    all_in = asyncio.Event()

    def on_change(payload: dict[str, Any]) -> None:
        if payload.get("topic") == "service" and payload.get("op") == "insert":
            received.setdefault(str(payload["service_name"]), time.perf_counter())
            if len(received) == args.changes:
                all_in.set()

    stream = EventStream(client)
    stream.subscribe(on_change)
    await stream.start()
    if not stream.connected:
        raise SystemExit(f"the event stream did not open: {stream.last_error}")
    sent: dict[str, float] = {}
    committed: dict[str, float] = {}
    try:
        for n in range(args.changes):
            name = f"bench-{n:04d}"
            sent[name] = time.perf_counter()
            await orch.registry.register_service({**SERVICE, "service_name": name}, actor="b")
            committed[name] = time.perf_counter()
            await asyncio.sleep(args.spacing_ms / 1000)  # the changes' pace, not a wait
        await asyncio.wait_for(all_in.wait(), 30)
    finally:
        await stream.close()
    return {
        "commit -> received": summarise(
            [max(0.0, received[n] - committed[n]) * 1000 for n in committed]
        ),
        "sent -> received": summarise([(received[n] - sent[n]) * 1000 for n in sent]),
    }


async def main(args: argparse.Namespace) -> None:
    print(
        f"Event stream latency: {args.changes} changes {args.spacing_ms} ms apart, "
        f"{args.runs} runs; {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    runs = []
    for run in range(1, args.runs + 1):
        result = await one_run(args)
        runs.append(result)
        print(table(f"run {run}", "ms", list(result.items())), flush=True)
    median = {key: median_summary([r[key] for r in runs]) for key in runs[0]}
    print(table("median of the runs", "ms", list(median.items())))
    p99 = median["commit -> received"].p99
    verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
    print(f"commit -> received p99 {p99:.1f} ms: {verdict} the target of under 1 s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--spacing-ms", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
