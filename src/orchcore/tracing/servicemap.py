"""The service map: who calls whom over the last hour, how much, how well, and what that
makes of the dependency graph (its cycles, and the call chains whose failure hurts most).

The graph functions are pure (a graph is ``{service: {services it calls}}``) and are
tested on known graphs; :class:`ServiceMapReader` feeds them what the registry declares
and what the call path and the spans observed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchcore.callpath.identity import ORCH_IDENTITIES
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.tracing.servicemap_models import (
    Connection,
    CriticalPath,
    DependencyGraph,
    GetServiceMapResponse,
    ServiceNode,
)

Q = Queries("orchcore.tracing", "servicemap.sql")

Graph = Mapping[str, Iterable[str]]

#: The map lists at most this many cycles (a dense graph has exponentially many).
MAX_CYCLES = 1000
#: ... and this many critical paths.
MAX_CRITICAL_PATHS = 10


# -- cycles --------------------------------------------------------------------------


def elementary_cycles(graph: Graph, *, limit: int | None = None) -> list[list[str]]:
    """Every elementary cycle of ``graph`` (a self-loop is one), by Johnson's algorithm.

    Each cycle starts at its smallest node and the list is sorted, so the answer does
    not depend on the order the graph was given in. ``limit`` stops the search after
    that many cycles (which ones: the first found, components taken in name order).
    Every search keeps its own stacks, so a long cycle costs no recursion depth.

    Johnson's outer loop: take a strongly connected component that has a cycle, list
    the cycles through its smallest node, remove that node, and go on with the
    components of what is left; a cycle is found once, from its smallest node.
    """
    adjacency = _normalised(graph)
    found: list[list[str]] = []
    pending = _cyclic_components(adjacency, adjacency)
    while pending and (limit is None or len(found) < limit):
        component = pending.pop()
        start = min(component)
        local = {node: [n for n in adjacency[node] if n in component] for node in component}
        for cycle in _cycles_through(start, local):
            found.append(cycle)
            if limit is not None and len(found) >= limit:
                break
        pending.extend(_cyclic_components(component - {start}, adjacency))
    return sorted(found)


def _cyclic_components(nodes: Iterable[str], adjacency: Mapping[str, list[str]]) -> list[set[str]]:
    """The strongly connected components of the graph induced on ``nodes`` that hold a
    cycle, the one with the smallest node last (the caller pops it first)."""
    members = set(nodes)
    components = [
        component
        for component in _strong_components(members, adjacency)
        if len(component) > 1 or next(iter(component)) in adjacency[next(iter(component))]
    ]
    return sorted(components, key=min, reverse=True)


def _strong_components(members: set[str], adjacency: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's algorithm on the graph induced on ``members``, with an explicit stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(members):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        frames = [(root, iter(adjacency[root]))]
        while frames:
            node, successors = frames[-1]
            for successor in successors:
                if successor not in members:
                    continue
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    frames.append((successor, iter(adjacency[successor])))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                frames.pop()
                if frames:
                    parent = frames[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def _cycles_through(start: str, adjacency: Mapping[str, list[str]]) -> Iterator[list[str]]:
    """Johnson's CIRCUIT from ``start``: the cycles through it within ``adjacency``
    (a strongly connected component whose smallest node is ``start``)."""
    path = [start]
    blocked = {start}
    #: Johnson's B lists: when a node unblocks, the nodes waiting on it unblock too
    waiting: dict[str, set[str]] = {}
    frames = [iter(adjacency[start])]
    closed = [False]  # per frame: a cycle was found below it
    while frames:
        node = path[-1]
        for successor in frames[-1]:
            if successor == start:
                closed[-1] = True
                yield path.copy()
            elif successor not in blocked:
                path.append(successor)
                blocked.add(successor)
                frames.append(iter(adjacency[successor]))
                closed.append(False)
                break
        else:
            frames.pop()
            path.pop()
            found_one = closed.pop()
            if found_one:
                _unblock(node, blocked, waiting)
            else:
                for successor in adjacency[node]:
                    waiting.setdefault(successor, set()).add(node)
            if closed:
                closed[-1] = closed[-1] or found_one


def _unblock(node: str, blocked: set[str], waiting: dict[str, set[str]]) -> None:
    todo = [node]
    while todo:
        current = todo.pop()
        if current in blocked:
            blocked.discard(current)
            todo.extend(waiting.pop(current, ()))


# -- critical paths ------------------------------------------------------------------


def critical_paths(
    graph: Graph,
    *,
    requests: Mapping[str, int] | None = None,
    entries: Iterable[str] = (),
    limit: int = MAX_CRITICAL_PATHS,
) -> list[CriticalPath]:
    """The ``limit`` call chains whose failure hurts most, highest score first.

    A chain runs from an entry (a service nobody calls, or one of ``entries``: the
    initiators of workflows) down the dependency graph to a service that calls nothing
    further, with cycles broken: a depth-first walk from the entries (in name order,
    then from the smallest service no entry reaches) drops each edge back onto its own
    walk. A chain has at least two services.

    Failure impact of a service ``v``::

        impact(v) = (1 + upstream(v)) * (1 + requests(v))

    where ``upstream(v)`` is how many other services reach ``v`` through the graph
    (they fail with it: its blast radius) and ``requests(v)`` the calls into it over
    the window (its load; the one added keeps an idle graph ranked by blast radius).
    A chain fails when any of its services does, so its impact is the sum over its
    services, and its score is that sum as a percentage of the sum over every service:
    the share of the platform's failure impact that sits on the chain (100: a chain
    through every service). Ties go to the chain first in name order.
    """
    adjacency = _normalised(graph)
    requests = requests or {}
    reverse = _reversed(adjacency)
    upstream = _upstream_counts(adjacency)
    impact = {
        node: (1 + upstream[node]) * (1 + max(requests.get(node, 0), 0)) for node in adjacency
    }
    total = sum(impact.values())
    uncalled = {node for node in adjacency if not set(reverse[node]) - {node}}
    roots = sorted(uncalled | (set(entries) & set(adjacency)))
    dag, finished, roots = _without_back_edges(adjacency, roots)
    # best[v]: the largest impact of a chain from v down (finish order is bottom-up)
    best: dict[str, int] = {}
    for node in finished:
        best[node] = impact[node] + max((best[c] for c in dag[node]), default=0)
    return [
        CriticalPath(path=list(path), failure_impact_score=round(100 * score / total, 2))
        for path, score in _best_chains(dag, roots, impact, best, limit)
    ]


def _upstream_counts(adjacency: Mapping[str, list[str]]) -> dict[str, int]:
    """For each node, how many other nodes reach it: over the graph's components
    (Tarjan's come out downstream first), each node one bit of an integer."""
    components = _strong_components(set(adjacency), adjacency)
    component_of = {node: i for i, component in enumerate(components) for node in component}
    bit = {node: 1 << i for i, node in enumerate(adjacency)}
    above = [0] * len(components)  # the nodes of the components upstream of each
    for i in reversed(range(len(components))):
        reach = above[i] | sum(bit[node] for node in components[i])
        for node in components[i]:
            for successor in adjacency[node]:
                j = component_of[successor]
                if j != i:
                    above[j] |= reach
    return {
        node: above[component_of[node]].bit_count() + len(components[component_of[node]]) - 1
        for node in adjacency
    }


def _without_back_edges(
    adjacency: Mapping[str, list[str]], roots: list[str]
) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """The graph as a DAG (edges onto the walk's own stack dropped), the nodes in the
    order the walk finished them (children first), and the roots it walked from."""
    dag: dict[str, list[str]] = {node: [] for node in adjacency}
    state: dict[str, int] = {}  # 1: on the walk's stack, 2: finished
    finished: list[str] = []
    starts = list(roots)
    for start in [*roots, *sorted(adjacency)]:
        if start in state:
            continue
        if start not in roots:
            starts.append(start)  # a cycle no entry reaches, entered at its smallest node
        state[start] = 1
        frames = [(start, iter(adjacency[start]))]
        while frames:
            node, successors = frames[-1]
            for successor in successors:
                if state.get(successor) == 1:
                    continue  # back edge: this is where a cycle closes
                dag[node].append(successor)
                if successor not in state:
                    state[successor] = 1
                    frames.append((successor, iter(adjacency[successor])))
                    break
            else:
                frames.pop()
                state[node] = 2
                finished.append(node)
    return dag, finished, starts


def _best_chains(
    dag: Mapping[str, list[str]],
    roots: list[str],
    impact: Mapping[str, int],
    best: Mapping[str, int],
    limit: int,
) -> Iterator[tuple[tuple[str, ...], int]]:
    """Complete chains in order of impact, best first: a best-first search whose
    estimate (the prefix so far plus the best chain below) is exact, so chains come out
    in order without listing them all. Scores are integers: ties compare exactly."""
    heap: list[tuple[int, tuple[str, ...], int]] = [
        (-best[root], (root,), 0) for root in roots if dag[root]
    ]
    heapq.heapify(heap)
    emitted = 0
    while heap and emitted < limit:
        negative, path, prefix = heapq.heappop(heap)
        last = path[-1]
        if not dag[last]:
            emitted += 1
            yield path, -negative
            continue
        below = prefix + impact[last]
        for successor in dag[last]:
            heapq.heappush(heap, (-(below + best[successor]), (*path, successor), below))


# -- shared --------------------------------------------------------------------------


def _normalised(graph: Graph) -> dict[str, list[str]]:
    """Every node a key (targets too), successors sorted and distinct."""
    nodes = set(graph)
    for targets in graph.values():
        nodes.update(targets)
    return {node: sorted(set(graph.get(node, ()))) for node in nodes}


def _reversed(adjacency: Mapping[str, list[str]]) -> dict[str, list[str]]:
    reverse: dict[str, list[str]] = {node: [] for node in adjacency}
    for node, successors in adjacency.items():
        for successor in successors:
            reverse[successor].append(node)
    return reverse


# -- the reader ----------------------------------------------------------------------


@dataclass(slots=True)
class _Edge:
    requests: int = 0
    errors: int = 0
    latency_samples: int = 0
    avg_latency_ms: float = 0.0
    declared: bool = False


class ServiceMapReader:
    """The map over a window ending now: the registry's services and declared
    dependencies, and the calls observed (see ``map_observed_connections`` in
    servicemap.sql for which calls and why there)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        max_cycles: int = MAX_CYCLES,
        max_paths: int = MAX_CRITICAL_PATHS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._max_cycles = max_cycles
        self._max_paths = max_paths

    async def build(self, window: timedelta = timedelta(hours=1)) -> GetServiceMapResponse:
        until = self._clock.now()
        since = until - window
        registered = {row["service_name"]: row for row in await self._db.fetch(Q.map_services)}
        edges: dict[tuple[str, str], _Edge] = {}
        for row in await self._db.fetch(Q.map_declared_dependencies):
            edges.setdefault((row["source"], row["target"]), _Edge()).declared = True
        for row in await self._db.fetch(Q.map_observed_connections, since, until):
            edge = edges.setdefault((row["source"], row["target"]), _Edge())
            edge.requests = row["request_count"]
            edge.errors = row["error_count"]
            edge.latency_samples = row["latency_samples"]
            edge.avg_latency_ms = row["avg_latency_ms"]
        initiators = [
            row["initiating_service"]
            for row in await self._db.fetch(Q.map_workflow_initiators, since, until)
        ]

        graph: dict[str, set[str]] = {}
        for source, target in edges:
            graph.setdefault(source, set()).add(target)
        names = sorted(
            {n for n, row in registered.items() if row["is_active"]}
            | {n for pair in edges for n in pair}
        )
        into: dict[str, list[_Edge]] = {}
        for (_, target), edge in edges.items():
            into.setdefault(target, []).append(edge)
        minutes = window.total_seconds() / 60
        services = [
            _service(name, registered.get(name), into.get(name, []), minutes) for name in names
        ]
        incoming = {name: sum(edge.requests for edge in found) for name, found in into.items()}
        return GetServiceMapResponse(
            services=services,
            connections=_connections(edges, registered),
            dependency_graph=DependencyGraph(
                critical_paths=critical_paths(
                    graph, requests=incoming, entries=initiators, limit=self._max_paths
                ),
                circular_dependencies=elementary_cycles(graph, limit=self._max_cycles),
            ),
            generated_at=until,
        )


def _service(name: str, row: Any, into: list[_Edge], minutes: float) -> ServiceNode:
    """A service's figures are those of the calls into it (``into``: its connections in)."""
    requests = sum(edge.requests for edge in into)
    errors = sum(edge.errors for edge in into)
    samples = sum(edge.latency_samples for edge in into)
    latency = sum(edge.avg_latency_ms * edge.latency_samples for edge in into)
    if row is None:
        kind = "orchestrator" if name in ORCH_IDENTITIES else "unregistered"
        instances, health = 0, "unknown"
    else:
        kind, instances = row["service_type"], row["live_instances"]
        health = _health(row["healthy_instances"], instances)
    return ServiceNode(
        service_name=name,
        service_type=kind,
        instance_count=instances,
        health_status=health,
        request_rate_per_minute=round(requests / minutes, 3) if minutes else 0.0,
        error_rate=round(errors / requests, 4) if requests else 0.0,
        avg_response_time_ms=round(latency / samples, 3) if samples else 0.0,
    )


def _health(healthy: int, live: int) -> str:
    """The registry's rule (registry.models.Service.health_status): every live instance
    healthy, some, or none."""
    if live and healthy == live:
        return "healthy"
    return "degraded" if healthy else "unhealthy"


def _connections(
    edges: Mapping[tuple[str, str], _Edge], registered: Mapping[str, Any]
) -> list[Connection]:
    busiest = max((edge.requests for edge in edges.values()), default=0)
    connections = []
    for (source, target), edge in sorted(edges.items()):
        base_url = (registered[target]["base_url"] or "") if target in registered else ""
        connections.append(
            Connection(
                source_service=source,
                target_service=target,
                request_count_1h=edge.requests,
                error_count_1h=edge.errors,
                avg_latency_ms=round(edge.avg_latency_ms, 3),
                connection_strength=strength(edge.requests, busiest),
                protocol="https" if base_url.startswith("https:") else "http",
                declared=edge.declared,
            )
        )
    return connections


def strength(requests: int, busiest: int) -> int:
    """1-100: a connection's requests against the busiest one's, rounded half up; a
    connection without requests (declared, unused) is 1."""
    if requests <= 0 or busiest <= 0:
        return 1
    return max(1, min(100, (200 * requests + busiest) // (2 * busiest)))
