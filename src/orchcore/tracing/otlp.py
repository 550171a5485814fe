"""OTLP/HTTP trace exports in and out of orch's span model.

In: :func:`decode_request` turns the body of a ``POST /v1/traces`` (binary protobuf or
OTLP JSON, gzipped or not) into :class:`~orchcore.tracing.spans.Span` values, keeping the
good spans and counting the bad ones, as OTLP's partial success defines it;
:func:`encode_response` answers in the request's encoding. Out: :func:`spans_to_otlp`
builds an ``ExportTraceServiceRequest`` from orch's spans for a collector, and
:func:`request_to_json` writes one as OTLP JSON.

OTLP JSON is protobuf's JSON mapping with one difference that matters here: trace and
span ids are hex strings, not base64 (https://opentelemetry.io/docs/specs/otlp/). The
JSON path turns hex ids into base64 and lets protobuf's ``json_format`` do the rest, so
both encodings become the same message before one conversion reads it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from orchcore import errors
from orchcore.tracing.spans import (
    MAX_NAME,
    Span,
    SpanEvent,
    SpanKind,
    SpanStatus,
    valid_span_id,
    valid_trace_id,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# Limits on what one span may bring. 128 attributes, events and links a span is the
# OpenTelemetry SDK's default span limit (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and friends);
# the SDK sets no default length for values, 4096 characters is orch's own bound of the
# same order, enough for a SQL statement or a stack trace's head. What is cut off is
# counted in the tags OpenTelemetry names for it (otel.dropped_attributes_count, ...).
MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
MAX_LINKS = 128
MAX_VALUE_LENGTH = 4096

#: The service of spans whose resource has no ``service.name``, as OpenTelemetry names it.
UNKNOWN_SERVICE = "unknown_service"

# Inflate in slices this large, so a gzip bomb is refused after at most max_bytes plus one
# slice of output, never inflated whole.
_INFLATE_CHUNK = 64 * 1024
# Reasons in errors quote at most this much of what they complain about.
_MAX_REASON = 200

_KINDS: dict[OtlpSpan.SpanKind.ValueType, SpanKind] = {
    OtlpSpan.SPAN_KIND_INTERNAL: "internal",
    OtlpSpan.SPAN_KIND_SERVER: "server",
    OtlpSpan.SPAN_KIND_CLIENT: "client",
    OtlpSpan.SPAN_KIND_PRODUCER: "producer",
    OtlpSpan.SPAN_KIND_CONSUMER: "consumer",
}
_OTLP_KINDS = {kind: number for number, kind in _KINDS.items()}
_STATUSES: dict[Status.StatusCode.ValueType, SpanStatus] = {
    Status.STATUS_CODE_UNSET: "unset",
    Status.STATUS_CODE_OK: "ok",
    Status.STATUS_CODE_ERROR: "error",
}
_OTLP_STATUSES = {status: number for number, status in _STATUSES.items()}

# Tags decode_request derives from the message rather than from attributes; spans_to_otlp
# puts them back where they came from.
_SCOPE_NAME = "otel.scope.name"
_SCOPE_VERSION = "otel.scope.version"
_TRACESTATE = "w3c.tracestate"
_LINKS = "otel.links"
_DROPPED_ATTRIBUTES = "otel.dropped_attributes_count"
_DROPPED_EVENTS = "otel.dropped_events_count"
_DROPPED_LINKS = "otel.dropped_links_count"
_SERVICE_NAME = "service.name"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
# What an id that is not hex becomes on the JSON path: one byte, a length no id has, so
# that span alone is rejected for its id instead of the whole request for its syntax.
_NOT_AN_ID = base64.b64encode(b"\xff").decode("ascii")
# Id fields as OTLP JSON spells them and as protobuf's field names do (json_format reads both).
_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class OtlpError(errors.OrchError):
    """An export refused whole; ``http_status`` is what OTLP/HTTP answers with."""

    http_status = 400


class MalformedBody(OtlpError):
    """The body does not decode as an ExportTraceServiceRequest (OTLP's "bad data")."""

    http_status = 400


class PayloadTooLarge(OtlpError, errors.PayloadTooLarge):
    """The body, raw or inflated, is over the limit. Also an ``errors.PayloadTooLarge``,
    so a face that maps the bus's size refusal to 413 maps this one too."""

    http_status = 413


class UnsupportedContentType(OtlpError):
    """A content type or content encoding OTLP/HTTP does not define."""

    http_status = 415


@dataclass(slots=True)
class DecodedExport:
    """The spans kept from one export, and how many were rejected and why."""

    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    #: one line a reason, with its count: "3 spans with an invalid trace id"
    errors: list[str] = field(default_factory=list)

    @property
    def error_message(self) -> str:
        """The reasons as one message, for the partial success's error_message."""
        return "; ".join(self.errors)


class _Rejected(Exception):
    """A span that cannot be kept; the reason completes "N spans with ..."."""


def decode_request(
    body: bytes, content_type: str, content_encoding: str | None, *, max_bytes: int
) -> DecodedExport:
    """Decode an OTLP/HTTP trace export. Raises :class:`OtlpError` when the body is
    refused whole; spans that are bad on their own are counted in ``rejected``."""
    media_type = _media_type(content_type)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    raw = _decode_content(body, content_encoding, max_bytes)
    request = _parse_protobuf(raw) if media_type == PROTOBUF else _parse_json(raw)
    return _convert(request)


def encode_response(rejected: int, error_message: str, content_type: str) -> tuple[bytes, str]:
    """The ExportTraceServiceResponse for an accepted export, in the request's encoding
    (OTLP/HTTP answers in the content type it was sent). Returns (body, media type)."""
    response = ExportTraceServiceResponse()
    # Full success leaves partial_success unset, as the specification requires.
    if rejected > 0:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = error_message
    if _is_json(content_type):
        return json.dumps(json_format.MessageToDict(response)).encode(), JSON
    return response.SerializeToString(), PROTOBUF


def spans_to_otlp(spans: Iterable[Span]) -> ExportTraceServiceRequest:
    """orch's spans as an export for an OTLP collector: one ResourceSpans a service, one
    ScopeSpans a scope. The inverse of :func:`decode_request` for what OTLP can carry
    (baggage is not sent); the spans' ids must be valid."""
    request = ExportTraceServiceRequest()
    scopes: dict[tuple[str, str, str], ScopeSpans] = {}
    services: dict[str, ResourceSpans] = {}
    for span in spans:
        scope_name = _str_tag(span.tags, _SCOPE_NAME)
        scope_version = _str_tag(span.tags, _SCOPE_VERSION)
        key = (span.service_name, scope_name, scope_version)
        scope = scopes.get(key)
        if scope is None:
            resource = services.get(span.service_name)
            if resource is None:
                resource = request.resource_spans.add()
                service = resource.resource.attributes.add(key=_SERVICE_NAME)
                service.value.string_value = span.service_name
                services[span.service_name] = resource
            scope = resource.scope_spans.add()
            scope.scope.name = scope_name
            scope.scope.version = scope_version
            scopes[key] = scope
        _fill_otlp_span(scope.spans.add(), span)
    return request


def request_to_json(request: ExportTraceServiceRequest) -> bytes:
    """An export as OTLP JSON: lowerCamelCase names, enums as integers, hex ids."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    _map_ids(document, _base64_to_hex)
    return json.dumps(document).encode()


# -- the body: content type, encoding, parsing --------------------------------------------


def _media_type(content_type: str) -> str:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in (PROTOBUF, JSON):
        raise UnsupportedContentType(
            f"content type {_quote(media_type)} is not OTLP/HTTP: use {PROTOBUF} or {JSON}"
        )
    return media_type


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == JSON


def _decode_content(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(body, max_bytes)
    # RFC 9110 answers an unsupported content coding with 415, like a media type.
    raise UnsupportedContentType(
        f"content encoding {_quote(encoding)} is not supported: use gzip or none"
    )


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body (one member or several) to at most max_bytes, slice by slice,
    so a small body that inflates to gigabytes is refused after max_bytes of work."""
    inflated = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
        while not inflater.eof:
            room = max_bytes - len(inflated) + 1  # one byte over is enough to know
            try:
                piece = inflater.decompress(data, min(_INFLATE_CHUNK, room))
            except zlib.error as exc:
                raise MalformedBody(f"the body is not valid gzip ({exc})") from None
            inflated += piece
            if len(inflated) > max_bytes:
                raise PayloadTooLarge(f"the body inflates to more than {max_bytes} bytes")
            data = inflater.unconsumed_tail
            if not piece and not data:
                raise MalformedBody("the gzip body is truncated")
        # gzip allows members one after another, and writers may pad the end with zeros.
        data = inflater.unused_data.lstrip(b"\x00")
        if not data:
            return bytes(inflated)


def _parse_protobuf(raw: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError:
        raise MalformedBody("the body is not a protobuf ExportTraceServiceRequest") from None
    return request


def _parse_json(raw: bytes) -> ExportTraceServiceRequest:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("the body is not UTF-8") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not JSON: {exc.msg} at char {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # an integer of 5000 digits, deep nesting
        raise MalformedBody(_cut(f"the body is not usable JSON: {exc}")) from None
    if not isinstance(document, dict):
        raise MalformedBody("the body is not a JSON object")
    _map_ids(document, _hex_to_base64)
    request = ExportTraceServiceRequest()
    try:
        # OTLP receivers must ignore fields they do not know (newer OTLP versions add some).
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        # json_format quotes the offending value, which may be long: cut it.
        raise MalformedBody(_cut(f"the body is not an OTLP trace export: {exc}")) from None
    return request


def _map_ids(document: dict[str, Any], convert: Callable[[Any], Any]) -> None:
    """Apply convert to every trace and span id of a JSON export (spans' and links'), in
    place. Shapes that are not lists of objects are left for json_format to refuse."""
    for resource in _objects(document, "resourceSpans", "resource_spans"):
        for scope in _objects(resource, "scopeSpans", "scope_spans"):
            for span in _objects(scope, "spans"):
                for holder in (span, *_objects(span, "links")):
                    for name in _ID_FIELDS:
                        if name in holder:
                            holder[name] = convert(holder[name])


def _objects(parent: dict[str, Any], *names: str) -> Iterator[dict[str, Any]]:
    for name in names:
        items = parent.get(name)
        if isinstance(items, list):
            yield from (item for item in items if isinstance(item, dict))


def _hex_to_base64(value: Any) -> Any:
    if value is None:  # JSON null: the field's default, as protobuf's JSON mapping says
        return None
    if isinstance(value, str) and _HEX.fullmatch(value):
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return _NOT_AN_ID


def _base64_to_hex(value: Any) -> Any:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, TypeError, ValueError):
        return value


# -- the message: spans out of an ExportTraceServiceRequest --------------------------------


def _convert(request: ExportTraceServiceRequest) -> DecodedExport:
    export = DecodedExport()
    reasons: Counter[str] = Counter()
    for resource_spans in request.resource_spans:
        resource_tags, _ = _attributes(resource_spans.resource.attributes)
        service = resource_tags.pop(_SERVICE_NAME, None)
        # service.name is the span's service column; kept once, not again as a tag.
        service_name = _text(service, MAX_NAME) if isinstance(service, str) else ""
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_tags, _ = _attributes(scope.attributes)
            # Scope attributes are more specific than the resource's: they win a clash.
            inherited = {**resource_tags, **scope_tags}
            derived: dict[str, Any] = {}
            if scope.name:
                derived[_SCOPE_NAME] = _text(scope.name, MAX_NAME)
            if scope.version:
                derived[_SCOPE_VERSION] = _text(scope.version, MAX_NAME)
            for otlp_span in scope_spans.spans:
                try:
                    span = _span(otlp_span, service_name or UNKNOWN_SERVICE, inherited, derived)
                except _Rejected as rejected:
                    reasons[str(rejected)] += 1
                    continue
                export.spans.append(span)
    export.rejected = sum(reasons.values())
    export.errors = [f"{n} span{'' if n == 1 else 's'} with {why}" for why, n in reasons.items()]
    return export


def _span(
    otlp: OtlpSpan, service_name: str, inherited: dict[str, Any], derived: dict[str, Any]
) -> Span:
    trace_id = otlp.trace_id.hex()
    if not valid_trace_id(trace_id):
        raise _Rejected("an invalid trace id")
    span_id = otlp.span_id.hex()
    if not valid_span_id(span_id):
        raise _Rejected("an invalid span id")
    parent_span_id = _parent_id(otlp.parent_span_id)
    name = _text(otlp.name, MAX_NAME)
    if not name:
        raise _Rejected("no name")  # OTLP requires one; "unnamed" would say nothing
    start, end = otlp.start_time_unix_nano, otlp.end_time_unix_nano
    if not start or not end:
        raise _Rejected("no start or end time")
    if end < start:
        raise _Rejected("an end time before its start time")

    events = [_event(event, start) for event in otlp.events[:MAX_EVENTS]]
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        operation_name=name,
        service_name=service_name,
        start_time=_time(start),
        end_time=_time(end),
        span_kind=_KINDS.get(otlp.kind, "internal"),  # UNSPECIFIED (and unknown) → internal
        status_code=_STATUSES.get(otlp.status.code, "unset"),
        status_message=_text(otlp.status.message, MAX_VALUE_LENGTH) or None,
        tags=_tags(otlp, inherited, derived, events_kept=len(events)),
        events=events,
    )


def _tags(
    otlp: OtlpSpan, inherited: dict[str, Any], derived: dict[str, Any], *, events_kept: int
) -> dict[str, Any]:
    tags, dropped = _attributes(otlp.attributes)
    # The span's own attributes win over the scope's and the resource's (same names).
    for key, value in inherited.items():
        if key in tags:
            continue
        if len(tags) >= MAX_ATTRIBUTES:
            dropped += 1
        else:
            tags[key] = value
    # Tags derived from the message itself come on top of the cap: at most a handful.
    tags.update(derived)
    if otlp.trace_state:
        tags[_TRACESTATE] = _text(otlp.trace_state, MAX_VALUE_LENGTH)
    links = [
        {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
        for link in otlp.links[:MAX_LINKS]
        if valid_trace_id(link.trace_id.hex()) and valid_span_id(link.span_id.hex())
    ]
    if links:
        tags[_LINKS] = links
    for tag, count in (
        (_DROPPED_ATTRIBUTES, otlp.dropped_attributes_count + dropped),
        (_DROPPED_EVENTS, otlp.dropped_events_count + len(otlp.events) - events_kept),
        (_DROPPED_LINKS, otlp.dropped_links_count + len(otlp.links) - len(links)),
    ):
        if count > 0:
            tags[tag] = count
    return tags


def _parent_id(raw: bytes) -> str | None:
    # Empty means a root span. So does all zeros: the OpenTelemetry Collector reads a zero
    # SpanID as empty, and converters from Zipkin or Jaeger send roots that way.
    if not raw or raw == bytes(8):
        return None
    parent = raw.hex()
    if not valid_span_id(parent):
        raise _Rejected("an invalid parent span id")
    return parent


def _event(event: OtlpSpan.Event, span_start: int) -> SpanEvent:
    attributes, _ = _attributes(event.attributes)
    # An event without a time is not worth refusing its span for: it happened in the span.
    return SpanEvent(
        name=_text(event.name, MAX_NAME),
        at=_time(event.time_unix_nano or span_start),
        attributes=attributes,
    )


def _attributes(pairs: Iterable[KeyValue]) -> tuple[dict[str, Any], int]:
    """Attributes as a dict of at most MAX_ATTRIBUTES, and how many did not fit."""
    values: dict[str, Any] = {}
    dropped = 0
    for pair in pairs:
        key = _text(pair.key, MAX_NAME)
        if not key:
            continue
        if key not in values and len(values) >= MAX_ATTRIBUTES:
            dropped += 1
            continue
        values[key] = _value(pair.value)
    return values, dropped


def _value(value: AnyValue) -> Any:
    """An AnyValue as JSON-ready Python. Nested arrays and lists are not capped in count:
    the body's size bounds them, and protobuf's recursion limit bounds their depth."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _text(value.string_value, MAX_VALUE_LENGTH)
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        if math.isfinite(number):
            return number
        # PostgreSQL's jsonb has no NaN or infinity: keep them as protobuf's JSON spells them.
        return "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {_text(pair.key, MAX_NAME): _value(pair.value) for pair in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value[: MAX_VALUE_LENGTH // 2].hex()
    return None  # an AnyValue with nothing set: OTLP's empty value


def _text(value: str, limit: int) -> str:
    # PostgreSQL refuses NUL in text and in jsonb strings: drop it before the cut.
    return value.replace("\x00", "")[:limit]


def _time(unix_nanos: int) -> datetime:
    # Integer arithmetic: a float of nanoseconds since 1970 loses the microseconds.
    return _EPOCH + timedelta(microseconds=unix_nanos // 1000)


def _cut(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"


def _quote(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:63] + "…")


# -- the other way: orch's spans as OTLP --------------------------------------------------


def _fill_otlp_span(otlp: OtlpSpan, span: Span) -> None:
    otlp.trace_id = bytes.fromhex(span.trace_id)
    otlp.span_id = bytes.fromhex(span.span_id)
    if span.parent_span_id:
        otlp.parent_span_id = bytes.fromhex(span.parent_span_id)
    otlp.name = span.operation_name
    otlp.kind = _OTLP_KINDS[span.span_kind]
    otlp.start_time_unix_nano = _unix_nanos(span.start_time)
    otlp.end_time_unix_nano = _unix_nanos(span.end_time)
    if span.status_code != "unset" or span.status_message:
        otlp.status.code = _OTLP_STATUSES[span.status_code]
        otlp.status.message = span.status_message or ""

    tags = dict(span.tags)
    for derived in (_SERVICE_NAME, _SCOPE_NAME, _SCOPE_VERSION):
        tags.pop(derived, None)  # carried by the resource and the scope
    if isinstance(tags.get(_TRACESTATE), str):
        otlp.trace_state = tags.pop(_TRACESTATE)
    links = tags.get(_LINKS)
    if isinstance(links, list) and all(_is_link(link) for link in links):
        del tags[_LINKS]
        for link in links:
            added = otlp.links.add()
            added.trace_id = bytes.fromhex(link["trace_id"])
            added.span_id = bytes.fromhex(link["span_id"])
    for tag, setter in (
        (_DROPPED_ATTRIBUTES, "dropped_attributes_count"),
        (_DROPPED_EVENTS, "dropped_events_count"),
        (_DROPPED_LINKS, "dropped_links_count"),
    ):
        count = tags.get(tag)
        if isinstance(count, int) and not isinstance(count, bool) and 0 < count < 2**32:
            setattr(otlp, setter, tags.pop(tag))
    otlp.attributes.extend(_key_values(tags))
    for event in span.events:
        added_event = otlp.events.add()
        added_event.name = event.name
        added_event.time_unix_nano = _unix_nanos(event.at)
        added_event.attributes.extend(_key_values(event.attributes))


def _is_link(link: Any) -> bool:
    return (
        isinstance(link, dict)
        and valid_trace_id(str(link.get("trace_id", "")))
        and valid_span_id(str(link.get("span_id", "")))
    )


def _key_values(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(key), value=_any_value(value)) for key, value in values.items()]


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))  # past int64: keep the digits
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any_value(item) for item in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=_key_values(value)))
    if value is None:
        return AnyValue()
    return AnyValue(string_value=str(value))


def _str_tag(tags: dict[str, Any], key: str) -> str:
    value = tags.get(key)
    return value if isinstance(value, str) else ""


def _unix_nanos(moment: datetime) -> int:
    # orch's times are aware; a naive one is taken as UTC rather than as local time.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
