"""The service map route: ``GET /api/orchestration/observability/service-map``, the
seed's GetServiceMapResponse over the last hour."""

from __future__ import annotations

from fastapi import APIRouter

from orchcore.api.auth import Engine, allowed
from orchcore.api.contract import ContractRoute
from orchcore.auth import Action
from orchcore.tracing.servicemap_models import GetServiceMapResponse

router = APIRouter(prefix="/api/orchestration", tags=["observability"], route_class=ContractRoute)


@router.get(
    "/observability/service-map",
    response_model=GetServiceMapResponse,
    dependencies=[allowed(Action.READ)],
)
async def service_map(orch: Engine) -> GetServiceMapResponse:
    """Services with their request rate, error rate and latency over the last hour, the
    connections between them (declared and observed), cycles and critical paths."""
    return await orch.service_map()
