"""`orch trace list|show|search` as a user runs them (real subprocesses, a real
database), and the text waterfall of a known trace, line by line."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import sys
import termios
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from orchcore import Orch
from orchcore.cli.waterfall import BAR, TICK, Layout, render_waterfall, use_color
from orchcore.tracing.models import GetTraceDetailsResponse
from orchcore.tracing.spans import Span
from tests.support.cli import CliResult, run_orch
from tests.support.registry import mark
from tests.support.sagas import call_step

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT, VENUE, CACHE, DEPOSIT, GATEWAY = (
    "a000000000000001",
    "a000000000000002",
    "a000000000000003",
    "a000000000000004",
    "a000000000000005",
)
CORRELATION = "wedding-42-booking"


def known_trace(start: datetime, trace_id: str = TRACE) -> list[Span]:
    """A booking's trace: the workflow (200 ms) with two steps, the venue's taking
    10-90 ms with an instant cache hit inside, the deposit's the second half, and under
    it the payment gateway's call failing (120-180 ms)."""

    def at(ms: float) -> datetime:
        return start + timedelta(milliseconds=ms)

    return [
        Span(trace_id, ROOT, None, "book_wedding", "orch", at(0), at(200)),
        Span(trace_id, VENUE, ROOT, "reserve_venue", "venue", at(10), at(90), "server"),
        Span(trace_id, CACHE, VENUE, "availability cache hit", "venue", at(40), at(40)),
        Span(trace_id, DEPOSIT, ROOT, "charge_deposit", "payment", at(100), at(200), "server"),
        Span(
            trace_id,
            GATEWAY,
            DEPOSIT,
            "POST /v1/charges",
            "payment-gateway",
            at(120),
            at(180),
            "client",
            status_code="error",
            status_message="card declined (402)",
            tags={"http.request.method": "POST", "http.response.status_code": 402},
        ),
    ]


def quick_trace(start: datetime) -> list[Span]:
    """A healthy 30 ms trace of other services."""
    end = start + timedelta(milliseconds=30)
    return [
        Span(OTHER_TRACE, "b000000000000001", None, "GET /guests", "guest-list", start, end),
        Span(
            OTHER_TRACE,
            "b000000000000002",
            "b000000000000001",
            "SELECT guests",
            "guest-db",
            start + timedelta(milliseconds=5),
            end - timedelta(milliseconds=5),
            "client",
        ),
    ]


@dataclass
class Recorded:
    workflow_id: str
    started: datetime


async def start_workflow(orch: Orch, correlation_id: str, traceparent: str | None) -> str:
    await orch.workflow_definitions.register(
        {
            "name": "booking",
            "version": "1.0.0",
            "steps": [call_step("reserve_venue", 1, "venue", "/reservations")],
        },
        actor="tester",
    )
    started = await orch.workflows.start(
        {"workflow_name": "booking", "correlation_id": correlation_id},
        actor="tester",
        traceparent=traceparent,
    )
    return str(started.workflow_id)


async def record_traces(orch: Orch) -> Recorded:
    """The known trace as a workflow's (the workflow started under it), and a quick one;
    a minute ago by the wall clock, which is the CLI's."""
    workflow_id = await start_workflow(orch, CORRELATION, f"00-{TRACE}-{'c' * 16}-01")
    started = datetime.now(UTC) - timedelta(minutes=1)
    for span in known_trace(started) + quick_trace(started + timedelta(seconds=5)):
        orch.tracing.recorder.record(span)
    await orch.tracing.flush()
    assert orch.tracing.recorder.pending == 0
    return Recorded(workflow_id, started)


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.stderr
    return result


def one_line_error(result: CliResult, code: int) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("orch: error: ")
    return lines[0]


async def test_trace_list_with_filters(dsn: str, orch: Orch) -> None:
    recorded = await record_traces(orch)

    listed = ok(await run_orch(dsn, "trace", "list", "--json")).json()
    assert [t["trace_id"] for t in listed["traces"]] == [OTHER_TRACE, TRACE]  # newest first
    known = listed["traces"][1]
    assert {k: known[k] for k in known if k not in ("tags", "start_time")} == {
        "trace_id": TRACE,
        "root_service": "orch",
        "operation_name": "book_wedding",
        "duration_ms": 200.0,
        "span_count": 5,
        "service_count": 4,
        "error_count": 1,
        "status": "error",
        "services": ["orch", "payment", "payment-gateway", "venue"],
    }
    assert datetime.fromisoformat(known["start_time"]) == recorded.started
    assert listed["trace_stats"]["total_traces"] == 2
    assert listed["trace_stats"]["error_rate"] == 0.5

    async def only(*args: str) -> list[str]:
        found = ok(await run_orch(dsn, "trace", "list", *args, "--json")).json()
        return [t["trace_id"] for t in found["traces"]]

    assert await only("--errors") == [TRACE]
    assert await only("--service", "guest-db") == [OTHER_TRACE]
    assert await only("--min-duration", "150") == [TRACE]
    assert await only("--limit", "1") == [OTHER_TRACE]
    assert await only("--since", "10s") == []  # both started a minute ago
    assert await only("--since", "5m") == [OTHER_TRACE, TRACE]

    human = ok(await run_orch(dsn, "trace", "list")).stdout.splitlines()
    assert human[0].split() == [
        "TRACE", "ROOT", "SERVICE", "OPERATION", "DURATION", "SPANS", "SERVICES", "ERRORS",
        "STARTED",
    ]  # fmt: skip
    assert human[2].split() == [
        TRACE, "orch", "book_wedding", "200.0ms", "5", "4", "✗", "1", "1m", "ago",
    ]  # fmt: skip
    assert human[1].split()[:7] == [OTHER_TRACE, "guest-list", "GET", "/guests", "30.0ms", "2", "2"]
    assert human[-1] == "2 trace(s), average 115.0ms, 50% with errors"


async def test_trace_show_json_by_trace_workflow_and_correlation_id(dsn: str, orch: Orch) -> None:
    recorded = await record_traces(orch)

    shown = ok(await run_orch(dsn, "trace", "show", TRACE, "--json")).json()
    header = shown["trace"]
    assert header["trace_id"] == TRACE
    assert header["total_duration_ms"] == 200.0
    assert (header["span_count"], header["service_count"]) == (5, 4)
    assert header["status"] == "error"
    assert header["error_message"] == "card declined (402)"
    assert header["workflow_id"] == recorded.workflow_id
    assert header["correlation_id"] == CORRELATION
    spans = shown["spans"]
    assert [(s["span_id"], s["depth"], s["children"]) for s in spans] == [
        (ROOT, 0, [VENUE, DEPOSIT]),
        (VENUE, 1, [CACHE]),
        (CACHE, 2, []),
        (DEPOSIT, 1, [GATEWAY]),
        (GATEWAY, 2, []),
    ]
    assert [s["duration_microseconds"] for s in spans] == [200_000, 80_000, 0, 100_000, 60_000]
    assert spans[4]["status_code"] == "error"
    assert spans[4]["tags"]["http.response.status_code"] == 402
    assert shown["critical_path"] == [ROOT, DEPOSIT, GATEWAY]
    assert {(e["source_service"], e["target_service"]) for e in shown["service_map"]} == {
        ("orch", "venue"),
        ("orch", "payment"),
        ("payment", "payment-gateway"),
    }

    for name in (recorded.workflow_id, CORRELATION, TRACE.upper()):
        again = ok(await run_orch(dsn, "trace", "show", name, "--json")).json()
        assert again == shown, name


async def test_trace_show_draws_the_waterfall(
    dsn: str, orch: Orch, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = await record_traces(orch)
    detail = await orch.tracing.trace(TRACE)

    drawn = ok(await run_orch(dsn, "trace", "show", CORRELATION)).stdout.splitlines()
    assert drawn == render_waterfall(detail, 80, False)  # piped: 80 columns, no colour
    assert drawn[1] == f"workflow {recorded.workflow_id}  correlation {CORRELATION}"
    assert "\x1b" not in "".join(drawn)

    wide = ok(await run_orch(dsn, "trace", "show", TRACE, "--width", "120")).stdout
    assert wide.splitlines() == render_waterfall(detail, 120, False)
    monkeypatch.setenv("COLUMNS", "100")  # what shutil.get_terminal_size reads first
    from_terminal = ok(await run_orch(dsn, "trace", "show", TRACE)).stdout.splitlines()
    assert from_terminal == render_waterfall(detail, 100, False)
    assert max(len(line) for line in from_terminal) == 100
    narrow = ok(await run_orch(dsn, "trace", "show", TRACE, "--width", "30")).stdout
    assert narrow.splitlines() == render_waterfall(detail, 60, False)  # 60 at least


async def test_trace_search(dsn: str, orch: Orch) -> None:
    await record_traces(orch)

    async def found(*args: str) -> list[str]:
        result = ok(await run_orch(dsn, "trace", "search", *args, "--json")).json()
        return [t["trace_id"] for t in result["traces"]]

    assert await found() == [OTHER_TRACE, TRACE]
    assert await found("--service", "payment-gateway") == [TRACE]
    assert await found("--operation", "CHARGE") == [TRACE]
    assert await found("--tag", "http.request.method=POST") == [TRACE]
    assert await found("--tag", "http.request.method=GET") == []
    assert await found("--errors") == [TRACE]
    assert await found("--min-duration", "150") == [TRACE]  # only the booking's root
    assert await found("--service", "guest-db", "--max-duration", "25") == [OTHER_TRACE]
    assert await found("--service", "guest-db", "--max-duration", "10") == []
    assert await found("--since", "10s") == []
    assert await found("--since", "5m", "--until", "30s") == [OTHER_TRACE, TRACE]
    assert await found("--limit", "1") == [OTHER_TRACE]

    result = ok(await run_orch(dsn, "trace", "search", "--errors", "--json")).json()
    assert result["traces"][0]["error_count"] == 1
    human = ok(await run_orch(dsn, "trace", "search", "--errors")).stdout
    assert TRACE in human and OTHER_TRACE not in human


async def test_bad_input_is_one_line_and_a_non_zero_exit(dsn: str, orch: Orch) -> None:
    await record_traces(orch)

    malformed = one_line_error(await run_orch(dsn, "trace", "show", "4bf92f35-not-hex"), 2)
    assert "'4bf92f35-not-hex' is neither a trace id (32 hex digits)" in malformed
    unknown = one_line_error(await run_orch(dsn, "trace", "show", "f" * 32), 1)
    assert unknown == f"orch: error: trace '{'f' * 32}' not found"
    bare = await start_workflow(orch, "no-spans-yet", None)
    unstored = one_line_error(await run_orch(dsn, "trace", "show", bare), 1)
    assert f"workflow '{bare}' has trace " in unstored
    assert "none of its spans are stored" in unstored
    bad_tag = one_line_error(await run_orch(dsn, "trace", "search", "--tag", "method"), 2)
    assert bad_tag == "orch: error: --tag: expected KEY=VALUE, got 'method'"
    backwards = one_line_error(
        await run_orch(dsn, "trace", "search", "--since", "1h", "--until", "2h"), 2
    )
    assert backwards == "orch: error: end_time: must be after start_time"

    when = await run_orch(dsn, "trace", "list", "--since", "yesterday")
    assert when.code == 2
    assert "'yesterday' is neither a time" in when.stderr


# --------------------------------------------------------------------------- the waterfall

#: The known trace at 80 columns without colour: markers, label (27 columns), a 40-cell
#: bar on the 200 ms axis (5 ms a cell), the duration.
EXPECTED = [
    f"trace {TRACE}  200.0ms  5 spans  4 services  ✗ 1 error",
    "workflow {workflow}  correlation wedding-42-booking",
    "✗ error in POST /v1/charges (payment-gateway): card declined (402)",
    "                               0                100.0ms         200.0ms",
    "◆  book_wedding (orch)         ████████████████████████████████████████  200.0ms",
    "     reserve_venue (venue)       ████████████████                         80.0ms",
    "       availability c… (venue)         │                                     0µs",
    "◆    charge_deposit (payment)                      ████████████████████  100.0ms",
    "◆✗     POST /v1/char… (payme…)                         ████████████       60.0ms",
    "◆ critical path   ✗ error   │ no duration",
]


async def stored_detail(orch: Orch) -> tuple[GetTraceDetailsResponse, Recorded]:
    recorded = await record_traces(orch)
    return await orch.tracing.trace(TRACE), recorded


async def test_waterfall_of_the_known_trace(orch: Orch) -> None:
    detail, recorded = await stored_detail(orch)
    lines = render_waterfall(detail, 80, False)
    assert lines == [line.format(workflow=recorded.workflow_id) for line in EXPECTED]
    assert all(len(line) <= 80 for line in lines)
    assert all(len(line) == 80 for line in lines[4:9])  # durations right-aligned at 80

    alone = detail.model_copy(
        update={
            "trace": detail.trace.model_copy(update={"workflow_id": None, "correlation_id": None})
        }
    )
    assert render_waterfall(alone, 80, False) == lines[:1] + lines[2:]


def bars(lines: list[str], width: int) -> dict[str, str]:
    """Each span line's bar (the five lines above the legend), keyed by its operation."""
    layout = Layout.for_width(width)
    by_operation: dict[str, str] = {}
    for line in lines[-6:-1]:
        operation = line[3 : layout.bar_start].strip().split(" (")[0]
        by_operation[operation] = line[layout.bar_start : layout.bar_start + layout.bar]
    return by_operation


@pytest.mark.parametrize("width", [60, 80, 101, 160])
async def test_waterfall_bars_are_placed_on_the_time_axis(orch: Orch, width: int) -> None:
    detail, _ = await stored_detail(orch)
    drawn = bars(render_waterfall(detail, width, False), width)
    cells = Layout.for_width(width).bar
    root, venue, cache, deposit, gateway = drawn.values()
    assert root == BAR * cells
    half = cells // 2
    assert deposit == " " * half + BAR * (cells - half)  # 100-200 ms: the right half
    assert venue.strip() == BAR * len(venue.strip())
    assert venue.index(BAR) == cells * 10 // 200  # starts at 10 ms
    assert abs(len(venue.strip()) - cells * 80 / 200) <= 2  # 80 ms long
    assert gateway.index(BAR) == cells * 120 // 200
    assert abs(len(gateway.strip()) - cells * 60 / 200) <= 2
    assert cache.strip() == TICK  # no duration: one tick, at 40 ms
    assert cache.index(TICK) == cells * 40 // 200


async def test_waterfall_marks_errors_and_the_critical_path(orch: Orch) -> None:
    detail, _ = await stored_detail(orch)
    lines = render_waterfall(detail, 80, False)[4:-1]
    marks = {line[3:].split(" (")[0].strip(): line[:2] for line in lines}
    assert marks == {
        "book_wedding": "◆ ",
        "reserve_venue": "  ",
        "availability c…": "  ",
        "charge_deposit": "◆ ",
        "POST /v1/char…": "◆✗",
    }


async def test_waterfall_colour_and_no_color(orch: Orch) -> None:
    detail, _ = await stored_detail(orch)
    coloured = render_waterfall(detail, 80, True)
    gateway = next(line for line in coloured if "POST /v1/char…" in line)  # its span line
    assert "\x1b[31m" in gateway  # red
    assert "\x1b[1m" in gateway  # bold: the critical path
    assert all("\x1b" not in line for line in render_waterfall(detail, 80, False))

    assert use_color({}, True)
    assert not use_color({}, False)
    assert not use_color({"NO_COLOR": "1"}, True)
    assert use_color({"NO_COLOR": ""}, True)  # no-color.org: set and not empty


async def run_in_terminal(dsn: str, *args: str, no_color: bool) -> str:
    """The CLI with its output on a pseudo-terminal of 80 columns (so it may colour)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "ORCH_DATABASE_URL": dsn, "ORCH_OPERATOR": "tester"}
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    if no_color:
        env["NO_COLOR"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchcore.cli.main",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        output = await asyncio.wait_for(asyncio.to_thread(read_all), 60)
        assert await asyncio.wait_for(process.wait(), 60) == 0, output
    finally:
        os.close(master)
    return output.decode().replace("\r\n", "\n")


async def test_a_terminal_gets_colour_unless_no_color(dsn: str, orch: Orch) -> None:
    detail, _ = await stored_detail(orch)
    coloured = await run_in_terminal(dsn, "trace", "show", TRACE, no_color=False)
    assert coloured.splitlines() == render_waterfall(detail, 80, True)
    assert "\x1b[31m" in coloured
    plain = await run_in_terminal(dsn, "trace", "show", TRACE, no_color=True)
    assert plain.splitlines() == render_waterfall(detail, 80, False)


# --------------------------------------------------------------------------- the map


async def test_map_of_declared_and_observed_calls(dsn: str, orch: Orch) -> None:
    for name, depends_on in (("booking", ["venue", "payment"]), ("venue", ["booking"])):
        await orch.registry.register_service(
            {
                "service_name": name,
                "service_type": "api",
                "deployment_environment": "staging",
                "dependencies": depends_on,
            },
            actor="tester",
        )
    await orch.registry.register_instance(
        "booking",
        {"instance_id": "booking-1", "ip_address": "10.0.0.1", "port": 8000, "version": "1"},
        actor="tester",
    )
    await mark(orch, "booking-1", "healthy")
    at = datetime.now(UTC) - timedelta(minutes=1)  # the CLI's clock is the wall clock
    for n in range(4):  # spans booking's own SDK exported: it called payment four times
        orch.tracing.recorder.record(
            Span(
                f"{n + 1:032x}",
                f"{n + 1:016x}",
                None,
                "POST /charges",
                "booking",
                at,
                at + timedelta(milliseconds=40),
                "client",
                status_code="error" if n == 0 else "unset",
                tags={"peer.service": "payment"},
            )
        )
    await orch.tracing.flush()

    found = ok(await run_orch(dsn, "map", "--json")).json()
    services = {s["service_name"]: s for s in found["services"]}
    assert sorted(services) == ["booking", "payment", "venue"]
    assert (services["booking"]["instance_count"], services["booking"]["health_status"]) == (
        1,
        "healthy",
    )
    assert services["payment"]["service_type"] == "unregistered"
    assert services["payment"]["error_rate"] == 0.25
    connections = {
        (c["source_service"], c["target_service"]): (
            c["request_count_1h"],
            c["error_count_1h"],
            c["declared"],
        )
        for c in found["connections"]
    }
    assert connections == {
        ("booking", "payment"): (4, 1, True),
        ("booking", "venue"): (0, 0, True),
        ("venue", "booking"): (0, 0, True),
    }
    graph = found["dependency_graph"]
    assert graph["circular_dependencies"] == [["booking", "venue"]]
    paths = [p["path"] for p in graph["critical_paths"]]
    assert paths and all(len(p) >= 2 for p in paths)

    human = ok(await run_orch(dsn, "map")).stdout
    lines = human.splitlines()
    assert lines[0].split() == [
        "SERVICE", "TYPE", "INSTANCES", "HEALTH", "REQ/MIN", "ERRORS", "AVG", "LATENCY",
    ]  # fmt: skip
    assert lines[1].split() == ["booking", "api", "1", "●", "healthy", "0.0", "0.0%", "0.0ms"]
    assert lines[2].split() == ["payment", "unregistered", "0", "-", "0.1", "25.0%", "40.0ms"]
    assert lines[3].split()[:5] == ["venue", "api", "0", "○", "no"]  # not "unhealthy"
    payment_edge = next(line for line in lines if line.split()[1:3] == ["booking", "payment"])
    assert payment_edge.startswith("✗")  # an edge with failures is marked
    assert payment_edge.split()[3:5] == ["4", "1"]
    assert "  ✗ booking → venue → booking" in lines
    first_path = lines[lines.index("critical paths (failure impact 0-100):") + 1]
    assert first_path.endswith(" → ".join(paths[0]))
