"""Bearer-token authentication and role checks for every route but the probes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, params, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchcore.auth import Action, Principal
from orchcore.facade import Orch

_bearer = HTTPBearer(auto_error=False, description="a token from `orch token create`")


def engine(request: Request) -> Orch:
    orch: Orch = request.app.state.orch
    return orch


async def _engine_dependency(request: Request) -> Orch:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
    # a thread hand-off on every request for a one-line lookup.
    return engine(request)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token (create one with `orch token create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = await engine(request).tokens.authenticate(credentials.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="unknown or revoked token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return principal


def allowed(action: Action) -> params.Depends:
    """A dependency that lets the request through only for roles allowed ``action``."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        principal.require(action)
        return principal

    dependency: params.Depends = Depends(check)
    return dependency


Caller = Annotated[Principal, Depends(current_principal)]
Engine = Annotated[Orch, Depends(_engine_dependency)]
