"""Circuit breaker routes (the seed's shapes)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from orchcore.api.auth import Caller, Engine, allowed
from orchcore.api.contract import ContractRoute
from orchcore.auth import Action
from orchcore.resilience.breaker_metrics import GetCircuitBreakerMetricsResponse
from orchcore.resilience.breakers import Breaker, BreakerTransition, CreateCircuitBreakerRequest
from orchcore.textrules import NOT_BLANK_PATTERN

router = APIRouter(
    prefix="/api/orchestration", tags=["circuit breakers"], route_class=ContractRoute
)


class StateSummary(BaseModel):
    closed: int
    open: int
    half_open: int
    forced_open: int
    disabled: int


class GetCircuitBreakersResponse(BaseModel):
    circuit_breakers: list[Breaker]
    state_summary: StateSummary


class ResetCircuitBreakerRequest(BaseModel):
    reason: str = Field(
        min_length=1, max_length=500, json_schema_extra={"pattern": NOT_BLANK_PATTERN}
    )
    force: bool = Field(
        default=False,
        description="accepted for the seed's shape; reset "
        "always closes the breaker, trials in flight included",
    )


class OperatorReason(BaseModel):
    reason: str = Field(
        min_length=1, max_length=500, json_schema_extra={"pattern": NOT_BLANK_PATTERN}
    )


@router.get(
    "/circuit-breakers",
    response_model=GetCircuitBreakersResponse,
    dependencies=[allowed(Action.READ)],
)
async def list_breakers(orch: Engine) -> GetCircuitBreakersResponse:
    breakers = await orch.breakers.list_breakers()
    counts = {state: 0 for state in StateSummary.model_fields}
    for breaker in breakers:
        counts[breaker.current_state] += 1
    return GetCircuitBreakersResponse(
        circuit_breakers=breakers, state_summary=StateSummary(**counts)
    )


@router.post(
    "/circuit-breakers",
    response_model=Breaker,
    status_code=status.HTTP_201_CREATED,
    dependencies=[allowed(Action.WRITE)],
)
async def create_breaker(
    request: CreateCircuitBreakerRequest, orch: Engine, caller: Caller
) -> Breaker:
    return await orch.breakers.create(request, actor=caller.actor)


@router.get(
    "/circuit-breakers/{breaker_id}", response_model=Breaker, dependencies=[allowed(Action.READ)]
)
async def get_breaker(breaker_id: str, orch: Engine) -> Breaker:
    return await orch.breakers.get_by_ref(breaker_id)


@router.put(
    "/circuit-breakers/{breaker_id}/reset",
    response_model=Breaker,
    dependencies=[allowed(Action.WRITE)],
)
async def reset_breaker(
    breaker_id: str, request: ResetCircuitBreakerRequest, orch: Engine, caller: Caller
) -> Breaker:
    found = await orch.breakers.get_by_ref(breaker_id)
    return await orch.breakers.reset(found.id, actor=caller.actor, reason=request.reason)


def _operator_state(verb: Literal["force-open", "disable"]) -> Any:
    async def force_open_or_disable(
        breaker_id: str, request: OperatorReason, orch: Engine, caller: Caller
    ) -> Breaker:
        found = await orch.breakers.get_by_ref(breaker_id)
        action = orch.breakers.force_open if verb == "force-open" else orch.breakers.disable
        return await action(found.id, actor=caller.actor, reason=request.reason)

    force_open_or_disable.__doc__ = {
        "force-open": "Reject every call until reset.",
        "disable": "Let every call through, whatever the breaker counts.",
    }[verb]
    return force_open_or_disable


# One route a verb: /circuit-breakers/{id}/metrics then answers 405 to PUT, not 422.
for _verb in ("force-open", "disable"):
    router.add_api_route(
        f"/circuit-breakers/{{breaker_id}}/{_verb}",
        _operator_state(_verb),
        methods=["PUT"],
        name=f"{_verb.replace('-', '_')}_breaker",
        response_model=Breaker,
        dependencies=[allowed(Action.WRITE)],
    )


@router.get(
    "/circuit-breakers/{breaker_id}/metrics",
    response_model=GetCircuitBreakerMetricsResponse,
    dependencies=[allowed(Action.READ)],
)
async def breaker_metrics_route(breaker_id: str, orch: Engine) -> GetCircuitBreakerMetricsResponse:
    found = await orch.breakers.get_by_ref(breaker_id)
    return await orch.breakers.metrics(found)


@router.get(
    "/circuit-breakers/{breaker_id}/history",
    response_model=list[BreakerTransition],
    dependencies=[allowed(Action.READ)],
)
async def breaker_history(
    breaker_id: str, orch: Engine, limit: int = Query(default=100, ge=1, le=1000)
) -> list[BreakerTransition]:
    """The breaker's state transitions, newest first (who, why, when)."""
    found = await orch.breakers.get_by_ref(breaker_id)
    return await orch.breakers.history(found.id, limit=limit)
