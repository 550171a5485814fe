"""One attempt of a step (or of its compensation) through the guarded call path.

Every attempt ends in an :class:`Outcome`, whatever happens: an answer, a refusal, no
answer, an answer PostgreSQL could not store, or an exception nobody expected. An
exception escaping here would leave the workflow claimed until its lease expired and
then call the service again, round after round.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from orchcore.callpath.refusals import CallDenied
from orchcore.callpath.results import CallFailed
from orchcore.clock import Clock
from orchcore.errors import NoHealthyInstanceError, NotFoundError, OrchError
from orchcore.resilience.breakers import BreakerOpenError
from orchcore.resilience.ratelimit import RateLimitedError
from orchcore.resilience.retry import RetryPolicy, retry_after_seconds
from orchcore.saga.models import CompensationAction
from orchcore.saga.paths import PathError, apply_output, build_request, read, render, write
from orchcore.saga.state import StepState, WorkflowState
from orchcore.saga.status import StepStatus
from orchcore.storable import Unstorable, check_storable, loads_strict, storable_text
from orchcore.tracing.sagaspans import COMPENSATE, FORWARD, step_traceparent

if TYPE_CHECKING:
    # Not at run time: the operator's actions import this module, and a CLI verb that
    # only reads workflows should not pay for the call path and httpx.
    import httpx

    from orchcore.callpath.caller import ServiceCaller

log = logging.getLogger("orch.saga")

ONE_ATTEMPT = RetryPolicy.single_attempt()
#: Sent with every compensation: the idempotency key of the forward request it undoes.
COMPENSATES_HEADER = "X-Orch-Compensates"
_UNKNOWN = object()
#: The largest answer a step keeps: it is stored with the step and mapped into the
#: context, which every later step of the workflow carries.
MAX_OUTPUT_BYTES = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Outcome:
    ok: bool
    #: worth another attempt later
    transient: bool
    request: Any
    output: Any = None
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    instance_id: str | None = None
    duration_ms: float = 0.0
    #: the request may have reached the service without its answer coming back
    outcome_unknown: bool = False


def idempotency_key(workflow: WorkflowState, step: StepState, direction: str) -> str:
    """The same on every attempt of a generation, before and after a crash.

    Participants dedupe on it. An operator's retry of a failed step starts a new
    generation (``…:forward:2``), so a service that stored its refusal does not replay it.
    """
    base = f"{workflow.id}:{step.name}:{direction}"
    return base if step.generation <= 1 else f"{base}:{step.generation}"


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
        _Request(
            service=definition.service_name,
            endpoint=endpoint,
            method=definition.method,
            body=body,
            key=idempotency_key(workflow, step, "forward"),
            timeout=definition.timeout_seconds,
            traceparent=step_traceparent(workflow, step, FORWARD),
            attempt=step.retry_count + 1,
        ),
    )
    if outcome.ok and definition.output_mapping:
        try:
            apply_output(definition.output_mapping, outcome.output, {})
        except PathError as exc:
            why = f"output_mapping: {exc}"
            if isinstance(outcome.output, dict) and "not_json" in outcome.output:
                why += f" (the answer is not JSON: {outcome.output['not_json']})"
            return _permanent(body, why, outcome)
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
        if step.status == StepStatus.UNCERTAIN:
            # No answer came, so what the answer would have filled in is missing: send
            # what is known; the service finds the request to undo by its key (below).
            body = _known_fields(action.input_mapping, scope)
        else:
            body = build_request(action.input_mapping, scope)
    except PathError as exc:
        return _permanent(None, f"compensation input_mapping: {exc}")
    return await _call(
        caller,
        clock,
        workflow,
        _Request(
            service=action.service_name,
            endpoint=endpoint,
            method=action.method,
            body=body,
            key=idempotency_key(workflow, step, "compensate"),
            timeout=action.timeout_seconds,
            # Which request this undoes: a service that keeps requests by their key can
            # undo one whose answer never reached orch.
            headers={COMPENSATES_HEADER: idempotency_key(workflow, step, "forward")},
            traceparent=step_traceparent(workflow, step, COMPENSATE),
            attempt=max(step.compensation_attempts, 1),  # counted when it started
        ),
    )


def _known_fields(mapping: dict[str, str], scope: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field, path in mapping.items():
        value = read(scope, path, _UNKNOWN)
        if value is not _UNKNOWN:
            write(body, field, value)
    return body


@dataclass(frozen=True, slots=True)
class _Request:
    service: str
    endpoint: str
    method: str
    body: dict[str, Any]
    key: str
    timeout: float
    headers: dict[str, str] | None = None
    #: the step's span as the call's parent
    traceparent: str | None = None
    #: which attempt of the step (or of its compensation) this call is
    attempt: int = 1


async def _call(
    caller: ServiceCaller, clock: Clock, workflow: WorkflowState, request: _Request
) -> Outcome:
    started = time.perf_counter()
    try:
        outcome = await _attempt(caller, clock, workflow, request)
    except Exception as exc:  # never leave the workflow to the lease: say what happened
        outcome = _unexpected(request, exc)
    return replace(outcome, duration_ms=(time.perf_counter() - started) * 1000)


async def _attempt(
    caller: ServiceCaller, clock: Clock, workflow: WorkflowState, request: _Request
) -> Outcome:
    body = request.body
    try:
        result = await caller.call(
            workflow.initiating_service,
            request.service,
            request.endpoint,
            method=request.method,
            json=body if request.method != "GET" else None,
            idempotency_key=request.key,
            headers=request.headers,
            correlation_id=workflow.correlation_id,
            traceparent=request.traceparent,
            timeout=request.timeout,
            retry=ONE_ATTEMPT,
            first_attempt=request.attempt,
        )
    except BreakerOpenError as exc:
        wait = None
        if exc.next_attempt_at is not None:
            wait = max(0.0, (exc.next_attempt_at - clock.now()).total_seconds())
        return Outcome(ok=False, transient=True, request=body, error=str(exc), retry_after=wait)
    except RateLimitedError as exc:
        return Outcome(
            ok=False,
            transient=True,
            request=body,
            status_code=429,
            error=str(exc),
            retry_after=exc.retry_after,
        )
    except CallFailed as exc:
        return Outcome(
            ok=False,
            transient=True,
            request=body,
            error=storable_text(str(exc)),
            outcome_unknown=exc.outcome_unknown,
        )
    except (NoHealthyInstanceError, NotFoundError) as exc:  # NotFound: not registered (yet)
        return Outcome(ok=False, transient=True, request=body, error=str(exc))
    except CallDenied as exc:
        return Outcome(ok=False, transient=False, request=body, status_code=403, error=str(exc))
    except OrchError as exc:  # refused before sending, for a reason the same call meets again
        return Outcome(
            ok=False,
            transient=False,
            request=body,
            status_code=exc.http_status,
            error=storable_text(str(exc)),
        )
    return _answer(body, result.status_code, result.content, result.headers, result.instance_id)


def _answer(
    body: dict[str, Any], status: int, content: bytes, headers: httpx.Headers, instance: str
) -> Outcome:
    """What the service answered, made storable or refused as a permanent failure."""
    ok = 200 <= status < 300
    if len(content) > MAX_OUTPUT_BYTES:
        error = f"the answer is {len(content):,} bytes; a step keeps at most {MAX_OUTPUT_BYTES:,}"
        return Outcome(
            ok=False, transient=False, request=body, status_code=status, error=error,
            instance_id=instance,
        )  # fmt: skip
    output = _parse_body(content)
    try:
        check_storable(output, "output")
    except Unstorable as exc:
        return Outcome(
            ok=False,
            transient=False,
            request=body,
            status_code=status,
            error=f"the answer cannot be stored: {exc}",
            instance_id=instance,
        )
    if ok:
        return Outcome(
            ok=True, transient=False, request=body, output=output, status_code=status,
            instance_id=instance,
        )  # fmt: skip
    transient = status == 429 or status >= 500
    retry_after = retry_after_seconds(headers.get("retry-after")) if transient else None
    return Outcome(
        ok=False,
        transient=transient,
        request=body,
        output=output,
        status_code=status,
        error=f"HTTP {status}: {_reason(output, content)}",
        retry_after=retry_after,
        instance_id=instance,
    )


def _parse_body(content: bytes) -> Any:
    if not content:
        return None
    try:
        return loads_strict(content)
    except ValueError as exc:  # not JSON (or NaN in it): keep the start of it as text
        return {
            "body": storable_text(content[:2000].decode(errors="replace")),
            "not_json": storable_text(str(exc)[:200]),
        }


def _reason(output: Any, content: bytes) -> str:
    if isinstance(output, dict):
        for key in ("detail", "error", "message", "reason"):
            if key in output:
                return storable_text(str(output[key])[:300])
    return storable_text(content[:300].decode(errors="replace"))


def _recurring(exc: Exception) -> bool:
    """Whether ``exc`` says the request itself is malformed: the same inputs fail again."""
    import httpx  # here, not at the top: see the TYPE_CHECKING imports

    return isinstance(
        exc, httpx.InvalidURL | httpx.UnsupportedProtocol | UnicodeError | ValueError | TypeError
    )


def _unexpected(request: _Request, exc: Exception) -> Outcome:
    """An exception the call path did not turn into an answer or an OrchError."""
    recurring = _recurring(exc)
    if not recurring:
        log.warning(
            "unexpected %s calling %s %s: %s",
            type(exc).__name__,
            request.service,
            request.endpoint,
            exc,
            exc_info=exc,
        )
    error = storable_text(f"{type(exc).__name__}: {exc}"[:500])
    # A malformed request fails before anything is sent. Anything else may have struck
    # after the request went out: its effect is unknown, and compensation includes it.
    return Outcome(
        ok=False,
        transient=not recurring,
        request=request.body,
        error=error,
        outcome_unknown=not recurring,
    )


def _permanent(request: Any, error: str, base: Outcome | None = None) -> Outcome:
    if base is None:
        return Outcome(ok=False, transient=False, request=request, error=error)
    return replace(base, ok=False, transient=False, request=request, error=error)
