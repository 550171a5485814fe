"""`orch breaker ...`"""

from __future__ import annotations

import click

from orchcore.actors import local_operator
from orchcore.cli.context import confirm_destructive, json_option, run_with_orch
from orchcore.cli.output import age, emit, table
from orchcore.facade import Orch
from orchcore.resilience.breakers import Breaker

BREAKER_SYMBOLS = {
    "closed": "● closed",
    "open": "✖ open",
    "half_open": "◐ half-open",
    "forced_open": "✖ forced-open",
    "disabled": "○ disabled",
}

REF_HELP = "BREAKER is an id, an id prefix or SOURCE:TARGET[:PATTERN]."


@click.group("breaker")
def breaker_group() -> None:
    """Circuit breakers: list, inspect, reset, force open, disable."""


def _next_attempt(breaker: Breaker, orch: Orch) -> str:
    if breaker.current_state != "open" or breaker.next_attempt_at is None:
        return "-"
    seconds = (breaker.next_attempt_at - orch.clock.now()).total_seconds()
    return f"in {max(0, seconds):.0f}s"


@breaker_group.command("list")
@click.option("--state", type=click.Choice(list(BREAKER_SYMBOLS)), help="Only this state.")
@json_option
@run_with_orch
async def list_breakers(orch: Orch, state: str | None, as_json: bool) -> None:
    """Breakers with their state, failures and next attempt."""
    breakers = [
        b for b in await orch.breakers.list_breakers() if state is None or b.current_state == state
    ]
    emit(
        breakers,
        as_json=as_json,
        human=lambda: table(
            ["ID", "SOURCE → TARGET", "ENDPOINT", "STATE", "FAILURES", "IN STATE", "NEXT TRY"],
            [
                (
                    str(b.id)[:8],
                    f"{b.service_name} → {b.target_service}",
                    b.endpoint_pattern,
                    BREAKER_SYMBOLS[b.current_state],
                    f"{b.failure_count}/{b.failure_threshold}",
                    age(b.state_changed_at, orch.clock).removesuffix(" ago"),
                    _next_attempt(b, orch),
                )
                for b in breakers
            ],
        ),
    )


@breaker_group.command("show", epilog=REF_HELP)
@click.argument("breaker")
@json_option
@run_with_orch
async def show(orch: Orch, breaker: str, as_json: bool) -> None:
    """A breaker with its 24-hour metrics and its transition history."""
    found = await orch.breakers.get_by_ref(breaker)
    metrics = await orch.breakers.metrics(found)

    def human() -> None:
        click.echo(
            f"{found.service_name} → {found.target_service} {found.endpoint_pattern}  "
            f"{BREAKER_SYMBOLS[found.current_state]}  ({found.id})"
        )
        click.echo(
            f"thresholds: open after {found.failure_threshold} failures, close after "
            f"{found.success_threshold} successes, {found.timeout_duration}s open, "
            f"{found.half_open_max_calls} trial(s) at once"
        )
        click.echo(
            f"failures: {found.failure_count}   next attempt: {_next_attempt(found, orch)}"
            f"   in state for {age(found.state_changed_at, orch.clock).removesuffix(' ago')}"
        )
        m = metrics.metrics
        click.echo(
            f"24h: {m.total_requests_24h} calls, {m.failed_requests_24h} failed "
            f"({m.success_rate_24h:.1%} success), {m.state_changes_24h} state changes"
        )
        click.echo("")
        table(
            ["WHEN", "CHANGE", "BY", "WHY"],
            [
                (age(h.timestamp, orch.clock), f"{h.from_state} → {h.to_state}", h.actor, h.trigger)
                for h in metrics.state_history[:20]
            ],
        )

    emit({"breaker": found, **metrics.model_dump(mode="json")}, as_json=as_json, human=human)


def _operator_command(name: str, verb: str, summary: str) -> click.Command:
    @click.command(name, help=summary, epilog=REF_HELP)
    @click.argument("breaker")
    @click.option("--reason", required=True, help="Why (kept in the breaker's history).")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @json_option
    @run_with_orch
    async def command(orch: Orch, breaker: str, reason: str, yes: bool, as_json: bool) -> None:
        found = await orch.breakers.get_by_ref(breaker)
        confirm_destructive(
            f"{verb.capitalize()} breaker {found.service_name} → {found.target_service} "
            f"{found.endpoint_pattern} (now {found.current_state})?",
            yes=yes,
        )
        action = getattr(orch.breakers, name.replace("-", "_"))
        changed: Breaker = await action(found.id, actor=local_operator(), reason=reason)
        emit(
            changed,
            as_json=as_json,
            human=lambda: click.echo(
                f"{changed.service_name} → {changed.target_service} {changed.endpoint_pattern}: "
                f"{BREAKER_SYMBOLS[changed.current_state]}"
            ),
        )

    return command


breaker_group.add_command(
    _operator_command("reset", "reset", "Close BREAKER and clear its counts.")
)
breaker_group.add_command(
    _operator_command(
        "force-open", "force open", "Reject every call through BREAKER until it is reset."
    )
)
breaker_group.add_command(
    _operator_command(
        "disable", "disable", "Let every call through BREAKER and stop counting until reset."
    )
)


@breaker_group.command("create")
@click.option("--source", required=True, help="Calling service.")
@click.option("--target", required=True, help="Called service.")
@click.option("--pattern", default="*", show_default=True, help="Endpoint glob.")
@click.option("--failure-threshold", type=int, default=5, show_default=True)
@click.option("--success-threshold", type=int, default=3, show_default=True)
@click.option(
    "--timeout",
    "timeout_duration",
    type=int,
    default=60,
    show_default=True,
    help="Seconds open before a trial call.",
)
@click.option("--half-open-max-calls", type=int, default=1, show_default=True)
@click.option("--429-is-failure", "count_429_as_failure", is_flag=True)
@json_option
@run_with_orch
async def create(
    orch: Orch,
    source: str,
    target: str,
    pattern: str,
    failure_threshold: int,
    success_threshold: int,
    timeout_duration: int,
    half_open_max_calls: int,
    count_429_as_failure: bool,
    as_json: bool,
) -> None:
    """Create a breaker ahead of its first use (to set its thresholds)."""
    created = await orch.breakers.create(
        {
            "service_name": source,
            "target_service": target,
            "endpoint_pattern": pattern,
            "failure_threshold": failure_threshold,
            "success_threshold": success_threshold,
            "timeout_duration": timeout_duration,
            "half_open_max_calls": half_open_max_calls,
            "count_429_as_failure": count_429_as_failure,
        },
        actor=local_operator(),
    )
    emit(created, as_json=as_json, human=lambda: click.echo(f"created breaker {created.id}"))
