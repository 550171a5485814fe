"""orch's one error body, and the handlers that answer every refusal in it.

Engine errors, FastAPI's request validation, and Starlette's own answers (an unknown
path, a method a path does not take, a body that is not JSON) all become
``{"error", "message", "detail"}``; clients generated from the OpenAPI document read
one model, ``ErrorBody``, for every 4xx and 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from orchcore.errors import OrchError


class FieldProblem(BaseModel):
    """One bad part of a request: where it is and why it is refused."""

    loc: list[str | int] = Field(
        description="the path to the bad value; for request validation it starts with "
        "where the value was sent (body, query, path, header)"
    )
    msg: str
    type: str | None = Field(default=None, description="a machine-readable kind, e.g. missing")


class ErrorBody(BaseModel):
    """orch's error body: every 4xx and 5xx answer of the API."""

    # Some errors add what the caller needs to act (a breaker's state, a call's
    # attempts, a 500's error_id): those keys come beside the three.
    model_config = ConfigDict(extra="allow")

    error: str = Field(description="the kind of error, e.g. ValidationFailed, NotFoundError")
    message: str = Field(description="one line saying what is wrong")
    detail: str | list[FieldProblem] = Field(
        description="the fields refused and why (bad input), else the message again"
    )


def error_body(exc: OrchError) -> dict[str, Any]:
    """An engine error as orch's error body."""
    body = exc.to_dict()
    # FastAPI clients read "detail"; keep it for every error, not only validation.
    body.setdefault("detail", body["message"])
    return body


async def _orch_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchError)
    return JSONResponse(error_body(exc), status_code=exc.http_status)


async def _request_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(validation_body(exc.errors()), status_code=422)


def validation_body(errors: Sequence[Any]) -> dict[str, Any]:
    """FastAPI's validation errors as orch's body: every problem in ``detail`` (never
    the input itself, which may be large or secret), the first one in ``message``."""
    problems = [_problem(error) for error in errors] or [
        {"loc": ["request"], "msg": "invalid request", "type": None}
    ]
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    return {"error": "ValidationFailed", "message": f"{where}: {first['msg']}", "detail": problems}


def _problem(error: Any) -> dict[str, Any]:
    if not isinstance(error, dict):
        return {"loc": ["request"], "msg": str(error), "type": None}
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return {"loc": loc or ["request"], "msg": message, "type": error.get("type")}


#: Starlette's own refusals, named as orch names its errors.
_HTTP_ERRORS = {
    400: "BadRequest",
    404: "NotFoundError",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """An unknown path (404), a method the path does not take (405, with its Allow
    header) or a body FastAPI could not parse (400), in orch's body."""
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "the request was refused"
    body = {
        "error": _HTTP_ERRORS.get(exc.status_code, "HTTPError"),
        "message": message,
        "detail": message,
    }
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document gives the request's path. Starlette's 405
    names only the methods of the first route matching the path, while a path's GET
    and POST are two routes."""
    path = request.scope.get("path", "")
    methods = {
        method
        for pattern, of_path in _methods_by_path(request.app)
        if pattern.fullmatch(path)
        for method in of_path
    }
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return sorted(methods)


def _methods_by_path(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(
        app.state, "methods_by_path", None
    )
    if table is None:
        table = []
        for template, operations in app.openapi().get("paths", {}).items():
            pieces = re.split(r"\{[^}]+\}", template)
            pattern = re.compile("[^/]+".join(re.escape(piece) for piece in pieces))
            table.append((pattern, {method.upper() for method in operations}))
        app.state.methods_by_path = table
    return table


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrchError, _orch_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http_error)
