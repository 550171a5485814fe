"""The OpenAPI document clients are generated from: FastAPI's, completed with every
answer a route can give besides its success, each in orch's one error body.

What every operation can answer is decided here once, from what the operation is
(a token route, a body, a path naming something, a change), not route by route:

- 500 (an unexpected error, with an error_id) on every operation, 503 (the database
  does not answer) on every one that reads a token;
- 401 and 403 where a token is needed;
- 422 where there is anything to validate; 400 and 413 where a body is read;
- 404 where the path names something, and on changes (their bodies name things);
- 409 on changes (a name taken, a state that does not allow the action).

A route declares what else it answers (429 for a rate limit, a different media type)
in its own ``responses=``; an error answer that declares no content gets ErrorBody.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError

from orchcore.api.auth import Caller
from orchcore.api.errors import ErrorBody
from orchcore.textrules import NOT_BLANK_PATTERN

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": REF.format(model="ErrorBody")}

#: What each error status means, wherever it is answered.
MEANING: dict[int, str] = {
    400: "the body could not be read (not JSON, or not UTF-8)",
    401: "no token, or one that is unknown, revoked or expired (WWW-Authenticate says which)",
    403: "the token's role or service may not do this",
    404: "what the request names does not exist",
    409: "the change conflicts with what is stored (a name taken, a state that does not allow it)",
    413: "the request body is over the API's limit (api_max_body_bytes)",
    422: "bad input: detail names each refused field and why",
    429: "a rate limit refused the call",
    500: "unexpected error; the daemon's log names it by the answer's error_id",
    502: "the service did not answer the call successfully",
    503: "the database does not answer (or, on a call, no healthy instance or an open breaker)",
}

_CHANGES = {"post", "put", "patch", "delete"}
#: The mark (in ``openapi_extra``) of an operation that declares its refusals itself,
#: in a body of its own (OTLP ingest's google.rpc.Status).
OWN_REFUSALS = "x-orch-own-refusals"


def install_contract(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document completed (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every operation's error answers and orch's error body."""
    for methods in document.get("paths", {}).values():
        for method, operation in methods.items():
            _complete_operation(method, operation)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    # FastAPI's own validation body is answered nowhere now.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    error_schema = ErrorBody.model_json_schema(ref_template=REF)
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    return document


def _complete_operation(method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if operation.pop(OWN_REFUSALS, False):
        # It declares its refusals itself: add only what any token route can answer.
        codes = {500} | ({401, 403} if operation.get("security") else set())
        responses.pop("422", None)  # FastAPI's guess from its header parameters
    else:
        codes = statuses_of(method, operation)
    for code in codes:
        responses.setdefault(str(code), {})
    for key, answer in responses.items():
        if not key.isdigit() or int(key) < 400:
            continue
        if key == "422" or "content" not in answer:
            # 422 replaces FastAPI's own validation body, which orch never answers.
            answer["content"] = {"application/json": {"schema": ERROR_REF}}
        if key == "422" or not answer.get("description"):
            answer["description"] = MEANING.get(int(key), "refused")
    # In status order, as a reader looks them up.
    operation["responses"] = dict(sorted(responses.items()))


def statuses_of(method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses ``operation`` can answer, by what it is (see the module)."""
    statuses = {500}
    where = {parameter.get("in") for parameter in operation.get("parameters", [])}
    has_body = "requestBody" in operation
    if operation.get("security"):
        statuses |= {401, 403, 503}
    if where or has_body:
        statuses.add(422)
    if has_body:
        statuses |= {400, 413}
    if "path" in where or method in _CHANGES:
        statuses.add(404)
    if method in _CHANGES:
        statuses.add(409)
    return statuses


# -- what the schema says is what is accepted ---------------------------------------


class ContractRoute(APIRoute):
    """A route whose JSON body is read as its JSON Schema says: FastAPI validates a
    body in pydantic's lax Python mode, where ``"5"`` is an integer, ``0`` a boolean
    and ``0.5`` a date-time; here the body is also validated in strict JSON mode (a
    string is text, a boolean is true or false), after the token is checked, so a
    request the schema calls invalid is refused with 422 and no caller learns about
    validation before authenticating."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.body_field is None:
            return
        # FastAPI tells the body apart only once the route is built: built again, with
        # the strict check after the route's own dependencies (the token, the role).
        check = Depends(_strict_json_body(self.body_field.field_info.annotation))
        kwargs["dependencies"] = [*(kwargs.get("dependencies") or []), check]
        super().__init__(path, endpoint, **kwargs)


def _strict_json_body(annotation: Any) -> Callable[..., Coroutine[Any, Any, None]]:
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    async def strict_json_body(request: Request, _caller: Caller) -> None:
        body = await request.body()
        if not body or not _is_json(request.headers.get("content-type")):
            return  # FastAPI's own validation answers (an absent body, another type)
        errors = _strict_errors(adapter, body)
        if errors and any(error["type"] == "int_type" for error in errors):
            # JSON Schema's integer includes 2.0 (strict JSON mode does not): read
            # whole numbers written with a point as integers and look again.
            errors = _strict_errors(adapter, _whole_numbers_as_integers(body))
        if errors:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in errors]
            )

    return strict_json_body


def _strict_errors(adapter: TypeAdapter[Any], body: bytes) -> list[Any]:
    try:
        adapter.validate_json(body, strict=True)
    except ValidationError as exc:
        return list(exc.errors(include_url=False, include_input=False))
    return []


def _whole_numbers_as_integers(body: bytes) -> bytes:
    def number(text: str) -> float | int:
        value = float(text)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value

    return json.dumps(json.loads(body, parse_float=number)).encode()


def _is_json(content_type: str | None) -> bool:
    """As FastAPI decides it: no content type, or a JSON one, is read as JSON."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


#: RFC 3339's date-time, the JSON Schema format ``date-time``: a date, a time and an
#: offset (pydantic would also take a bare date, no offset, or seconds since 1970).
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 date-time such as 2026-06-01T12:00:00Z")
    return value


#: A date-time read from a query parameter exactly as the schema's ``date-time`` says.
Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


class OperatorsReason(BaseModel):
    """Why an operator acts, where the engine records the reason as given (blank
    reasons are refused here, by the pattern the schema states, not by the engine)."""

    reason: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK_PATTERN)
