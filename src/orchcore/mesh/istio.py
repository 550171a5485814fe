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
names the policies a document came from. Reading the database and leaving out what
cannot be exported is ``orchcore.mesh.istio_export``'s part; this module only renders.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import yaml

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
    is_label_value,
)

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
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


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


# -- rendering ---------------------------------------------------------------------------


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
    service, unlabelled = _labelled_workloads(service)
    settings = settings_for(service.name, policies)
    routing = _routing(service, settings)
    versions = {w.version for w in service.workloads} | {v for v, _ in routing.weights}
    subsets = subset_names(versions)
    documents = [_destination_rule(service, settings, subsets, namespace, unlabelled)]
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


def _labelled_workloads(service: ServiceWorkloads) -> tuple[ServiceWorkloads, list[str]]:
    """The workloads whose version a pod's label can hold, and the versions left out: no
    subset can select pods by a label value that cannot exist (1.4.0+b7, 64 characters)."""
    kept = tuple(w for w in service.workloads if is_label_value(w.version))
    left_out = sorted({w.version for w in service.workloads} - {w.version for w in kept})
    return replace(service, workloads=kept), left_out


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
    unlabelled: Sequence[str] = (),
) -> Document:
    algorithm, _ = _balancing(service, settings)
    policies = settings.policies("load_balancing", "connection_pool")
    notes = [
        f"instances of version {version!r} have no subset: it is not a Kubernetes label value"
        for version in unlabelled
    ]
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
