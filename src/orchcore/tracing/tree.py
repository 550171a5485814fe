"""A trace's spans as a tree: depth-first order, children, the critical path, and the
calls between services it shows. Pure functions over what the database returned."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Node:
    span_id: str
    parent_span_id: str | None
    service_name: str
    operation_name: str
    span_kind: str
    status_code: str
    start_time: datetime
    end_time: datetime
    tags: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    depth: int = 0

    @property
    def is_error(self) -> bool:
        return self.status_code == "error"


def build_tree(nodes: list[Node]) -> list[Node]:
    """The roots (spans whose parent is not in the trace), each with its children in
    start order; a span named twice (two writers) is kept once."""
    by_id: dict[str, Node] = {}
    for node in nodes:
        by_id.setdefault(node.span_id, node)
    roots: list[Node] = []
    for node in by_id.values():
        parent = by_id.get(node.parent_span_id or "")
        if parent is None or parent is node or _is_ancestor(node, parent, by_id):
            roots.append(node)
        else:
            parent.children.append(node)
    for node in by_id.values():
        node.children.sort(key=lambda n: (n.start_time, n.span_id))
    roots.sort(key=lambda n: (n.start_time, n.span_id))
    return roots


def _is_ancestor(node: Node, parent: Node, by_id: dict[str, Node]) -> bool:
    """Whether linking node under parent would close a loop (hostile or broken ids)."""
    seen = {node.span_id}
    current: Node | None = parent
    while current is not None:
        if current.span_id in seen:
            return True
        seen.add(current.span_id)
        current = by_id.get(current.parent_span_id or "")
    return False


def depth_first(roots: list[Node]) -> list[Node]:
    """Every span once, parents before children, siblings in start order; sets depth."""
    ordered: list[Node] = []
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        node, depth = stack.pop()
        node.depth = depth
        ordered.append(node)
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return ordered


def critical_path(roots: list[Node]) -> list[str]:
    """From the root that ends last, down through the child that ends last at each level:
    the chain of spans that decided when the trace ended."""
    if not roots:
        return []
    node = max(roots, key=lambda n: n.end_time)
    path = [node.span_id]
    while node.children:
        node = max(node.children, key=lambda n: (n.end_time, n.start_time))
        path.append(node.span_id)
    return path


@dataclass
class Edge:
    source: str
    target: str
    count: int = 0
    errors: int = 0
    total_ms: float = 0.0

    @property
    def avg_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0


def service_edges(ordered: list[Node]) -> list[Edge]:
    """Calls between services: a client span to its peer.service, and a span under a
    parent of another service (unless that parent was the client span of that call)."""
    edges: dict[tuple[str, str], Edge] = defaultdict(lambda: Edge("", ""))
    by_id = {n.span_id: n for n in ordered}

    def add(source: str, target: str, node: Node) -> None:
        edge = edges[(source, target)]
        edge.source, edge.target = source, target
        edge.count += 1
        edge.errors += node.is_error
        edge.total_ms += (node.end_time - node.start_time).total_seconds() * 1000

    for node in ordered:
        peer = node.tags.get("peer.service") if node.span_kind == "client" else None
        if isinstance(peer, str) and peer and peer != node.service_name:
            add(node.service_name, peer, node)
            continue
        parent = by_id.get(node.parent_span_id or "")
        if parent is None or parent.service_name == node.service_name:
            continue
        if parent.span_kind == "client" and parent.tags.get("peer.service") == node.service_name:
            continue  # the client span counted this call already
        add(parent.service_name, node.service_name, node)
    return sorted(edges.values(), key=lambda e: (e.source, e.target))
