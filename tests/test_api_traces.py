"""The tracing API over real HTTP: OTLP/HTTP ingest at ``POST /v1/traces`` (both
encodings, gzip, partial success, refusals, who may export), a real OpenTelemetry SDK
exporting to it, and the reads: one trace as a tree, recent traces, search, and a
workflow's trace joined to the trace of the request that started it."""

from __future__ import annotations

import asyncio
import gzip
import json
import secrets
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as OtlpResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from orchcore import ManualClock, Orch
from orchcore.callpath.tracecontext import TraceContext
from orchcore.tracing.sagaspans import workflow_span_id
from orchcore.tracing.tracing import MAX_EXPORT_BYTES
from tests.support.api import serve_api, token
from tests.support.otlp import SPECIFICATION_EXAMPLE
from tests.support.polling import eventually
from tests.support.sagas import INITIATOR, Env

API = "/api/orchestration"
OTLP = "/v1/traces"
JSON_TYPE = {"Content-Type": "application/json"}
PROTOBUF_TYPE = {"Content-Type": "application/x-protobuf"}


EXAMPLE_TRACE = "5b8efff798038103d269b633813fc60c"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- set-up -------------------------------------------------------------------------------


@pytest.fixture
async def served(orch: Orch) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield base_url, client


@pytest.fixture
def api(served: tuple[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    return served[1]


@pytest.fixture
async def ops(orch: Orch) -> dict[str, str]:
    """An operator: may export spans and read traces."""
    return await token(orch, "platform_engineer")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def nanos(moment: datetime) -> str:
    # Integer arithmetic (a float of nanoseconds loses microseconds); OTLP JSON writes
    # 64-bit integers as strings.
    return str((moment - EPOCH) // timedelta(microseconds=1) * 1000)


def json_span(
    trace_id: str,
    span_id: str,
    name: str,
    start: datetime,
    ms: float,
    *,
    parent: str | None = None,
    kind: int = 1,
    attributes: dict[str, str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": nanos(start),
        "endTimeUnixNano": nanos(start + timedelta(milliseconds=ms)),
        "attributes": [
            {"key": k, "value": {"stringValue": v}} for k, v in (attributes or {}).items()
        ],
    }
    if parent:
        span["parentSpanId"] = parent
    if error is not None:
        span["status"] = {"code": 2, "message": error}
    return span


def json_export(service: str, *spans: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                    },
                    "scopeSpans": [{"scope": {"name": "tests"}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()


def protobuf_example(span_id: str) -> bytes:
    """The specification's example as protobuf, with another span id."""
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=OtlpResource(
                    attributes=[
                        KeyValue(key="service.name", value=AnyValue(string_value="my.service"))
                    ]
                ),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name="my.library", version="1.0.0"),
                        spans=[
                            OtlpSpan(
                                trace_id=bytes.fromhex(EXAMPLE_TRACE),
                                span_id=bytes.fromhex(span_id),
                                parent_span_id=bytes.fromhex("eee19b7ec3c1b173"),
                                name="I'm a server span",
                                start_time_unix_nano=1544712660000000000,
                                end_time_unix_nano=1544712661000000000,
                                kind=OtlpSpan.SPAN_KIND_SERVER,
                                attributes=[
                                    KeyValue(
                                        key="my.span.attr",
                                        value=AnyValue(string_value="some value"),
                                    )
                                ],
                            )
                        ],
                    )
                ],
            )
        ]
    )
    return request.SerializeToString()


async def export(
    api: httpx.AsyncClient, body: bytes, auth: dict[str, str], **headers: str
) -> httpx.Response:
    return await api.post(OTLP, content=body, headers={**JSON_TYPE, **auth, **headers})


async def stored_trace(
    orch: Orch, api: httpx.AsyncClient, auth: dict[str, str], trace_id: str, *, spans: int
) -> dict[str, Any]:
    """GET /traces/{trace_id} once the trace has ``spans`` spans (flushing the recorder)."""

    async def complete() -> dict[str, Any] | None:
        await orch.tracing.flush()
        answer = await api.get(f"{API}/traces/{trace_id}", headers=auth)
        if answer.status_code != 200:
            return None
        body: dict[str, Any] = answer.json()
        return body if len(body["spans"]) >= spans else None

    return await eventually(complete, message=f"{spans} spans of trace {trace_id}")


def by_id(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for span in detail["spans"]}


def zeros_gzipped(size: int) -> bytes:
    """``size`` zero bytes gzipped, without holding them all in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    out = bytearray()
    for _ in range(size // len(chunk)):
        out += packer.compress(chunk)
    out += packer.compress(bytes(size % len(chunk)))
    out += packer.flush()
    return bytes(out)


# -- 1-3: ingest in both encodings, gzip, partial success ---------------------------------


async def test_the_specification_example_in_json_and_protobuf_is_stored(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    as_json = await export(api, SPECIFICATION_EXAMPLE.encode(), ops)
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == {}  # full success: partial_success left unset

    as_protobuf = await api.post(
        OTLP, content=protobuf_example("eee19b7ec3c1b175"), headers={**PROTOBUF_TYPE, **ops}
    )
    assert as_protobuf.status_code == 200, as_protobuf.content
    assert as_protobuf.headers["content-type"].startswith("application/x-protobuf")
    response = ExportTraceServiceResponse()
    response.ParseFromString(as_protobuf.content)
    assert not response.HasField("partial_success")

    detail = await stored_trace(orch, api, ops, EXAMPLE_TRACE, spans=2)
    spans = by_id(detail)
    assert set(spans) == {"eee19b7ec3c1b174", "eee19b7ec3c1b175"}  # lowercase, both
    for span in spans.values():
        assert span["service_name"] == "my.service"
        assert span["operation_name"] == "I'm a server span"
        assert span["span_kind"] == "server"
        assert span["status_code"] == "unset"
        assert span["parent_span_id"] == "eee19b7ec3c1b173"  # not in the trace: a root
        assert span["depth"] == 0
        assert span["children"] == []
        assert span["tags"]["my.span.attr"] == "some value"
        assert span["tags"]["otel.scope.name"] == "my.library"
        assert span["duration_microseconds"] == 1_000_000
        assert span["start_time"].startswith("2018-12-13T14:51:00")
    assert spans["eee19b7ec3c1b174"]["tags"]["my.scope.attribute"] == "some scope attribute"
    header = detail["trace"]
    assert header["trace_id"] == EXAMPLE_TRACE
    assert header["span_count"] == 2
    assert header["service_count"] == 1
    assert header["total_duration_ms"] == 1000.0
    assert header["root_operation"] == "I'm a server span"
    assert header["status"] == "ok"
    assert header["workflow_id"] is None and header["correlation_id"] is None
    assert detail["service_map"] == []
    # The path in upper case names the same trace.
    upper = await api.get(f"{API}/traces/{EXAMPLE_TRACE.upper()}", headers=ops)
    assert upper.status_code == 200
    assert upper.json()["trace"]["trace_id"] == EXAMPLE_TRACE


async def test_a_gzipped_export_is_accepted(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    body = gzip.compress(SPECIFICATION_EXAMPLE.encode())
    answer = await export(api, body, ops, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    protobuf = await api.post(
        OTLP,
        content=gzip.compress(protobuf_example("eee19b7ec3c1b176")),
        headers={**PROTOBUF_TYPE, **ops, "Content-Encoding": "gzip"},
    )
    assert protobuf.status_code == 200, protobuf.content
    detail = await stored_trace(orch, api, ops, EXAMPLE_TRACE, spans=2)
    assert set(by_id(detail)) == {"eee19b7ec3c1b174", "eee19b7ec3c1b176"}


async def test_a_span_with_a_zero_trace_id_is_a_partial_success(
    orch: Orch, clock: ManualClock, api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    trace_id, now = new_trace_id(), clock.now()
    good = [json_span(trace_id, new_span_id(), f"good {n}", now, 5) for n in range(2)]
    bad = json_span("0" * 32, new_span_id(), "bad", now, 5)
    answer = await export(api, json_export("venue", good[0], bad, good[1]), ops)
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"  # int64 in OTLP JSON: a string
    assert "invalid trace id" in partial["errorMessage"]

    detail = await stored_trace(orch, api, ops, trace_id, spans=2)
    assert sorted(s["operation_name"] for s in detail["spans"]) == ["good 0", "good 1"]
    assert await orch.db.fetchval("SELECT count(*) FROM distributed_traces") == 2

    # The same in protobuf: the response's partial_success counts the rejected span.
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(16), bytes.fromhex(new_span_id()), "bad"
    span.start_time_unix_nano = span.end_time_unix_nano = int(nanos(now))
    refused = await api.post(
        OTLP, content=request.SerializeToString(), headers={**PROTOBUF_TYPE, **ops}
    )
    assert refused.status_code == 200
    response = ExportTraceServiceResponse()
    response.ParseFromString(refused.content)
    assert response.partial_success.rejected_spans == 1
    assert "invalid trace id" in response.partial_success.error_message


# -- 4: refusals and who may export -------------------------------------------------------


async def test_a_body_that_cannot_be_read_is_400_in_the_requests_encoding(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    bad_json = await export(api, b'{"resourceSpans": [', ops)
    assert bad_json.status_code == 400
    assert bad_json.headers["content-type"].startswith("application/json")
    error = bad_json.json()
    assert error["code"] == 3  # google.rpc.Code INVALID_ARGUMENT
    assert "not JSON" in error["message"]

    bad_protobuf = await api.post(
        OTLP, content=b"\x0a\xff\xff\xff\xff", headers={**PROTOBUF_TYPE, **ops}
    )
    assert bad_protobuf.status_code == 400
    assert bad_protobuf.headers["content-type"].startswith("application/x-protobuf")
    status = status_pb2.Status()
    status.ParseFromString(bad_protobuf.content)
    assert status.code == 3
    assert "protobuf" in status.message

    not_gzip = await export(api, b"not gzip at all", ops, **{"Content-Encoding": "gzip"})
    assert not_gzip.status_code == 400


async def test_an_oversized_body_is_413(api: httpx.AsyncClient, ops: dict[str, str]) -> None:
    # Declared over the limit: refused before the body is read.
    declared = await export(api, b" " * (MAX_EXPORT_BYTES + 1), ops)
    assert declared.status_code == 413
    assert declared.json()["code"] == 8  # RESOURCE_EXHAUSTED

    # Chunked, no length declared: refused once the stream passes the limit.
    async def chunks() -> AsyncIterator[bytes]:
        piece = b" " * (1024 * 1024)
        for _ in range(MAX_EXPORT_BYTES // len(piece)):
            yield piece
        yield b" "

    streamed = await api.post(OTLP, content=chunks(), headers={**JSON_TYPE, **ops})
    assert streamed.status_code == 413

    # A gzip bomb: ~100 KB that inflates to 100 MB of zeros, refused while inflating.
    bomb = zeros_gzipped(100 * 1024 * 1024)
    assert len(bomb) < MAX_EXPORT_BYTES
    inflated = await api.post(
        OTLP, content=bomb, headers={**PROTOBUF_TYPE, **ops, "Content-Encoding": "gzip"}
    )
    assert inflated.status_code == 413
    assert inflated.headers["content-type"].startswith("application/x-protobuf")
    status = status_pb2.Status()
    status.ParseFromString(inflated.content)
    assert status.code == 8


async def test_another_content_type_or_encoding_is_415(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    text = await api.post(
        OTLP, content=SPECIFICATION_EXAMPLE, headers={"Content-Type": "text/plain", **ops}
    )
    assert text.status_code == 415
    brotli = await export(api, SPECIFICATION_EXAMPLE.encode(), ops, **{"Content-Encoding": "br"})
    assert brotli.status_code == 415
    assert brotli.headers["content-type"].startswith("application/json")


async def test_who_may_export_spans(orch: Orch, api: httpx.AsyncClient) -> None:
    body = SPECIFICATION_EXAMPLE.encode()
    anonymous = await api.post(OTLP, content=body, headers=JSON_TYPE)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    garbage = await export(api, body, {"Authorization": "Bearer orch_not-a-real-token"})
    assert garbage.status_code == 401
    monitoring = await export(api, body, await token(orch, "monitoring_system"))
    assert monitoring.status_code == 403
    assert orch.tracing.recorder.pending == 0  # nothing was taken from the refused ones
    service = await export(api, body, await token(orch, "service", "venue"))
    assert service.status_code == 200, service.text
    operator = await export(api, body, await token(orch, "system_admin"))
    assert operator.status_code == 200, operator.text
    # A service token exports but does not read traces (reading is for operators).
    read = await api.get(f"{API}/traces", headers=await token(orch, "service", "venue"))
    assert read.status_code == 403
    monitor_read = await api.get(f"{API}/traces", headers=await token(orch, "monitoring_system"))
    assert monitor_read.status_code == 200


async def test_ingested_spans_are_written_without_an_explicit_flush(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    # An engine that serves the API and has made no call yet (the call path used to be
    # what started the recorder's writer): an export is still written on its own.
    assert (await export(api, SPECIFICATION_EXAMPLE.encode(), ops)).status_code == 200

    async def written() -> bool:
        answer = await api.get(f"{API}/traces/{EXAMPLE_TRACE}", headers=ops)
        return answer.status_code == 200

    # The recorder writes every half second; give it ten times that.
    await eventually(written, timeout=5, message="the ingested span written")


# -- 5: a real OpenTelemetry SDK ----------------------------------------------------------


def _export_with_the_sdk(base_url: str, secret_header: str) -> tuple[str, str, str]:
    """Make a parent and a child span with the SDK, exported to orch over OTLP/HTTP
    (protobuf) as each ends; answers (trace id, parent span id, child span id)."""
    exporter = OTLPSpanExporter(
        endpoint=f"{base_url}{OTLP}", headers={"Authorization": secret_header}, timeout=10
    )
    provider = TracerProvider(resource=Resource({"service.name": "venue"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("venue.reservations", "2.1.0")
    try:
        with (
            tracer.start_as_current_span(
                "POST /reservations",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "http.route": "/reservations"},
            ) as parent,
            tracer.start_as_current_span(
                "reserve hall", attributes={"venue.hall": "east", "venue.guests": 120}
            ) as child,
        ):
            child.add_event("hall locked", {"lock.wait_ms": 3})
            child.set_status(Status(StatusCode.ERROR, "the hall is booked"))
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
    context, child_context = parent.get_span_context(), child.get_span_context()
    return (
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        format(child_context.span_id, "016x"),
    )


async def test_spans_from_the_opentelemetry_sdk_arrive_as_a_tree(
    orch: Orch, served: tuple[str, httpx.AsyncClient], ops: dict[str, str]
) -> None:
    base_url, api = served
    service = await token(orch, "service", "venue")
    # The exporter is synchronous (requests): off the loop the API server runs on.
    trace_id, parent_id, child_id = await asyncio.to_thread(
        _export_with_the_sdk, base_url, service["Authorization"]
    )
    detail = await stored_trace(orch, api, ops, trace_id, spans=2)
    parent, child = detail["spans"]  # depth first: the parent before its child
    assert parent["span_id"] == parent_id
    assert parent["parent_span_id"] is None and parent["depth"] == 0
    assert parent["span_kind"] == "server"
    assert parent["service_name"] == "venue"
    assert parent["children"] == [child_id]
    assert parent["tags"]["http.request.method"] == "POST"
    assert parent["tags"]["otel.scope.name"] == "venue.reservations"
    assert parent["tags"]["otel.scope.version"] == "2.1.0"
    assert child["span_id"] == child_id
    assert child["parent_span_id"] == parent_id and child["depth"] == 1
    assert child["span_kind"] == "internal"
    assert child["status_code"] == "error"
    assert child["tags"]["venue.hall"] == "east"
    assert child["tags"]["venue.guests"] == 120
    assert child["tags"]["otel.status_description"] == "the hall is booked"
    [log] = child["logs"]
    assert log["message"] == "hall locked"
    assert log["fields"] == {"lock.wait_ms": 3}
    header = detail["trace"]
    assert header["status"] == "error"
    assert header["error_message"] == "the hall is booked"
    assert header["root_operation"] == "POST /reservations"
    assert detail["critical_path"] == [parent_id, child_id]


# -- 6: lists, search, errors, and a workflow's trace -------------------------------------


@pytest.fixture
async def two_traces(
    orch: Orch, clock: ManualClock, api: httpx.AsyncClient, ops: dict[str, str]
) -> dict[str, str]:
    """Trace "slow" in venue (3 spans, 120 ms, one error, a GET) ten minutes ago, and
    trace "fast" in payment (one 5 ms POST) a minute ago; the clock's now is the API's."""
    slow, fast = new_trace_id(), new_trace_id()
    root, db, call = new_span_id(), new_span_id(), new_span_id()
    at = clock.now() - timedelta(minutes=10)
    venue = json_export(
        "venue",
        json_span(
            slow, root, "GET /venues", at, 120, kind=2, attributes={"http.request.method": "GET"}
        ),
        json_span(slow, db, "SELECT venues", at + timedelta(milliseconds=10), 30, parent=root),
        json_span(
            slow,
            call,
            "GET /availability",
            at + timedelta(milliseconds=50),
            40,
            parent=root,
            kind=3,
            attributes={"http.request.method": "GET", "peer.service": "calendar"},
            error="calendar timed out",
        ),
    )
    payment = json_export(
        "payment",
        json_span(
            fast,
            new_span_id(),
            "POST /charges",
            clock.now() - timedelta(minutes=1),
            5,
            kind=2,
            attributes={"http.request.method": "POST"},
        ),
    )
    for body in (venue, payment):
        answer = await export(api, body, ops)
        assert answer.status_code == 200 and answer.json() == {}, answer.text
    await stored_trace(orch, api, ops, slow, spans=3)
    await stored_trace(orch, api, ops, fast, spans=1)
    return {"slow": slow, "fast": fast, "root": root, "db": db, "call": call}


async def listed(api: httpx.AsyncClient, auth: dict[str, str], path: str, **params: Any) -> Any:
    answer = await api.get(f"{API}{path}", params=params, headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


def ids(listing: dict[str, Any]) -> list[str]:
    return [t["trace_id"] for t in listing["traces"]]


async def test_recent_traces_are_summarised_and_filtered(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str], two_traces: dict[str, str]
) -> None:
    slow, fast = two_traces["slow"], two_traces["fast"]
    everything = await listed(api, ops, "/traces")
    assert ids(everything) == [fast, slow]  # newest first
    summary = everything["traces"][1]
    assert summary["root_service"] == "venue"
    assert summary["operation_name"] == "GET /venues"
    assert summary["span_count"] == 3
    assert summary["service_count"] == 1
    assert summary["error_count"] == 1
    assert summary["status"] == "error"
    assert summary["duration_ms"] == 120.0
    assert summary["tags"]["http.request.method"] == "GET"
    assert summary["services"] == ["venue"]
    assert everything["traces"][0]["status"] == "ok"
    stats = everything["trace_stats"]
    assert stats["total_traces"] == 2
    assert stats["error_rate"] == 0.5
    assert stats["avg_duration_ms"] == 62.5
    assert stats["services_involved"] == ["payment", "venue"]

    assert ids(await listed(api, ops, "/traces", service="payment")) == [fast]
    assert ids(await listed(api, ops, "/traces", errors_only="true")) == [slow]
    assert ids(await listed(api, ops, "/traces", min_duration_ms=100)) == [slow]
    assert ids(await listed(api, ops, "/traces", limit=1)) == [fast]
    assert ids(await listed(api, ops, "/traces", limit=1, offset=1)) == [slow]
    recent = await listed(api, ops, "/traces", since=everything["traces"][0]["start_time"])
    assert ids(recent) == [fast]
    too_many = await api.get(f"{API}/traces", params={"limit": 501}, headers=ops)
    assert too_many.status_code == 422

    # A trace from 2018: past the last hour the list shows unless asked with since.
    assert (await export(api, SPECIFICATION_EXAMPLE.encode(), ops)).status_code == 200
    await stored_trace(orch, api, ops, EXAMPLE_TRACE, spans=1)
    assert ids(await listed(api, ops, "/traces")) == [fast, slow]
    since_2018 = await listed(api, ops, "/traces", since="2018-12-13T00:00:00Z")
    assert ids(since_2018) == [fast, slow, EXAMPLE_TRACE]


async def test_search_finds_and_excludes_the_right_traces(
    clock: ManualClock, api: httpx.AsyncClient, ops: dict[str, str], two_traces: dict[str, str]
) -> None:
    slow, fast = two_traces["slow"], two_traces["fast"]

    async def search(**params: Any) -> list[str]:
        return ids(await listed(api, ops, "/traces/search", **params))

    assert sorted(await search()) == sorted([slow, fast])
    assert await search(service_name="venue") == [slow]
    assert await search(service_name="payment") == [fast]
    assert await search(service_name="nobody") == []
    assert await search(operation_name="charges") == [fast]
    assert await search(has_errors="true") == [slow]
    assert await search(duration_min_ms=100) == [slow]  # the 120 ms root
    assert await search(duration_max_ms=10) == [fast]  # every venue span is longer
    assert await search(duration_min_ms=25, duration_max_ms=35) == [slow]  # the query
    assert await search(duration_min_ms=200) == []
    # The venue trace is ten minutes old, the payment one a minute.
    five_ago = (clock.now() - timedelta(minutes=5)).isoformat()
    assert await search(start_time=five_ago) == [fast]
    assert await search(end_time=five_ago) == [slow]
    assert await search(limit=1) == [fast]
    assert await search(limit=1, offset=1) == [slow]
    found = await listed(api, ops, "/traces/search", service_name="venue")
    assert found["traces"][0]["span_count"] == 3  # the whole trace, not the matching spans
    assert found["trace_stats"]["total_traces"] == 1

    for bad in ("not json", '["a"]', '{"n": 1}'):
        refused = await api.get(f"{API}/traces/search", params={"tags": bad}, headers=ops)
        assert refused.status_code == 422, bad
        assert "tags" in refused.json()["message"]
    backwards = await api.get(
        f"{API}/traces/search",
        params={"start_time": five_ago, "end_time": (clock.now() - timedelta(hours=1)).isoformat()},
        headers=ops,
    )
    assert backwards.status_code == 422


async def test_search_by_tags(
    api: httpx.AsyncClient, ops: dict[str, str], two_traces: dict[str, str]
) -> None:
    slow, fast = two_traces["slow"], two_traces["fast"]

    async def search(tags: dict[str, str]) -> list[str]:
        return ids(await listed(api, ops, "/traces/search", tags=json.dumps(tags)))

    assert await search({"http.request.method": "PUT"}) == []
    assert await search({"http.request.method": "POST"}) == [fast]
    assert await search({"http.request.method": "GET"}) == [slow]
    assert await search({"peer.service": "calendar"}) == [slow]
    assert await search({"http.request.method": "GET", "peer.service": "calendar"}) == [slow]


async def test_one_trace_as_a_tree_and_the_errors_of_the_trace_route(
    api: httpx.AsyncClient, ops: dict[str, str], two_traces: dict[str, str]
) -> None:
    detail = await listed(api, ops, f"/traces/{two_traces['slow']}")
    root, db, call = two_traces["root"], two_traces["db"], two_traces["call"]
    assert [s["span_id"] for s in detail["spans"]] == [root, db, call]  # start order
    assert [s["depth"] for s in detail["spans"]] == [0, 1, 1]
    assert detail["spans"][0]["children"] == [db, call]
    assert detail["critical_path"] == [root, call]  # the call ends last
    assert detail["trace"]["error_message"] == "calendar timed out"
    [edge] = detail["service_map"]
    assert (edge["source_service"], edge["target_service"]) == ("venue", "calendar")
    assert (edge["request_count"], edge["error_count"]) == (1, 1)
    assert edge["avg_duration_ms"] == 40.0

    for bad in ("nope", "0" * 32, "g" * 32, "ab" * 17):
        answer = await api.get(f"{API}/traces/{bad}", headers=ops)
        assert answer.status_code == 422, bad
        assert answer.json()["error"] == "ValidationFailed"
    unknown = await api.get(f"{API}/traces/{new_trace_id()}", headers=ops)
    assert unknown.status_code == 404
    assert "not found" in unknown.json()["detail"]
    anonymous = await api.get(f"{API}/traces/{two_traces['slow']}")
    assert anonymous.status_code == 401


async def test_a_workflow_started_in_a_trace_joins_it_with_its_participants(
    env: Env,
) -> None:
    orch = env.orch
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        ops = await token(orch, "platform_engineer")
        trace_id, planner_span = new_trace_id(), new_span_id()
        started = await api.post(
            f"{API}/workflows",
            json={
                "workflow_name": "booking",
                "correlation_id": "wedding-traced",
                "initiating_service": INITIATOR,
                "context_data": {"wedding_id": "w-1"},
            },
            headers={**ops, "traceparent": f"00-{trace_id}-{planner_span}-01"},
        )
        assert started.status_code == 201, started.text
        workflow_id = started.json()["workflow_id"]
        await env.until(workflow_id, "completed")

        # The venue received the trace with its call attempt's span as the parent.
        [call] = env.services["venue"].calls_to("/reservations")
        received = TraceContext.parse(call.traceparent)
        assert received is not None and received.trace_id == trace_id
        # The planner's client span and the venue's server span, exported over OTLP.
        now = env.clock.now()
        planner = json_export(
            "planner",
            json_span(
                trace_id,
                planner_span,
                "POST /workflows",
                now - timedelta(milliseconds=20),
                30,
                kind=3,
            ),
        )
        venue_span = new_span_id()
        venue = json_export(
            "venue",
            json_span(
                trace_id, venue_span, "POST /reservations", now, 2, parent=received.span_id, kind=2
            ),
        )
        exporter = await token(orch, "service", "venue")
        for body in (planner, venue):
            answer = await export(api, body, exporter)
            assert answer.status_code == 200 and answer.json() == {}, answer.text

        # planner + workflow + 4 steps + 4 call attempts + venue
        detail = await stored_trace(orch, api, ops, trace_id, spans=11)
        for path in (workflow_id, "wedding-traced"):
            via_workflow = await listed(api, ops, f"/workflows/{path}/trace")
            assert via_workflow["trace"]["trace_id"] == trace_id
            assert [s["span_id"] for s in via_workflow["spans"]] == [
                s["span_id"] for s in detail["spans"]
            ]
        missing = await api.get(f"{API}/workflows/no-such-workflow/trace", headers=ops)
        assert missing.status_code == 404

    header = detail["trace"]
    assert header["workflow_id"] == workflow_id
    assert header["correlation_id"] == "wedding-traced"
    spans = by_id(detail)
    order = [s["span_id"] for s in detail["spans"]]
    assert order[0] == planner_span  # the request that started it is the root
    assert detail["spans"][0]["depth"] == 0
    for span in detail["spans"][1:]:  # depth first: every parent before its children
        parent = spans[span["parent_span_id"]]
        assert order.index(parent["span_id"]) < order.index(span["span_id"])
        assert span["depth"] == parent["depth"] + 1
        assert span["span_id"] in parent["children"]
    root = spans[workflow_span_id(UUID(workflow_id))]
    assert root["parent_span_id"] == planner_span
    assert root["span_kind"] == "server"
    assert root["operation_name"] == "workflow booking"
    attempt = spans[received.span_id]
    assert attempt["span_kind"] == "client"
    assert attempt["children"] == [venue_span]
    assert spans[venue_span]["depth"] == 4  # planner, workflow, step, attempt, venue
    edges = {(e["source_service"], e["target_service"]) for e in detail["service_map"]}
    assert {("planner", INITIATOR), (INITIATOR, "venue")} <= edges
    assert detail["critical_path"][0] == planner_span
