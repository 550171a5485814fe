"""A participant instrumented with the OpenTelemetry SDK, exporting over OTLP/HTTP to
orch: its server span, continued from the traceparent orch's call carried, lands in
the same trace as a child of orch's call span."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchcore import Orch
from tests.support.api import serve_api, serve_asgi
from tests.support.callers import known_callers
from tests.support.polling import eventually
from tests.support.registry import mark


@contextlib.asynccontextmanager
async def instrumented_venue(provider: TracerProvider) -> AsyncIterator[int]:
    tracer = provider.get_tracer("venue.app", "1.0")
    propagator = TraceContextTextMapPropagator()

    async def reserve(request: Request) -> JSONResponse:
        parent = propagator.extract(dict(request.headers))
        with tracer.start_as_current_span(
            "POST /reservations", context=parent, kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", "POST")
            with tracer.start_as_current_span("SELECT halls"):
                pass
        return JSONResponse({"id": "r-1"}, status_code=201)

    app = Starlette(routes=[Route("/reservations", reserve, methods=["POST"])])
    async with serve_asgi(app) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


async def spans_of(orch: Orch, trace_id: str, at_least: int) -> bool:
    await orch.tracing.flush()
    count = await orch.db.fetchval(
        "SELECT count(*) FROM distributed_traces WHERE trace_id = $1", trace_id
    )
    return int(count) >= at_least


async def test_an_sdk_instrumented_service_joins_orchs_trace(orch: Orch) -> None:
    secret, _ = await orch.tokens.create(name="ops", role="platform_engineer", actor="t")
    async with serve_api(orch) as base_url:
        provider = TracerProvider(resource=Resource({"service.name": "venue"}))
        exporter = OTLPSpanExporter(
            endpoint=f"{base_url}/v1/traces", headers={"Authorization": f"Bearer {secret}"}
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))  # exports off the loop
        try:
            async with instrumented_venue(provider) as port:
                await orch.registry.register_service(
                    {"service_name": "venue", "service_type": "api",
                     "deployment_environment": "staging"},
                    actor="t",
                )  # fmt: skip
                await orch.registry.register_instance(
                    "venue",
                    {"instance_id": "venue-1", "ip_address": "127.0.0.1", "port": port,
                     "version": "1"},
                    actor="t",
                )  # fmt: skip
                await mark(orch, "venue-1", "healthy")
                await orch.discovery.refresh_all()
                await known_callers(orch, "booking")
                caller = await orch.caller()
                result = await caller.call("booking", "venue", "/reservations", json={})
                assert result.status_code == 201
                trace_id = result.trace_id
                assert await asyncio.to_thread(provider.force_flush, 10_000)
        finally:
            await asyncio.to_thread(provider.shutdown)

        joined: bool = await eventually(
            lambda: spans_of(orch, trace_id, 3),
            timeout=15,
            message="orch's span and the venue's two",
        )
    assert joined
    detail = await orch.tracing.trace(trace_id)
    [call] = [s for s in detail.spans if s.span_kind == "client"]
    [served] = [s for s in detail.spans if s.span_kind == "server"]
    [query] = [s for s in detail.spans if s.operation_name == "SELECT halls"]
    assert call.service_name == "booking" and call.depth == 0
    assert served.parent_span_id == call.span_id and served.service_name == "venue"
    assert served.span_kind == "server" and served.depth == 1
    assert query.parent_span_id == served.span_id and query.depth == 2
    assert detail.critical_path[:2] == [call.span_id, served.span_id]
    assert [(e.source_service, e.target_service) for e in detail.service_map] == [
        ("booking", "venue")
    ]
