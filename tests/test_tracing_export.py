"""Spans leave orch and arrive at it by OTLP: forwarded to a second OTLP receiver (with
retries while it refuses), taken on the daemon's own --otlp-listen listener, and
removed once past their retention."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchcore import Orch, Settings
from orchcore.tracing.spans import Span
from tests.support.api import serve_asgi
from tests.support.daemons import DaemonProcess
from tests.support.polling import eventually

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(number: int, *, started: datetime | None = None, error: bool = False) -> Span:
    start = started or datetime.now(UTC)
    return Span(
        trace_id=TRACE,
        span_id=f"{number:016x}",
        parent_span_id=None if number == 1 else f"{1:016x}",
        operation_name=f"op {number}",
        service_name="booking",
        start_time=start,
        end_time=start + timedelta(milliseconds=5),
        status_code="error" if error else "unset",
        tags={"n": number},
    )


class Receiver:
    """A second OTLP/HTTP receiver: keeps what it is sent, refuses the first N exports."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.refuse_first = refuse_first
        self.exports: list[ExportTraceServiceRequest] = []
        self.refused = 0

    async def handle(self, request: Request) -> Response:
        if self.refused < self.refuse_first:
            self.refused += 1
            return Response(status_code=503, headers={"Retry-After": "0"})
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        self.exports.append(message)
        return Response(b"", media_type="application/x-protobuf")

    def span_ids(self) -> list[str]:
        return [
            s.span_id.hex()
            for export in self.exports
            for resource in export.resource_spans
            for scope in resource.scope_spans
            for s in scope.spans
        ]


def receiving(receiver: Receiver) -> contextlib.AbstractAsyncContextManager[str]:
    app = Starlette(routes=[Route("/v1/traces", receiver.handle, methods=["POST"])])
    return serve_asgi(app)


async def test_every_span_is_forwarded_and_a_refusing_receiver_gets_them_later(dsn: str) -> None:
    receiver = Receiver(refuse_first=2)
    async with receiving(receiver) as url:
        orch = await Orch.open(Settings(database_url=dsn, otlp_export_endpoint=url))
        try:
            assert orch.tracing.forwarder is not None
            assert orch.tracing.forwarder.url == f"{url}/v1/traces"
            orch.tracing.recorder.finish(span(1), sampled=True)  # orch's own
            orch.tracing.recorder.ingest([span(2), span(3)])  # as if received by OTLP
            await eventually(lambda: len(receiver.span_ids()) >= 3, timeout=15)
            assert sorted(receiver.span_ids()) == [f"{n:016x}" for n in (1, 2, 3)]
            assert receiver.refused == 2  # retried after each 503, nothing lost
            assert orch.tracing.forwarder.dropped == 0
            await orch.tracing.flush()  # and kept here as well
            stored = await orch.db.fetchval(
                "SELECT count(*) FROM distributed_traces WHERE trace_id = $1", TRACE
            )
            assert stored == 3
        finally:
            await orch.close()
    settings = Settings(otlp_export_endpoint="http://collector:4318")
    assert settings.span_retention_hours == 1.0  # exporting: only a recent window here
    assert Settings().span_retention_hours == 72.0


async def test_unsampled_spans_are_not_forwarded_but_errors_are(dsn: str) -> None:
    receiver = Receiver()
    async with receiving(receiver) as url:
        orch = await Orch.open(Settings(database_url=dsn, otlp_export_endpoint=url))
        try:
            orch.tracing.recorder.finish(span(1), sampled=False)
            orch.tracing.recorder.finish(span(2, error=True), sampled=False)
            orch.tracing.recorder.finish(span(3), sampled=False)  # its trace is kept now
            await eventually(lambda: len(receiver.span_ids()) >= 2, timeout=15)
            assert sorted(receiver.span_ids()) == [f"{n:016x}" for n in (2, 3)]
        finally:
            await orch.close()


async def test_spans_past_the_retention_are_removed(orch: Orch) -> None:
    now = orch.clock.now()
    old = now - timedelta(hours=5)
    orch.tracing.recorder.ingest([span(1, started=old), span(2, started=old), span(3, started=now)])
    await orch.tracing.flush()
    assert await orch.tracing.trim(older_than=timedelta(hours=1), batch=1) == 1  # in batches
    assert await orch.tracing.trim(older_than=timedelta(hours=1)) == 1
    assert await orch.tracing.trim(older_than=timedelta(hours=1)) == 0
    left = await orch.db.fetch("SELECT span_id FROM distributed_traces WHERE trace_id = $1", TRACE)
    assert [r["span_id"] for r in left] == [f"{3:016x}"]


@pytest.mark.slow
async def test_the_daemon_takes_otlp_on_its_own_listener(dsn: str, orch: Orch) -> None:
    secret, _ = await orch.tokens.create(name="ops", role="platform_engineer", actor="t")
    daemon = DaemonProcess(dsn, "otlp", "--otlp-listen", "127.0.0.1:0", "--no-health-checks")
    try:
        await daemon.start()
        (started,) = daemon.events("daemon started")
        otlp = started["otlp_listen"]
        assert otlp and otlp != started["listen"]
        body = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "venue"}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": TRACE,
                                    "spanId": "00f067aa0ba902b7",
                                    "name": "GET /reservations",
                                    "kind": 2,
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000000250000000",
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://{otlp}/v1/traces",
                content=json.dumps(body),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {}
            refused = await client.post(f"http://{otlp}/v1/traces", content=b"{}")
            assert refused.status_code == 401  # a token is needed here too
            other = await client.get(f"http://{otlp}/api/orchestration/traces")
            assert other.status_code == 404  # the OTLP listener serves OTLP only

        async def stored() -> bool:
            return bool(
                await orch.db.fetchval(
                    "SELECT count(*) FROM distributed_traces WHERE span_id = '00f067aa0ba902b7'"
                )
            )

        await eventually(stored, timeout=10, message="the span written by the daemon")
    finally:
        await daemon.ensure_stopped()


async def test_search_by_a_tag_matches_numbers_and_strings_by_their_text(orch: Orch) -> None:
    now = orch.clock.now()
    first = span(1, started=now)
    first.tags = {"http.response.status_code": 500, "ok": False, "peer.service": "venue"}
    orch.tracing.recorder.ingest([first])
    await orch.tracing.flush()

    async def found(tags: dict[str, str]) -> list[str]:
        answer = await orch.tracing.search({"tags": tags, "start_time": now - timedelta(hours=1)})
        return [t.trace_id for t in answer.traces]

    assert await found({"http.response.status_code": "500"}) == [TRACE]
    assert await found({"ok": "false", "peer.service": "venue"}) == [TRACE]
    assert await found({"http.response.status_code": "200"}) == []
    assert await found({"missing": "x"}) == []
