"""ServiceCaller: resolve → mesh policies → circuit breaker → HTTP with retries → record.

Every orchestrated call (saga steps, message delivery, ``orch call``) goes through
:meth:`ServiceCaller.call`:

0. the endpoint is put in normal form and the method and headers are checked
   (``endpoints.py``, ``headers.py``), so authorization, breakers and the service all
   see one path; the source must be a registered service or one of orch's own and the
   target a registered service, so made-up names create no breaker, bucket or cache
   entry;
1. the mesh policy in force for (source, target): authorization, rate limit, traffic
   split, balancing, retry, breaker parameters, timeout;
2. per attempt: the circuit breaker admits the call (in process while closed), an
   instance is picked among the healthy ones of the routed version that are not
   ejected, and the request goes out with ``traceparent``, ``X-Correlation-ID`` and
   the idempotency key;
3. the outcome is reported to the breaker and the outlier detector and recorded in
   service_events; a retryable outcome waits (backoff or Retry-After) and tries again.

An HTTP answer is returned whatever its status (the caller decides what a 4xx
means); no answer at all after the last attempt raises :class:`CallFailed`, whose
``outcome_unknown`` says whether the service may have acted on a request anyway.
Refusals raise before anything is sent: :class:`CallDenied` (with
:class:`~orchcore.callpath.refusals.InvalidCallError` and
:class:`~orchcore.callpath.refusals.UnknownCallerError`),
:class:`~orchcore.errors.NotFoundError` for an unknown target,
:class:`~orchcore.resilience.ratelimit.RateLimitedError`,
:class:`~orchcore.resilience.breakers.BreakerOpenError`,
:class:`~orchcore.errors.NoHealthyInstanceError`. A refusal on a retry, after an
attempt was made, ends the call in :class:`CallFailed` instead, so what the earlier
attempts may have done is not lost.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from orchcore.callpath.endpoints import normalize_endpoint
from orchcore.callpath.events import CallEvent, ServiceEventRecorder
from orchcore.callpath.headers import check_header_value, check_method, outbound_headers
from orchcore.callpath.identity import ORCH_IDENTITIES
from orchcore.callpath.refusals import CallDenied, UnknownCallerError
from orchcore.callpath.results import (
    Attempt,
    AttemptOutcome,
    CallFailed,
    CallResult,
    event_type,
    no_answer,
)
from orchcore.callpath.tls import TlsSettings, client_context
from orchcore.callpath.tracecontext import TraceContext
from orchcore.callpath.transport import HttpTransport
from orchcore.clock import Clock
from orchcore.errors import NoHealthyInstanceError, NotFoundError
from orchcore.mesh.effective import EffectivePolicy
from orchcore.mesh.store import MeshPolicies
from orchcore.registry.discovery import ServiceDiscovery
from orchcore.registry.endpoint import Endpoint
from orchcore.resilience.breakers import BreakerOpenError, BreakerSettings, CircuitBreakers
from orchcore.resilience.outliers import OutlierDetector
from orchcore.resilience.ratelimit import RateLimitedError, RateLimiter
from orchcore.resilience.retry import (
    RetryPolicy,
    conditions,
    may_retry,
    outcome_condition,
    retry_after_seconds,
)
from orchcore.tracing.callspans import AttemptFacts, attempt_span
from orchcore.tracing.recorder import SpanRecorder
from orchcore.tracing.spans import SpanEvent

DEFAULT_TIMEOUT = 10.0

__all__ = ["Attempt", "CallDenied", "CallFailed", "CallResult", "ServiceCaller"]


class ServiceCaller:
    def __init__(
        self,
        *,
        discovery: ServiceDiscovery,
        breakers: CircuitBreakers,
        mesh: MeshPolicies,
        rate_limiter: RateLimiter,
        recorder: ServiceEventRecorder,
        clock: Clock,
        spans: SpanRecorder | None = None,
        tls: TlsSettings | None = None,
        rng: random.Random | None = None,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._discovery = discovery
        self._breakers = breakers
        self._mesh = mesh
        self._rate_limiter = rate_limiter
        self._recorder = recorder
        self._spans = spans
        self._clock = clock
        self._rng = rng or random.Random()
        self._default_timeout = default_timeout
        self.outliers = OutlierDetector(clock)
        self._transport = HttpTransport(ssl_context=client_context(tls))
        self._client = _http_client(self._transport)

    @property
    def transport(self) -> HttpTransport:
        """The connections every call goes out on (their figures: ``transport.stats()``)."""
        return self._transport

    async def close(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        source: str,
        target: str,
        endpoint: str,
        *,
        method: str = "POST",
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        retry: RetryPolicy | None = None,
        first_attempt: int = 1,
    ) -> CallResult:
        """Call ``target``'s ``endpoint`` as ``source`` through the mesh's policies.

        ``traceparent`` (and ``tracestate``) put the call in a caller's trace; without
        them it is a trace's root. ``first_attempt``: the number of this call's first
        attempt, for a caller that retries by calling again (a saga step)."""
        # Input first, then names: nothing below may see an endpoint other than the
        # one sent, or make state for a caller or target nobody registered.
        method = check_method(method)
        where = normalize_endpoint(endpoint)
        correlation_id = correlation_id or str(uuid.uuid4())
        outbound = outbound_headers(headers, correlation_id, idempotency_key)
        if tracestate and traceparent:
            outbound["tracestate"] = check_header_value("tracestate", tracestate)
        await self._require_known(source, target)
        policy = await self._mesh.effective(source, target)
        parent = TraceContext.parse(traceparent)
        sampled = policy.tracing.sampling_rate > self._rng.random() if policy.tracing else True
        trace = parent.child() if parent else TraceContext.new(sampled=sampled)
        call = _Call(source, target, where.path, method, trace, correlation_id)

        self._authorize(policy, call)
        await self._limit_rate(policy, call)
        attempts_policy = self._retry_policy(policy, retry, method, idempotency_key)
        request = _Request(
            target=where.target,
            timeout=timeout or _policy_timeout(policy) or self._default_timeout,
            headers=outbound,
            json=json,
            content=content,
            params=params,
        )
        attempts: list[Attempt] = []
        for number in range(first_attempt, first_attempt + attempts_policy.max_attempts):
            # Each attempt is a span of its own, a child of the caller's span (or of
            # this call's root span when the caller sent none).
            span = trace.child() if number > first_attempt or parent is None else trace
            try:
                outcome, instance, facts = await self._attempt(
                    policy, call, request, span, number, attempts
                )
            except (BreakerOpenError, NoHealthyInstanceError) as exc:
                if not attempts:
                    raise  # nothing was sent: the refusal says it all
                attempts.append(Attempt(number, None, None, str(exc), 0.0, span.span_id))
                raise CallFailed(_failure(call, attempts, str(exc)), attempts) from exc
            condition = outcome_condition(outcome.status_code, outcome.error_kind)
            last = number == first_attempt + attempts_policy.max_attempts - 1
            if condition is None or condition not in attempts_policy.retry_on or last:
                self._record_span(facts, span)
                return self._finish(outcome, instance, call, attempts)
            delay = self._delay(attempts_policy, number - first_attempt + 1, outcome)
            facts.events.append(
                SpanEvent("retry scheduled", facts.ended, {"delay_seconds": round(delay, 3)})
            )
            self._record_span(facts, span)
            await self._clock.sleep(delay)
        raise AssertionError("unreachable: the last attempt always returns")

    def _record_span(self, facts: AttemptFacts, span: TraceContext) -> None:
        if self._spans is not None:
            self._spans.finish(attempt_span(facts), sampled=span.sampled)

    # -- steps --------------------------------------------------------------------------

    async def _require_known(self, source: str, target: str) -> None:
        discovery = self._discovery
        if source not in ORCH_IDENTITIES and not await discovery.is_registered(source):
            raise UnknownCallerError(source, ORCH_IDENTITIES)
        if not await discovery.is_registered(target):
            raise NotFoundError("service", target)

    def _authorize(self, policy: EffectivePolicy, call: _Call) -> None:
        verdict = policy.authorize(call.method, call.endpoint)
        if not verdict.allowed:
            self._record_refusal(call, f"denied: {verdict.reason}")
            raise CallDenied(
                f"{call.source} may not call {call.target} {call.method} "
                f"{call.endpoint}: {verdict.reason}"
            )

    async def _limit_rate(self, policy: EffectivePolicy, call: _Call) -> None:
        limit = policy.rate_limiting
        if limit is None:
            return
        try:
            await self._rate_limiter.take(
                call.source, call.target, rate=limit.requests_per_second, burst=limit.burst_size
            )
        except RateLimitedError as exc:
            self._record_refusal(call, str(exc))
            raise

    @staticmethod
    def _retry_policy(
        policy: EffectivePolicy, given: RetryPolicy | None, method: str, key: str | None
    ) -> RetryPolicy:
        if not may_retry(method, key):
            return RetryPolicy.single_attempt()
        if given is not None:
            return given
        configured = policy.retry_policy
        if configured is None:
            return RetryPolicy()
        return RetryPolicy(
            max_attempts=configured.max_attempts,
            initial_delay=configured.initial_delay,
            multiplier=configured.multiplier,
            max_delay=configured.max_delay,
            retry_on=conditions(configured.retry_conditions),
        )

    async def _attempt(
        self,
        policy: EffectivePolicy,
        call: _Call,
        request: _Request,
        span: TraceContext,
        number: int,
        attempts: list[Attempt],
    ) -> tuple[AttemptOutcome, Endpoint, AttemptFacts]:
        breakers = self._breakers
        try:
            permit = breakers.admit_cached(call.source, call.target, call.endpoint)
            if permit is None:
                permit = await breakers.admit(
                    call.source,
                    call.target,
                    call.endpoint,
                    settings=_breaker_settings(policy),
                    call_timeout=request.timeout,
                )
        except BreakerOpenError as exc:
            self._record_refusal(call, str(exc), span)
            now = self._clock.now()
            refused = self._facts(
                call, span, number, request, now, now,
                breaker_state=exc.state, error=str(exc), error_kind="breaker_open",
                events=[SpanEvent("breaker rejected", now, {"state": exc.state})],
            )  # fmt: skip
            self._record_span(refused, span)
            raise
        healthy = await self._discovery.healthy(call.target)
        instance = self._choose(policy, call.target, healthy)
        began = self._clock.now()
        started = time.perf_counter()
        outcome = await self._send(instance, span, call.method, request, number)
        duration_ms = (time.perf_counter() - started) * 1000
        facts = self._facts(
            call, span, number, request, began, began + timedelta(milliseconds=duration_ms),
            status_code=outcome.status_code, error=outcome.error, error_kind=outcome.error_kind,
            host=instance.host, port=instance.port, instance_id=instance.instance_id,
            breaker_state=permit.breaker.state,
        )  # fmt: skip
        success = not breakers.is_failure(permit, outcome.status_code)
        if not breakers.record_cached(permit, success):
            await breakers.record(
                permit, success=success, detail=outcome.error or f"HTTP {outcome.status_code}"
            )
        self.outliers.record(instance, outcome.status_code, policy.outlier_detection, len(healthy))
        attempts.append(
            Attempt(
                number,
                instance.instance_id,
                outcome.status_code,
                outcome.error,
                duration_ms,
                span.span_id,
                outcome.unknown,
            )
        )
        self._recorder.record(
            CallEvent(
                event_type=event_type(outcome),
                trace_id=span.trace_id,
                span_id=span.span_id,
                parent_span_id=span.parent_span_id,
                source=call.source,
                target=call.target,
                method=call.method,
                endpoint=call.endpoint,
                status_code=outcome.status_code,
                duration_ms=round(duration_ms),
                error=outcome.error,
                correlation_id=call.correlation_id,
                at=self._clock.now(),
                details=_details(number, instance, outcome),
            )
        )
        return outcome, instance, facts

    @staticmethod
    def _facts(
        call: _Call,
        span: TraceContext,
        number: int,
        request: _Request,
        began: datetime,
        ended: datetime,
        **outcome: Any,
    ) -> AttemptFacts:
        """What the attempt's span says: the call's own facts, and ``outcome``'s."""
        return AttemptFacts(
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            source=call.source,
            target=call.target,
            method=call.method,
            endpoint=call.endpoint,
            attempt=number,
            started=began,
            ended=ended,
            idempotency_key=request.headers.get("Idempotency-Key"),
            correlation_id=call.correlation_id,
            **outcome,
        )

    def _choose(
        self, policy: EffectivePolicy, target: str, healthy: Sequence[Endpoint]
    ) -> Endpoint:
        candidates: Sequence[Endpoint] = healthy
        key = target
        split = policy.traffic_splitting
        if split is not None:
            version = self._route_version(split.routes)
            routed = [e for e in healthy if e.version == version]
            if routed:
                candidates, key = routed, f"{target}@{version}"
        candidates = self.outliers.usable(candidates, policy.outlier_detection)
        balancing = policy.load_balancing
        return self._discovery.pick(
            target,
            candidates,
            balancing.algorithm if balancing else None,
            weights=balancing.weights if balancing else None,
            key=key,
        )

    def _route_version(self, routes: Sequence[Any]) -> str:
        point = self._rng.uniform(0, sum(r.weight for r in routes))
        for route in routes:
            point -= route.weight
            if point < 0:
                return str(route.destination)
        return str(routes[-1].destination)

    async def _send(
        self,
        instance: Endpoint,
        span: TraceContext,
        method: str,
        request: _Request,
        number: int,
    ) -> AttemptOutcome:
        request_headers = {
            **request.headers,
            "traceparent": span.traceparent,
            "X-Orch-Attempt": str(number),
        }
        with self._discovery.track(instance):
            try:
                response = await self._client.request(
                    method,
                    instance.base_url + request.target,
                    json=request.json,
                    content=request.content,
                    params=request.params,
                    headers=request_headers,
                    timeout=request.timeout,
                )
            except httpx.HTTPError as exc:
                return no_answer(exc, request.timeout)
        return AttemptOutcome(response.status_code, None, None, response)

    def _delay(self, policy: RetryPolicy, number: int, outcome: AttemptOutcome) -> float:
        if outcome.status_code in (429, 503) and outcome.response is not None:
            hinted = retry_after_seconds(outcome.response.headers.get("retry-after"))
            if hinted is not None:
                return min(hinted, policy.max_retry_after)
        return policy.backoff(number, self._rng)

    def _finish(
        self, outcome: AttemptOutcome, instance: Endpoint, call: _Call, attempts: list[Attempt]
    ) -> CallResult:
        if outcome.response is None:
            raise CallFailed(_failure(call, attempts, outcome.error), attempts)
        response = outcome.response
        return CallResult(
            status_code=response.status_code,
            headers=response.headers,
            content=response.content,
            instance_id=instance.instance_id,
            trace_id=call.trace.trace_id,
            correlation_id=call.correlation_id,
            attempts=attempts,
        )

    def _record_refusal(self, call: _Call, reason: str, span: TraceContext | None = None) -> None:
        span = span or call.trace
        self._recorder.record(
            CallEvent(
                event_type="rejected",
                trace_id=span.trace_id,
                span_id=span.span_id,
                parent_span_id=span.parent_span_id,
                source=call.source,
                target=call.target,
                method=call.method,
                endpoint=call.endpoint,
                status_code=None,
                duration_ms=0,
                error=reason,
                correlation_id=call.correlation_id,
                at=self._clock.now(),
            )
        )


@dataclass(frozen=True, slots=True)
class _Request:
    """What every attempt of one call sends (the instance it goes to is chosen per try)."""

    target: str  # the normalized path and query
    timeout: float
    headers: dict[str, str]
    json: Any
    content: bytes | None
    params: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class _Call:
    source: str
    target: str
    endpoint: str
    method: str
    trace: TraceContext
    correlation_id: str


def _failure(call: _Call, attempts: list[Attempt], error: str | None) -> str:
    return (
        f"{call.source} → {call.target} {call.method} {call.endpoint} failed after "
        f"{len(attempts)} attempt{'s' if len(attempts) > 1 else ''}: {error}"
    )


def _details(number: int, instance: Endpoint, outcome: AttemptOutcome) -> dict[str, Any]:
    details: dict[str, Any] = {"attempt": number, "instance": instance.instance_id}
    if outcome.unknown:
        details["outcome_unknown"] = True
    return details


def _policy_timeout(policy: EffectivePolicy) -> float | None:
    if policy.retry_policy is not None:
        return policy.retry_policy.timeout_per_attempt
    return policy.timeout


def _breaker_settings(policy: EffectivePolicy) -> BreakerSettings | None:
    config = policy.circuit_breaker
    if config is None:
        return None
    defaults = BreakerSettings()
    return BreakerSettings(
        failure_threshold=config.failure_threshold,
        timeout_duration=config.timeout_duration,
        success_threshold=config.success_threshold or defaults.success_threshold,
        half_open_max_calls=config.half_open_max_calls or defaults.half_open_max_calls,
    )


def _http_client(transport: HttpTransport) -> httpx.AsyncClient:
    """One client for every call, on orch's own transport for http:// and https:// alike.

    Given a transport, httpx reads no proxy from the environment: calls go straight to
    the instance addresses the registry holds (see ``transport.py``)."""
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": "orch/0.1"},
    )
