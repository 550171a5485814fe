"""Who the caller is: the token's name, role and what that role may do.

`orch login` checks a token with it before storing it, and a console over the API
shows only the actions the token may take (the API still checks every one).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from orchcore.api.auth import Caller, Engine
from orchcore.api.contract import ContractRoute
from orchcore.auth import Action, Principal, Role

router = APIRouter(prefix="/api/orchestration", tags=["identity"], route_class=ContractRoute)


class Identity(BaseModel):
    name: str = Field(description="the token's name (`orch token create --name`)")
    role: Role
    service: str | None = Field(description="the service a 'service' token acts as, else null")
    actions: list[Action] = Field(description="every action this token's role allows it")
    expires_at: datetime | None = Field(description="when the token stops working; null: never")
    environment: str = Field(
        default="", description="the deployment environment the daemon serves (its setting)"
    )

    @classmethod
    def of(cls, principal: Principal, *, environment: str = "") -> Identity:
        # A service token's instance_self counts for its own service, the only one it may
        # manage; the same test the routes make.
        allowed = [
            action
            for action in Action
            if principal.may(action, service_name=principal.service_name)
        ]
        return cls(
            name=principal.name,
            role=principal.role,
            service=principal.service_name,
            actions=allowed,
            expires_at=principal.expires_at,
            environment=environment,
        )


@router.get("/whoami", response_model=Identity)
async def whoami(caller: Caller, orch: Engine) -> Identity:
    """The calling token: any valid token may ask; 401 without one."""
    return Identity.of(caller, environment=orch.settings.environment)
