"""`orch workflow ...` and `orch alert ...`"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import click

from orchcore.actors import local_operator
from orchcore.cli.context import (
    confirm_destructive,
    json_option,
    load_document,
    parse_pairs,
    run_with_orch,
)
from orchcore.cli.output import age, emit, table
from orchcore.errors import ValidationFailed
from orchcore.facade import Orch
from orchcore.saga.status import TERMINAL, WorkflowStatus
from orchcore.saga.store import BatchAction
from orchcore.saga.views import GetWorkflowStatusResponse, WorkflowDetail

WORKFLOW_SYMBOLS: dict[str, str] = {
    WorkflowStatus.PENDING: "○",
    WorkflowStatus.RUNNING: "▶",
    WorkflowStatus.RETRYING: "↻",
    WorkflowStatus.PAUSED: "‖",
    WorkflowStatus.COMPENSATING: "↶",
    WorkflowStatus.COMPENSATED: "↺",
    WorkflowStatus.COMPLETED: "●",
    WorkflowStatus.FAILED: "✖",
    WorkflowStatus.COMPENSATION_FAILED: "⚠",
    WorkflowStatus.CANCELLED: "◌",
}
STATUSES = [str(status) for status in WorkflowStatus]


def with_symbol(status: str) -> str:
    return f"{WORKFLOW_SYMBOLS.get(status, '?')} {status.replace('_', ' ')}"


@click.group("workflow")
def workflow_group() -> None:
    """Saga definitions, runs, and the operator's actions on them."""


@workflow_group.command("register")
@click.argument("file")
@json_option
@run_with_orch
async def register(orch: Orch, file: str, as_json: bool) -> None:
    """Register the workflow definition in FILE (YAML or JSON)."""
    registered = await orch.workflow_definitions.register(
        load_document(file, option="FILE"), actor=local_operator()
    )

    def human() -> None:
        d = registered.definition
        click.echo(
            f"registered {d.name} {d.version}: {len(d.steps)} steps, "
            f"compensation {d.compensation_strategy}, timeout {d.timeout_minutes:g} min"
        )
        for warning in registered.warnings:
            click.echo(f"warning: {warning}", err=True)

    emit(registered, as_json=as_json, human=human)


@workflow_group.command("definitions")
@json_option
@run_with_orch
async def definitions(orch: Orch, as_json: bool) -> None:
    """Registered definitions by name and version."""
    found = await orch.workflow_definitions.list_definitions()
    emit(
        found,
        as_json=as_json,
        human=lambda: table(
            ["NAME", "VERSION", "STEPS", "RUNS", "REGISTERED", "BY"],
            [
                (
                    d["workflow_name"],
                    d["workflow_version"],
                    d["steps"],
                    d["runs"],
                    age(d["created_at"], orch.clock),
                    d["created_by"],
                )
                for d in found
            ],
        ),
    )


def _context(values: tuple[str, ...]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    pairs: list[str] = []
    for value in values:
        if value.startswith("@"):
            context.update(load_document(value[1:], option="--context"))
        else:
            pairs.append(value)
    context.update(parse_pairs(tuple(pairs), option="--context"))
    return context


@workflow_group.command("start")
@click.argument("name")
@click.option("--version", help="Definition version (default: the latest).")
@click.option(
    "--context",
    "context",
    multiple=True,
    metavar="@FILE|KEY=VALUE",
    help="Context data: a JSON/YAML file, or key=value (repeat).",
)
@click.option(
    "--correlation-id", help="Business id; starting again with it returns the existing workflow."
)
@click.option("--wedding-id", help="The wedding this is for (UUID).")
@click.option("--initiating-service", default="orch-cli", show_default=True)
@click.option("--timeout-minutes", type=float)
@click.option("--wait", is_flag=True, help="Wait until the workflow ends, showing progress.")
@json_option
@run_with_orch
async def start(
    orch: Orch,
    name: str,
    version: str | None,
    context: tuple[str, ...],
    correlation_id: str | None,
    wedding_id: str | None,
    initiating_service: str,
    timeout_minutes: float | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Start workflow NAME."""
    started = await orch.workflows.start(
        {
            "workflow_name": name,
            "workflow_version": version,
            "correlation_id": correlation_id,
            "wedding_id": wedding_id,
            "initiating_service": initiating_service,
            "context_data": _context(context),
            "timeout_minutes": timeout_minutes,
        },
        actor=local_operator(),
    )
    if not as_json:
        verb = "started" if started.created else "already exists:"
        click.echo(
            f"{verb} {started.workflow_id} ({started.correlation_id}), "
            f"{with_symbol(started.status)}",
            err=not wait,
        )
    final: GetWorkflowStatusResponse | None = None
    if wait:
        final = await _wait_for_end(orch, started.workflow_id, show=not as_json)
    emit(
        {"start": started, "final": final.workflow if final else None},
        as_json=as_json,
        human=lambda: None,
    )
    if final is not None and final.workflow.current_status != "completed":
        raise SystemExit(1)


async def _wait_for_end(orch: Orch, workflow_id: Any, *, show: bool) -> GetWorkflowStatusResponse:
    last = ""
    while True:
        status = await orch.workflows.status(workflow_id)
        w = status.workflow
        line = f"{with_symbol(w.current_status)}  step {w.current_step}/{w.total_steps}"
        if show and line != last:
            click.echo(line, err=True)
            last = line
        if w.current_status in TERMINAL:
            return status
        await asyncio.sleep(0.25)


@workflow_group.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES))
@click.option("--name", help="Only this workflow name.")
@click.option("--wedding-id")
@click.option("--correlation-id")
@click.option("--since", type=click.DateTime(), help="Started at or after.")
@click.option("--until", "until_", type=click.DateTime(), help="Started before.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option(
    "--after", metavar="CURSOR", help="The page after the one that printed this next cursor."
)
@json_option
@run_with_orch
async def list_workflows(
    orch: Orch,
    statuses: tuple[str, ...],
    name: str | None,
    wedding_id: str | None,
    correlation_id: str | None,
    since: datetime | None,
    until_: datetime | None,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """Workflows, newest first, with a count per status."""
    found = await orch.workflows.list_workflows(
        status=list(statuses) or None,
        name=name,
        wedding_id=wedding_id,
        correlation_id=correlation_id,
        started_after=_utc(since),
        started_before=_utc(until_),
        limit=limit,
        after=after,
    )

    def human() -> None:
        table(
            ["STATUS", "NAME", "CORRELATION", "WEDDING", "PROGRESS", "DURATION", "STARTED"],
            [
                (
                    with_symbol(w.current_status),
                    w.workflow_name,
                    w.correlation_id,
                    str(w.wedding_id)[:8] if w.wedding_id else "-",
                    f"{w.current_step}/{w.total_steps}",
                    _duration(w.duration_ms),
                    age(w.started_at, orch.clock),
                )
                for w in found.workflows
            ],
        )
        counts = ", ".join(
            f"{n} {s.replace('_', ' ')}" for s, n in found.status_summary.items() if n
        )
        matching = f"{found.total}{'' if found.total_exact else '+'}"  # + : counted so far
        click.echo(f"\n{matching} matching; all workflows: {counts or 'none'}")
        if found.next_cursor:
            click.echo(f"next page: --after {found.next_cursor}")

    emit(found, as_json=as_json, human=human)


def _utc(value: datetime | None) -> datetime | None:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms / 60_000:.0f}m"


@workflow_group.command("show")
@click.argument("workflow")
@json_option
@run_with_orch
async def show(orch: Orch, workflow: str, as_json: bool) -> None:
    """WORKFLOW (id or correlation id): steps and the execution timeline."""
    status = await orch.workflows.status(await orch.workflows.find(workflow))

    def human() -> None:
        w = status.workflow
        click.echo(
            f"{w.workflow_name} {w.workflow_version}  {with_symbol(w.current_status)}  "
            f"step {w.current_step}/{w.total_steps}  ({w.id}, {w.correlation_id})"
        )
        if w.error_details:
            click.echo(f"error: {w.error_details.step_name}: {w.error_details.error_message}")
        if w.next_run_at and w.current_status not in TERMINAL:
            click.echo(f"next run: {w.next_run_at.isoformat(timespec='seconds')}")
        click.echo("")
        table(
            ["STEP", "STATUS", "TRIES", "DURATION", "UNDO", "ERROR"],
            [
                (
                    ("  " if s.parent_step else "") + s.step_name,
                    s.status,
                    s.retry_count + 1 if s.started_at else 0,
                    _duration(s.duration_ms),
                    s.compensation_status or ("-" if not s.has_compensation else ""),
                    (s.error_message or s.compensation_error or "")[:60],
                )
                for s in status.steps
            ],
        )
        click.echo("")
        table(
            ["WHEN", "EVENT", "STEP", "BY", "DETAILS"],
            [
                (
                    e.timestamp.strftime("%H:%M:%S.%f")[:-3],
                    e.event,
                    e.step_name or "",
                    e.actor,
                    json.dumps(e.details, default=str)[:70],
                )
                for e in status.execution_timeline
            ],
        )

    emit(status, as_json=as_json, human=human)


def _done(detail: WorkflowDetail, as_json: bool) -> None:
    def human() -> None:
        click.echo(
            f"{detail.workflow_name} {detail.correlation_id}: {with_symbol(detail.current_status)}"
        )
        if detail.pending_actions:
            click.echo(f"queued: {queued_text(detail)}")

    emit(detail, as_json=as_json, human=human)


def queued_text(detail: WorkflowDetail) -> str:
    """``pause by ops applies when charge_deposit's attempt ends (by 12:03:14)``."""
    actions = ", ".join(f"{a.action} by {a.requested_by}" for a in detail.pending_actions)
    waits = [
        f"{s.step_name}'s {'compensation' if s.direction == 'compensate' else 'attempt'} ends"
        + (f" (by {s.deadline.strftime('%H:%M:%S')})" if s.deadline else "")
        for s in detail.in_flight
    ]
    when = " and ".join(waits) if waits else "the daemon holding it commits"
    return f"{actions} applies when {when}"


@workflow_group.command("retry")
@click.argument("workflow")
@click.option(
    "--strategy",
    type=click.Choice(["current_step", "failed_steps", "from_step"]),
    default="current_step",
    show_default=True,
)
@click.option("--from-step", type=int, help="With --strategy from_step: the step order.")
@click.option("--max-retries", type=int, help="A fresh retry budget for the retried steps.")
@click.option("--reason")
@json_option
@run_with_orch
async def retry(
    orch: Orch,
    workflow: str,
    strategy: str,
    from_step: int | None,
    max_retries: int | None,
    reason: str | None,
    as_json: bool,
) -> None:
    """Run WORKFLOW again from where it failed (or from a step)."""
    detail = await orch.workflows.retry(
        await orch.workflows.find(workflow),
        {
            "retry_strategy": strategy,
            "from_step": from_step,
            "max_retries": max_retries,
            "reason": reason,
        },
        actor=local_operator(),
    )
    _done(detail, as_json)


@workflow_group.command("compensate")
@click.argument("workflow")
@click.option("--reason", required=True)
@click.option(
    "--strategy", type=click.Choice(["all", "partial", "custom"]), default="all", show_default=True
)
@click.option("--step", "steps", multiple=True, help="With --strategy custom (repeat).")
@click.option("--yes", "-y", is_flag=True)
@json_option
@run_with_orch
async def compensate(
    orch: Orch,
    workflow: str,
    reason: str,
    strategy: str,
    steps: tuple[str, ...],
    yes: bool,
    as_json: bool,
) -> None:
    """Undo WORKFLOW's completed steps, in reverse order."""
    workflow_id = await orch.workflows.find(workflow)
    status = await orch.workflows.status(workflow_id)
    confirm_destructive(
        f"Compensate workflow {status.workflow.workflow_name} {status.workflow.correlation_id}?",
        yes=yes,
    )
    detail = await orch.workflows.compensate(
        workflow_id,
        {"reason": reason, "compensation_strategy": strategy, "custom_steps": list(steps) or None},
        actor=local_operator(),
    )
    _done(detail, as_json)


def _lifecycle(verb: str, summary: str, *, destructive: bool) -> click.Command:
    @click.command(verb, help=summary)
    @click.argument("workflow")
    @click.option("--reason")
    @click.option("--yes", "-y", is_flag=True)
    @json_option
    @run_with_orch
    async def command(
        orch: Orch, workflow: str, reason: str | None, yes: bool, as_json: bool
    ) -> None:
        workflow_id = await orch.workflows.find(workflow)
        if destructive:
            status = await orch.workflows.status(workflow_id)
            confirm_destructive(
                f"{verb.capitalize()} workflow {status.workflow.workflow_name} "
                f"{status.workflow.correlation_id}?",
                yes=yes,
            )
        action = getattr(orch.workflows, verb)
        _done(await action(workflow_id, actor=local_operator(), reason=reason), as_json)

    return command


workflow_group.add_command(
    _lifecycle("pause", "Pause WORKFLOW (its current attempt ends).", destructive=False)
)
workflow_group.add_command(_lifecycle("resume", "Resume a paused WORKFLOW.", destructive=False))
workflow_group.add_command(
    _lifecycle("cancel", "Stop WORKFLOW without compensating.", destructive=True)
)


@workflow_group.command("skip")
@click.argument("workflow")
@click.argument("step")
@click.option("--output", default="{}", help="The step's output as JSON.")
@click.option("--reason", required=True)
@click.option("--yes", "-y", is_flag=True)
@json_option
@run_with_orch
async def skip(
    orch: Orch, workflow: str, step: str, output: str, reason: str, yes: bool, as_json: bool
) -> None:
    """Treat failed STEP of WORKFLOW as done with OUTPUT, and carry on."""
    try:
        value = json.loads(output)
    except ValueError as exc:
        raise ValidationFailed("--output", f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValidationFailed("--output", "must be a JSON object")
    confirm_destructive(f"Skip step {step} of workflow {workflow}?", yes=yes)
    detail = await orch.workflows.skip_step(
        await orch.workflows.find(workflow),
        step,
        output=value,
        actor=local_operator(),
        reason=reason,
    )
    _done(detail, as_json)


@workflow_group.command("retry-compensation")
@click.argument("workflow")
@click.option("--reason")
@json_option
@run_with_orch
async def retry_compensation(orch: Orch, workflow: str, reason: str | None, as_json: bool) -> None:
    """Try WORKFLOW's failed compensation again."""
    _done(
        await orch.workflows.retry_compensation(
            await orch.workflows.find(workflow), actor=local_operator(), reason=reason
        ),
        as_json,
    )


@workflow_group.command("mark-compensated")
@click.argument("workflow")
@click.option("--step", help="The step undone by hand (default: every failed one).")
@click.option("--note", required=True, help="What was done by hand.")
@click.option("--yes", "-y", is_flag=True)
@json_option
@run_with_orch
async def mark_compensated(
    orch: Orch, workflow: str, step: str | None, note: str, yes: bool, as_json: bool
) -> None:
    """Record that a failed compensation of WORKFLOW was done by hand."""
    confirm_destructive(
        f"Mark {step or 'the failed compensation'} of {workflow} done by hand?", yes=yes
    )
    _done(
        await orch.workflows.mark_compensated(
            await orch.workflows.find(workflow), step, actor=local_operator(), note=note
        ),
        as_json,
    )


@workflow_group.command("batch")
@click.argument("action", type=click.Choice(["retry", "compensate", "cancel"]))
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES))
@click.option("--name")
@click.option("--wedding-id")
@click.option("--since", type=click.DateTime())
@click.option("--until", "until_", type=click.DateTime())
@click.option("--reason")
@click.option("--dry-run", is_flag=True, help="Only show what matches.")
@click.option("--yes", "-y", is_flag=True)
@json_option
@run_with_orch
async def batch(
    orch: Orch,
    action: str,
    statuses: tuple[str, ...],
    name: str | None,
    wedding_id: str | None,
    since: datetime | None,
    until_: datetime | None,
    reason: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """ACTION every workflow the filter matches: a preview first, then one line each.

    The batch acts on exactly the workflows the preview listed (those that still match)."""
    filters: dict[str, Any] = {
        "status": list(statuses) or None,
        "name": name,
        "wedding_id": wedding_id,
        "started_after": _utc(since),
        "started_before": _utc(until_),
    }
    verb: BatchAction = action  # type: ignore[assignment]  # click.Choice checked it
    try:
        preview = await orch.workflows.batch(
            verb, actor=local_operator(), reason=reason, dry_run=True, **filters
        )
    except ValidationFailed as exc:
        if exc.field != "filter":
            raise
        # The engine's rule, in the words of this command's options.
        raise ValidationFailed(
            "filter", "give at least one of --status, --name, --wedding-id, --since, --until"
        ) from None

    def show_preview() -> None:
        click.echo(f"{preview.matched} workflow(s) match")
        table(
            ["STATUS", "NAME", "CORRELATION", "STARTED"],
            [
                (
                    with_symbol(w.current_status),
                    w.workflow_name,
                    w.correlation_id,
                    age(w.started_at, orch.clock),
                )
                for w in preview.preview
            ],
        )

    if dry_run or preview.matched == 0:
        emit(preview, as_json=as_json, human=show_preview)
        return
    shown = len(preview.workflow_ids)
    more = (
        f" (the {shown} listed; {preview.matched - shown} more match)"
        if shown < preview.matched
        else ""
    )
    confirm_destructive(f"{action.capitalize()} {shown} workflow(s){more}?", yes=yes)
    result = await orch.workflows.batch(
        verb,
        actor=local_operator(),
        reason=reason,
        workflow_ids=preview.workflow_ids,
        **filters,
    )

    def show_results() -> None:
        table(
            ["", "CORRELATION", "STATUS", "ERROR"],
            [
                ("✓" if r.ok else "✖", r.correlation_id, r.status or "-", r.error or "")
                for r in result.results
            ],
        )
        click.echo(f"{sum(r.ok for r in result.results)} of {len(result.results)} done")

    emit(result, as_json=as_json, human=show_results)
    if not all(r.ok for r in result.results):
        raise SystemExit(1)


@click.group("alert")
def alert_group() -> None:
    """Alerts that need a person."""


@alert_group.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved alerts.")
@json_option
@run_with_orch
async def list_alerts(orch: Orch, include_resolved: bool, as_json: bool) -> None:
    """Open alerts, newest first."""
    alerts = await orch.alerts.list_alerts(open_only=not include_resolved)
    emit(
        alerts,
        as_json=as_json,
        human=lambda: table(
            ["ID", "SEVERITY", "RAISED", "STATE", "TITLE"],
            [
                (
                    str(a.id)[:8],
                    a.severity,
                    age(a.raised_at, orch.clock),
                    "resolved"
                    if a.resolved_at
                    else ("acknowledged" if a.acknowledged_at else "open"),
                    a.title,
                )
                for a in alerts
            ],
        ),
    )


def _alert_command(verb: str) -> click.Command:
    @click.command(verb, help=f"{verb.capitalize()} the alert with this id (or id prefix).")
    @click.argument("alert")
    @json_option
    @run_with_orch
    async def command(orch: Orch, alert: str, as_json: bool) -> None:
        matches = [
            a
            for a in await orch.alerts.list_alerts(open_only=False, limit=1000)
            if str(a.id).startswith(alert)
        ]
        if len(matches) != 1:
            raise ValidationFailed("alert", f"{alert!r} matches {len(matches)} alerts")
        changed = await getattr(orch.alerts, verb)(matches[0].id, actor=local_operator())
        emit(changed, as_json=as_json, human=lambda: click.echo(f"{verb}d {changed.title}"))

    return command


alert_group.add_command(_alert_command("acknowledge"))
alert_group.add_command(_alert_command("resolve"))
