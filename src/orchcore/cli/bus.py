"""`orch queue ...`, `orch message ...` and `orch dlq ...`: the message bus by hand.

The CLI speaks as an operator: it is not checked against a queue's producers and
consumers (a service token is, through the API). Input is parsed here into the bus's
models so that bad input exits 2 naming the field before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchcore.actors import local_operator
from orchcore.bus.models import (
    CreateMessageQueueRequest,
    DeadLetterActionResponse,
    ExtendRequest,
    MessageQueue,
    NackRequest,
    PurgeRequest,
    QueueMetrics,
    QueueType,
    ReceiveRequest,
    RedriveRequest,
    SendMessageRequest,
    UpdateMessageQueueRequest,
)
from orchcore.cli.context import confirm_destructive, json_option, load_document, run_with_orch
from orchcore.cli.output import age, emit, table
from orchcore.errors import ValidationFailed
from orchcore.facade import Orch
from orchcore.validation import parse

F = TypeVar("F", bound=Callable[..., Any])


def seconds_text(seconds: float | None) -> str:
    """'-', '12s', '5m', '3h', '2d': an age without 'ago'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _state(queue: MessageQueue) -> str:
    return "● active" if queue.is_active else "◌ inactive"


def _waiting(metrics: QueueMetrics | None) -> int:
    if metrics is None:
        return 0
    return metrics.pending_messages + metrics.processing_messages + metrics.delayed_messages


# --------------------------------------------------------------------------- queue


@click.group("queue")
def queue_group() -> None:
    """Message queues and topics: create, list, inspect, purge, deactivate."""


def _queue_options(fn: F) -> F:
    """The flags shared by `create` and `update`; a flag not given changes nothing."""
    options = [
        click.option(
            "--file",
            "file_",
            metavar="FILE",
            help="JSON or YAML request (the seed's CreateMessageQueueRequest); "
            "flags override its fields.",
        ),
        click.option(
            "--pattern",
            "message_pattern",
            help="Topic binding: routing-key pattern of the message types it takes.",
        ),
        click.option(
            "--producer",
            "producer_services",
            multiple=True,
            metavar="SERVICE",
            help="A service that may send (repeat).",
        ),
        click.option(
            "--consumer",
            "consumer_services",
            multiple=True,
            metavar="SERVICE",
            help="A service that may consume (repeat).",
        ),
        click.option("--retention-hours", type=int, help="Keep done messages this long."),
        click.option("--max-message-size", type=int, help="Bytes; larger payloads are refused."),
        click.option(
            "--max-retries",
            "dlq_max_retries",
            type=int,
            help="Deliveries before a message is dead-lettered.",
        ),
        click.option(
            "--visibility-timeout",
            "visibility_timeout_seconds",
            type=int,
            help="Seconds a pushed message stays hidden before it comes back.",
        ),
        click.option("--push-endpoint", help="Consumer endpoint the daemons push messages to."),
        click.option("--alert-on-backlog", type=int, help="Alert when this many wait."),
        click.option(
            "--alert-on-processing-time", type=int, help="Alert when processing takes longer (ms)."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _queue_fields(
    file_: str | None,
    monitoring: dict[str, Any] | None,
    alert_on_backlog: int | None,
    alert_on_processing_time: int | None,
    **flags: Any,
) -> dict[str, Any]:
    fields: dict[str, Any] = load_document(file_, option="--file") if file_ else {}
    for key, value in flags.items():
        if value is None or value == ():
            continue
        fields[key] = list(value) if isinstance(value, tuple) else value
    if alert_on_backlog is not None or alert_on_processing_time is not None:
        config = dict(monitoring or {})
        config.update(fields.get("monitoring_config") or {})
        if alert_on_backlog is not None:
            config["alert_on_backlog"] = alert_on_backlog
        if alert_on_processing_time is not None:
            config["alert_on_processing_time"] = alert_on_processing_time
        fields["monitoring_config"] = config
    return fields


def _describe(queue: MessageQueue) -> str:
    dead_letters = (
        f"dead letters to {queue.dead_letter_queue} after {queue.dlq_max_retries} "
        + ("retry" if queue.dlq_max_retries == 1 else "retries")
        if queue.dlq_enabled
        else "no dead-letter queue"
    )
    return f"{queue.queue_name} ({queue.queue_type}, {dead_letters})"


@queue_group.command("create")
@click.argument("name", required=False)
@click.option(
    "--type", "queue_type", type=click.Choice([str(t) for t in QueueType]), help="Default queue."
)
@click.option("--no-dlq", is_flag=True, help="No dead-letter queue: failures are dropped.")
@_queue_options
@json_option
@run_with_orch
async def create_queue(
    orch: Orch,
    name: str | None,
    queue_type: str | None,
    no_dlq: bool,
    file_: str | None,
    alert_on_backlog: int | None,
    alert_on_processing_time: int | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Create queue NAME (or the one --file names); a dlq-enabled queue gets NAME_dlq."""
    fields = _queue_fields(
        file_,
        None,
        alert_on_backlog,
        alert_on_processing_time,
        queue_name=name,
        queue_type=queue_type,
        **flags,
    )
    if no_dlq:
        fields["dlq_enabled"] = False
    if "queue_name" not in fields:
        raise ValidationFailed("NAME", "name the queue (or give --file with queue_name)")
    request = parse(CreateMessageQueueRequest, fields)
    created = await orch.bus.create_queue(request, actor=local_operator())
    emit(created, as_json=as_json, human=lambda: click.echo(f"created queue {_describe(created)}"))


@queue_group.command("update")
@click.argument("name")
@_queue_options
@json_option
@run_with_orch
async def update_queue(
    orch: Orch,
    name: str,
    file_: str | None,
    alert_on_backlog: int | None,
    alert_on_processing_time: int | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Change the given settings of queue NAME; the rest stay."""
    current = await orch.bus.get_queue(name)
    fields = _queue_fields(
        file_, current.monitoring_config, alert_on_backlog, alert_on_processing_time, **flags
    )
    if not fields:
        raise ValidationFailed("options", "nothing to change: give at least one flag or --file")
    request = parse(UpdateMessageQueueRequest, fields)
    updated = await orch.bus.update_queue(name, request, actor=local_operator())
    emit(updated, as_json=as_json, human=lambda: click.echo(f"updated queue {_describe(updated)}"))


@queue_group.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Include deactivated queues.")
@json_option
@run_with_orch
async def list_queues(orch: Orch, include_inactive: bool, as_json: bool) -> None:
    """Queues with their depths: ready, in flight, delayed, dead letters, oldest message."""
    queues = await orch.bus.list_queues(include_inactive=include_inactive)
    metrics = await orch.bus.all_metrics()
    rows = [
        {**q.model_dump(mode="json"), "queue_metrics": _metrics_json(metrics.get(q.queue_name))}
        for q in queues
    ]

    def human() -> None:
        table(
            ["QUEUE", "TYPE", "STATE", "READY", "IN FLIGHT", "DELAYED", "DEAD", "OLDEST"],
            [
                (
                    q.queue_name,
                    q.queue_type,
                    _state(q),
                    *_depth_cells(metrics.get(q.queue_name)),
                )
                for q in queues
            ],
        )

    emit(rows, as_json=as_json, human=human)


def _metrics_json(metrics: QueueMetrics | None) -> dict[str, Any] | None:
    return metrics.model_dump(mode="json") if metrics is not None else None


def _depth_cells(metrics: QueueMetrics | None) -> tuple[Any, ...]:
    if metrics is None:
        return ("-", "-", "-", "-", "-")
    return (
        metrics.pending_messages,
        metrics.processing_messages,
        metrics.delayed_messages,
        metrics.failed_messages,
        seconds_text(metrics.oldest_age_seconds),
    )


@queue_group.command("show")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@run_with_orch
async def show_queue(orch: Orch, name: str, limit: int, as_json: bool) -> None:
    """Queue NAME: its settings, depths now, and its most recent messages."""
    queue = await orch.bus.get_queue(name)
    recent = await orch.bus.queue_messages(name, limit=limit)
    m = recent.queue_metrics

    def human() -> None:
        click.echo(f"{_describe(queue)}  {_state(queue)}")
        if queue.message_pattern:
            click.echo(f"pattern:    {queue.message_pattern}")
        click.echo(f"producers:  {', '.join(queue.producer_services) or '(none: operators only)'}")
        click.echo(f"consumers:  {', '.join(queue.consumer_services) or '(none: operators only)'}")
        if queue.push_endpoint:
            click.echo(
                f"push:       {queue.push_endpoint} "
                f"(visibility timeout {queue.visibility_timeout_seconds}s)"
            )
        click.echo(
            f"limits:     {queue.max_message_size} bytes a message, kept {queue.retention_hours}h"
        )
        click.echo("")
        click.echo(
            f"ready {m.pending_messages}   in flight {m.processing_messages}   "
            f"delayed {m.delayed_messages}   dead letters {m.failed_messages}   "
            f"oldest {seconds_text(m.oldest_age_seconds)}"
        )
        click.echo(
            f"in {m.messages_in_per_minute:g}/min   out {m.messages_out_per_minute:g}/min   "
            f"average age {seconds_text(m.average_age_seconds)}"
        )
        click.echo("")
        table(
            ["ID", "TYPE", "STATUS", "RETRIES", "FROM", "TO", "PRODUCED", "ERROR"],
            [
                (
                    message.message_id,
                    message.message_type,
                    message.status,
                    message.retry_count,
                    message.producer_service,
                    message.consumer_service or "-",
                    age(message.produced_at, orch.clock),
                    (message.error_message or "")[:50],
                )
                for message in recent.messages
            ],
        )

    emit(
        {"queue": queue, "queue_metrics": m, "messages": recent.messages},
        as_json=as_json,
        human=human,
    )


def _reason_option(what: str) -> Callable[[F], F]:
    return click.option("--reason", required=True, help=f"Why {what} (kept in the audit log).")


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def _action_done(result: DeadLetterActionResponse, verb: str, as_json: bool) -> None:
    emit(
        result,
        as_json=as_json,
        human=lambda: click.echo(f"{verb} {result.affected} message(s) of {result.queue_name}"),
    )


@queue_group.command("purge")
@click.argument("name")
@_reason_option("the queue is purged")
@yes_option
@json_option
@run_with_orch
async def purge_queue(orch: Orch, name: str, reason: str, yes: bool, as_json: bool) -> None:
    """Delete every message waiting in queue NAME (its dead letters stay)."""
    await orch.bus.get_queue(name)
    waiting = _waiting(await orch.bus.metrics(name))
    confirm_destructive(
        f"Purge {waiting} message(s) waiting in queue {name} (ready, in flight and delayed)?",
        yes=yes,
    )
    result = await orch.bus.purge_queue(name, actor=local_operator(), reason=reason)
    _action_done(result, "purged", as_json)


@queue_group.command("deactivate")
@click.argument("name")
@_reason_option("the queue is deactivated")
@yes_option
@json_option
@run_with_orch
async def deactivate_queue(orch: Orch, name: str, reason: str, yes: bool, as_json: bool) -> None:
    """Stop queue NAME taking messages; what it holds stays readable."""
    queue = await orch.bus.get_queue(name)
    producers = ", ".join(queue.producer_services) or "no services"
    confirm_destructive(
        f"Deactivate queue {name} (sends from {producers} will be refused)?", yes=yes
    )
    changed = await orch.bus.deactivate_queue(name, actor=local_operator(), reason=reason)
    emit(changed, as_json=as_json, human=lambda: click.echo(f"{name}: {_state(changed)}"))


@queue_group.command("reactivate")
@click.argument("name")
@_reason_option("the queue is reactivated")
@json_option
@run_with_orch
async def reactivate_queue(orch: Orch, name: str, reason: str, as_json: bool) -> None:
    """Let deactivated queue NAME take messages again."""
    changed = await orch.bus.reactivate_queue(name, actor=local_operator(), reason=reason)
    emit(changed, as_json=as_json, human=lambda: click.echo(f"{name}: {_state(changed)}"))


# --------------------------------------------------------------------------- message


@click.group("message")
def message_group() -> None:
    """Send, receive and settle messages by hand (as an operator)."""


def _payload(value: str) -> dict[str, Any]:
    if value.startswith("@"):
        return load_document(value[1:], option="--payload")
    try:
        payload = json.loads(value)
    except ValueError as exc:
        raise ValidationFailed("--payload", f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationFailed("--payload", "must be a JSON object")
    return payload


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationFailed("--header", f"expected NAME=VALUE, got {pair!r}")
        headers[key] = value
    return headers


@message_group.command("send")
@click.argument("queue")
@click.argument("message_type")
@click.option("--payload", default="{}", help="JSON object (or @FILE, JSON or YAML).")
@click.option("--correlation-id")
@click.option("--header", "-H", "headers", multiple=True, metavar="NAME=VALUE")
@click.option("--delay", "delay_seconds", type=int, default=0, help="Seconds before delivery.")
@click.option("--ttl", "ttl_seconds", type=int, help="Seconds after which it is never delivered.")
@json_option
@run_with_orch
async def send(
    orch: Orch,
    queue: str,
    message_type: str,
    payload: str,
    correlation_id: str | None,
    headers: tuple[str, ...],
    delay_seconds: int,
    ttl_seconds: int | None,
    as_json: bool,
) -> None:
    """Send a MESSAGE_TYPE message to QUEUE (or topic)."""
    request = parse(
        SendMessageRequest,
        {
            "queue_name": queue,
            "message_type": message_type,
            "message_payload": _payload(payload),
            "correlation_id": correlation_id,
            "headers": _headers(headers),
            "delay_seconds": delay_seconds,
            "ttl_seconds": ttl_seconds,
        },
    )
    sent = await orch.bus.send(request, producer=None, actor=local_operator())

    def human() -> None:
        where = f" (fanned out to {', '.join(sent.fanned_out_to)})" if sent.fanned_out_to else ""
        click.echo(f"{sent.status} message {sent.message_id} on {sent.queue_name}{where}")

    emit(sent, as_json=as_json, human=human)


@message_group.command("receive")
@click.argument("queue")
@click.option("--max", "max_messages", type=int, default=1, show_default=True)
@click.option(
    "--visibility-timeout",
    "visibility_timeout_seconds",
    type=int,
    default=30,
    show_default=True,
    help="Seconds the messages stay hidden; ack them before it passes.",
)
@click.option("--wait", "wait_seconds", type=float, default=0, help="Wait up to this long for one.")
@json_option
@run_with_orch
async def receive(
    orch: Orch,
    queue: str,
    max_messages: int,
    visibility_timeout_seconds: int,
    wait_seconds: float,
    as_json: bool,
) -> None:
    """Take up to --max messages from QUEUE; ack each with `orch message ack`."""
    request = parse(
        ReceiveRequest,
        {
            "max_messages": max_messages,
            "visibility_timeout_seconds": visibility_timeout_seconds,
            "wait_seconds": wait_seconds,
        },
    )
    received = await orch.bus.receive(queue, request, consumer=None)

    def human() -> None:
        table(
            ["ID", "TYPE", "RETRIES", "CORRELATION", "PRODUCED", "PAYLOAD"],
            [
                (
                    message.message_id,
                    message.message_type,
                    message.retry_count,
                    message.correlation_id or "-",
                    age(message.produced_at, orch.clock),
                    json.dumps(message.message_payload, default=str)[:60],
                )
                for message in received.messages
            ],
        )
        if received.messages:
            click.echo(
                f"hidden for {visibility_timeout_seconds}s: "
                f"orch message ack {queue} {' '.join(m.message_id for m in received.messages)}",
                err=True,
            )

    emit(received, as_json=as_json, human=human)


@message_group.command("ack")
@click.argument("queue")
@click.argument("message_ids", nargs=-1, required=True, metavar="MESSAGE_ID...")
@json_option
@run_with_orch
async def ack(orch: Orch, queue: str, message_ids: tuple[str, ...], as_json: bool) -> None:
    """Mark received messages of QUEUE done."""
    if len(message_ids) == 1:  # one unknown id is an error; in a batch it is left out
        await orch.bus.ack(queue, message_ids[0], consumer=None)
        acked = list(message_ids)
    else:
        acked = await orch.bus.ack_batch(queue, list(message_ids), consumer=None)
    missing = [m for m in message_ids if m not in acked]

    def human() -> None:
        click.echo(f"acked {len(acked)} message(s) of {queue}")
        if missing:
            click.echo(f"not in flight or unknown: {' '.join(missing)}", err=True)

    emit({"queue_name": queue, "acked": acked, "missing": missing}, as_json=as_json, human=human)
    if missing:
        raise SystemExit(1)


@message_group.command("nack")
@click.argument("queue")
@click.argument("message_id")
@click.option("--delay", "delay_seconds", type=int, default=0, help="Seconds before it returns.")
@click.option("--error", "error_message", help="What went wrong (kept with a dead letter).")
@json_option
@run_with_orch
async def nack(
    orch: Orch,
    queue: str,
    message_id: str,
    delay_seconds: int,
    error_message: str | None,
    as_json: bool,
) -> None:
    """Give a received message back; past the retry limit it is dead-lettered."""
    request = parse(NackRequest, {"delay_seconds": delay_seconds, "error_message": error_message})
    outcome = await orch.bus.nack(queue, message_id, request, consumer=None)
    said = {
        "retry": "it comes back",
        "dead_lettered": "its last delivery: dead-lettered",
        "failed": "its last delivery: dropped (the queue has no dead-letter queue)",
    }
    emit(
        {"queue_name": queue, "message_id": message_id, "status": "nacked", "outcome": outcome},
        as_json=as_json,
        human=lambda: click.echo(
            f"nacked message {message_id} of {queue}: {said.get(outcome, outcome)}"
        ),
    )


@message_group.command("extend")
@click.argument("queue")
@click.argument("message_id")
@click.option(
    "--visibility-timeout",
    "visibility_timeout_seconds",
    type=int,
    required=True,
    help="Seconds from now it stays hidden.",
)
@json_option
@run_with_orch
async def extend(
    orch: Orch, queue: str, message_id: str, visibility_timeout_seconds: int, as_json: bool
) -> None:
    """Keep a received message hidden longer."""
    request = parse(ExtendRequest, {"visibility_timeout_seconds": visibility_timeout_seconds})
    await orch.bus.extend(queue, message_id, request, consumer=None)
    emit(
        {"queue_name": queue, "message_id": message_id, "status": "extended"},
        as_json=as_json,
        human=lambda: click.echo(
            f"message {message_id} of {queue} hidden for {visibility_timeout_seconds}s"
        ),
    )


# --------------------------------------------------------------------------- dlq


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: inspect, redrive to their queue, purge."""


@dlq_group.command("list")
@json_option
@run_with_orch
async def list_dead_letter_queues(orch: Orch, as_json: bool) -> None:
    """Queues with a dead-letter queue, and how many dead letters each holds."""
    queues = [q for q in await orch.bus.list_queues(include_inactive=True) if q.dlq_enabled]
    metrics = await orch.bus.all_metrics()
    rows = [
        {
            "queue_name": q.queue_name,
            "dead_letter_queue": q.dead_letter_queue,
            "dead_letters": m.failed_messages if (m := metrics.get(q.queue_name)) else None,
            "dlq_max_retries": q.dlq_max_retries,
            "is_active": q.is_active,
        }
        for q in queues
    ]
    emit(
        rows,
        as_json=as_json,
        human=lambda: table(
            ["QUEUE", "DEAD-LETTER QUEUE", "DEAD LETTERS", "AFTER RETRIES"],
            [
                (
                    r["queue_name"],
                    r["dead_letter_queue"],
                    "-" if r["dead_letters"] is None else r["dead_letters"],
                    r["dlq_max_retries"],
                )
                for r in rows
            ],
        ),
    )


@dlq_group.command("show")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--payload", "with_payload", is_flag=True, help="Print each payload too.")
@json_option
@run_with_orch
async def show_dead_letters(
    orch: Orch, queue: str, limit: int, with_payload: bool, as_json: bool
) -> None:
    """The dead letters of QUEUE: their error, attempts and (with --payload) payload."""
    found = await orch.bus.dead_letters(queue, limit=limit)

    def human() -> None:
        if not with_payload:
            table(
                ["ID", "ORIGINAL ID", "TYPE", "ATTEMPTS", "DEAD-LETTERED", "ERROR"],
                [
                    (
                        d.message_id,
                        d.original_message_id,
                        d.message_type,
                        d.attempts,
                        age(d.dead_lettered_at, orch.clock),
                        (d.last_error or "")[:60],
                    )
                    for d in found
                ],
            )
            return
        if not found:
            click.echo("(none)")
        for d in found:
            click.echo(
                f"{d.message_id} (was {d.original_queue} #{d.original_message_id}) "
                f"{d.message_type}, {d.attempts} attempt(s), "
                f"dead-lettered {age(d.dead_lettered_at, orch.clock)}"
            )
            click.echo(f"  error:   {d.last_error or '-'}")
            click.echo(f"  payload: {json.dumps(d.message_payload, default=str)}")

    emit(found, as_json=as_json, human=human)


@dlq_group.command("redrive")
@click.argument("queue")
@click.option(
    "--id", "message_ids", multiple=True, metavar="ID", help="Only this dead letter (repeat)."
)
@_reason_option("they are redriven")
@yes_option
@json_option
@run_with_orch
async def redrive(
    orch: Orch, queue: str, message_ids: tuple[str, ...], reason: str, yes: bool, as_json: bool
) -> None:
    """Send QUEUE's dead letters (all, or --id ones) back to it, retry count reset."""
    request = parse(RedriveRequest, {"message_ids": list(message_ids) or None, "reason": reason})
    await orch.bus.get_queue(queue)
    count = len(message_ids) if message_ids else (await orch.bus.metrics(queue)).failed_messages
    if count == 0:
        nothing = DeadLetterActionResponse(queue_name=queue, affected=0, message_ids=[])
        emit(nothing, as_json=as_json, human=lambda: click.echo(f"{queue} has no dead letters"))
        return
    confirm_destructive(f"Redrive {count} dead letter(s) back to queue {queue}?", yes=yes)
    _action_done(await orch.bus.redrive(queue, request, actor=local_operator()), "redrove", as_json)


@dlq_group.command("purge")
@click.argument("queue")
@_reason_option("they are purged")
@yes_option
@json_option
@run_with_orch
async def purge_dead_letters(orch: Orch, queue: str, reason: str, yes: bool, as_json: bool) -> None:
    """Delete every dead letter of QUEUE for good."""
    request = parse(PurgeRequest, {"reason": reason})
    await orch.bus.get_queue(queue)
    count = (await orch.bus.metrics(queue)).failed_messages
    confirm_destructive(
        f"Purge {count} dead letter(s) of queue {queue}? They cannot be redriven after.",
        yes=yes,
    )
    result = await orch.bus.purge_dead_letters(queue, request, actor=local_operator())
    _action_done(result, "purged", as_json)
