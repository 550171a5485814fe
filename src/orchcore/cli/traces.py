"""`orch trace ...` and `orch map`: traces as tables and waterfalls, and the service map.

`orch trace show` takes a trace id, or a workflow's id or correlation id (its trace is
looked up), so a slow or failed booking is one command from its waterfall.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta

import click

from orchcore.cli.context import json_option, run_with_orch
from orchcore.cli.output import age, emit, service_status, table
from orchcore.cli.waterfall import ERROR, duration_text, render_waterfall, use_color
from orchcore.errors import NotFoundError, OrchError, ValidationFailed
from orchcore.facade import Orch
from orchcore.tracing.models import (
    GetTraceDetailsResponse,
    GetTracesResponse,
    SearchTracesRequest,
)
from orchcore.tracing.spans import valid_trace_id
from orchcore.validation import parse

AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | timedelta | None:
    """An option's time (ISO 8601; without a zone, UTC) or age before now (``30s``,
    ``15m``, ``2h``, ``1d``); an age stays a timedelta, made a time against orch's clock."""
    if value is None:
        return None
    text = value.strip()
    if match := AGO.match(text):
        return timedelta(seconds=float(match[1]) * UNIT_SECONDS[match[2]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a time (2026-06-20T12:00) nor an age (30s, 15m, 2h, 1d)",
            ctx,
            param,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _at(value: datetime | timedelta | None, orch: Orch) -> datetime | None:
    if isinstance(value, timedelta):
        return orch.clock.now() - value
    return value


class TraceNotStored(OrchError):
    """A workflow names a trace none of whose spans are stored."""

    http_status = 404


@click.group("trace")
def trace_group() -> None:
    """Traces: recent ones, search, and one trace as a waterfall."""


def _traces_table(found: GetTracesResponse, orch: Orch) -> None:
    table(
        [
            "TRACE",
            "ROOT SERVICE",
            "OPERATION",
            "DURATION",
            "SPANS",
            "SERVICES",
            "ERRORS",
            "STARTED",
        ],
        [
            (
                t.trace_id,
                t.root_service,
                t.operation_name if len(t.operation_name) <= 40 else t.operation_name[:39] + "…",
                duration_text(round(t.duration_ms * 1000)),
                t.span_count,
                t.service_count,
                f"{ERROR} {t.error_count}" if t.error_count else "0",
                age(t.start_time, orch.clock),
            )
            for t in found.traces
        ],
    )
    stats = found.trace_stats
    if stats.total_traces:
        click.echo(
            f"\n{stats.total_traces} trace(s), average "
            f"{duration_text(round(stats.avg_duration_ms * 1000))}, "
            f"{stats.error_rate:.0%} with errors"
        )


limit_option = click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
errors_option = click.option("--errors", is_flag=True, help="Only traces with an error.")
min_duration_option = click.option(
    "--min-duration", type=click.FloatRange(min=0), metavar="MS", help="At least this long (ms)."
)


@trace_group.command("list")
@click.option("--service", help="Only traces this service takes part in.")
@errors_option
@min_duration_option
@click.option(
    "--since",
    callback=moment,
    metavar="WHEN",
    help="With a span started since (a time, or 30m, 2h...; default 1h).",
)
@limit_option
@json_option
@run_with_orch
async def list_traces(
    orch: Orch,
    service: str | None,
    errors: bool,
    min_duration: float | None,
    since: datetime | timedelta | None,
    limit: int,
    as_json: bool,
) -> None:
    """Recent traces, newest first: root service and operation, duration, errors."""
    found = await orch.tracing.recent(
        limit=limit,
        service=service,
        errors_only=errors,
        min_duration_ms=min_duration,
        since=_at(since, orch),
    )
    emit(found, as_json=as_json, human=lambda: _traces_table(found, orch))


@trace_group.command("search")
@click.option("--service", help="A span of this service matches.")
@click.option("--operation", help="A span whose operation contains this (any case).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A span tag (repeat).")
@min_duration_option
@click.option(
    "--max-duration", type=click.FloatRange(min=0), metavar="MS", help="At most this long (ms)."
)
@click.option(
    "--since",
    callback=moment,
    metavar="WHEN",
    help="Spans started since (a time, or 2h...; default 1d).",
)
@click.option(
    "--until",
    "until_",
    callback=moment,
    metavar="WHEN",
    help="Spans started before (a time or an age).",
)
@click.option("--errors", is_flag=True, help="Only error spans match.")
@limit_option
@json_option
@run_with_orch
async def search_traces(
    orch: Orch,
    service: str | None,
    operation: str | None,
    tags: tuple[str, ...],
    min_duration: float | None,
    max_duration: float | None,
    since: datetime | timedelta | None,
    until_: datetime | timedelta | None,
    errors: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Traces with a span that matches every filter given (durations are the span's)."""
    request = parse(
        SearchTracesRequest,
        {
            "service_name": service,
            "operation_name": operation,
            "tags": _tags(tags) or None,
            "duration_min_ms": min_duration,
            "duration_max_ms": max_duration,
            "start_time": _at(since, orch),
            "end_time": _at(until_, orch),
            "has_errors": errors,
            "limit": limit,
        },
    )
    found = await orch.tracing.search(request)
    emit(found, as_json=as_json, human=lambda: _traces_table(found, orch))


def _tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationFailed("--tag", f"expected KEY=VALUE, got {pair!r}")
        tags[key] = value
    return tags


async def _trace_detail(orch: Orch, value: str) -> GetTraceDetailsResponse:
    """The trace ``value`` names: a trace id, or a workflow's id or correlation id (32
    hex digits that name no stored trace may still be a correlation id)."""
    text = value.strip()
    if valid_trace_id(text.lower()):
        try:
            return await orch.tracing.trace(text.lower())
        except NotFoundError as missing:
            try:
                trace_id = await orch.tracing.trace_of_workflow(text)
            except NotFoundError:
                raise missing from None
    else:
        try:
            trace_id = await orch.tracing.trace_of_workflow(text)
        except NotFoundError:
            raise ValidationFailed(
                "TRACE",
                f"{value!r} is neither a trace id (32 hex digits) "
                "nor the id or correlation id of a workflow",
            ) from None
    try:
        return await orch.tracing.trace(trace_id)
    except NotFoundError:
        raise TraceNotStored(
            f"workflow {text!r} has trace {trace_id}, but none of its spans are stored "
            "(tracing off, or not sampled)"
        ) from None


@trace_group.command("show")
@click.argument("trace", metavar="TRACE")
@click.option(
    "--width",
    type=click.IntRange(min=1),
    help="Columns to draw in (default: the terminal's; at least 60).",
)
@json_option
@run_with_orch
async def show_trace(orch: Orch, trace: str, width: int | None, as_json: bool) -> None:
    """TRACE (a trace id, or a workflow's id or correlation id) as a waterfall."""
    detail = await _trace_detail(orch, trace)

    def human() -> None:
        columns = width or shutil.get_terminal_size().columns
        color = use_color(os.environ, sys.stdout.isatty())
        for line in render_waterfall(detail, columns, color):
            click.echo(line)

    emit(detail, as_json=as_json, human=human)


@click.command("map")
@json_option
@run_with_orch
async def service_map(orch: Orch, as_json: bool) -> None:
    """The service map of the last hour: services, their connections, critical paths
    (by failure impact) and dependency cycles."""
    found = await orch.service_map()

    def human() -> None:
        table(
            ["SERVICE", "TYPE", "INSTANCES", "HEALTH", "REQ/MIN", "ERRORS", "AVG LATENCY"],
            [
                (
                    s.service_name,
                    s.service_type,
                    s.instance_count,
                    _health(s.health_status, s.instance_count),
                    f"{s.request_rate_per_minute:.1f}",
                    f"{s.error_rate:.1%}",
                    f"{s.avg_response_time_ms:.1f}ms",
                )
                for s in found.services
            ],
        )
        click.echo("")
        table(
            ["", "FROM", "TO", "REQUESTS 1H", "ERRORS 1H", "AVG LATENCY", "STRENGTH", "SEEN"],
            [
                (
                    ERROR if c.error_count_1h else " ",
                    c.source_service,
                    c.target_service,
                    c.request_count_1h,
                    c.error_count_1h,
                    f"{c.avg_latency_ms:.1f}ms",
                    c.connection_strength,
                    _seen(c.declared, c.request_count_1h),
                )
                for c in found.connections
            ],
        )
        graph = found.dependency_graph
        click.echo("\ncritical paths (failure impact 0-100):")
        for path in graph.critical_paths:
            click.echo(f"  {path.failure_impact_score:5.1f}  {' → '.join(path.path)}")
        if not graph.critical_paths:
            click.echo("  (none)")
        click.echo("\ndependency cycles:")
        for cycle in graph.circular_dependencies:
            click.echo(f"  {ERROR} {' → '.join([*cycle, cycle[0]])}")
        if not graph.circular_dependencies:
            click.echo("  (none)")

    emit(found, as_json=as_json, human=human)


def _health(status: str, instances: int) -> str:
    """As `orch service list` says it (no instances is not failing ones); "-" for a
    service the registry does not know."""
    if status == "unknown":
        return "-"
    return service_status(status, live_instances=instances, is_active=True)


def _seen(declared: bool, requests: int) -> str:
    if declared and requests:
        return "declared, observed"
    return "declared" if declared else "observed"
