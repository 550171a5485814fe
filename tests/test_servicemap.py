"""The service map: cycles and critical paths on known graphs, and
``GET /api/orchestration/observability/service-map`` over real HTTP on what the registry
declares and what the call path and the spans observed."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from orchcore import ManualClock, Orch
from orchcore.callpath.events import CallEvent
from orchcore.db.pool import connect
from orchcore.tracing.callspans import AttemptFacts, attempt_span
from orchcore.tracing.servicemap import Q, critical_paths, elementary_cycles, strength
from orchcore.tracing.spans import Span
from tests.support.api import serve_api, token
from tests.support.registry import mark

MAP = "/api/orchestration/observability/service-map"

# -- cycles ---------------------------------------------------------------------------


def test_a_triangle_has_one_cycle_starting_at_its_smallest_service() -> None:
    triangle = {"venue": {"booking"}, "booking": {"catering"}, "catering": {"venue"}}
    assert elementary_cycles(triangle) == [["booking", "catering", "venue"]]


def test_two_cycles_sharing_a_service() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"b"}}
    assert elementary_cycles(graph) == [["a", "b"], ["b", "c"]]
    # and sharing a service that is not the smallest of either
    graph = {"m": {"x", "y"}, "x": {"z"}, "y": {"z"}, "z": {"m"}}
    assert elementary_cycles(graph) == [["m", "x", "z"], ["m", "y", "z"]]


def test_a_self_loop_is_a_cycle() -> None:
    assert elementary_cycles({"a": {"a"}}) == [["a"]]
    assert elementary_cycles({"a": {"b"}, "b": {"a", "b"}}) == [["a", "b"], ["b"]]


def test_the_complete_directed_graph_on_four_services_has_twenty_cycles() -> None:
    # Every set of k >= 2 services closes (k-1)! cycles: C(4,2)*1 + C(4,3)*2 + C(4,4)*6
    # = 6 + 8 + 6 = 20.
    services = "abcd"
    k4 = {s: {t for t in services if t != s} for s in services}
    cycles = elementary_cycles(k4)
    assert len(cycles) == 20
    assert Counter(len(c) for c in cycles) == {2: 6, 3: 8, 4: 6}
    assert len({tuple(c) for c in cycles}) == 20
    assert all(c[0] == min(c) for c in cycles)
    assert cycles == sorted(cycles)


def test_a_dag_has_no_cycles() -> None:
    dag = {"gateway": {"booking", "catering"}, "booking": {"venue", "payment"}, "catering": {}}
    assert elementary_cycles(dag) == []
    assert elementary_cycles({}) == []


def test_a_cycle_longer_than_the_recursion_limit() -> None:
    ring = {f"s{i:04d}": {f"s{(i + 1) % 3000:04d}"} for i in range(3000)}
    (cycle,) = elementary_cycles(ring)
    assert cycle == sorted(ring)


def test_the_search_stops_at_the_limit() -> None:
    services = "abcdefg"
    k7 = {s: {t for t in services if t != s} for s in services}
    assert len(elementary_cycles(k7)) == 2365  # sum of C(7,k)*(k-1)! for k = 2..7
    assert len(elementary_cycles(k7, limit=50)) == 50


# -- critical paths -------------------------------------------------------------------

WEDDING_DAG = {
    "gateway": {"booking", "catering"},
    "booking": {"venue", "payment"},
    "catering": {"payment"},
}


def test_critical_paths_on_a_known_dag() -> None:
    requests = {"booking": 100, "catering": 20, "venue": 50, "payment": 60}
    # impact = (1 + services upstream) * (1 + requests in):
    #   gateway 1*1 = 1, booking 2*101 = 202, catering 2*21 = 42,
    #   venue 3*51 = 153, payment 4*61 = 244; all together 642.
    paths = critical_paths(WEDDING_DAG, requests=requests)
    assert [(p.path, p.failure_impact_score) for p in paths] == [
        (["gateway", "booking", "payment"], round(100 * (1 + 202 + 244) / 642, 2)),  # 69.63
        (["gateway", "booking", "venue"], round(100 * (1 + 202 + 153) / 642, 2)),  # 55.45
        (["gateway", "catering", "payment"], round(100 * (1 + 42 + 244) / 642, 2)),  # 44.7
    ]
    assert [p.failure_impact_score for p in paths] == [69.63, 55.45, 44.7]
    assert [p.path for p in critical_paths(WEDDING_DAG, requests=requests, limit=1)] == [
        ["gateway", "booking", "payment"]
    ]


def test_without_traffic_the_blast_radius_ranks_paths_and_ties_go_by_name() -> None:
    # impact: gateway 1, booking 2, catering 2, venue 3, payment 4; all together 12.
    paths = critical_paths(WEDDING_DAG)
    assert [(p.path, p.failure_impact_score) for p in paths] == [
        (["gateway", "booking", "payment"], 58.33),
        (["gateway", "catering", "payment"], 58.33),
        (["gateway", "booking", "venue"], 50.0),
    ]


def test_a_path_through_every_service_scores_100() -> None:
    (path,) = critical_paths({"a": {"b"}, "b": {"c"}}, requests={"b": 7})
    assert (path.path, path.failure_impact_score) == (["a", "b", "c"], 100.0)


def test_cycles_are_broken_where_the_walk_from_the_entry_closes_them() -> None:
    # entry -> a -> b -> c -> a: the edge c -> a closes the cycle and is dropped.
    paths = critical_paths({"entry": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert [p.path for p in paths] == [["entry", "a", "b", "c"]]
    # A cycle nobody enters is entered at its smallest service.
    paths = critical_paths({"y": {"x"}, "x": {"y"}})
    assert [(p.path, p.failure_impact_score) for p in paths] == [(["x", "y"], 100.0)]


def test_workflow_initiators_are_entries_too() -> None:
    graph = {"gateway": {"booking"}, "booking": {"venue"}}
    assert [p.path for p in critical_paths(graph)] == [["gateway", "booking", "venue"]]
    # impact: gateway 1, booking 2, venue 3 (of 6)
    paths = critical_paths(graph, entries=["booking", "not-in-the-graph"])
    assert [(p.path, p.failure_impact_score) for p in paths] == [
        (["gateway", "booking", "venue"], 100.0),
        (["booking", "venue"], round(100 * 5 / 6, 2)),
    ]


def test_strength_is_relative_to_the_busiest_connection() -> None:
    assert [strength(n, 10) for n in (10, 5, 4, 1, 0)] == [100, 50, 40, 10, 1]
    assert strength(1, 1000) == 1  # a trickle is still drawn
    assert strength(3, 200) == 2  # 1.5 rounds half up


# -- the reader and the route, over real HTTP ------------------------------------------


@pytest.fixture
async def api(orch: Orch) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client


async def test_every_service_map_query_prepares(dsn: str) -> None:
    # test_named_queries walks queries.sql files only; servicemap.sql is checked here.
    conn = await connect(dsn)
    try:
        for name in Q.names():
            await conn.prepare(getattr(Q, name))
    finally:
        await conn.close()
    assert len(Q.names()) == 4


async def register(
    orch: Orch, name: str, *, instances: tuple[str, ...] = (), **fields: Any
) -> None:
    await orch.registry.register_service(
        {
            "service_name": name,
            "service_type": "api",
            "deployment_environment": "staging",
            **fields,
        },
        actor="test",
    )
    for index, status in enumerate(instances):
        instance = await orch.registry.register_instance(
            name,
            {
                "instance_id": f"{name}-{index}",
                "ip_address": "10.0.0.1",
                "port": 8000 + index,
                "version": "1.0.0",
            },
            actor="test",
        )
        if status != "starting":
            await mark(orch, instance.instance_id, status)


def calls(
    source: str,
    target: str,
    at: datetime,
    *,
    count: int,
    ms: int,
    event_type: str = "response",
    status: int | None = 200,
) -> list[CallEvent]:
    return [
        CallEvent(
            event_type=event_type,
            trace_id=secrets.token_hex(16),
            span_id=secrets.token_hex(8),
            parent_span_id=None,
            source=source,
            target=target,
            method="POST",
            endpoint="/things",
            status_code=status,
            duration_ms=ms,
            error=None if event_type == "response" else event_type,
            correlation_id=None,
            at=at,
        )
        for _ in range(count)
    ]


def client_span(source: str, peer: str, at: datetime, ms: int, *, error: bool) -> Span:
    """A client span a service exported itself (its SDK's, not one of orch's)."""
    return Span(
        trace_id=secrets.token_hex(16),
        span_id=secrets.token_hex(8),
        parent_span_id=None,
        operation_name="POST /menus",
        service_name=source,
        start_time=at,
        end_time=at + timedelta(milliseconds=ms),
        span_kind="client",
        status_code="error" if error else "unset",
        tags={"peer.service": peer},
    )


async def observe(orch: Orch, now: datetime) -> None:
    """An hour of traffic: calls orch made (service_events) and spans services sent."""
    recent = now - timedelta(minutes=10)
    events = [
        # gateway -> booking: 10 requests, 2 failed (a 503, a timeout), 24 ms on average
        *calls("gateway", "booking", recent, count=8, ms=20),
        *calls("gateway", "booking", recent, count=1, ms=40, event_type="error", status=503),
        *calls("gateway", "booking", recent, count=1, ms=40, event_type="timeout", status=None),
        # a refusal (breaker open) never reached booking: not a request
        *calls("gateway", "booking", recent, count=3, ms=0, event_type="rejected", status=None),
        # older than the hour: not counted
        *calls("gateway", "booking", now - timedelta(hours=2), count=50, ms=999),
        # booking -> venue (declared): 5 requests, 10 ms
        *calls("booking", "venue", now, count=5, ms=10),
        # booking -> payment (declared): 4 requests, one failed with a 500 answer
        *calls("booking", "payment", recent, count=3, ms=30),
        *calls("booking", "payment", recent, count=1, ms=100, event_type="error", status=500),
        # venue -> booking: observed, not declared; it closes a cycle with booking -> venue
        *calls("venue", "booking", recent, count=1, ms=10),
    ]
    orch.events.record_many(events)
    await orch.events.flush()
    # orch's own span of one of the calls above: a sampled copy, not another request
    own = attempt_span(
        AttemptFacts(
            trace_id=events[0].trace_id,
            span_id=events[0].span_id,
            parent_span_id=None,
            source="gateway",
            target="booking",
            method="POST",
            endpoint="/things",
            attempt=1,
            started=recent,
            ended=recent + timedelta(milliseconds=20),
            status_code=200,
        )
    )
    venue_to_catering = client_span("venue", "catering", recent, 50, error=True)
    catering_server = Span(
        trace_id=venue_to_catering.trace_id,
        span_id=secrets.token_hex(8),
        parent_span_id=venue_to_catering.span_id,
        operation_name="POST /menus",
        service_name="catering",
        start_time=recent,
        end_time=recent + timedelta(milliseconds=45),
        span_kind="server",
    )
    old_span = client_span("venue", "catering", now - timedelta(hours=3), 50, error=False)
    orch.tracing.recorder.ingest([own, venue_to_catering, catering_server, old_span])
    await orch.tracing.flush()


async def register_platform(orch: Orch) -> None:
    """The services and their declared dependencies the map tests (and the console's) use."""
    await register(orch, "gateway", dependencies=["booking"], instances=("healthy",))
    await register(
        orch, "booking", dependencies=["venue", "payment"], instances=("healthy", "unhealthy")
    )
    await register(orch, "venue", instances=("healthy",))
    # payment: no instance; declares a service nobody registered and nobody calls
    await register(
        orch,
        "payment",
        service_type="worker",
        base_url="https://payment.internal",
        dependencies=["notification"],
    )


async def test_the_service_map_of_declared_and_observed_dependencies(
    orch: Orch, clock: ManualClock, api: httpx.AsyncClient
) -> None:
    await register_platform(orch)
    # venue starts a workflow: an entry of critical paths although booking calls it
    await orch.workflow_definitions.register(
        {
            "name": "menu-tasting",
            "version": "1.0.0",
            "steps": [
                {"name": "ask", "type": "service_call", "order": 1,
                 "service_name": "catering", "endpoint": "/tastings"},
            ],
        },
        actor="test",
    )  # fmt: skip
    await orch.workflows.start(
        {"workflow_name": "menu-tasting", "initiating_service": "venue"}, actor="test"
    )
    now = clock.now()
    await observe(orch, now)

    reader = await token(orch, "monitoring_system")
    answer = await api.get(MAP, headers=reader)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"services", "connections", "dependency_graph", "generated_at"}
    assert datetime.fromisoformat(body["generated_at"]) == now

    connections = {(c["source_service"], c["target_service"]): c for c in body["connections"]}
    assert sorted(connections) == [
        ("booking", "payment"),
        ("booking", "venue"),
        ("gateway", "booking"),
        ("payment", "notification"),
        ("venue", "booking"),
        ("venue", "catering"),
    ]
    figures = {
        pair: (c["request_count_1h"], c["error_count_1h"], c["avg_latency_ms"],
               c["connection_strength"], c["protocol"], c["declared"])
        for pair, c in connections.items()
    }  # fmt: skip
    assert figures == {
        ("gateway", "booking"): (10, 2, 24.0, 100, "http", True),
        ("booking", "venue"): (5, 0, 10.0, 50, "http", True),
        ("booking", "payment"): (4, 1, 47.5, 40, "https", True),
        ("venue", "booking"): (1, 0, 10.0, 10, "http", False),
        ("venue", "catering"): (1, 1, 50.0, 10, "http", False),
        ("payment", "notification"): (0, 0, 0.0, 1, "http", True),
    }

    services = {s["service_name"]: s for s in body["services"]}
    assert list(services) == ["booking", "catering", "gateway", "notification", "payment", "venue"]
    shape = {
        "service_name", "service_type", "instance_count", "health_status",
        "request_rate_per_minute", "error_rate", "avg_response_time_ms", "position",
    }  # fmt: skip
    assert all(set(s) == shape for s in body["services"])
    health = {
        n: (s["service_type"], s["instance_count"], s["health_status"]) for n, s in services.items()
    }
    assert health == {
        "booking": ("api", 2, "degraded"),
        "catering": ("unregistered", 0, "unknown"),
        "gateway": ("api", 1, "healthy"),
        "notification": ("unregistered", 0, "unknown"),
        "payment": ("worker", 0, "unhealthy"),
        "venue": ("api", 1, "healthy"),
    }
    traffic = {
        n: (s["request_rate_per_minute"], s["error_rate"], s["avg_response_time_ms"])
        for n, s in services.items()
    }
    assert traffic == {
        # into booking: 10 from gateway (2 failed, 24 ms) and 1 from venue (10 ms)
        "booking": (round(11 / 60, 3), round(2 / 11, 4), round((10 * 24 + 10) / 11, 3)),
        "catering": (round(1 / 60, 3), 1.0, 50.0),
        "gateway": (0.0, 0.0, 0.0),
        "notification": (0.0, 0.0, 0.0),
        "payment": (round(4 / 60, 3), 0.25, 47.5),
        "venue": (round(5 / 60, 3), 0.0, 10.0),
    }

    graph = body["dependency_graph"]
    # booking -> venue is declared, venue -> booking only observed: together a cycle
    assert graph["circular_dependencies"] == [["booking", "venue"]]
    # The walk from gateway drops venue -> booking. Impact = (1 + upstream) * (1 + requests):
    # gateway 1*1, booking 3*12, venue 3*6, payment 4*5, catering 4*2, notification 5*1;
    # all together 88.
    assert graph["critical_paths"] == [
        {"path": ["gateway", "booking", "venue", "catering"],
         "failure_impact_score": round(100 * (1 + 36 + 18 + 8) / 88, 2)},
        {"path": ["gateway", "booking", "payment", "notification"],
         "failure_impact_score": round(100 * (1 + 36 + 20 + 5) / 88, 2)},
        {"path": ["venue", "catering"], "failure_impact_score": round(100 * (18 + 8) / 88, 2)},
    ]  # fmt: skip


async def test_an_empty_platform_has_an_empty_map(orch: Orch, api: httpx.AsyncClient) -> None:
    answer = await api.get(MAP, headers=await token(orch, "monitoring_system"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["services"], body["connections"]) == ([], [])
    assert body["dependency_graph"] == {"critical_paths": [], "circular_dependencies": []}


async def test_the_map_needs_a_token_that_may_read(orch: Orch, api: httpx.AsyncClient) -> None:
    assert (await api.get(MAP)).status_code == 401
    service_token = await token(orch, "service", service="venue")
    assert (await api.get(MAP, headers=service_token)).status_code == 403
