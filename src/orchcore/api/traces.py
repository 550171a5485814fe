"""Tracing routes: OTLP/HTTP ingest at ``POST /v1/traces`` and the seed's reads.

The ingest answers as OTLP/HTTP says: 200 with an ExportTraceServiceResponse in the
request's encoding (partial_success naming what was rejected and why), 400 for a body
that cannot be read, 413 over the size limit, 415 for another content type, 503 (with
Retry-After) while spans wait to be written; an error's body is a google.rpc.Status in
the request's encoding. A service or operator token is needed, like every route.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from orchcore.api.auth import Engine, allowed
from orchcore.api.contract import ContractRoute, Timestamp
from orchcore.auth import Action
from orchcore.errors import ValidationFailed
from orchcore.tracing.models import GetTraceDetailsResponse, GetTracesResponse, SearchTracesRequest
from orchcore.tracing.otlp import OtlpError, encode_response
from orchcore.tracing.tracing import MAX_EXPORT_BYTES, Overloaded

READ = [allowed(Action.READ)]

router = APIRouter(prefix="/api/orchestration", tags=["traces"], route_class=ContractRoute)

#: The content codings OTLP ingest reads (case-insensitive, as RFC 9110 has it).
CONTENT_ENCODING_PATTERN = (
    "^[ \\t]*([Gg][Zz][Ii][Pp]|[Xx]-[Gg][Zz][Ii][Pp]|[Ii][Dd][Ee][Nn][Tt][Ii][Tt][Yy])?[ \\t]*$"
)
#: The longest duration a filter names: about 31 years, far inside what the spans'
#: microseconds (int64) hold.
MAX_DURATION_MS = 1_000_000_000_000.0
Duration = Annotated[float | None, Query(ge=0, le=MAX_DURATION_MS)]
#: W3C's trace id: 32 hex digits (the length says 32), not all zero; the path may
#: spell them in upper case.
TRACE_ID_PATTERN = "^0*[1-9a-fA-F][0-9a-fA-F]*$"
otlp_router = APIRouter(tags=["otlp"], route_class=ContractRoute)


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RPC_STATUS = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "google.rpc.Status",
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "application/x-protobuf": _BINARY,
    }
}
#: OTLP/HTTP's request and answers, in its two encodings; refusals are google.rpc.Status
#: in the request's encoding, not orch's error body (only the token's 401/403 are).
OTLP_OPENAPI = {
    "x-orch-own-refusals": True,
    "requestBody": {
        "required": True,
        "description": "an ExportTraceServiceRequest (Content-Encoding gzip allowed)",
        "content": {
            # OTLP's JSON mapping of protobuf: fields it does not know are ignored,
            # and what it does know the receiver checks (answering 400 with why).
            "application/json": {"schema": {"type": "object"}},
            "application/x-protobuf": _BINARY,
        },
    },
    "responses": {
        "200": {
            "description": "an ExportTraceServiceResponse; partial_success names what was "
            "rejected and why",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-protobuf": _BINARY,
            },
        },
        "400": {"description": "a body that cannot be read as OTLP", **_RPC_STATUS},
        "413": {"description": f"a body over {MAX_EXPORT_BYTES} bytes", **_RPC_STATUS},
        "415": {
            "description": "neither application/json nor application/x-protobuf",
            **_RPC_STATUS,
        },
        "503": {
            "description": "spans wait to be written (Retry-After says when to retry)",
            **_RPC_STATUS,
        },
    },
}


@otlp_router.post(
    "/v1/traces", dependencies=[allowed(Action.INGEST_TRACES)], openapi_extra=OTLP_OPENAPI
)
async def export_traces(
    request: Request,
    orch: Engine,
    content_type: Annotated[str, Header()] = "",
    content_encoding: Annotated[
        str,
        Header(
            description="gzip, or none",
            json_schema_extra={"pattern": CONTENT_ENCODING_PATTERN},
        ),
    ] = "",
) -> Response:
    body = await _read_capped(request, MAX_EXPORT_BYTES)
    is_json = content_type.split(";", 1)[0].strip().lower() == "application/json"
    if body is None:
        return _status(413, f"the body is over {MAX_EXPORT_BYTES} bytes", is_json)
    try:
        decoded = orch.tracing.ingest(body, content_type, content_encoding)
    except OtlpError as exc:
        return _status(exc.http_status, str(exc), is_json)
    except Overloaded as exc:
        return _status(503, str(exc), is_json, headers={"Retry-After": "2"})
    payload, media_type = encode_response(decoded.rejected, decoded.error_message, content_type)
    return Response(payload, media_type=media_type)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _status(
    code: int, message: str, is_json: bool, headers: dict[str, str] | None = None
) -> Response:
    """A google.rpc.Status, as OTLP/HTTP wants for a failed export."""
    grpc_code = {400: 3, 413: 8, 415: 3, 503: 14}.get(code, 2)  # INVALID_ARGUMENT...
    if is_json:
        body = json.dumps({"code": grpc_code, "message": message}).encode()
        return Response(body, status_code=code, media_type="application/json", headers=headers)
    return Response(
        _status_protobuf(grpc_code, message),
        status_code=code,
        media_type="application/x-protobuf",
        headers=headers,
    )


def _status_protobuf(code: int, message: str) -> bytes:
    # google.rpc.Status {int32 code = 1; string message = 2;}: two fields, written here
    # rather than depending on googleapis-common-protos for them.
    text = message.encode()[:4096]
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@router.get("/traces", response_model=GetTracesResponse, dependencies=READ)
async def list_traces(
    orch: Engine,
    service: str | None = None,
    errors_only: bool = False,
    min_duration_ms: Duration = None,
    since: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> GetTracesResponse:
    return await orch.tracing.recent(
        limit=limit,
        offset=offset,
        service=service,
        errors_only=errors_only,
        min_duration_ms=min_duration_ms,
        since=since,
    )


@router.get("/traces/search", response_model=GetTracesResponse, dependencies=READ)
async def search_traces(
    orch: Engine,
    service_name: str | None = None,
    operation_name: str | None = None,
    tags: Annotated[
        str | None, Query(description='JSON object, e.g. {"peer.service":"venue"}')
    ] = None,
    duration_min_ms: Duration = None,
    duration_max_ms: Duration = None,
    start_time: Timestamp | None = None,
    end_time: Timestamp | None = None,
    has_errors: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> GetTracesResponse:
    request = SearchTracesRequest(
        service_name=service_name,
        operation_name=operation_name,
        tags=_tags(tags),
        duration_min_ms=duration_min_ms,
        duration_max_ms=duration_max_ms,
        start_time=start_time,
        end_time=end_time,
        has_errors=has_errors,
        limit=limit,
        offset=offset,
    )
    return await orch.tracing.search(request)


@router.get("/traces/{trace_id}", response_model=GetTraceDetailsResponse, dependencies=READ)
async def get_trace(
    trace_id: Annotated[str, Path(min_length=32, max_length=32, pattern=TRACE_ID_PATTERN)],
    orch: Engine,
) -> GetTraceDetailsResponse:
    return await orch.tracing.trace(trace_id)


@router.get(
    "/workflows/{workflow}/trace", response_model=GetTraceDetailsResponse, dependencies=READ
)
async def workflow_trace(workflow: str, orch: Engine) -> GetTraceDetailsResponse:
    """A workflow's trace, the workflow named by its id or its correlation id."""
    return await orch.tracing.trace(await orch.tracing.trace_of_workflow(workflow))


class WorkflowTraceId(BaseModel):
    workflow: str
    trace_id: str = Field(description="32 lowercase hex digits")


@router.get("/workflows/{workflow}/trace-id", response_model=WorkflowTraceId, dependencies=READ)
async def workflow_trace_id(workflow: str, orch: Engine) -> WorkflowTraceId:
    """Which trace a workflow (by id or correlation id) records into, before any of its
    spans is written (spans are written as they end, the workflow's root last)."""
    return WorkflowTraceId(
        workflow=workflow, trace_id=await orch.tracing.trace_of_workflow(workflow)
    )


def _tags(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise ValidationFailed("tags", "expected a JSON object of tag values") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationFailed("tags", "expected a JSON object of string values")
    return {str(k): v for k, v in value.items()}
