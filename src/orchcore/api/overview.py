"""The system at a glance: what `orch status` and the console's Overview show."""

from __future__ import annotations

from fastapi import APIRouter

from orchcore.api.auth import Engine, allowed
from orchcore.api.contract import ContractRoute
from orchcore.auth import Action
from orchcore.overview import SystemOverview

router = APIRouter(prefix="/api/orchestration", tags=["overview"], route_class=ContractRoute)


@router.get("/overview", response_model=SystemOverview, dependencies=[allowed(Action.READ)])
async def overview(orch: Engine) -> SystemOverview:
    """Services, instances, breakers and workflows counted by state, open alerts, daemons."""
    return await orch.overview()
