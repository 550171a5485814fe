"""The saga outbox: messages a workflow publishes, committed with what publishes them.

A ``publish`` step, a ``service_call`` step's ``publish`` (on success) and a definition's
``publish_on_completed`` / ``publish_on_compensated`` name messages as
:class:`~orchcore.saga.models.PublishMessage`. Before the pure transition that records
the step (or the end), the drive builds each payload from the context and has the bus
check and encode it (:meth:`MessageBus.prepare_send`: the queue exists and is active,
the workflow's initiating service may produce to it, the payload fits). The encoded
messages ride in the state's outbox and the commit statement sends them
(``commit_progress`` in queries.sql): no commit, no message; a message refused here
fails the step, as an answer its output mapping cannot read does.

The producer is the workflow's initiating service (one of orch's own identities
produces as an operator would); the correlation id is the workflow's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from orchcore.bus.models import QueueType
from orchcore.callpath.identity import ORCH_IDENTITIES
from orchcore.callpath.tracecontext import TraceContext
from orchcore.db.failures import UNREACHABLE
from orchcore.errors import OrchError
from orchcore.saga.execution import Outcome
from orchcore.saga.models import PublishMessage
from orchcore.saga.paths import PathError, apply_output, build_request
from orchcore.saga.state import OutboxMessage, StepState, WorkflowState
from orchcore.storable import storable_text
from orchcore.tracing.sagaspans import publish_span_id


class Preparer(Protocol):
    """What the outbox needs of the bus (:class:`orchcore.bus.MessageBus` has it)."""

    async def prepare_send(
        self,
        queue_name: str,
        messages: list[Any],
        *,
        producer: str | None,
        actor: str,
    ) -> Any: ...


class PublishRefused(Exception):
    """A message cannot be published: which one and why (``transient``: try again)."""

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


@dataclass(frozen=True)
class Prepared:
    """The messages ready for the commit, with the payloads they carry (for the step's
    input, so the console shows what went out)."""

    messages: list[OutboxMessage]
    payloads: list[dict[str, Any]]


def producer_of(state: WorkflowState) -> str | None:
    service = state.initiating_service
    return None if service in ORCH_IDENTITIES else service


def payloads(publish: Sequence[PublishMessage], scope: Any) -> list[dict[str, Any]]:
    """Each message's payload from ``scope``; PublishRefused names a missing path."""
    built = []
    for index, item in enumerate(publish):
        try:
            built.append(build_request(item.payload_mapping, scope))
        except PathError as exc:
            raise PublishRefused(f"publish.{index} ({item.message_type}): {exc}") from None
    return built


def _with_trace(
    state: WorkflowState, step_name: str | None, headers: dict[str, str] | None, index: int
) -> dict[str, str] | None:
    """The message's headers with the traceparent of its publish span (a child of the
    publishing step, or of the workflow for the end's messages), so its delivery joins
    the workflow's trace; a traceparent the definition sets itself is kept."""
    if not state.trace_id or any(k.lower() == "traceparent" for k in headers or {}):
        return headers
    step = state.steps.get(step_name) if step_name else None
    span_id = publish_span_id(
        state.id, step.name if step else None, step.generation if step else 0, index
    )
    parent = TraceContext(state.trace_id, span_id, sampled=state.trace_sampled).traceparent
    return {**(headers or {}), "traceparent": parent}


async def prepare(
    bus: Preparer,
    state: WorkflowState,
    step_name: str | None,
    publish: Sequence[PublishMessage],
    scope: Any,
    *,
    actor: str,
) -> Prepared:
    """Build, check and encode ``publish`` against the bus; PublishRefused says why not
    (the database's errors pass through: they say nothing of the messages)."""
    bodies = payloads(publish, scope)
    producer = producer_of(state)
    messages = []
    for index, (item, payload) in enumerate(zip(publish, bodies, strict=True)):
        request = {
            "queue_name": item.queue_name,
            "message_type": item.message_type,
            "message_payload": payload,
            "correlation_id": state.correlation_id,
            "headers": _with_trace(state, step_name, item.headers, index),
            "delay_seconds": item.delay_seconds,
            "ttl_seconds": item.ttl_seconds,
        }
        where = f"publish.{index} to {item.queue_name!r}"
        try:
            ready = await bus.prepare_send(
                item.queue_name, [request], producer=producer, actor=actor
            )
        except OrchError as exc:
            raise PublishRefused(storable_text(f"{where}: {exc}")) from None
        encoded = ready.messages[0]
        messages.append(
            OutboxMessage(
                step_name=step_name,
                queue_name=item.queue_name,
                topic=ready.queue.queue_type is QueueType.TOPIC,
                message_type=encoded.message_type,
                message=encoded.message,
                headers=encoded.headers,
                ttl_seconds=encoded.ttl_seconds,
                delay_seconds=encoded.delay_seconds,
                correlation_id=encoded.correlation_id,
                producer=encoded.producer,
                size_bytes=encoded.size,
            )
        )
    return Prepared(messages, bodies)


async def on_success(
    bus: Preparer, state: WorkflowState, step: StepState, outcome: Outcome, *, actor: str
) -> tuple[Outcome, list[OutboxMessage]]:
    """A service_call step's messages, from the context as its answer leaves it; a
    refusal turns the success into the step's failure (transient ones are retried)."""
    publish = getattr(step.definition, "publish", None)
    if not outcome.ok or not publish:
        return outcome, []
    scope = copy.deepcopy(state.context)
    try:
        apply_output(step.definition.output_mapping, outcome.output, scope)
        ready = await prepare(bus, state, step.name, publish, scope, actor=actor)
    except PathError as exc:  # the call path checked this already; kept for safety
        return replace(outcome, ok=False, transient=False, error=f"output_mapping: {exc}"), []
    except PublishRefused as exc:
        return _undone(outcome, str(exc), transient=exc.transient), []
    except UNREACHABLE as exc:
        return _undone(outcome, f"publish: the queues could not be read ({exc})"), []
    return outcome, ready.messages


def _undone(outcome: Outcome, error: str, *, transient: bool = True) -> Outcome:
    """The call succeeded but the step cannot be recorded so: its effect exists, so the
    step is marked as one that may have taken effect, and compensation undoes it."""
    return replace(outcome, ok=False, transient=transient, error=error, outcome_unknown=True)


async def for_publish_step(
    bus: Preparer, state: WorkflowState, step: StepState, *, actor: str
) -> tuple[Outcome, list[OutboxMessage]]:
    """A publish step's messages, as the outcome of its one "attempt"."""
    publish = getattr(step.definition, "publish", None) or []
    try:
        ready = await prepare(bus, state, step.name, publish, state.context, actor=actor)
    except PublishRefused as exc:
        return Outcome(ok=False, transient=exc.transient, request=None, error=str(exc)), []
    except UNREACHABLE as exc:
        error = f"publish: the queues could not be read ({exc})"
        return Outcome(ok=False, transient=True, request=None, error=error), []
    output = {"published": [f"{m.message_type} → {m.queue_name}" for m in ready.messages]}
    return Outcome(ok=True, transient=False, request=ready.payloads, output=output), ready.messages


async def at_end(
    bus: Preparer, state: WorkflowState, publish: Sequence[PublishMessage], *, actor: str
) -> tuple[list[OutboxMessage], str | None]:
    """The messages a workflow publishes as it ends, or why they cannot be (the end is
    recorded either way; see :func:`orchcore.saga.forward.publish_at_end`). The
    database's errors pass through: the drive meets them again at its commit."""
    if not publish:
        return [], None
    try:
        ready = await prepare(bus, state, None, publish, state.context, actor=actor)
    except PublishRefused as exc:
        return [], str(exc)
    return ready.messages, None
