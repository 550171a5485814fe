"""One attempt of a step (or of its compensation) through the guarded call path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from orchcore.callpath import CallDenied, CallFailed, ServiceCaller
from orchcore.callpath.tracecontext import TraceContext
from orchcore.clock import Clock
from orchcore.errors import NoHealthyInstanceError, NotFoundError
from orchcore.resilience.breakers import BreakerOpenError
from orchcore.resilience.ratelimit import RateLimitedError
from orchcore.resilience.retry import RetryPolicy, retry_after_seconds
from orchcore.saga.models import CompensationAction
from orchcore.saga.paths import PathError, apply_output, build_request, render
from orchcore.saga.state import StepState, WorkflowState

ONE_ATTEMPT = RetryPolicy.single_attempt()


@dataclass(frozen=True)
class Outcome:
    ok: bool
    transient: bool  # worth another attempt later
    request: Any
    output: Any
    status_code: int | None
    error: str | None
    retry_after: float | None
    instance_id: str | None
    duration_ms: float


def idempotency_key(workflow: WorkflowState, step: StepState, direction: str) -> str:
    """The same on every attempt, before and after a crash: participants dedupe on it."""
    return f"{workflow.id}:{step.name}:{direction}"


def _traceparent(workflow: WorkflowState) -> str | None:
    if not workflow.trace_id:
        return None
    return TraceContext(workflow.trace_id, "0" * 15 + "1").child().traceparent


async def call_forward(
    caller: ServiceCaller, clock: Clock, workflow: WorkflowState, step: StepState
) -> Outcome:
    definition = step.definition
    assert definition.service_name is not None and definition.endpoint is not None
    try:
        endpoint = render(definition.endpoint, workflow.context)
        body = build_request(definition.input_mapping, workflow.context)
    except PathError as exc:
        return _permanent(None, f"input_mapping: {exc}")
    outcome = await _call(
        caller,
        clock,
        workflow,
        definition.service_name,
        endpoint,
        definition.method,
        body,
        idempotency_key(workflow, step, "forward"),
        definition.timeout_seconds,
    )
    if outcome.ok and definition.output_mapping:
        try:
            apply_output(definition.output_mapping, outcome.output, {})
        except PathError as exc:
            return _permanent(body, f"output_mapping: {exc}", outcome)
    return outcome


async def call_compensation(
    caller: ServiceCaller, clock: Clock, workflow: WorkflowState, step: StepState
) -> Outcome:
    action = getattr(step.definition, "compensation_action", None)
    assert isinstance(action, CompensationAction)
    # A compensation reads the context, plus the step's own request and answer.
    scope = {**workflow.context, "input": step.input_data or {}, "output": step.output_data or {}}
    try:
        endpoint = render(action.endpoint, scope)
        body = build_request(action.input_mapping, scope)
    except PathError as exc:
        return _permanent(None, f"compensation input_mapping: {exc}")
    return await _call(
        caller,
        clock,
        workflow,
        action.service_name,
        endpoint,
        action.method,
        body,
        idempotency_key(workflow, step, "compensate"),
        action.timeout_seconds,
    )


async def _call(
    caller: ServiceCaller,
    clock: Clock,
    workflow: WorkflowState,
    service: str,
    endpoint: str,
    method: str,
    body: dict[str, Any],
    key: str,
    timeout: float,
) -> Outcome:
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    try:
        result = await caller.call(
            workflow.initiating_service,
            service,
            endpoint,
            method=method,
            json=body if method != "GET" else None,
            idempotency_key=key,
            correlation_id=workflow.correlation_id,
            traceparent=_traceparent(workflow),
            timeout=timeout,
            retry=ONE_ATTEMPT,
        )
    except BreakerOpenError as exc:
        wait = None
        if exc.next_attempt_at is not None:
            wait = max(0.0, (exc.next_attempt_at - clock.now()).total_seconds())
        return Outcome(False, True, body, None, None, str(exc), wait, None, elapsed())
    except RateLimitedError as exc:
        return Outcome(False, True, body, None, 429, str(exc), exc.retry_after, None, elapsed())
    except (NoHealthyInstanceError, CallFailed) as exc:
        return Outcome(False, True, body, None, None, str(exc), None, None, elapsed())
    except NotFoundError as exc:  # the service is not registered (yet)
        return Outcome(False, True, body, None, None, str(exc), None, None, elapsed())
    except CallDenied as exc:
        return Outcome(False, False, body, None, 403, str(exc), None, None, elapsed())
    status = result.status_code
    try:
        output = result.json()
    except ValueError:
        output = {"body": result.text[:2000]}
    if result.ok:
        return Outcome(True, False, body, output, status, None, None, result.instance_id, elapsed())
    reason = _reason(output, result.text)
    transient = status == 429 or status >= 500
    retry_after = retry_after_seconds(result.headers.get("retry-after")) if transient else None
    return Outcome(
        False,
        transient,
        body,
        output,
        status,
        f"HTTP {status}: {reason}",
        retry_after,
        result.instance_id,
        elapsed(),
    )


def _reason(output: Any, text: str) -> str:
    if isinstance(output, dict):
        for key in ("detail", "error", "message", "reason"):
            if key in output:
                return str(output[key])[:300]
    return text[:300]


def _permanent(request: Any, error: str, base: Outcome | None = None) -> Outcome:
    return Outcome(
        False,
        False,
        request,
        base.output if base else None,
        base.status_code if base else None,
        error,
        None,
        base.instance_id if base else None,
        base.duration_ms if base else 0.0,
    )
