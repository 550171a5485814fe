"""Istio export: what orch enforces in process, written as the Istio resources that would
enforce the same in a Kubernetes cluster, and a validator for such resources.

One set of documents per registered service, from the enabled mesh policies that target
it (whatever their sources; highest priority wins per setting) and its live instances:

- **DestinationRule**, always: a subset per instance version (and per version a traffic
  split names), the load balancer (the service's own algorithm when no policy sets one;
  orch's default is round robin where Istio's is LEAST_REQUEST), outlier detection (or a
  circuit breaker read as one) and the connection pool.
- **VirtualService** when routing, retries or a timeout apply: weighted routes to version
  subsets, retries and the route timeout.
- **PeerAuthentication** when a policy sets the mutual TLS mode.
- **AuthorizationPolicy** (``<service>-allow`` / ``<service>-deny``) when authorization
  rules reach the service.

Where Istio cannot say what orch does, the closest form that errs on the safe side is
written and the document's ``orch/notes`` annotation says what changed; ``orch/policies``
names the policies a document came from.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any, Protocol

import yaml
from jsonschema import Draft4Validator, FormatChecker, ValidationError
from jsonschema.validators import extend

from orchcore.errors import NotFoundError, ValidationFailed
from orchcore.mesh.models import (
    AuthorizationRule,
    CircuitBreakerConfig,
    ConnectionPoolConfig,
    LoadBalancingConfig,
    MeshPolicy,
    MutualTlsConfig,
    OutlierDetectionConfig,
    RetryPolicyConfig,
    TrafficSplittingConfig,
)
from orchcore.mesh.store import MeshPolicies
from orchcore.registry.store import ServiceRegistry

Document = dict[str, Any]

API_VERSIONS: dict[str, str] = {
    "DestinationRule": "networking.istio.io/v1",
    "VirtualService": "networking.istio.io/v1",
    "PeerAuthentication": "security.istio.io/v1",
    "AuthorizationPolicy": "security.istio.io/v1",
}
MANAGED_BY_LABEL = ("app.kubernetes.io/managed-by", "orch")
POLICIES_ANNOTATION = "orch/policies"
NOTES_ANNOTATION = "orch/notes"
TRUST_DOMAIN = "cluster.local"


# -- what the export reads ----------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A live instance as the export sees it."""

    instance_id: str
    version: str
    weight: int = 1  # metadata.weight, as orch's weighted balancer reads it


@dataclass(frozen=True)
class ServiceWorkloads:
    name: str
    load_balancing: str = "round_robin"  # the service's own algorithm, when no policy sets one
    workloads: tuple[Workload, ...] = ()


@dataclass(frozen=True)
class TargetSettings:
    """The settings in force for calls to one service, from any source."""

    load_balancing: LoadBalancingConfig | None = None
    traffic_splitting: TrafficSplittingConfig | None = None
    mutual_tls: MutualTlsConfig | None = None
    circuit_breaker: CircuitBreakerConfig | None = None
    retry_policy: RetryPolicyConfig | None = None
    outlier_detection: OutlierDetectionConfig | None = None
    timeout: float | None = None
    connection_pool: ConnectionPoolConfig | None = None
    origin: Mapping[str, str] = field(default_factory=dict)  # setting -> policy name

    def policies(self, *settings: str) -> list[str]:
        return [self.origin[name] for name in settings if name in self.origin]


_EXPORTED_SETTINGS = tuple(f.name for f in fields(TargetSettings) if f.name != "origin")


def policies_targeting(policies: Iterable[MeshPolicy], service: str) -> list[MeshPolicy]:
    """The enabled policies that reach ``service`` from any source, highest priority first."""
    reaching = [p for p in policies if p.is_enabled and _names_include(p.target_services, service)]
    return sorted(reaching, key=lambda p: (-p.priority, p.policy_name))


def settings_for(service: str, policies: Iterable[MeshPolicy]) -> TargetSettings:
    # The precedence of orchcore.mesh.effective.resolve (priority, then name), taken over
    # every source and including connection_pool, which the call path's view leaves out.
    chosen: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for policy in policies_targeting(policies, service):
        for name in _EXPORTED_SETTINGS:
            value = getattr(policy.policy_config, name)
            if value is not None and name not in chosen:
                chosen[name] = value
                origin[name] = policy.policy_name
    return TargetSettings(**chosen, origin=origin)


def _names_include(names: Sequence[str], name: str) -> bool:
    return not names or "*" in names or name in names


# -- entry points -------------------------------------------------------------------------


class OrchState(Protocol):
    """The part of the Orch facade the export reads (kept as a protocol: mesh sits below it)."""

    @property
    def mesh(self) -> MeshPolicies: ...

    @property
    def registry(self) -> ServiceRegistry: ...


async def export_istio(
    orch: OrchState, *, service: str | None = None, namespace: str = "default"
) -> list[Document]:
    """Istio documents for every active service, or only ``service``, from the mesh
    policies and the live instances as they are now."""
    if not _DNS_LABEL.fullmatch(namespace):
        raise ValidationFailed("namespace", "must be a DNS-1123 label such as 'weddings'")
    services = await orch.registry.list_services()
    if service is not None:
        services = [s for s in services if s.service_name == service]
        if not services:
            raise NotFoundError("service", service)
    inputs = []
    for entry in services:
        instances = await orch.registry.list_instances(entry.service_name)
        workloads = tuple(
            Workload(i.instance_id, i.version, int(i.metadata.get("weight", 1))) for i in instances
        )
        inputs.append(ServiceWorkloads(entry.service_name, entry.load_balancing, workloads))
    return build_istio_documents(inputs, await orch.mesh.list_policies(), namespace=namespace)


def build_istio_documents(
    services: Iterable[ServiceWorkloads],
    policies: Iterable[MeshPolicy],
    *,
    namespace: str = "default",
) -> list[Document]:
    """The Istio documents for ``services``; DestinationRules come before the routes that
    name their subsets, so applying the list in order never routes to a missing subset."""
    policies = list(policies)
    documents: list[Document] = []
    for service in sorted(services, key=lambda s: s.name):
        documents += _service_documents(service, policies, namespace)
    return documents


def dump_yaml(documents: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, each document opened by ``---``, keys in the order built."""
    text: str = yaml.safe_dump_all(
        [dict(d) for d in documents],
        explicit_start=True,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
    return text


def _service_documents(
    service: ServiceWorkloads, policies: Sequence[MeshPolicy], namespace: str
) -> list[Document]:
    settings = settings_for(service.name, policies)
    routing = _routing(service, settings)
    versions = {w.version for w in service.workloads} | {v for v, _ in routing.weights}
    subsets = subset_names(versions)
    documents = [_destination_rule(service, settings, subsets, namespace)]
    virtual_service = _virtual_service(service.name, settings, routing, subsets, namespace)
    if virtual_service is not None:
        documents.append(virtual_service)
    if settings.mutual_tls is not None:
        documents.append(_peer_authentication(service.name, settings, namespace))
    documents += _authorization_policies(service.name, policies, namespace)
    return documents


def _document(
    kind: str,
    name: str,
    namespace: str,
    spec: Document,
    *,
    policies: Iterable[str] = (),
    notes: Iterable[str] = (),
) -> Document:
    metadata: Document = {
        "name": name,
        "namespace": namespace,
        "labels": dict([MANAGED_BY_LABEL]),
    }
    annotations = {}
    if names := sorted(set(policies)):
        annotations[POLICIES_ANNOTATION] = ",".join(names)
    if notes := list(dict.fromkeys(notes)):
        annotations[NOTES_ANNOTATION] = "; ".join(notes)
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSIONS[kind], "kind": kind, "metadata": metadata, "spec": spec}


def _workload_selector(service: str) -> Document:
    return {"matchLabels": {"app": service}}


# -- subsets and routing ------------------------------------------------------------------

_NOT_IN_LABEL = re.compile(r"[^a-z0-9]+")
_MAX_LABEL = 63
_HASHED_STEM = _MAX_LABEL - 7  # room for "-" and six hex digits


def subset_name(version: str) -> str:
    """A DNS-1123 label for a version: 1.4.0 → v1-4-0, v2 → v2, 2.0.0-RC.1 → v2-0-0-rc-1."""
    slug = _NOT_IN_LABEL.sub("-", version.lower()).strip("-")
    return slug if slug[:1].isalpha() else "v" + slug


def subset_names(versions: Iterable[str]) -> dict[str, str]:
    """Subset name per version. Versions whose names would clash (1.4.0 and 1-4-0) or
    run over 63 characters get a hash of the version as suffix, so every name is unique
    and the same for the same set of versions."""
    by_name: dict[str, list[str]] = {}
    for version in sorted(set(versions), key=_natural_key):
        by_name.setdefault(subset_name(version), []).append(version)
    names: dict[str, str] = {}
    for name, group in by_name.items():
        for version in group:
            if len(group) == 1 and len(name) <= _MAX_LABEL:
                names[version] = name
            else:
                digest = hashlib.sha256(version.encode()).hexdigest()[:6]
                names[version] = f"{name[:_HASHED_STEM].rstrip('-')}-{digest}"
    return names


def _natural_key(version: str) -> list[tuple[int, int | str]]:
    # 1.10.0 after 1.9.0; numbers sort before words at the same place.
    return [
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", version)
        if part
    ]


@dataclass(frozen=True)
class _Routing:
    weights: list[tuple[str, int]]  # (version, percent); empty: route to the host as a whole
    policies: list[str]
    notes: list[str]


def _routing(service: ServiceWorkloads, settings: TargetSettings) -> _Routing:
    if settings.traffic_splitting is not None:
        routes = settings.traffic_splitting.routes
        return _Routing(
            [(r.destination, r.weight) for r in routes], settings.policies("traffic_splitting"), []
        )
    algorithm, weights = _balancing(service, settings)
    if algorithm != "weighted":
        return _Routing([], [], [])
    shares = _version_shares(service.workloads, weights)
    if len(shares) < 2:
        return _Routing([], [], [])
    percents = _percentages(list(shares.values()))
    return _Routing(
        list(zip(shares, percents, strict=True)),
        settings.policies("load_balancing"),
        ["weighted balancing exported as route weights per version (instance weights summed)"],
    )


def _balancing(
    service: ServiceWorkloads, settings: TargetSettings
) -> tuple[str, Mapping[str, int]]:
    if settings.load_balancing is not None:
        return settings.load_balancing.algorithm, settings.load_balancing.weights or {}
    return service.load_balancing, {}


def _version_shares(workloads: Sequence[Workload], weights: Mapping[str, int]) -> dict[str, int]:
    """Traffic share per version under orch's weighted balancer: the sum of its instances'
    weights (by instance id, then version, then metadata.weight), all equal when all are 0."""
    shares: dict[str, int] = {}
    for workload in sorted(workloads, key=lambda w: _natural_key(w.version)):
        weight = weights.get(workload.instance_id, weights.get(workload.version, workload.weight))
        shares[workload.version] = shares.get(workload.version, 0) + weight
    if not any(shares.values()):
        return {version: sum(1 for w in workloads if w.version == version) for version in shares}
    return shares


def _percentages(shares: Sequence[int]) -> list[int]:
    """Whole percentages proportional to ``shares`` that add up to exactly 100
    (largest remainder; ties go to the earlier share)."""
    total = sum(shares)
    exact = [100 * share / total for share in shares]
    result = [int(value) for value in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: -(exact[i] - result[i]))
    for index in by_remainder[: 100 - sum(result)]:
        result[index] += 1
    return result


# -- DestinationRule ----------------------------------------------------------------------

_SIMPLE_LB = {
    "round_robin": "ROUND_ROBIN",
    "least_connections": "LEAST_REQUEST",  # Istio's LEAST_CONN is a deprecated alias of it
    "weighted": "ROUND_ROBIN",  # Envoy's round robin honours endpoint weights
}


def _destination_rule(
    service: ServiceWorkloads,
    settings: TargetSettings,
    subsets: Mapping[str, str],
    namespace: str,
) -> Document:
    algorithm, _ = _balancing(service, settings)
    policies = settings.policies("load_balancing", "connection_pool")
    notes: list[str] = []
    if algorithm == "weighted" and len({w.version for w in service.workloads}) < 2:
        notes.append("Istio cannot weight single pods: ROUND_ROBIN without instance weights")
    elif algorithm == "weighted":
        notes.append("Istio cannot weight single pods: ROUND_ROBIN within each subset")
    traffic_policy: Document = {"loadBalancer": {"simple": _SIMPLE_LB[algorithm]}}
    outliers = _outlier_detection(settings)
    if outliers is not None:
        traffic_policy["outlierDetection"], origin, note = outliers
        policies.append(origin)
        notes += [note] if note else []
    if settings.connection_pool is not None:
        traffic_policy["connectionPool"] = _connection_pool(settings.connection_pool)
    spec: Document = {"host": service.name, "trafficPolicy": traffic_policy}
    if subsets:
        spec["subsets"] = [
            {"name": name, "labels": {"version": version}}
            for version, name in sorted(subsets.items(), key=lambda item: _natural_key(item[0]))
        ]
    return _document(
        "DestinationRule", service.name, namespace, spec, policies=policies, notes=notes
    )


def _outlier_detection(settings: TargetSettings) -> tuple[Document, str, str | None] | None:
    if settings.outlier_detection is not None:
        config = settings.outlier_detection
        return (
            {
                "consecutive5xxErrors": config.consecutive_5xx,
                "baseEjectionTime": istio_duration(config.base_ejection_seconds),
                "maxEjectionPercent": config.max_ejection_percent,
            },
            settings.origin["outlier_detection"],
            None,
        )
    if settings.circuit_breaker is not None:
        breaker = settings.circuit_breaker
        # A breaker stops calls to the whole service, so every host may be ejected.
        return (
            {
                "consecutive5xxErrors": breaker.failure_threshold,
                "baseEjectionTime": istio_duration(max(breaker.timeout_duration, 0.001)),
                "maxEjectionPercent": 100,
            },
            settings.origin["circuit_breaker"],
            "circuit breaker exported as outlier detection: Envoy ejects hosts one at a time "
            "and lengthens repeated ejections; no half-open probe count",
        )
    return None


def _connection_pool(config: ConnectionPoolConfig) -> Document:
    return {
        "tcp": {"maxConnections": config.max_connections},
        "http": {"http1MaxPendingRequests": config.max_pending_requests},
    }


def istio_duration(seconds: float) -> str:
    """Seconds in the one duration form every Istio parser takes (protobuf JSON, Go, CEL):
    30s, 1.5s, 0.1s; never below Istio's minimum of 1ms."""
    whole, millis = divmod(max(1, round(seconds * 1000)), 1000)
    return f"{whole}s" if millis == 0 else f"{whole}.{millis:03d}".rstrip("0") + "s"


# -- VirtualService -----------------------------------------------------------------------

# Envoy retries a per-try timeout under "reset"; a status code in retryOn is how Istio
# fills Envoy's retriable_status_codes (the v1 HTTPRetry has no field of its own for it).
_RETRY_ON = {"connect-failure": "connect-failure", "5xx": "5xx", "429": "429", "timeout": "reset"}


def _virtual_service(
    service: str,
    settings: TargetSettings,
    routing: _Routing,
    subsets: Mapping[str, str],
    namespace: str,
) -> Document | None:
    if not routing.weights and settings.retry_policy is None and settings.timeout is None:
        return None
    route: Document = {"name": "default", "route": _destinations(service, routing, subsets)}
    timeout = settings.timeout
    if settings.retry_policy is not None:
        route["retries"] = _retries(settings.retry_policy)
        if timeout is None and route["retries"] == {"attempts": 0}:
            # orch bounds a single-attempt call by timeout_per_attempt; without retries
            # Istio has no per-try timeout, so the route timeout carries it.
            timeout = settings.retry_policy.timeout_per_attempt
    if timeout is not None:
        route["timeout"] = istio_duration(timeout)
    policies = [*routing.policies, *settings.policies("retry_policy", "timeout")]
    spec = {"hosts": [service], "http": [route]}
    return _document(
        "VirtualService", service, namespace, spec, policies=policies, notes=routing.notes
    )


def _destinations(service: str, routing: _Routing, subsets: Mapping[str, str]) -> list[Document]:
    if not routing.weights:
        return [{"destination": {"host": service}}]
    return [
        {"destination": {"host": service, "subset": subsets[version]}, "weight": weight}
        for version, weight in routing.weights
    ]


def _retries(policy: RetryPolicyConfig) -> Document:
    # orch counts the first call among its attempts; Istio counts only the retries.
    retries = policy.max_attempts - 1
    retry_on = list(dict.fromkeys(_RETRY_ON[c] for c in policy.retry_conditions))
    if retries == 0 or not retry_on:
        return {"attempts": 0}  # said outright: Istio retries twice when told nothing
    return {
        "attempts": retries,
        "perTryTimeout": istio_duration(policy.timeout_per_attempt),
        "retryOn": ",".join(retry_on),
    }


# -- PeerAuthentication -------------------------------------------------------------------

_MTLS_MODE = {"strict": "STRICT", "permissive": "PERMISSIVE", "disabled": "DISABLE"}


def _peer_authentication(service: str, settings: TargetSettings, namespace: str) -> Document:
    assert settings.mutual_tls is not None
    spec = {
        "selector": _workload_selector(service),
        "mtls": {"mode": _MTLS_MODE[settings.mutual_tls.mode]},
    }
    return _document(
        "PeerAuthentication", service, namespace, spec, policies=settings.policies("mutual_tls")
    )


# -- AuthorizationPolicy ------------------------------------------------------------------


def _authorization_policies(
    service: str, policies: Sequence[MeshPolicy], namespace: str
) -> list[Document]:
    """Every authorization rule of every enabled policy that reaches ``service``, one
    document per action: as in orch, any matching DENY rule denies, and once an ALLOW
    policy reaches a service only what one of its rules matches is let through."""
    documents = []
    for action in ("allow", "deny"):
        contributing = [
            p
            for p in policies_targeting(policies, service)
            if p.policy_config.authorization is not None
            and p.policy_config.authorization.action == action
        ]
        if not contributing:
            continue
        rules: list[Document] = []
        notes: list[str] = []
        for policy in contributing:
            assert policy.policy_config.authorization is not None
            for rule in policy.policy_config.authorization.rules:
                translated = _istio_rule(rule, policy, service, namespace, action, notes)
                if translated is not None:
                    rules.append(translated)
        if action == "deny" and not rules:
            continue  # a DENY policy without rules matches nothing
        spec: Document = {"selector": _workload_selector(service), "action": action.upper()}
        if rules:
            spec["rules"] = rules
        else:
            notes.append(
                "no allow rule admits any caller; an ALLOW policy without rules "
                "denies every request, as orch does"
            )
        documents.append(
            _document(
                "AuthorizationPolicy",
                f"{service}-{action}",
                namespace,
                spec,
                policies=[p.policy_name for p in contributing],
                notes=notes,
            )
        )
    return documents


def _istio_rule(
    rule: AuthorizationRule,
    policy: MeshPolicy,
    service: str,
    namespace: str,
    action: str,
    notes: list[str],
) -> Document | None:
    if not ("*" in rule.to or service in rule.to):
        return None
    sources = _rule_sources(policy.source_services, rule.from_)
    if sources is not None and not sources:
        return None  # the policy's sources and the rule's share no caller
    translated: Document = {}
    if sources is not None:
        principals = [f"{TRUST_DOMAIN}/ns/{namespace}/sa/{name}" for name in sources]
        translated["from"] = [{"source": {"principals": principals}}]
    operation: Document = {}
    if rule.when.method:
        operation["methods"] = list(rule.when.method)
    if rule.when.endpoint:
        paths = _istio_paths(
            rule.when.endpoint, widen=action == "deny", notes=notes, policy=policy.policy_name
        )
        if not paths:
            return None
        operation["paths"] = paths
    if operation:
        translated["to"] = [{"operation": operation}]
    return translated


def _rule_sources(policy_sources: Sequence[str], rule_sources: Sequence[str]) -> list[str] | None:
    """The callers a rule applies to: None for any caller (the Istio rule gets no ``from``,
    so it matches plain-text callers too, as orch's '*' does), else service names."""
    policy_any = not policy_sources or "*" in policy_sources
    rule_any = "*" in rule_sources
    if policy_any and rule_any:
        return None
    if policy_any:
        return list(rule_sources)
    if rule_any:
        return list(policy_sources)
    return [name for name in rule_sources if name in policy_sources]


_GLOB = re.compile(r"[*?\[]")


def _istio_paths(
    patterns: Sequence[str], *, widen: bool, notes: list[str], policy: str
) -> list[str]:
    """orch's endpoint globs as Istio paths (exact, ``prefix*``, ``*suffix`` or ``*``).

    A glob Istio cannot express is widened to its literal prefix in DENY rules (denying
    more) and dropped from ALLOW rules (allowing less), so the export never opens access.
    """
    paths = []
    for pattern in patterns:
        if _istio_can_match(pattern):
            paths.append(pattern)
        elif widen:
            widened = pattern[: _GLOB.search(pattern).start()] + "*"  # type: ignore[union-attr]
            paths.append(widened)
            notes.append(f"{policy}: endpoint {pattern!r} widened to {widened!r}")
        else:
            notes.append(f"{policy}: endpoint {pattern!r} has no Istio form and was left out")
    return list(dict.fromkeys(paths))


def _istio_can_match(pattern: str) -> bool:
    if pattern == "*" or not _GLOB.search(pattern):
        return True
    if pattern.endswith("*") and not _GLOB.search(pattern[:-1]):
        return True
    return pattern.startswith("*") and not _GLOB.search(pattern[1:])


# -- validation ---------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_SUBDOMAIN_PART}(\.{_DNS_SUBDOMAIN_PART})*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_GO_DURATION = re.compile(r"(?:(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# Fields that hold durations although their schema carries no CEL duration rule
# (tcp.idleTimeout, httpCookie.ttl, retryBudget.budgetInterval, ...), by field name.
_DURATION_FIELDS = frozenset(
    {
        "timeout",
        "perTryTimeout",
        "backoff",
        "interval",
        "baseEjectionTime",
        "connectTimeout",
        "idleTimeout",
        "maxConnectionDuration",
        "time",
        "ttl",
        "budgetInterval",
        "fixedDelay",
        "exponentialDelay",
        "maxAge",
        "duration",
        "warmupDurationSecs",
    }
)
_DURATION_RULE = "duration(self) >= duration('1ms')"

# What Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on accept, as Istio passes them on.
_RETRY_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)


def parse_duration(text: str) -> float | None:
    """Seconds in a duration as the API server's CEL ``duration()`` reads it (Go syntax:
    100ms, 1.5s, 1h30m), or None when it is not one."""
    body = text.removeprefix("+")
    if body == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(body):
        return None
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(body))


def _duration_problem(value: Any, *, minimum: float | None) -> str | None:
    if not isinstance(value, str):
        return None  # the schema's type check says so already
    seconds = parse_duration(value)
    if seconds is None:
        return f"{value!r} is not a duration (write e.g. 100ms, 1.5s or 30s)"
    if minimum is not None and seconds < minimum:
        return f"{value!r} is shorter than Istio's minimum of 1ms"
    return None


def validate_documents(documents: Sequence[Any]) -> list[str]:
    """Every problem found in ``documents``, each naming kind/name and the JSON path;
    an empty list means they are valid.

    Checked: apiVersion and kind; metadata.name (DNS-1123 subdomain), namespace and
    labels; ``spec`` against Istio's published v1 CRD schema, with the Kubernetes
    extensions honoured (unknown fields rejected as ``kubectl --validate=strict`` does,
    ``nullable``, int-or-string, int32 ranges, the schemas' CEL rules); every duration;
    route weights adding up to 100; retryOn values; subset names and labels; and that
    each subset a VirtualService routes to is defined by a DestinationRule.
    """
    problems: list[str] = []
    for index, document in enumerate(documents):
        problems += _document_problems(index, document)
    problems += _dangling_subsets(documents)
    return list(dict.fromkeys(problems))


def _title(index: int, document: Any) -> str:
    if not isinstance(document, Mapping):
        return f"document {index}"
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f"{document.get('kind', 'document')}/{name if name else f'#{index}'}"


def _document_problems(index: int, document: Any) -> list[str]:
    title = _title(index, document)
    if not isinstance(document, Mapping):
        return [f"{title}: $: not a mapping"]
    problems = [f"{title}: {path}: {problem}" for path, problem in _envelope_problems(document)]
    kind, spec = document.get("kind"), document.get("spec")
    if kind not in API_VERSIONS or not isinstance(spec, Mapping):
        return problems
    for path, problem in _schema_problems(kind, spec):
        problems.append(f"{title}: {path}: {problem}")
    for path, problem in _KIND_CHECKS[kind](spec):
        problems.append(f"{title}: {path}: {problem}")
    return problems


def _envelope_problems(document: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    kind = document.get("kind")
    if kind not in API_VERSIONS:
        yield "kind", f"{kind!r} is not one of {', '.join(API_VERSIONS)}"
    elif document.get("apiVersion") != API_VERSIONS[kind]:
        yield "apiVersion", f"{document.get('apiVersion')!r} is not {API_VERSIONS[kind]!r}"
    for key in sorted(set(document) - {"apiVersion", "kind", "metadata", "spec"}):
        yield _json_path([key]), "unknown top-level field"
    if not isinstance(document.get("spec"), Mapping):
        yield "spec", "missing or not a mapping"
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        yield "metadata", "missing or not a mapping"
        return
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        yield "metadata.name", f"{name!r} is not a DNS-1123 name (lower case, digits, '-', '.')"
    namespace = metadata.get("namespace")
    if namespace is not None and not (
        isinstance(namespace, str) and _DNS_LABEL.fullmatch(namespace)
    ):
        yield "metadata.namespace", f"{namespace!r} is not a DNS-1123 label"
    yield from _label_problems(metadata.get("labels"), ["metadata", "labels"])


def _label_problems(labels: Any, path: list[str | int]) -> Iterator[tuple[str, str]]:
    if labels is None:
        return
    if not isinstance(labels, Mapping):
        yield _json_path(path), "labels must be a mapping"
        return
    for key, value in labels.items():
        if not _is_label_key(key):
            yield _json_path([*path, str(key)]), f"{key!r} is not a Kubernetes label key"
        if not (isinstance(value, str) and len(value) <= 63 and _LABEL_NAME.fullmatch(value)):
            yield _json_path([*path, str(key)]), f"{value!r} is not a Kubernetes label value"


def _is_label_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.fullmatch(name))


def _json_path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "$"


# -- the CRD schemas, with Kubernetes' extensions -----------------------------------------


def _schema_problems(kind: str, spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for error in _spec_validator(kind).iter_errors(spec):
        found += _explain(error)
    return sorted(found)


def _explain(error: ValidationError) -> list[tuple[str, str]]:
    path: list[str | int] = ["spec", *error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        return [
            (_json_path([*path, key]), "unknown field (not in Istio's v1 CRD schema)")
            for key in error.instance
            if key not in known
        ]
    if error.validator == "oneOf" and isinstance(error.validator_value, list):
        choices = [name for branch in error.validator_value for name in branch.get("required", [])]
        return [(_json_path(path), f"set at most one of {', '.join(choices)}")]
    if error.validator == "format":
        return [(_json_path(path), f"{error.instance!r} is not a valid {error.validator_value}")]
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return [(_json_path(path), message)]


def _schema_text(kind: str) -> str:
    folder = resources.files("orchcore.mesh").joinpath("istio_schemas")
    return folder.joinpath(f"{kind.lower()}.json").read_text(encoding="utf-8")


@cache
def _spec_validator(kind: str) -> Any:
    schema = json.loads(_schema_text(kind))["properties"]["spec"]
    return _KubernetesValidator(_structural(schema), format_checker=_FORMATS)


def _structural(schema: Any) -> Any:
    """The schema as the API server applies it: objects with declared properties take no
    others (unless they preserve unknown fields), and string fields named as durations
    are checked as durations even where the schema has no CEL rule for them."""
    schema = copy.deepcopy(schema)
    _close_objects(schema)
    return schema


def _close_objects(node: Any) -> None:
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if (
        isinstance(properties, dict)
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for name, child in (properties or {}).items():
        if name in _DURATION_FIELDS and isinstance(child, dict) and child.get("type") == "string":
            rules = [r.get("rule") for r in child.get("x-kubernetes-validations", [])]
            if _DURATION_RULE not in rules:
                child["x-orch-duration"] = True
        _close_objects(child)
    for key in ("items", "additionalProperties", "not"):
        _close_objects(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(key, []):
            _close_objects(branch)


def _nullable_type(validator: Any, types: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
    if instance is None and schema.get("nullable"):
        return
    yield from Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)


def _int_or_string(validator: Any, enabled: Any, instance: Any, schema: Any) -> Any:
    if enabled and (isinstance(instance, bool) or not isinstance(instance, int | str)):
        yield ValidationError(f"{instance!r} is neither a whole number nor a string")


def _marked_duration(validator: Any, enabled: Any, instance: Any, schema: Any) -> Any:
    problem = _duration_problem(instance, minimum=None) if enabled else None
    if problem:
        yield ValidationError(problem)


def _cel_rules(validator: Any, rules: Any, instance: Any, schema: Any) -> Any:
    """The schemas' CEL rules, each evaluated by a Python equivalent of its exact text;
    a rule without one is reported rather than passed unchecked."""
    for rule in rules:
        text = " ".join(str(rule.get("rule", "")).split())
        if text == _DURATION_RULE:
            problem = _duration_problem(instance, minimum=0.001)
            if problem:
                yield ValidationError(problem)
            continue
        check = _CEL_CHECKS.get(text)
        if check is None:
            yield ValidationError(f"cannot check the schema's CEL rule {text!r}")
        elif not check(instance):
            yield ValidationError(str(rule.get("message") or f"fails {text}"))


def _has(value: Any, *keys: str) -> bool:
    return isinstance(value, Mapping) and any(key in value for key in keys)


def _all_keys(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda value: not isinstance(value, Mapping) or all(check(str(k)) for k in value)


def _port_key(key: str) -> bool:
    return key.isdigit() and 0 < int(key) <= 65535


def _port_level_needs_selector(spec: Any) -> bool:
    if not _has(spec, "portLevelMtls"):
        return True
    selector = spec.get("selector")
    return _has(selector, "matchLabels") and bool(selector["matchLabels"])


def _one_target_at_most(spec: Any) -> bool:
    return (
        not isinstance(spec, Mapping)
        or sum(key in spec for key in ("selector", "targetRef", "targetRefs")) <= 1
    )


def _service_accounts_alone(source: Any) -> bool:
    if not _has(source, "serviceAccounts", "notServiceAccounts"):
        return True
    return not _has(source, "principals", "notPrincipals", "namespaces", "notNamespaces")


_SELECTOR_OR_TARGET_RULE = (
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + "
    "(has(self.targetRefs) ? 1 : 0) <= 1"
)
_SERVICE_ACCOUNTS_RULE = (
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) && "
    "!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true"
)
_PORT_LEVEL_MTLS_RULE = (
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true"
)
_CEL_CHECKS: dict[str, Callable[[Any], bool]] = {
    '!self.contains("*")': lambda value: not isinstance(value, str) or "*" not in value,
    'self.all(key, !key.contains("*"))': _all_keys(lambda key: "*" not in key),
    "self.all(key, key.size() != 0)": _all_keys(lambda key: key != ""),
    "self.all(key, 0 < int(key) && int(key) <= 65535)": _all_keys(_port_key),
    "self.size() == 0": lambda value: not isinstance(value, str | list | Mapping) or not value,
    _SELECTOR_OR_TARGET_RULE: _one_target_at_most,
    _SERVICE_ACCOUNTS_RULE: _service_accounts_alone,
    _PORT_LEVEL_MTLS_RULE: _port_level_needs_selector,
}


def _is_base64(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True


def _fits(bits: int) -> Callable[[object], bool]:
    limit = 2 ** (bits - 1)
    return lambda value: not isinstance(value, int) or -limit <= value < limit


_FORMATS = FormatChecker(formats=())
_FORMATS.checks("int32")(_fits(32))
_FORMATS.checks("int64")(_fits(64))
_FORMATS.checks("byte")(_is_base64)

_KubernetesValidator: Any = extend(  # type: ignore[no-untyped-call]
    Draft4Validator,  # OpenAPI v3.0 schemas follow draft 4's keywords
    validators={
        "type": _nullable_type,
        "x-kubernetes-int-or-string": _int_or_string,
        "x-kubernetes-validations": _cel_rules,
        "x-orch-duration": _marked_duration,
    },
)


# -- checks the schemas cannot express ----------------------------------------------------


def _virtual_service_problems(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for protocol in ("http", "tcp", "tls"):
        for index, entry in enumerate(_list(spec.get(protocol))):
            route = _list(_get(entry, "route"))
            yield from _weight_problems(route, ["spec", protocol, index, "route"])
    for index, entry in enumerate(_list(spec.get("http"))):
        retry_on = _get(_get(entry, "retries"), "retryOn")
        if isinstance(retry_on, str):
            yield from _retry_on_problems(retry_on, ["spec", "http", index, "retries", "retryOn"])


def _weight_problems(route: list[Any], path: list[str | int]) -> Iterator[tuple[str, str]]:
    if len(route) < 2:
        return  # a lone destination takes all traffic whatever its weight
    weights = [_get(destination, "weight") for destination in route]
    total = sum(w for w in weights if isinstance(w, int))
    if total != 100:
        yield _json_path(path), f"destination weights add up to {total}, not 100"


def _retry_on_problems(retry_on: str, path: list[str | int]) -> Iterator[tuple[str, str]]:
    for token in (part.strip() for part in retry_on.split(",")):
        status_code = token.isdigit() and 100 <= int(token) <= 599
        if not status_code and token not in _RETRY_POLICIES:
            yield _json_path(path), f"{token!r} is neither a retry policy nor an HTTP status"


def _destination_rule_problems(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for index, subset in enumerate(_list(spec.get("subsets"))):
        name = _get(subset, "name")
        path: list[str | int] = ["spec", "subsets", index, "name"]
        if not (isinstance(name, str) and _DNS_LABEL.fullmatch(name)):
            yield _json_path(path), f"{name!r} is not a DNS-1123 label"
        elif name in seen:
            yield _json_path(path), f"subset {name!r} is defined twice"
        seen.add(str(name))
        yield from _label_problems(_get(subset, "labels"), ["spec", "subsets", index, "labels"])


def _selector_problems(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    labels = _get(spec.get("selector"), "matchLabels")
    yield from _label_problems(labels, ["spec", "selector", "matchLabels"])


_KIND_CHECKS: dict[str, Callable[[Mapping[str, Any]], Iterator[tuple[str, str]]]] = {
    "VirtualService": _virtual_service_problems,
    "DestinationRule": _destination_rule_problems,
    "PeerAuthentication": _selector_problems,
    "AuthorizationPolicy": _selector_problems,
}


def _dangling_subsets(documents: Sequence[Any]) -> list[str]:
    """Subsets a VirtualService routes to that no DestinationRule for the host defines."""
    defined: dict[str, set[str]] = {}
    for document in _of_kind(documents, "DestinationRule"):
        spec, namespace = document["spec"], _namespace(document)
        names = {_get(s, "name") for s in _list(spec.get("subsets"))}
        host = _qualified_host(spec.get("host"), namespace)
        defined.setdefault(host, set()).update(n for n in names if isinstance(n, str))
    problems = []
    for index, document in enumerate(documents):
        if not _of_kind([document], "VirtualService"):
            continue
        for path, destination in _routed_destinations(document["spec"]):
            subset = _get(destination, "subset")
            host = _qualified_host(_get(destination, "host"), _namespace(document))
            if subset is not None and subset not in defined.get(host, set()):
                problems.append(
                    f"{_title(index, document)}: {_json_path([*path, 'subset'])}: "
                    f"no DestinationRule for {host} defines subset {subset!r}"
                )
    return problems


def _routed_destinations(spec: Mapping[str, Any]) -> Iterator[tuple[list[str | int], Any]]:
    for protocol in ("http", "tcp", "tls"):
        for index, entry in enumerate(_list(spec.get(protocol))):
            for position, route in enumerate(_list(_get(entry, "route"))):
                yield (
                    ["spec", protocol, index, "route", position, "destination"],
                    _get(route, "destination"),
                )
    for index, entry in enumerate(_list(spec.get("http"))):
        if _get(entry, "mirror") is not None:
            yield ["spec", "http", index, "mirror"], _get(entry, "mirror")
        for position, mirror in enumerate(_list(_get(entry, "mirrors"))):
            yield (
                ["spec", "http", index, "mirrors", position, "destination"],
                _get(mirror, "destination"),
            )


def _of_kind(documents: Sequence[Any], kind: str) -> list[Mapping[str, Any]]:
    return [
        d
        for d in documents
        if isinstance(d, Mapping) and d.get("kind") == kind and isinstance(d.get("spec"), Mapping)
    ]


def _namespace(document: Mapping[str, Any]) -> str:
    namespace = _get(document.get("metadata"), "namespace")
    return namespace if isinstance(namespace, str) else "default"


def _qualified_host(host: Any, namespace: str) -> str:
    # Istio reads a short host name relative to the namespace of the rule naming it.
    text = str(host)
    return text if "." in text else f"{text}.{namespace}.svc.{TRUST_DOMAIN}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None
