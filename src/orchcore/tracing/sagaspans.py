"""A workflow's spans, derived from what its commits recorded.

The workflow is the trace's root span, each step a child of it, each compensation a
child of it too; a step's calls are children of the step (the call path records them,
one span an attempt), and what a participant records under the traceparent it received
joins below. Operator actions are zero-length spans under the root.

Ids are derived, not stored: the root's from the workflow id, a step's from the workflow,
the step, the direction and the generation. Every daemon that drives the workflow names
them alike, so a call made after a crash and a takeover still hangs under its step.

A span is made from events once they are committed (the timeline is the record: a span
is never ahead of it), and buffered by the recorder, never written in the commit.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from orchcore.callpath.tracecontext import TraceContext
from orchcore.saga.state import Event, StepState, WorkflowState
from orchcore.saga.status import StepStatus, WorkflowEvent
from orchcore.tracing.spans import Span, SpanEvent

FORWARD, COMPENSATE = "forward", "compensate"

#: Events that end a step's forward run.
_STEP_ENDS = frozenset(
    {
        WorkflowEvent.ATTEMPT_SUCCEEDED,
        WorkflowEvent.STEP_FAILED,
        WorkflowEvent.STEP_UNCERTAIN,
        WorkflowEvent.DECISION,
        WorkflowEvent.DELAY_FINISHED,
        WorkflowEvent.PARALLEL_COMPLETED,
        WorkflowEvent.STEP_SKIPPED,
    }
)
_COMPENSATION_ENDS = frozenset(
    {
        WorkflowEvent.COMPENSATION_SUCCEEDED,
        WorkflowEvent.COMPENSATION_FAILED,
        WorkflowEvent.COMPENSATION_MARKED_DONE,
    }
)
_WORKFLOW_ENDS = {
    WorkflowEvent.COMPLETED: "unset",
    WorkflowEvent.COMPENSATED: "error",
    WorkflowEvent.FAILED: "error",
}
_OPERATOR = frozenset(
    {
        WorkflowEvent.PAUSED,
        WorkflowEvent.RESUMED,
        WorkflowEvent.CANCELLED,
        WorkflowEvent.COMPENSATION_REQUESTED,
        WorkflowEvent.RETRY_REQUESTED,
        WorkflowEvent.STEP_SKIPPED,
        WorkflowEvent.COMPENSATION_RETRY_REQUESTED,
        WorkflowEvent.COMPENSATION_MARKED_DONE,
        WorkflowEvent.ACTION_REFUSED,
    }
)
_RETRIES = frozenset({WorkflowEvent.RETRY_SCHEDULED, WorkflowEvent.COMPENSATION_RETRY_SCHEDULED})


def _derived_id(*parts: object) -> str:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def workflow_span_id(workflow_id: UUID) -> str:
    return _derived_id("workflow", workflow_id)


def step_span_id(workflow_id: UUID, step_name: str, direction: str, generation: int = 1) -> str:
    return _derived_id("step", workflow_id, step_name, direction, generation)


def publish_span_id(workflow_id: UUID, step_name: str | None, generation: int, index: int) -> str:
    """The span of the index-th message a step (None: the workflow's end) publishes."""
    return _derived_id("publish", workflow_id, step_name or "", generation, index)


def step_traceparent(workflow: WorkflowState, step: StepState, direction: str) -> str | None:
    """The traceparent a step's call carries: the step's span as the parent."""
    if not workflow.trace_id:
        return None
    return TraceContext(
        workflow.trace_id,
        step_span_id(workflow.id, step.name, direction, step.generation),
        sampled=workflow.trace_sampled,
    ).traceparent


#: Steps whose retries (or compensation start) a process remembers at once.
MEMORY = 10_000


class SagaSpans:
    """A process's span maker for the workflows it drives: fed each commit's events, it
    returns the spans they end. What a step's span gathers over several commits (its
    scheduled retries, when its compensation started) is remembered here, across the
    drives of one process; a step finished by another daemon after a takeover ends
    without the events this one saw (its attempts' spans still show every try)."""

    def __init__(self) -> None:
        #: retries scheduled per (workflow, step, direction), for the step's span
        self._retries: OrderedDict[tuple[UUID, str, str], list[SpanEvent]] = OrderedDict()
        #: when a compensation was first seen starting, per (workflow, step)
        self._compensating_since: OrderedDict[tuple[UUID, str], datetime] = OrderedDict()

    def committed(self, state: WorkflowState, events: Iterable[Event]) -> list[Span]:
        if not state.trace_id:
            return []
        spans: list[Span] = []
        for event in events:
            spans.extend(self._spans_of(state, event))
        return spans

    def _spans_of(self, state: WorkflowState, event: Event) -> list[Span]:
        kind, step = event.event, state.steps.get(event.step_name or "")
        spans: list[Span] = []
        if kind in _RETRIES and step is not None:
            compensating = kind is WorkflowEvent.COMPENSATION_RETRY_SCHEDULED
            direction = COMPENSATE if compensating else FORWARD
            key = (state.id, step.name, direction)
            self._retries.setdefault(key, []).append(
                SpanEvent("retry scheduled", event.occurred_at, _attributes(event.details))
            )
            _bound(self._retries)
        if kind is WorkflowEvent.COMPENSATION_ATTEMPT_STARTED and step is not None:
            self._compensating_since.setdefault((state.id, step.name), event.occurred_at)
            _bound(self._compensating_since)
        if kind in _STEP_ENDS and step is not None and _forward_ended(step, kind):
            spans.append(self._step_span(state, step, event))
        if kind in _COMPENSATION_ENDS and step is not None:
            spans.append(self._compensation_span(state, step, event))
        if kind is WorkflowEvent.MESSAGES_PUBLISHED:
            spans.extend(_publish_spans(state, step, event))
        if kind in _OPERATOR:
            spans.append(_operator_span(state, event))
        if kind in _WORKFLOW_ENDS:
            spans.append(_workflow_span(state, event, _WORKFLOW_ENDS[kind]))
        return spans

    def _step_span(self, state: WorkflowState, step: StepState, event: Event) -> Span:
        failed = step.status in (StepStatus.FAILED, StepStatus.UNCERTAIN)
        definition = step.definition
        tags: dict[str, Any] = {
            "orch.workflow.id": str(state.id),
            "orch.workflow.name": state.name,
            "orch.correlation_id": state.correlation_id,
            "orch.step.name": step.name,
            "orch.step.type": getattr(definition, "type", "service_call"),
            "orch.step.status": str(step.status),
            "orch.step.retries": step.retry_count,
        }
        if step.generation > 1:
            tags["orch.step.generation"] = step.generation
        endpoint = getattr(definition, "endpoint", None)
        if endpoint:
            tags["orch.step.endpoint"] = endpoint
        return Span(
            trace_id=state.trace_id or "",
            span_id=step_span_id(state.id, step.name, FORWARD, step.generation),
            parent_span_id=workflow_span_id(state.id),
            operation_name=f"step {step.name}",
            service_name=getattr(definition, "service_name", None) or state.initiating_service,
            start_time=step.started_at or event.occurred_at,
            end_time=event.occurred_at,
            status_code="error" if failed else "unset",
            status_message=step.error_message if failed else None,
            tags=tags,
            events=self._retries.pop((state.id, step.name, FORWARD), []),
        )

    def _compensation_span(self, state: WorkflowState, step: StepState, event: Event) -> Span:
        failed = event.event is WorkflowEvent.COMPENSATION_FAILED
        action = getattr(step.definition, "compensation_action", None)
        started = self._compensating_since.pop((state.id, step.name), event.occurred_at)
        return Span(
            trace_id=state.trace_id or "",
            span_id=step_span_id(state.id, step.name, COMPENSATE, step.generation),
            parent_span_id=workflow_span_id(state.id),
            operation_name=f"compensate {step.name}",
            service_name=getattr(action, "service_name", None) or state.initiating_service,
            start_time=min(started, event.occurred_at),
            end_time=event.occurred_at,
            status_code="error" if failed else "unset",
            status_message=step.compensation_error if failed else None,
            tags={
                "orch.workflow.id": str(state.id),
                "orch.step.name": step.name,
                "orch.compensation.attempts": step.compensation_attempts,
                "orch.compensation.outcome": str(event.event),
                "orch.actor": event.actor,
            },
            events=self._retries.pop((state.id, step.name, COMPENSATE), []),
        )


def _bound(memory: OrderedDict[Any, Any]) -> None:
    while len(memory) > MEMORY:
        memory.popitem(last=False)


def _forward_ended(step: StepState, kind: WorkflowEvent) -> bool:
    # An attempt that succeeded ends the step only when it completed it (a publish that
    # the bus refused after the call fails the step later, under STEP_FAILED).
    if kind is WorkflowEvent.ATTEMPT_SUCCEEDED:
        return step.status is StepStatus.COMPLETED
    return True


def _publish_spans(state: WorkflowState, step: StepState | None, event: Event) -> list[Span]:
    """One producer span a message the commit published, under its step (or the root);
    the message carries it as its traceparent, so its delivery hangs below it."""
    parent = (
        step_span_id(state.id, step.name, FORWARD, step.generation)
        if step is not None
        else workflow_span_id(state.id)
    )
    messages = event.details.get("messages") or []
    spans = []
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        queue = str(message.get("queue", "")) if isinstance(message, dict) else ""
        spans.append(
            Span(
                trace_id=state.trace_id or "",
                span_id=publish_span_id(
                    state.id, step.name if step else None, step.generation if step else 0, index
                ),
                parent_span_id=parent,
                operation_name=f"publish {queue}",
                service_name=state.initiating_service,
                start_time=event.occurred_at,
                end_time=event.occurred_at,
                span_kind="producer",
                tags={
                    "messaging.system": "pgmq",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": queue,
                    "orch.message.type": str(message.get("type", ""))
                    if isinstance(message, dict)
                    else "",
                    "orch.workflow.id": str(state.id),
                },
            )
        )
    return spans


def _workflow_span(state: WorkflowState, event: Event, status: str) -> Span:
    tags: dict[str, Any] = {
        "orch.workflow.id": str(state.id),
        "orch.workflow.name": state.name,
        "orch.workflow.version": state.version,
        "orch.workflow.status": str(state.status),
        "orch.correlation_id": state.correlation_id,
    }
    error = (state.error_details or {}).get("error") if status == "error" else None
    return Span(
        trace_id=state.trace_id or "",
        span_id=workflow_span_id(state.id),
        parent_span_id=state.trace_parent_span_id,
        operation_name=f"workflow {state.name}",
        service_name=state.initiating_service,
        start_time=state.started_at,
        end_time=event.occurred_at,
        span_kind="server" if state.trace_parent_span_id else "internal",
        status_code="error" if status == "error" else "unset",
        status_message=str(error) if error else None,
        tags=tags,
    )


def _operator_span(state: WorkflowState, event: Event) -> Span:
    return Span(
        trace_id=state.trace_id or "",
        span_id=_derived_id("operator", state.id, event.event, event.occurred_at, event.actor),
        parent_span_id=workflow_span_id(state.id),
        operation_name=f"operator {event.event}",
        service_name="orch",
        start_time=event.occurred_at,
        end_time=event.occurred_at,
        tags={
            "orch.actor": event.actor,
            "orch.workflow.id": str(state.id),
            **({"orch.step.name": event.step_name} if event.step_name else {}),
            **_attributes(event.details, prefix="orch.action."),
        },
    )


def _attributes(details: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Event details as span attributes: scalars kept, anything else as its text."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        if value is None:
            continue
        out[prefix + key] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


def lease_lost_span(state: WorkflowState, at: datetime, owner: str) -> Span:
    """A daemon found its lease of the workflow gone (another daemon drives it now): a
    zero-length span under the root, with the event, so a gap in the trace is explained."""
    return Span(
        trace_id=state.trace_id or "",
        span_id=_derived_id("lease-lost", state.id, owner, at),
        parent_span_id=workflow_span_id(state.id),
        operation_name="lease lost",
        service_name="orch",
        start_time=at,
        end_time=at,
        tags={"orch.workflow.id": str(state.id), "orch.daemon": owner},
        events=[SpanEvent("lease lost", at, {"orch.daemon": owner})],
    )
