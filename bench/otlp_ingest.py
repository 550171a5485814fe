"""OTLP/HTTP ingest throughput: spans a second a daemon takes at POST /v1/traces and
writes to PostgreSQL, in protobuf batches of 512 spans (an SDK BatchSpanProcessor's
default batch), and the time to open a 1,000-span trace.

A daemon (``orch daemon --no-health-checks --no-workflows --no-push``) on a scratch
database; ``--senders`` concurrent keep-alive clients post ``--batches`` pre-built bodies
(each a trace of 512 spans: a root and children over 8 services, attributes as an SDK
sets them: http method, route, status code, server address), built before the clock
starts so the load generator costs little. Throughput is spans / (first post -> the last
span counted in distributed_traces), so the writing is inside the measure; the post
rate alone (answers received) is printed too. Then one 1,000-span trace is ingested and
``orch.tracing.trace()`` (the read behind the API, CLI and console waterfall) is timed,
with the console's waterfall layout when it exists (``orchtui.panes.trace_waterfall``).

    .venv/bin/python bench/otlp_ingest.py [--dsn DSN] [--runs 3] [--batches 400] [--senders 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from scratch_database import DEFAULT_DSN, scratch_database

from orchcore import Orch, Settings
from orchcore.tracing.otlp import spans_to_otlp
from orchcore.tracing.spans import Span

HERE = Path(__file__).parent
TARGET_SPANS_PER_SECOND = 20_000
TARGET_WATERFALL_MS = 100.0
SERVICES = (
    "gateway",
    "booking",
    "venue",
    "catering",
    "photographer",
    "payment",
    "notify",
    "ledger",
)


def trace_spans(count: int, start: datetime) -> list[Span]:
    """A trace of ``count`` spans: a root, then each span a child of an earlier one."""
    trace_id = secrets.token_hex(16)
    spans: list[Span] = []
    for n in range(count):
        service = SERVICES[n % len(SERVICES)]
        began = start + timedelta(microseconds=50 * n)
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=secrets.token_hex(8),
                parent_span_id=spans[(n - 1) // 4].span_id if n else None,
                operation_name=f"POST /{service}/items",
                service_name=service,
                start_time=began,
                end_time=began + timedelta(microseconds=400 + (n % 7) * 100),
                span_kind="server" if n % 2 else "client",
                status_code="error" if n % 97 == 5 else "unset",
                tags={
                    "http.request.method": "POST",
                    "http.route": f"/{service}/items",
                    "http.response.status_code": 500 if n % 97 == 5 else 200,
                    "server.address": f"{service}.internal",
                    "server.port": 8080,
                },
            )
        )
    return spans


async def start_daemon(dsn: str) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "ORCH_DATABASE_URL": dsn, "ORCH_LOG_FORMAT": "json"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchcore.cli.main", "daemon", "--listen", "127.0.0.1:0",
        "--name", "otlp-bench", "--no-health-checks", "--no-workflows", "--no-push",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stderr is not None
    while line := await asyncio.wait_for(process.stderr.readline(), 60):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "daemon started":
            _DRAINS.add(asyncio.create_task(_drain(process.stderr)))
            return process, str(entry["listen"])
    raise SystemExit("the daemon exited before it started")


_DRAINS: set[asyncio.Task[None]] = set()


async def spans_stored(orch: Orch, at_least: int, trace_id: str | None = None) -> int:
    """Poll until the table holds ``at_least`` spans (of the trace); how many it holds."""
    query = "SELECT count(*) FROM distributed_traces WHERE $1::text IS NULL OR trace_id = $1"
    for _ in range(100_000):
        stored = int(await orch.db.fetchval(query, trace_id))
        if stored >= at_least:
            return stored
        await asyncio.sleep(0.02)
    raise SystemExit(f"spans never written: {stored} of {at_least}")


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_run(args: argparse.Namespace) -> dict[str, float]:
    async with scratch_database(args.dsn) as dsn:
        orch = await Orch.open(Settings(database_url=dsn))
        token, _ = await orch.tokens.create(name="bench", role="platform_engineer", actor="b")
        process, listen = await start_daemon(dsn)
        try:
            now = datetime.now(UTC)
            bodies = [
                spans_to_otlp(trace_spans(args.batch_size, now)).SerializeToString()
                for _ in range(args.batches)
            ]
            total = args.batch_size * args.batches
            url = f"http://{listen}/v1/traces"
            headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            for body in bodies:
                queue.put_nowait(body)
            cpu_before = cpu_seconds(process.pid)

            async def sender() -> None:
                async with httpx.AsyncClient(timeout=60) as client:
                    while not queue.empty():
                        body = queue.get_nowait()
                        answer = await client.post(url, content=body, headers=headers)
                        if answer.status_code == 503:  # the writer is behind: OTLP retry
                            await asyncio.sleep(0.05)
                            queue.put_nowait(body)
                            continue
                        answer.raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(args.senders)))
            posted = time.perf_counter() - started
            stored = await spans_stored(orch, total)
            written = time.perf_counter() - started
            cpu = cpu_seconds(process.pid) - cpu_before
            waterfall_ms, read_ms, drawn_ms = await time_waterfall(orch, url, headers)
            return {
                "spans_per_second": total / written,
                "posted_per_second": total / posted,
                "daemon_cpu_us_per_span": cpu / total * 1e6,
                "stored": float(stored),
                "trace_read_ms": read_ms,
                "waterfall_ms": waterfall_ms,
                "drawn_ms": drawn_ms,
            }
        finally:
            process.terminate()
            await process.wait()
            await orch.close()


async def time_waterfall(
    orch: Orch, url: str, headers: dict[str, str]
) -> tuple[float, float, float]:
    """(read + layout ms, read ms, open-to-painted ms) of a 1,000-span trace: medians."""
    spans = trace_spans(1000, datetime.now(UTC))
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            url, content=spans_to_otlp(spans).SerializeToString(), headers=headers
        )
        answer.raise_for_status()
    trace_id = spans[0].trace_id
    await spans_stored(orch, 1000, trace_id)
    drawn = await time_drawn(orch, trace_id)
    layout = _waterfall_layout()
    reads, totals = [], []
    for _ in range(5):
        began = time.perf_counter()
        detail = await orch.tracing.trace(trace_id)
        read = time.perf_counter()
        if layout is not None:
            layout(detail, 120)
        totals.append((time.perf_counter() - began) * 1000)
        reads.append((read - began) * 1000)
    return statistics.median(totals), statistics.median(reads), drawn


async def time_drawn(orch: Orch, trace_id: str, openings: int = 7) -> float:
    """ms from opening the console's waterfall pane (headless, 120x40) to the first frame
    that holds its rows, turned into the bytes a terminal would be sent: the median of
    ``openings``; NaN without the console.

    The frame is caught where Textual hands it to the terminal (``App._display``); a
    headless app skips turning it into escape sequences, so that is done here, inside the
    measure. Nothing waits on Pilot's idle detection, which sleeps 20 ms at least each
    time it is asked (an earlier version of this measure counted two of those)."""
    try:
        from textual._compositor import CompositorUpdate

        from orchtui.app import OrchConsole
        from orchtui.panes.trace_waterfall import TraceWaterfallPane
    except ImportError:
        return float("nan")
    app = OrchConsole(orch, first_pane="traces")
    watching: dict[str, Any] = {}
    display = app._display

    def frame_sent(screen: Any, update: Any) -> None:
        display(screen, update)
        pane = watching.get("pane")
        if pane is None or update is None:
            return
        if isinstance(update, CompositorUpdate):
            update.render_segments(app.console)
        if pane.is_mounted and pane.filter_table.row_count and not watching["drawn"].is_set():
            watching["at"] = time.perf_counter()
            watching["drawn"].set()

    app._display = frame_sent  # type: ignore[method-assign,assignment]
    times: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for _ in range(openings):
            pane = TraceWaterfallPane(trace_id, origin="bench")
            watching.update(pane=pane, drawn=asyncio.Event())
            began = time.perf_counter()
            app.open_detail(pane)
            await asyncio.wait_for(watching["drawn"].wait(), 30)
            times.append((watching["at"] - began) * 1000)
            watching.pop("pane")
            await pilot.pause()
            app.pop_screen()
            await pilot.pause()
    return statistics.median(times)


def _waterfall_layout() -> Callable[[Any, int], Any] | None:
    """The console's waterfall layout (orchtui.panes.trace_waterfall.waterfall_layout:
    the rows, bars and markers the screen draws), None without the console."""
    try:
        from orchtui.panes import trace_waterfall
    except ImportError:
        return None
    function = getattr(trace_waterfall, "waterfall_layout", None)
    if not callable(function):
        return None
    return lambda detail, width: function(detail, width=width, folded=frozenset())


async def main(args: argparse.Namespace) -> None:
    print(
        f"OTLP ingest: {args.batches} protobuf exports of {args.batch_size} spans, "
        f"{args.senders} senders, {args.runs} runs; {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    results = []
    for run in range(1, args.runs + 1):
        result = await one_run(args)
        results.append(result)
        print(f"run {run}: " + ", ".join(f"{k} {v:,.1f}" for k, v in result.items()), flush=True)
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    rate, wf = median["spans_per_second"], median["drawn_ms"]
    print(
        f"median: {rate:,.0f} spans/s written ({median['posted_per_second']:,.0f}/s answered), "
        f"{median['daemon_cpu_us_per_span']:.1f} µs of daemon CPU a span: "
        f"{'meets' if rate >= TARGET_SPANS_PER_SECOND else 'MISSES'} the target of "
        f"{TARGET_SPANS_PER_SECOND:,}/s"
    )
    print(
        f"1,000-span trace: read {median['trace_read_ms']:.1f} ms, read + waterfall layout "
        f"{median['waterfall_ms']:.1f} ms, opened to drawn in the console {wf:.1f} ms: "
        f"{'meets' if wf < TARGET_WATERFALL_MS else 'MISSES'} the target of "
        f"under {TARGET_WATERFALL_MS:.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--senders", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
