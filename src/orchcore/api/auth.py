"""Bearer-token authentication and role checks for every route but the probes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchcore.auth import Action, Principal, Unauthenticated
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
    """The caller; refused with 401 in orch's error body (see api/guards.py) when the
    token is missing, unknown, revoked or expired."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated(
            "missing bearer token (create one with `orch token create`)", challenge="Bearer"
        )
    return await engine(request).tokens.verify(credentials.credentials)


async def optional_principal(request: Request) -> Principal | None:
    """The caller if it sent a token that is valid now, else None; never raises (a probe
    answers whatever the database does)."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return None
    try:
        return await engine(request).tokens.authenticate(secret.strip())
    except Exception:  # the database is down: the token cannot be checked
        return None


def allowed(action: Action) -> params.Depends:
    """A dependency that lets the request through only for roles allowed ``action``."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        principal.require(action)
        return principal

    dependency: params.Depends = Depends(check)
    return dependency


Caller = Annotated[Principal, Depends(current_principal)]
Engine = Annotated[Orch, Depends(_engine_dependency)]
