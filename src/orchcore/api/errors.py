"""Engine errors become HTTP answers that say what is wrong."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from orchcore.errors import OrchError


async def _orch_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchError)
    body = exc.to_dict()
    # FastAPI clients read "detail"; keep it for every error, not only validation.
    body.setdefault("detail", body["message"])
    return JSONResponse(body, status_code=exc.http_status)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrchError, _orch_error)
