"""OTLP/HTTP trace exports into orch's spans: both encodings, gzip, refusals, partial
success, the limits that keep PostgreSQL safe, and the way back out. No database."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from orchcore import errors
from orchcore.tracing.otlp import (
    JSON,
    MAX_ATTRIBUTES,
    MAX_EVENTS,
    MAX_VALUE_LENGTH,
    PROTOBUF,
    MalformedBody,
    OtlpError,
    PayloadTooLarge,
    UnsupportedContentType,
    decode_request,
    encode_response,
    request_to_json,
    spans_to_otlp,
)
from orchcore.tracing.spans import MAX_NAME, Span, SpanEvent
from tests.support.otlp import SPECIFICATION_EXAMPLE

LIMIT = 4 * 1024 * 1024


EXAMPLE_SPAN = Span(
    trace_id="5b8efff798038103d269b633813fc60c",
    span_id="eee19b7ec3c1b174",
    parent_span_id="eee19b7ec3c1b173",
    operation_name="I'm a server span",
    service_name="my.service",
    start_time=datetime(2018, 12, 13, 14, 51, 0, tzinfo=UTC),
    end_time=datetime(2018, 12, 13, 14, 51, 1, tzinfo=UTC),
    span_kind="server",
    status_code="unset",
    tags={
        "my.span.attr": "some value",
        "my.scope.attribute": "some scope attribute",
        "otel.scope.name": "my.library",
        "otel.scope.version": "1.0.0",
    },
)

TRACE = "5b8efff798038103d269b633813fc60c"
START = 1544712660000000000
END = 1544712661000000000


def _string(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _example_protobuf() -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_string("service.name", "my.service")]),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(
                            name="my.library",
                            version="1.0.0",
                            attributes=[_string("my.scope.attribute", "some scope attribute")],
                        ),
                        spans=[
                            OtlpSpan(
                                trace_id=bytes.fromhex("5B8EFFF798038103D269B633813FC60C"),
                                span_id=bytes.fromhex("EEE19B7EC3C1B174"),
                                parent_span_id=bytes.fromhex("EEE19B7EC3C1B173"),
                                name="I'm a server span",
                                start_time_unix_nano=START,
                                end_time_unix_nano=END,
                                kind=OtlpSpan.SPAN_KIND_SERVER,
                                attributes=[_string("my.span.attr", "some value")],
                            )
                        ],
                    )
                ],
            )
        ]
    )


def _json_export(*spans: dict[str, Any], resource: list[Any] | None = None) -> bytes:
    """A JSON export of spans under one resource and one scope."""
    resource_attributes = resource if resource is not None else []
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": resource_attributes},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
            }
        ]
    }
    return json.dumps(document).encode()


def _json_span(span_id: str = "eee19b7ec3c1b174", **fields: Any) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "work",
        "startTimeUnixNano": str(START),
        "endTimeUnixNano": str(END),
    }
    span.update(fields)
    return span


def _decode_json(body: bytes) -> list[Span]:
    export = decode_request(body, JSON, None, max_bytes=LIMIT)
    assert export.rejected == 0, export.errors
    return export.spans


def _one_span(attributes: list[KeyValue], **fields: Any) -> ExportTraceServiceRequest:
    span = OtlpSpan(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex("eee19b7ec3c1b174"),
        name=fields.pop("name", "work"),
        start_time_unix_nano=START,
        end_time_unix_nano=END,
        attributes=attributes,
        **fields,
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )


def _decode_one(request: ExportTraceServiceRequest) -> Span:
    export = decode_request(request.SerializeToString(), PROTOBUF, None, max_bytes=LIMIT)
    assert export.rejected == 0, export.errors
    (span,) = export.spans
    return span


# -- the specification's example, both encodings ------------------------------------------


def test_specification_example_json_decodes_with_lowercase_ids() -> None:
    assert _decode_json(SPECIFICATION_EXAMPLE.encode()) == [EXAMPLE_SPAN]


def test_equivalent_protobuf_decodes_to_the_same_spans() -> None:
    body = _example_protobuf().SerializeToString()
    export = decode_request(body, PROTOBUF, None, max_bytes=LIMIT)
    assert export.spans == _decode_json(SPECIFICATION_EXAMPLE.encode())
    assert (export.rejected, export.errors) == (0, [])


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (JSON, SPECIFICATION_EXAMPLE.encode()),
        (PROTOBUF, _example_protobuf().SerializeToString()),
    ],
)
def test_gzip_bodies_decode(content_type: str, body: bytes) -> None:
    export = decode_request(gzip.compress(body), content_type, "gzip", max_bytes=LIMIT)
    assert export.spans == [EXAMPLE_SPAN]


def test_gzip_members_one_after_another_decode() -> None:
    body = SPECIFICATION_EXAMPLE.encode()
    half = len(body) // 2
    two_members = gzip.compress(body[:half]) + gzip.compress(body[half:])
    assert decode_request(two_members, JSON, "GZIP", max_bytes=LIMIT).spans == [EXAMPLE_SPAN]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json; charset=utf-8", SPECIFICATION_EXAMPLE.encode()),
        ("Application/X-Protobuf ; foo=bar", _example_protobuf().SerializeToString()),
    ],
)
def test_content_type_parameters_and_case_are_fine(content_type: str, body: bytes) -> None:
    assert decode_request(body, content_type, "identity", max_bytes=LIMIT).spans == [EXAMPLE_SPAN]


def test_64_bit_integers_as_strings_and_as_numbers() -> None:
    big = 2**53 + 1  # a double cannot hold it: the string form keeps it exact
    as_strings = _json_span(
        attributes=[{"key": "n", "value": {"intValue": str(big)}}],
    )
    as_numbers = _json_span(
        span_id="eee19b7ec3c1b175",
        startTimeUnixNano=START,
        endTimeUnixNano=END,
        attributes=[{"key": "n", "value": {"intValue": big}}],
    )
    first, second = _decode_json(_json_export(as_strings, as_numbers))
    assert first.tags["n"] == second.tags["n"] == big
    assert first.start_time == second.start_time == EXAMPLE_SPAN.start_time
    assert first.end_time == second.end_time == EXAMPLE_SPAN.end_time


def test_enum_names_and_proto_field_names_are_accepted() -> None:
    # OTLP JSON says integers and lowerCamelCase; json_format's leniency is kept on purpose.
    span = {
        "trace_id": TRACE,
        "span_id": "eee19b7ec3c1b174",
        "parent_span_id": "EEE19B7EC3C1B173",
        "name": "call",
        "start_time_unix_nano": str(START),
        "end_time_unix_nano": str(END),
        "kind": "SPAN_KIND_CLIENT",
        "status": {"code": "STATUS_CODE_ERROR", "message": "refused"},
    }
    (decoded,) = _decode_json(_json_export(span))
    assert decoded.span_kind == "client"
    assert decoded.parent_span_id == "eee19b7ec3c1b173"
    assert (decoded.status_code, decoded.status_message) == ("error", "refused")


def test_unknown_fields_are_ignored() -> None:
    span = _json_span(comingInOtlp2={"x": 1})
    document = json.loads(_json_export(span))
    document["somethingNew"] = [1, 2]
    assert len(_decode_json(json.dumps(document).encode())) == 1


# -- refusals of the whole body ------------------------------------------------------------


def test_malformed_json_is_400_with_a_short_reason() -> None:
    body = b'{"resourceSpans": [' + b"x" * 100_000
    with pytest.raises(MalformedBody) as refused:
        decode_request(body, JSON, None, max_bytes=LIMIT)
    assert refused.value.http_status == 400
    assert len(str(refused.value)) < 300


def test_json_of_the_wrong_shape_does_not_echo_the_input() -> None:
    huge = "9" * 100_000
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": [huge]}]}]}]})
    with pytest.raises(MalformedBody) as refused:
        decode_request(body.encode(), JSON, None, max_bytes=LIMIT)
    assert len(str(refused.value)) < 300


def test_an_integer_too_long_for_python_is_malformed_not_a_crash() -> None:
    body = b'{"resourceSpans": [], "n": ' + b"9" * 5000 + b"}"
    with pytest.raises(MalformedBody):
        decode_request(body, JSON, None, max_bytes=LIMIT)


def test_malformed_protobuf_is_400() -> None:
    truncated = b"\x0a\x05ab"  # field 1, length 5, two bytes follow
    with pytest.raises(MalformedBody) as refused:
        decode_request(truncated, PROTOBUF, None, max_bytes=LIMIT)
    assert refused.value.http_status == 400


@pytest.mark.parametrize("body", [b"[]", b"42", b'"resourceSpans"', b"null"])
def test_json_that_is_not_an_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody, match="not a JSON object"):
        decode_request(body, JSON, None, max_bytes=LIMIT)


def test_json_that_is_not_utf8_is_malformed() -> None:
    with pytest.raises(MalformedBody, match="UTF-8"):
        decode_request('{"a": "é"}'.encode("latin-1"), JSON, None, max_bytes=LIMIT)


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", "", "json"])
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(UnsupportedContentType) as refused:
        decode_request(b"{}", content_type, None, max_bytes=LIMIT)
    assert refused.value.http_status == 415


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, gzip"])
def test_other_content_encodings_are_415(encoding: str) -> None:
    with pytest.raises(UnsupportedContentType):
        decode_request(b"{}", JSON, encoding, max_bytes=LIMIT)


def test_a_raw_body_over_the_limit_is_413() -> None:
    body = _example_protobuf().SerializeToString()
    with pytest.raises(PayloadTooLarge) as refused:
        decode_request(body, PROTOBUF, None, max_bytes=len(body) - 1)
    assert refused.value.http_status == 413
    # the face that maps the bus's size refusal to 413 maps this one too
    assert isinstance(refused.value, errors.PayloadTooLarge)
    assert isinstance(refused.value, OtlpError)


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(50)) + compressor.flush()
    assert len(bomb) < 100_000  # 50 MB of zeros in a small body
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match="inflates"):
            decode_request(bomb, PROTOBUF, "gzip", max_bytes=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * LIMIT  # the limit and a slice, not 50 MB


def test_broken_gzip_is_malformed() -> None:
    body = gzip.compress(SPECIFICATION_EXAMPLE.encode())
    with pytest.raises(MalformedBody, match="truncated"):
        decode_request(body[: len(body) // 2], JSON, "gzip", max_bytes=LIMIT)
    with pytest.raises(MalformedBody, match="gzip"):
        decode_request(SPECIFICATION_EXAMPLE.encode(), JSON, "gzip", max_bytes=LIMIT)


# -- partial success -----------------------------------------------------------------------


def test_bad_spans_are_rejected_and_the_good_ones_kept() -> None:
    body = _json_export(
        _json_span("0000000000000001"),
        _json_span("0000000000000002", traceId="0" * 32),
        _json_span("00000000000003"),  # 7 bytes
        _json_span("0000000000000004", endTimeUnixNano=str(START - 1)),
        _json_span("0000000000000005"),
    )
    export = decode_request(body, JSON, None, max_bytes=LIMIT)
    assert [span.span_id for span in export.spans] == ["0000000000000001", "0000000000000005"]
    assert export.rejected == 3
    assert export.errors == [
        "1 span with an invalid trace id",
        "1 span with an invalid span id",
        "1 span with an end time before its start time",
    ]
    assert export.error_message == "; ".join(export.errors)


def test_each_reason_is_counted_once_with_its_number() -> None:
    body = _json_export(
        _json_span("0000000000000001", traceId="not hex at all"),
        _json_span("0000000000000002", traceId="5B8EFFF7"),  # hex, too short
        _json_span("0000000000000003", parentSpanId="abc"),
        _json_span("0000000000000004", name=""),
        _json_span("0000000000000005", name="\u0000"),  # nothing left once NUL goes
        _json_span("0000000000000006", startTimeUnixNano="0"),
        _json_span("0000000000000007", endTimeUnixNano=None),
        _json_span("0000000000000008", spanId=7),
    )
    export = decode_request(body, JSON, None, max_bytes=LIMIT)
    assert export.spans == []
    assert export.rejected == 8
    assert export.errors == [
        "2 spans with an invalid trace id",
        "1 span with an invalid parent span id",
        "2 spans with no name",
        "2 spans with no start or end time",
        "1 span with an invalid span id",
    ]


def test_a_parent_of_zeros_is_a_root() -> None:
    (span,) = _decode_json(_json_export(_json_span(parentSpanId="0" * 16)))
    assert span.parent_span_id is None
    (span,) = _decode_json(_json_export(_json_span(parentSpanId="")))
    assert span.parent_span_id is None
    short_zeros = _json_export(_json_span(parentSpanId="000000"))
    assert decode_request(short_zeros, JSON, None, max_bytes=LIMIT).errors == [
        "1 span with an invalid parent span id"
    ]


def test_events_are_capped_and_the_rest_counted() -> None:
    events = [OtlpSpan.Event(name=f"e{i}", time_unix_nano=START) for i in range(MAX_EVENTS + 3)]
    span = _decode_one(_one_span([], events=events, dropped_events_count=2))
    assert [event.name for event in span.events] == [f"e{i}" for i in range(MAX_EVENTS)]
    assert span.tags["otel.dropped_events_count"] == 2 + 3


def test_an_empty_export_is_a_success() -> None:
    export = decode_request(b"", PROTOBUF, None, max_bytes=LIMIT)
    assert (export.spans, export.rejected, export.errors) == ([], 0, [])
    assert decode_request(b"{}", JSON, None, max_bytes=LIMIT).spans == []


def test_encode_response_protobuf() -> None:
    body, media_type = encode_response(3, "3 spans with an invalid trace id", PROTOBUF)
    assert media_type == PROTOBUF
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 3
    assert response.partial_success.error_message == "3 spans with an invalid trace id"

    body, media_type = encode_response(0, "", "application/x-protobuf")
    assert (body, media_type) == (b"", PROTOBUF)
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")


def test_encode_response_json() -> None:
    body, media_type = encode_response(3, "3 spans with no name", "application/json; charset=utf-8")
    assert media_type == JSON
    assert json.loads(body) == {
        "partialSuccess": {"rejectedSpans": "3", "errorMessage": "3 spans with no name"}
    }
    assert encode_response(0, "", JSON) == (b"{}", JSON)


# -- what reaches PostgreSQL ---------------------------------------------------------------


def test_nul_is_stripped_everywhere() -> None:
    request = _one_span(
        [
            _string("k\x00ey", "va\x00lue"),
            KeyValue(
                key="list",
                value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a\x00b")])),
            ),
        ],
        name="na\x00me",
        events=[OtlpSpan.Event(name="ev\x00ent", time_unix_nano=START)],
        status=Status(code=Status.STATUS_CODE_ERROR, message="bro\x00ken"),
    )
    request.resource_spans[0].resource.attributes.append(_string("service.name", "sv\x00c"))
    span = _decode_one(request)
    assert span.operation_name == "name"
    assert span.service_name == "svc"
    assert span.tags == {"key": "value", "list": ["ab"]}
    assert span.events[0].name == "event"
    assert span.status_message == "broken"


def test_attributes_are_capped_and_the_rest_counted() -> None:
    attributes = [_string(f"a{i:03}", "x") for i in range(MAX_ATTRIBUTES + 72)]
    request = _one_span(attributes, dropped_attributes_count=5)
    request.resource_spans[0].resource.attributes.append(_string("host.name", "h1"))
    span = _decode_one(request)
    kept = [key for key in span.tags if key.startswith("a")]
    assert kept == [f"a{i:03}" for i in range(MAX_ATTRIBUTES)]
    assert "host.name" not in span.tags  # the span's own attributes come first
    assert span.tags["otel.dropped_attributes_count"] == 5 + 72 + 1


def test_long_strings_and_names_are_cut() -> None:
    span = _decode_one(
        _one_span(
            [_string("long", "y" * 10_000), _string("k" * 1000, "v")],
            name="n" * 2000,
        )
    )
    assert span.tags["long"] == "y" * MAX_VALUE_LENGTH
    assert "k" * MAX_NAME in span.tags
    assert span.operation_name == "n" * MAX_NAME


def test_any_value_types() -> None:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="inner", value=AnyValue(int_value=-7)),
                KeyValue(key="flags", value=AnyValue(array_value=ArrayValue(values=[]))),
            ]
        )
    )
    span = _decode_one(
        _one_span(
            [
                KeyValue(key="s", value=AnyValue(string_value="text")),
                KeyValue(key="b", value=AnyValue(bool_value=True)),
                KeyValue(key="i", value=AnyValue(int_value=2**62)),
                KeyValue(key="d", value=AnyValue(double_value=0.25)),
                KeyValue(key="nan", value=AnyValue(double_value=float("nan"))),
                KeyValue(key="inf", value=AnyValue(double_value=float("-inf"))),
                KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00\xffA")),
                KeyValue(
                    key="a",
                    value=AnyValue(
                        array_value=ArrayValue(
                            values=[AnyValue(string_value="x"), AnyValue(int_value=1), nested]
                        )
                    ),
                ),
                KeyValue(key="kv", value=nested),
                KeyValue(key="empty", value=AnyValue()),
            ]
        )
    )
    assert span.tags == {
        "s": "text",
        "b": True,
        "i": 2**62,
        "d": 0.25,
        "nan": "NaN",  # PostgreSQL's jsonb has no NaN
        "inf": "-Infinity",
        "raw": "00ff41",
        "a": ["x", 1, {"inner": -7, "flags": []}],
        "kv": {"inner": -7, "flags": []},
        "empty": None,
    }


def test_any_value_types_in_json() -> None:
    attributes = [
        {"key": "d", "value": {"doubleValue": 1.5}},
        {"key": "nan", "value": {"doubleValue": "NaN"}},
        {"key": "b", "value": {"boolValue": False}},
        {"key": "raw", "value": {"bytesValue": "AP9B"}},  # bytes stay base64 in OTLP JSON
        {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}},
        {
            "key": "kv",
            "value": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "3"}}]}},
        },
    ]
    (span,) = _decode_json(_json_export(_json_span(attributes=attributes)))
    assert span.tags == {
        "d": 1.5,
        "nan": "NaN",
        "b": False,
        "raw": "00ff41",
        "a": ["x"],
        "kv": {"k": 3},
        "otel.scope.name": "test",
    }


def test_resource_scope_and_span_attributes_merge_span_first() -> None:
    resource = [
        {"key": "service.name", "value": {"stringValue": "vendors"}},
        {"key": "host.name", "value": {"stringValue": "h1"}},
        {"key": "deployment.environment", "value": {"stringValue": "prod"}},
    ]
    span = _json_span(attributes=[{"key": "host.name", "value": {"stringValue": "pod-7"}}])
    (decoded,) = _decode_json(_json_export(span, resource=resource))
    assert decoded.service_name == "vendors"
    assert decoded.tags == {
        "host.name": "pod-7",
        "deployment.environment": "prod",
        "otel.scope.name": "test",
    }


def test_a_resource_without_service_name_is_unknown_service() -> None:
    (span,) = _decode_json(_json_export(_json_span()))
    assert span.service_name == "unknown_service"


def test_kind_status_events_links_and_tracestate() -> None:
    link_trace = "0af7651916cd43dd8448eb211c80319c"
    span = _json_span(
        kind=0,
        traceState="congo=t61rcWkgMzE",
        status={"code": 1},
        events=[
            {
                "name": "retry scheduled",
                "timeUnixNano": str(START + 500_000_000),
                "attributes": [{"key": "attempt", "value": {"intValue": 2}}],
            },
            {"name": "no time"},
        ],
        links=[
            {"traceId": link_trace.upper(), "spanId": "B7AD6B7169203331"},
            {"traceId": "00", "spanId": "b7ad6b7169203331"},  # not a link: dropped, counted
        ],
    )
    (decoded,) = _decode_json(_json_export(span))
    assert decoded.span_kind == "internal"  # UNSPECIFIED
    assert (decoded.status_code, decoded.status_message) == ("ok", None)
    assert decoded.events == [
        SpanEvent(
            name="retry scheduled",
            at=datetime(2018, 12, 13, 14, 51, 0, 500_000, tzinfo=UTC),
            attributes={"attempt": 2},
        ),
        SpanEvent(name="no time", at=decoded.start_time),
    ]
    assert decoded.tags["otel.links"] == [{"trace_id": link_trace, "span_id": "b7ad6b7169203331"}]
    assert decoded.tags["otel.dropped_links_count"] == 1
    assert decoded.tags["w3c.tracestate"] == "congo=t61rcWkgMzE"


def test_nanoseconds_become_aware_utc_microseconds() -> None:
    span = _decode_one(_one_span([]))
    start = _json_span(startTimeUnixNano=str(START + 1_999), endTimeUnixNano=str(START + 1_999))
    (decoded,) = _decode_json(_json_export(start))
    assert span.start_time.tzinfo is UTC
    assert decoded.start_time == datetime(2018, 12, 13, 14, 51, 0, 1, tzinfo=UTC)
    assert decoded.duration_microseconds == 0


# -- the way back out ----------------------------------------------------------------------


def _orch_spans() -> list[Span]:
    start = datetime(2026, 12, 3, 12, 0, 0, 123_456, tzinfo=UTC)
    end = datetime(2026, 12, 3, 12, 0, 1, 654_321, tzinfo=UTC)
    root = Span(
        trace_id=TRACE,
        span_id="1111111111111111",
        parent_span_id=None,
        operation_name="saga book-wedding",
        service_name="orch",
        start_time=start,
        end_time=end,
        span_kind="internal",
        status_code="error",
        status_message="step pay failed",
        tags={
            "orch.workflow.id": "wf-1",
            "orch.attempt": 3,
            "orch.ratio": 0.5,
            "orch.dry_run": False,
            "orch.steps": ["reserve", "pay"],
            "orch.context": {"guests": 120, "venue": {"city": "Porto"}},
            "otel.scope.name": "orchcore.saga",
            "otel.scope.version": "0.1.0",
        },
        events=[SpanEvent("compensation started", end, {"orch.step": "reserve"})],
    )
    call = Span(
        trace_id=TRACE,
        span_id="2222222222222222",
        parent_span_id="1111111111111111",
        operation_name="POST /payments",
        service_name="payments",
        start_time=start,
        end_time=start,
        span_kind="client",
        tags={
            "http.request.method": "POST",
            "w3c.tracestate": "orch=1",
            "otel.links": [{"trace_id": "a" * 32, "span_id": "b" * 16}],
        },
    )
    step = Span(
        trace_id=TRACE,
        span_id="3333333333333333",
        parent_span_id="1111111111111111",
        operation_name="step reserve",
        service_name="orch",
        start_time=start,
        end_time=end,
        span_kind="consumer",
        status_code="ok",
    )
    return [root, call, step]


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_round_trip(encoding: str) -> None:
    spans = _orch_spans()
    request = spans_to_otlp(spans)
    if encoding == "protobuf":
        body, content_type = request.SerializeToString(), PROTOBUF
    else:
        body, content_type = request_to_json(request), JSON
    export = decode_request(gzip.compress(body), content_type, "gzip", max_bytes=LIMIT)
    assert export.rejected == 0, export.errors
    assert sorted(export.spans, key=lambda span: span.span_id) == spans


def test_spans_to_otlp_groups_by_service_and_scope() -> None:
    request = spans_to_otlp(_orch_spans())
    services = {
        resource.resource.attributes[0].value.string_value: [
            (scope.scope.name, len(scope.spans)) for scope in resource.scope_spans
        ]
        for resource in request.resource_spans
    }
    assert services == {"orch": [("orchcore.saga", 1), ("", 1)], "payments": [("", 1)]}
    root = request.resource_spans[0].scope_spans[0].spans[0]
    assert root.trace_id == bytes.fromhex(TRACE)
    assert root.start_time_unix_nano == 1_796_299_200_123_456_000
    assert root.status.code == Status.STATUS_CODE_ERROR


def test_request_to_json_writes_hex_ids_and_integer_enums() -> None:
    document = json.loads(request_to_json(spans_to_otlp(_orch_spans())))
    span = document["resourceSpans"][1]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == TRACE
    assert span["parentSpanId"] == "1111111111111111"
    assert span["links"] == [{"traceId": "a" * 32, "spanId": "b" * 16}]
    assert span["kind"] == 3


def test_what_the_opentelemetry_sdk_exports_decodes() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=SdkResource.create({"service.name": "vendors"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("vendors.http", "2.1")
    with (
        tracer.start_as_current_span("GET /vendors", kind=SpanKind.SERVER) as parent,
        tracer.start_as_current_span("SELECT vendors", kind=SpanKind.CLIENT) as child,
    ):
        child.set_attribute("db.system", "postgresql")
        child.add_event("retry", {"attempt": 2})
        child.set_status(StatusCode.ERROR, "timeout")
    provider.shutdown()

    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    export = decode_request(body, PROTOBUF, None, max_bytes=LIMIT)
    assert export.rejected == 0, export.errors
    by_name = {span.operation_name: span for span in export.spans}
    server, client = by_name["GET /vendors"], by_name["SELECT vendors"]
    context = parent.get_span_context()
    assert server.trace_id == client.trace_id == f"{context.trace_id:032x}"
    assert server.parent_span_id is None
    assert client.parent_span_id == server.span_id == f"{context.span_id:016x}"
    assert {span.service_name for span in export.spans} == {"vendors"}
    assert (server.span_kind, client.span_kind) == ("server", "client")
    assert (client.status_code, client.status_message) == ("error", "timeout")
    assert client.tags["db.system"] == "postgresql"
    assert client.tags["otel.scope.name"] == "vendors.http"
    assert client.tags["telemetry.sdk.language"] == "python"  # a resource attribute
    assert [(event.name, event.attributes) for event in client.events] == [
        ("retry", {"attempt": 2})
    ]
