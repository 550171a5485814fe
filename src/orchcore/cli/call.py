"""`orch call`: one guarded call, as a saga step would make it."""

from __future__ import annotations

import json

import click

from orchcore.callpath.identity import CLI_SOURCE
from orchcore.cli.context import json_option, parse_pairs, run_with_orch
from orchcore.cli.output import emit
from orchcore.errors import ValidationFailed
from orchcore.facade import Orch
from orchcore.resilience.retry import RetryPolicy


@click.command("call")
@click.argument("service")
@click.argument("endpoint")
@click.option("--data", help="JSON body (or @FILE).")
@click.option(
    "--method", "-X", default=None, help="HTTP method (default POST with --data, else GET)."
)
@click.option(
    "--source",
    default=CLI_SOURCE,
    show_default=True,
    help="Calling service: a registered service, or orch's own name.",
)
@click.option("--idempotency-key", help="Sent as Idempotency-Key; allows retrying a POST.")
@click.option("--correlation-id", help="Sent as X-Correlation-ID (default: a new one).")
@click.option("--timeout", type=float, help="Seconds per attempt.")
@click.option("--attempts", type=int, help="Maximum attempts (default: the mesh policy's).")
@click.option("--header", "-H", "headers", multiple=True, metavar="NAME=VALUE")
@json_option
@run_with_orch
async def call(
    orch: Orch,
    service: str,
    endpoint: str,
    data: str | None,
    method: str | None,
    source: str,
    idempotency_key: str | None,
    correlation_id: str | None,
    timeout: float | None,
    attempts: int | None,
    headers: tuple[str, ...],
    as_json: bool,
) -> None:
    """Call ENDPOINT of SERVICE through discovery, mesh policies, breaker and retries.

    Exits 1 when the answer is not 2xx (the answer is still printed)."""
    body = _body(data)
    caller = await orch.caller()
    result = await caller.call(
        source,
        service,
        endpoint,
        method=method or ("POST" if data is not None else "GET"),
        json=body,
        headers={k: str(v) for k, v in parse_pairs(headers, option="--header").items()},
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
        timeout=timeout,
        retry=RetryPolicy(max_attempts=attempts) if attempts else None,
    )
    await orch.events.flush()

    def human() -> None:
        tries = ", ".join(
            f"#{a.number} {a.instance_id} {a.status_code or a.error} {a.duration_ms:.0f}ms"
            for a in result.attempts
        )
        click.echo(f"HTTP {result.status_code} from {result.instance_id} ({tries})", err=True)
        click.echo(f"trace {result.trace_id}  correlation {result.correlation_id}", err=True)
        click.echo(result.text)

    emit(result.as_dict(), as_json=as_json, human=human)
    if not result.ok:
        raise SystemExit(1)  # like curl --fail-with-body: the answer is shown, the status says no


def _body(data: str | None) -> object:
    if data is None:
        return None
    text = data
    if data.startswith("@"):
        try:
            with open(data[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ValidationFailed("--data", f"cannot read {data[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationFailed("--data", f"not valid JSON: {exc}") from None
