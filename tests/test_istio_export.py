"""`orch mesh export --format istio`, the engine half: documents, mappings, validator, YAML."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import yaml

from orchcore import NotFoundError, Orch, ValidationFailed
from orchcore.mesh import istio, istio_validation
from orchcore.mesh.istio import (
    ServiceWorkloads,
    Workload,
    build_istio_documents,
    dump_yaml,
    istio_duration,
    subset_name,
    subset_names,
)
from orchcore.mesh.istio_export import export_istio
from orchcore.mesh.istio_validation import parse_duration, validate_documents
from orchcore.mesh.models import STORED_ROW, MeshPolicy
from orchcore.mesh.store import Q
from tests.support.api import serve_api
from tests.support.cli import run_orch

Doc = dict[str, Any]


async def register(
    orch: Orch,
    name: str,
    versions: Sequence[str] = (),
    *,
    weights: Sequence[int] | None = None,
    load_balancing: str = "round_robin",
) -> None:
    """A service with one instance per version given."""
    await orch.registry.register_service(
        {
            "service_name": name,
            "service_type": "api",
            "deployment_environment": "staging",
            "load_balancing": load_balancing,
        },
        actor="t",
    )
    for index, version in enumerate(versions):
        await orch.registry.register_instance(
            name,
            {
                "instance_id": f"{name}-{index}",
                "ip_address": "10.0.0.1",
                "port": 8000 + index,
                "version": version,
                "metadata": {"weight": weights[index]} if weights else {},
            },
            actor="t",
        )


async def add_policy(
    orch: Orch, name: str, kind: str, config: dict[str, Any], **extra: Any
) -> None:
    await orch.mesh.create(
        {
            "policy_name": name,
            "policy_type": kind,
            "target_services": extra.pop("targets", ["booking"]),
            "policy_config": config,
            **extra,
        },
        actor="t",
    )


async def exported_documents(
    orch: Orch, *, service: str | None = None, namespace: str = "default"
) -> list[Doc]:
    """The export's documents, when nothing had to be left out of it."""
    result = await export_istio(orch, service=service, namespace=namespace)
    assert result.left_out == []
    return result.documents


def find(documents: Sequence[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} documents"
    return matches[0]


def kinds(documents: Sequence[Doc]) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in documents]


SPLIT = {
    "traffic_splitting": {
        "routes": [{"destination": "1.4.0", "weight": 90}, {"destination": "2.0.0", "weight": 10}]
    },
    "load_balancing": {"algorithm": "least_connections"},
}
RESILIENCE = {
    "retry_policy": {
        "max_attempts": 3,
        "timeout_per_attempt": 1.5,
        "retry_conditions": ["connect-failure", "5xx", "429", "timeout"],
    },
    "timeout": 10,
    "outlier_detection": {
        "consecutive_5xx": 3,
        "base_ejection_seconds": 0.25,
        "max_ejection_percent": 40,
    },
    "connection_pool": {"max_connections": 50, "max_pending_requests": 20},
}
SECURITY = {
    "mutual_tls": {"mode": "strict"},
    "authorization": {
        "action": "allow",
        "rules": [
            {
                "from": ["venue", "catering"],
                "to": ["booking"],
                "when": {"method": ["get", "post"], "endpoint": ["/bookings/*", "/health"]},
            },
        ],
    },
}
DENY_ADMIN = {
    "authorization": {
        "action": "deny",
        "rules": [{"from": ["*"], "to": ["*"], "when": {"endpoint": ["/admin*"]}}],
    }
}


async def test_every_kind_from_representative_policies(orch: Orch) -> None:
    await register(orch, "booking", ["1.4.0", "1.4.0", "2.0.0"])
    await add_policy(orch, "booking-canary", "traffic", SPLIT)
    await add_policy(orch, "booking-resilience", "resilience", RESILIENCE)
    await add_policy(orch, "booking-security", "security", SECURITY)
    await add_policy(orch, "no-admin", "security", DENY_ADMIN, targets=[])

    documents = await exported_documents(orch, namespace="weddings")

    assert kinds(documents) == [
        ("DestinationRule", "booking"),
        ("VirtualService", "booking"),
        ("PeerAuthentication", "booking"),
        ("AuthorizationPolicy", "booking-allow"),
        ("AuthorizationPolicy", "booking-deny"),
    ]
    assert validate_documents(documents) == []
    for document in documents:
        assert document["metadata"]["namespace"] == "weddings"
        assert document["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "orch"}

    rule = find(documents, "DestinationRule", "booking")
    assert rule["apiVersion"] == "networking.istio.io/v1"
    assert rule["spec"] == {
        "host": "booking",
        "trafficPolicy": {
            "loadBalancer": {"simple": "LEAST_REQUEST"},
            "outlierDetection": {
                "consecutive5xxErrors": 3,
                "baseEjectionTime": "0.25s",
                "maxEjectionPercent": 40,
            },
            "connectionPool": {
                "tcp": {"maxConnections": 50},
                "http": {"http1MaxPendingRequests": 20},
            },
        },
        "subsets": [
            {"name": "v1-4-0", "labels": {"version": "1.4.0"}},
            {"name": "v2-0-0", "labels": {"version": "2.0.0"}},
        ],
    }
    assert rule["metadata"]["annotations"]["orch/policies"] == "booking-canary,booking-resilience"

    service = find(documents, "VirtualService", "booking")
    assert service["apiVersion"] == "networking.istio.io/v1"
    assert service["spec"] == {
        "hosts": ["booking"],
        "http": [
            {
                "name": "default",
                "route": [
                    {"destination": {"host": "booking", "subset": "v1-4-0"}, "weight": 90},
                    {"destination": {"host": "booking", "subset": "v2-0-0"}, "weight": 10},
                ],
                # three attempts in orch are the first call and two retries in Istio
                "retries": {
                    "attempts": 2,
                    "perTryTimeout": "1.5s",
                    "retryOn": "connect-failure,5xx,429,reset",
                },
                "timeout": "10s",
            }
        ],
    }

    peer = find(documents, "PeerAuthentication", "booking")
    assert peer["apiVersion"] == "security.istio.io/v1"
    assert peer["spec"] == {
        "selector": {"matchLabels": {"app": "booking"}},
        "mtls": {"mode": "STRICT"},
    }

    allow = find(documents, "AuthorizationPolicy", "booking-allow")
    assert allow["apiVersion"] == "security.istio.io/v1"
    assert allow["spec"] == {
        "selector": {"matchLabels": {"app": "booking"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {
                        "source": {
                            "principals": [
                                "cluster.local/ns/weddings/sa/venue",
                                "cluster.local/ns/weddings/sa/catering",
                            ]
                        }
                    }
                ],
                "to": [
                    {"operation": {"methods": ["GET", "POST"], "paths": ["/bookings/*", "/health"]}}
                ],
            }
        ],
    }
    deny = find(documents, "AuthorizationPolicy", "booking-deny")
    # '*' as source: no `from`, so callers without a mesh identity are matched too
    assert deny["spec"]["action"] == "DENY"
    assert deny["spec"]["rules"] == [{"to": [{"operation": {"paths": ["/admin*"]}}]}]
    assert deny["metadata"]["annotations"]["orch/policies"] == "no-admin"


async def test_no_policies_gives_only_destination_rules(orch: Orch) -> None:
    await register(orch, "booking", ["1.0.0", "1.1.0"])
    await register(orch, "venue")  # no instances: nothing to name subsets after

    documents = await exported_documents(orch)

    assert kinds(documents) == [("DestinationRule", "booking"), ("DestinationRule", "venue")]
    assert validate_documents(documents) == []
    booking = find(documents, "DestinationRule", "booking")
    # orch balances round robin by default, Istio does not: the rule says it outright
    assert booking["spec"]["trafficPolicy"] == {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    assert [s["name"] for s in booking["spec"]["subsets"]] == ["v1-0-0", "v1-1-0"]
    assert "annotations" not in booking["metadata"]
    assert "subsets" not in find(documents, "DestinationRule", "venue")["spec"]


async def test_service_filter_and_unknown_service(orch: Orch) -> None:
    await register(orch, "booking", ["1.0.0"])
    await register(orch, "venue", ["1.0.0"])
    await add_policy(
        orch, "everyone-strict", "security", {"mutual_tls": {"mode": "permissive"}}, targets=["*"]
    )

    documents = await exported_documents(orch, service="venue")

    assert kinds(documents) == [("DestinationRule", "venue"), ("PeerAuthentication", "venue")]
    assert documents[1]["spec"]["mtls"] == {"mode": "PERMISSIVE"}
    with pytest.raises(NotFoundError, match="'florist'"):
        await export_istio(orch, service="florist")
    with pytest.raises(ValidationFailed, match="namespace"):
        await export_istio(orch, namespace="Wedding_Prod")


async def test_highest_priority_wins_per_setting_whatever_the_source(orch: Orch) -> None:
    await register(orch, "booking", ["1.0.0"])
    await add_policy(
        orch,
        "base",
        "resilience",
        {
            "retry_policy": {"max_attempts": 2, "timeout_per_attempt": 1},
            "timeout": 4,
        },
    )
    await add_policy(
        orch,
        "from-venue",
        "resilience",
        {
            "retry_policy": {
                "max_attempts": 5,
                "timeout_per_attempt": 0.5,
                "retry_conditions": ["5xx"],
            },
        },
        priority=10,
        source_services=["venue"],
    )
    await add_policy(
        orch, "switched-off", "resilience", {"timeout": 99}, priority=50, is_enabled=False
    )

    documents = await exported_documents(orch)

    route = find(documents, "VirtualService", "booking")["spec"]["http"][0]
    assert route["retries"] == {"attempts": 4, "perTryTimeout": "0.5s", "retryOn": "5xx"}
    assert route["timeout"] == "4s"
    annotations = find(documents, "VirtualService", "booking")["metadata"]["annotations"]
    assert annotations["orch/policies"] == "base,from-venue"


async def test_single_attempt_and_circuit_breaker(orch: Orch) -> None:
    await register(orch, "payments", ["3.1.0"])
    await add_policy(
        orch,
        "no-retries",
        "resilience",
        {
            "retry_policy": {"max_attempts": 1, "timeout_per_attempt": 2.5},
            "circuit_breaker": {"failure_threshold": 4, "timeout_duration": 45},
        },
        targets=["payments"],
    )

    documents = await exported_documents(orch)

    route = find(documents, "VirtualService", "payments")["spec"]["http"][0]
    # Istio retries twice unless told not to; orch's one attempt is bounded by its timeout
    assert route["retries"] == {"attempts": 0}
    assert route["timeout"] == "2.5s"
    rule = find(documents, "DestinationRule", "payments")
    assert rule["spec"]["trafficPolicy"]["outlierDetection"] == {
        "consecutive5xxErrors": 4,
        "baseEjectionTime": "45s",
        "maxEjectionPercent": 100,
    }
    assert "circuit breaker" in rule["metadata"]["annotations"]["orch/notes"]
    assert validate_documents(documents) == []


async def test_outlier_detection_wins_over_circuit_breaker(orch: Orch) -> None:
    await register(orch, "booking")
    await add_policy(
        orch,
        "both",
        "resilience",
        {
            "circuit_breaker": {"failure_threshold": 9, "timeout_duration": 60},
            "outlier_detection": {"consecutive_5xx": 2},
        },
    )

    documents = await exported_documents(orch)

    rule = find(documents, "DestinationRule", "booking")
    assert rule["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 2
    assert "orch/notes" not in rule["metadata"]["annotations"]


async def test_weighted_balancing_becomes_route_weights_per_version(orch: Orch) -> None:
    await register(
        orch, "venue", ["1.0.0", "1.1.0", "1.1.0"], weights=[3, 1, 0], load_balancing="weighted"
    )

    documents = await exported_documents(orch)

    rule = find(documents, "DestinationRule", "venue")
    assert rule["spec"]["trafficPolicy"]["loadBalancer"] == {"simple": "ROUND_ROBIN"}
    assert "cannot weight single pods" in rule["metadata"]["annotations"]["orch/notes"]
    routes = find(documents, "VirtualService", "venue")["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in routes] == [
        ("v1-0-0", 75),
        ("v1-1-0", 25),
    ]
    assert validate_documents(documents) == []


async def test_weights_by_version_from_a_policy_add_up_to_100(orch: Orch) -> None:
    await register(orch, "venue", ["1.0.0", "2.0.0", "3.0.0"])
    await add_policy(
        orch,
        "thirds",
        "traffic",
        {
            "load_balancing": {
                "algorithm": "weighted",
                "weights": {"1.0.0": 1, "2.0.0": 1, "3.0.0": 1},
            },
        },
        targets=["venue"],
    )

    documents = await exported_documents(orch)

    routes = find(documents, "VirtualService", "venue")["spec"]["http"][0]["route"]
    assert [r["weight"] for r in routes] == [34, 33, 33]
    assert validate_documents(documents) == []


async def test_split_to_a_version_without_instances_still_has_its_subset(orch: Orch) -> None:
    await register(orch, "booking", ["1.4.0"])
    await add_policy(orch, "canary", "traffic", SPLIT)

    documents = await exported_documents(orch)

    subsets = find(documents, "DestinationRule", "booking")["spec"]["subsets"]
    assert [s["name"] for s in subsets] == ["v1-4-0", "v2-0-0"]
    assert validate_documents(documents) == []


async def test_authorization_follows_policy_sources_and_fails_closed(orch: Orch) -> None:
    await register(orch, "booking", ["1.0.0"])
    # The policy only concerns calls from venue; its rules narrow that further.
    allow_rules = [
        {"from": ["*"], "to": ["booking"], "when": {"method": ["GET"]}},
        {"from": ["payments"], "to": ["booking"]},
        {"from": ["venue"], "to": ["booking"], "when": {"endpoint": ["/a/*/b"]}},
    ]
    deny_rules = [{"from": ["*"], "to": ["*"], "when": {"endpoint": ["/reports/*/raw"]}}]
    await add_policy(
        orch,
        "venue-only",
        "security",
        {"authorization": {"action": "allow", "rules": allow_rules}},
        source_services=["venue"],
    )
    await add_policy(
        orch, "deny-reports", "security", {"authorization": {"action": "deny", "rules": deny_rules}}
    )

    documents = await exported_documents(orch)

    allow = find(documents, "AuthorizationPolicy", "booking-allow")
    # payments is not among the policy's sources; /a/*/b has no Istio form: both left out
    assert allow["spec"]["rules"] == [
        {
            "from": [{"source": {"principals": ["cluster.local/ns/default/sa/venue"]}}],
            "to": [{"operation": {"methods": ["GET"]}}],
        }
    ]
    assert "left out" in allow["metadata"]["annotations"]["orch/notes"]
    deny = find(documents, "AuthorizationPolicy", "booking-deny")
    assert deny["spec"]["rules"] == [{"to": [{"operation": {"paths": ["/reports/*"]}}]}]
    assert "widened" in deny["metadata"]["annotations"]["orch/notes"]
    assert validate_documents(documents) == []


async def test_allow_policy_with_nothing_left_allows_nothing(orch: Orch) -> None:
    await register(orch, "booking")
    await add_policy(
        orch,
        "other-target",
        "security",
        {"authorization": {"action": "allow", "rules": [{"from": ["*"], "to": ["venue"]}]}},
        targets=["*"],
    )

    documents = await exported_documents(orch)

    allow = find(documents, "AuthorizationPolicy", "booking-allow")
    assert "rules" not in allow["spec"]  # Istio's "allow nothing", as orch denies these calls
    assert validate_documents(documents) == []


# -- what cannot be exported is left out, never the export --------------------------------


async def store_old_row(
    orch: Orch,
    name: str,
    kind: str,
    config: dict[str, Any],
    *,
    targets: Sequence[str] = ("booking",),
    enabled: bool = True,
) -> None:
    """A row as an older orch (or a hand) wrote it, past today's rules: the store's own
    insert, without its checks."""
    row = await orch.db.fetchrow(
        Q.insert_policy, name, kind, [], list(targets), config, enabled, 0, "old", orch.clock.now()
    )
    assert row is not None


OLD_SPLIT = {
    "traffic_splitting": {
        "routes": [
            {"destination": "payment-service:1.0.0", "weight": 90},
            {"destination": "2.0.0", "weight": 10},
        ]
    }
}
OLD_SPLIT_REASON = (
    "policy_config.traffic_splitting.routes.0.destination: a destination is a version label "
    "of the target service such as 1.4.0"
)


async def test_a_stored_policy_the_export_cannot_write_is_left_out(orch: Orch) -> None:
    await register(orch, "booking", ["1.4.0", "2.0.0"])
    await register(orch, "venue", ["1.0.0"])
    await store_old_row(orch, "old-split", "traffic", OLD_SPLIT)
    await add_policy(orch, "booking-resilience", "resilience", RESILIENCE)
    await add_policy(orch, "booking-security", "security", SECURITY)

    result = await export_istio(orch)

    assert [(item.kind, item.name) for item in result.left_out] == [("policy", "old-split")]
    assert result.left_out[0].reason.startswith(OLD_SPLIT_REASON)
    assert validate_documents(result.documents) == []
    assert kinds(result.documents) == [
        ("DestinationRule", "booking"),
        ("VirtualService", "booking"),
        ("PeerAuthentication", "booking"),
        ("AuthorizationPolicy", "booking-allow"),
        ("DestinationRule", "venue"),
    ]
    route = find(result.documents, "VirtualService", "booking")["spec"]["http"][0]
    assert route["route"] == [{"destination": {"host": "booking"}}]  # no split: it was left out
    assert "old-split" not in json.dumps(result.documents)


async def test_the_left_out_are_named_at_the_top_of_the_yaml(orch: Orch) -> None:
    await register(orch, "booking", ["1.4.0"])
    await store_old_row(orch, "old-split", "traffic", OLD_SPLIT)

    result = await export_istio(orch)
    text = result.yaml()

    first, rest = text.split("\n", 1)
    assert first.startswith(f"# orch: policy old-split left out of this export: {OLD_SPLIT_REASON}")
    assert rest.startswith("---\napiVersion: networking.istio.io/v1\n")
    assert list(yaml.safe_load_all(text)) == result.documents


async def test_a_row_that_no_longer_reads_is_left_out(orch: Orch) -> None:
    await register(orch, "booking", ["1.0.0"])
    await add_policy(orch, "booking-timeout", "resilience", {"timeout": 3})
    await store_old_row(orch, "quantum", "traffic", {"quantum_routing": {"entangled": True}})

    result = await export_istio(orch)

    assert [(item.kind, item.name) for item in result.left_out] == [("policy", "quantum")]
    assert result.left_out[0].reason == (
        "the stored row does not read as a policy: "
        "policy_config.quantum_routing: Extra inputs are not permitted"
    )
    route = find(result.documents, "VirtualService", "booking")["spec"]["http"][0]
    assert route["timeout"] == "3s"


async def test_a_left_out_authorization_policy_says_what_is_missing(orch: Orch) -> None:
    await register(orch, "booking", ["1.0.0"])
    template = {"from": ["venue"], "to": ["booking"], "when": {"endpoint": ["/bookings/{id}"]}}
    await store_old_row(
        orch, "old-allow", "security", {"authorization": {"action": "allow", "rules": [template]}}
    )
    deny_all = {"from": ["*"], "to": ["*"], "when": {"method": [""]}}
    await store_old_row(
        orch, "old-deny", "security", {"authorization": {"action": "deny", "rules": [deny_all]}}
    )
    await store_old_row(orch, "old-off", "traffic", OLD_SPLIT, enabled=False)

    result = await export_istio(orch)

    reasons = {item.name: item.reason for item in result.left_out}
    assert set(reasons) == {"old-allow", "old-deny"}  # old-off is disabled: never exported
    assert reasons["old-allow"].startswith(
        "policy_config.authorization.rules.0.when.endpoint.0: '/bookings/{id}': endpoints are globs"
    )
    assert reasons["old-allow"].endswith(
        "; its allow rules are missing, so Istio does not admit callers as orch does"
    )
    assert reasons["old-deny"].startswith(
        "policy_config.authorization.rules.0.when.method.0: '' is not an HTTP method"
    )
    assert reasons["old-deny"].endswith("so Istio lets through what orch denies")
    assert kinds(result.documents) == [("DestinationRule", "booking")]


async def test_a_service_whose_own_documents_fail_is_left_out(orch: Orch) -> None:
    await register(orch, "booking", ["1.0.0"])
    await register(orch, "venue-", ["1.0.0"])  # the registry takes it; a DNS label may not end in -

    result = await export_istio(orch)

    assert [(item.kind, item.name) for item in result.left_out] == [("service", "venue-")]
    assert result.left_out[0].reason.startswith(
        "DestinationRule/venue-: metadata.name: 'venue-' is not a DNS-1123 name"
    )
    assert kinds(result.documents) == [("DestinationRule", "booking")]


async def test_instances_of_a_version_no_label_can_hold_get_no_subset(orch: Orch) -> None:
    await register(orch, "booking", ["1.4.0", "1.4.0+b7"], load_balancing="weighted")

    documents = await exported_documents(orch)

    rule = find(documents, "DestinationRule", "booking")
    assert rule["spec"]["subsets"] == [{"name": "v1-4-0", "labels": {"version": "1.4.0"}}]
    assert (
        "instances of version '1.4.0+b7' have no subset: it is not a Kubernetes label value"
        in rule["metadata"]["annotations"]["orch/notes"]
    )
    assert validate_documents(documents) == []


def test_the_rendering_half_names_the_section() -> None:
    """A row past the model's rules is caught by its Istio form alone, too."""
    from orchcore.mesh.exportable import check_rendering, export_problem

    old = _policy("old-split", "traffic", OLD_SPLIT, stored=True)
    with pytest.raises(ValidationFailed) as caught:
        check_rendering(old)
    assert caught.value.field == "policy_config.traffic_splitting"
    assert caught.value.reason.startswith(
        "its Istio form is invalid: DestinationRule/booking: "
        "spec.subsets[1].labels.version: 'payment-service:1.0.0' is not a Kubernetes label value"
    )
    problem = export_problem(old)
    assert problem is not None
    assert problem.field == "policy_config.traffic_splitting.routes.0.destination"
    assert export_problem(_policy("canary", "traffic", SPLIT)) is None


# -- names and durations ------------------------------------------------------------------


def test_subset_names_are_dns_labels() -> None:
    assert subset_name("1.4.0") == "v1-4-0"
    assert subset_name("v2") == "v2"
    assert subset_name("2.0.0-RC.1+build.7") == "v2-0-0-rc-1-build-7"
    clashing = subset_names(["1.4.0", "1-4-0", "2.0"])
    assert clashing["2.0"] == "v2-0"
    assert clashing["1.4.0"] != clashing["1-4-0"]
    assert all(name.startswith("v1-4-0-") for v, name in clashing.items() if v != "2.0")
    long = subset_names(["1." + "9" * 80])["1." + "9" * 80]
    assert len(long) == 63 and long[-1].isalnum()
    assert subset_names(["1.4.0", "1-4-0"]) == subset_names(["1-4-0", "1.4.0"])


def test_durations() -> None:
    assert [istio_duration(s) for s in (30, 1.5, 0.1, 0.0001, 2.25)] == [
        "30s",
        "1.5s",
        "0.1s",
        "0.001s",
        "2.25s",
    ]
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("5 seconds") is None
    assert parse_duration("-1s") is None
    assert parse_duration("30") is None


# -- the validator ------------------------------------------------------------------------


def _policy(name: str, kind: str, config: dict[str, Any], *, stored: bool = False) -> MeshPolicy:
    now = datetime.now(UTC)
    return MeshPolicy.model_validate(
        {
            "id": uuid4(),
            "policy_name": name,
            "policy_type": kind,
            "source_services": [],
            "target_services": ["booking"],
            "policy_config": config,
            "is_enabled": True,
            "priority": 0,
            "created_by": "t",
            "created_at": now,
            "updated_at": now,
            "last_applied_at": None,
            "last_applied_by": None,
        },
        context=STORED_ROW if stored else None,
    )


@pytest.fixture
def exported() -> list[Doc]:
    """A valid export of every kind, built without a database (the validator needs none)."""
    booking = ServiceWorkloads(
        "booking", workloads=(Workload("b-0", "1.4.0"), Workload("b-1", "2.0.0"))
    )
    policies = [
        _policy("canary", "traffic", SPLIT),
        _policy("resilience", "resilience", RESILIENCE),
        _policy("security", "security", SECURITY),
        _policy("no-admin", "security", DENY_ADMIN),
    ]
    documents = build_istio_documents([booking], policies)
    assert validate_documents(documents) == []
    return documents


def _route(documents: list[Doc]) -> Doc:
    route: Doc = documents[1]["spec"]["http"][0]
    return route


def _operation(documents: list[Doc]) -> Doc:
    operation: Doc = documents[3]["spec"]["rules"][0]["to"][0]["operation"]
    return operation


def _traffic_policy(documents: list[Doc]) -> Doc:
    policy: Doc = documents[0]["spec"]["trafficPolicy"]
    return policy


BREAKAGES: list[tuple[str, Callable[[list[Doc]], Any], str]] = [
    (
        "wrong apiVersion",
        lambda d: d[1].update(apiVersion="networking.istio.io/v1alpha3"),
        "VirtualService/booking: apiVersion: 'networking.istio.io/v1alpha3' is not "
        "'networking.istio.io/v1'",
    ),
    (
        "wrong kind for the apiVersion",
        lambda d: d[2].update(apiVersion="networking.istio.io/v1"),
        "PeerAuthentication/booking: apiVersion:",
    ),
    (
        "duration in words",
        lambda d: _route(d).update(timeout="5 seconds"),
        "VirtualService/booking: spec.http[0].timeout: '5 seconds' is not a duration",
    ),
    (
        "duration under 1ms",
        lambda d: _route(d)["retries"].update(perTryTimeout="500us"),
        "VirtualService/booking: spec.http[0].retries.perTryTimeout: '500us' is shorter",
    ),
    (
        "duration field without a CEL rule in the schema",
        lambda d: _traffic_policy(d)["connectionPool"]["tcp"].update(idleTimeout="1 hour"),
        "DestinationRule/booking: spec.trafficPolicy.connectionPool.tcp.idleTimeout: "
        "'1 hour' is not a duration",
    ),
    (
        "weights not adding up to 100",
        lambda d: _route(d)["route"][0].update(weight=80),
        "VirtualService/booking: spec.http[0].route: destination weights add up to 90, not 100",
    ),
    (
        "field the schema does not define",
        lambda d: _route(d)["retries"].update(retriableStatusCodes=[429]),
        "VirtualService/booking: spec.http[0].retries.retriableStatusCodes: unknown field",
    ),
    (
        "dangling subset",
        lambda d: _route(d)["route"][1]["destination"].update(subset="v3-0-0"),
        "VirtualService/booking: spec.http[0].route[1].destination.subset: no DestinationRule "
        "for booking.default.svc.cluster.local defines subset 'v3-0-0'",
    ),
    (
        "subset name that is no DNS label",
        lambda d: d[0]["spec"]["subsets"][0].update(name="v1.4.0"),
        "DestinationRule/booking: spec.subsets[0].name: 'v1.4.0' is not a DNS-1123 label",
    ),
    (
        "two load balancers at once (the schema's oneOf)",
        lambda d: _traffic_policy(d)["loadBalancer"].update(consistentHash={"useSourceIp": True}),
        "DestinationRule/booking: spec.trafficPolicy.loadBalancer: set at most one of simple, "
        "consistentHash",
    ),
    (
        "enum",
        lambda d: d[2]["spec"]["mtls"].update(mode="ON"),
        "PeerAuthentication/booking: spec.mtls.mode: 'ON' is not one of",
    ),
    (
        "int32 overflow",
        lambda d: _traffic_policy(d)["connectionPool"]["tcp"].update(maxConnections=2**31),
        "DestinationRule/booking: spec.trafficPolicy.connectionPool.tcp.maxConnections: "
        "2147483648 is not a valid int32",
    ),
    (
        "name that is not DNS-1123",
        lambda d: d[3]["metadata"].update(name="Booking_Allow"),
        "AuthorizationPolicy/Booking_Allow: metadata.name: 'Booking_Allow' is not a DNS-1123",
    ),
    (
        "retry condition Istio does not know",
        lambda d: _route(d)["retries"].update(retryOn="5xx,on-tuesdays"),
        "VirtualService/booking: spec.http[0].retries.retryOn: 'on-tuesdays' is neither",
    ),
    (
        "wildcard in a selector (a CEL rule)",
        lambda d: d[3]["spec"]["selector"]["matchLabels"].update(app="book*"),
        "AuthorizationPolicy/booking-allow: spec.selector.matchLabels.app: wildcard not allowed",
    ),
    (
        "selector and targetRef together (a CEL rule)",
        lambda d: d[4]["spec"].update(targetRef={"kind": "Service", "name": "booking"}),
        "AuthorizationPolicy/booking-deny: spec: only one of targetRefs or selector can be set",
    ),
    (
        "empty path (Istio's webhook)",
        lambda d: _operation(d)["paths"].append(""),
        "AuthorizationPolicy/booking-allow: spec.rules[0].to[0].operation.paths[2]: "
        "empty value not allowed",
    ),
    (
        "empty method (Istio's webhook)",
        lambda d: _operation(d)["methods"].insert(0, ""),
        "AuthorizationPolicy/booking-allow: spec.rules[0].to[0].operation.methods[0]: "
        "empty value not allowed",
    ),
    (
        "braces beyond a path template",
        lambda d: _operation(d)["paths"].__setitem__(0, "/bookings/{id}"),
        "AuthorizationPolicy/booking-allow: spec.rules[0].to[0].operation.paths[0]: "
        "'/bookings/{id}' holds '{' or '}' beyond a supported path template",
    ),
    (
        "{**} before another template",
        lambda d: _operation(d)["paths"].__setitem__(0, "/a/{**}/b/{*}"),
        "AuthorizationPolicy/booking-allow: spec.rules[0].to[0].operation.paths[0]: "
        "'/a/{**}/b/{*}': {**} must be the last template operator",
    ),
    (
        "templated path with a segment that is no literal",
        lambda d: _operation(d)["paths"].__setitem__(0, "/a b/{*}"),
        "AuthorizationPolicy/booking-allow: spec.rules[0].to[0].operation.paths[0]: "
        "'/a b/{*}': segment 'a b' is not a valid literal",
    ),
    (
        "version that is no label value",
        lambda d: d[0]["spec"]["subsets"][0]["labels"].update(version="1.4.0+b7"),
        "DestinationRule/booking: spec.subsets[0].labels.version: '1.4.0+b7' is not a "
        "Kubernetes label value",
    ),
]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [(b, e) for _, b, e in BREAKAGES],
    ids=[name for name, _, _ in BREAKAGES],
)
def test_validator_catches(
    exported: list[Doc], breakage: Callable[[list[Doc]], Any], expected: str
) -> None:
    broken = copy.deepcopy(exported)
    breakage(broken)
    problems = validate_documents(broken)
    assert any(p.startswith(expected) for p in problems), problems


def test_validator_takes_nullable_and_go_durations(exported: list[Doc]) -> None:
    documents = copy.deepcopy(exported)
    _traffic_policy(documents)["outlierDetection"].update(
        consecutive5xxErrors=None, interval="1m30s"
    )
    _route(documents).update(timeout="100ms")
    _operation(documents)["paths"] += ["/bookings/{*}/raw", "/files/{**}", "/a b"]
    assert validate_documents(documents) == []


def test_validator_survives_shapeless_input() -> None:
    problems = validate_documents([{"kind": "Gateway"}, "text", {"apiVersion": "v1"}])
    assert any(p.startswith("Gateway/#0: kind: 'Gateway' is not one of") for p in problems)
    assert "document 1: $: not a mapping" in problems
    assert any(p.startswith("document/#2: metadata: missing") for p in problems)


def test_every_cel_rule_of_the_bundled_schemas_is_checked() -> None:
    rules: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            rules.update(
                " ".join(r["rule"].split()) for r in node.get("x-kubernetes-validations", [])
            )
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    folder = resources.files("orchcore.mesh").joinpath("istio_schemas")
    provenance = json.loads(folder.joinpath("PROVENANCE.json").read_text())
    for name, about in provenance["files"].items():
        assert istio.API_VERSIONS[about["kind"]] == about["apiVersion"]
        collect(json.loads(folder.joinpath(name).read_text()))
    assert rules
    assert rules - set(istio_validation._CEL_CHECKS) == {istio_validation._DURATION_RULE}


# -- YAML ---------------------------------------------------------------------------------


def test_dump_yaml_round_trips(exported: list[Doc]) -> None:
    text = dump_yaml(exported)
    assert text.startswith("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n")
    assert text.count("\n---\n") == len(exported) - 1
    assert list(yaml.safe_load_all(text)) == exported
    assert dump_yaml(exported) == text
    assert dump_yaml([]) == ""


# -- the faces: CLI and HTTP API ------------------------------------------------------------


async def booking_with_an_old_split(orch: Orch) -> None:
    await register(orch, "booking", ["1.4.0"])
    await store_old_row(orch, "old-split", "traffic", OLD_SPLIT)
    await add_policy(orch, "booking-timeout", "resilience", {"timeout": 3})


async def test_cli_export_warns_and_exports_the_rest(dsn: str, orch: Orch, tmp_path: Path) -> None:
    await booking_with_an_old_split(orch)

    plain = await run_orch(dsn, "mesh", "export")

    assert plain.code == 0, plain.stderr
    assert plain.stdout.startswith(
        f"# orch: policy old-split left out of this export: {OLD_SPLIT_REASON}"
    )
    docs = list(yaml.safe_load_all(plain.stdout))
    assert kinds(docs) == [("DestinationRule", "booking"), ("VirtualService", "booking")]
    warning, summary = plain.stderr.strip().splitlines()
    assert warning.startswith(
        f"orch: warning: policy old-split left out of this export: {OLD_SPLIT_REASON}"
    )
    assert summary == "2 document(s), valid against Istio v1 schemas, 1 left out"

    as_json = await run_orch(dsn, "mesh", "export", "--json")
    assert as_json.code == 0, as_json.stderr
    body = as_json.json()
    assert (sorted(body), kinds(body["documents"])) == (["documents", "left_out"], kinds(docs))
    assert [(i["kind"], i["name"]) for i in body["left_out"]] == [("policy", "old-split")]
    assert body["left_out"][0]["reason"].startswith(OLD_SPLIT_REASON)


async def test_cli_export_strict_writes_nothing_partial(
    dsn: str, orch: Orch, tmp_path: Path
) -> None:
    await booking_with_an_old_split(orch)
    out = tmp_path / "mesh.yaml"

    strict = await run_orch(dsn, "mesh", "export", "--strict", "--output", str(out))

    assert (strict.code, strict.stdout, out.exists()) == (3, "", False)
    warning, error = strict.stderr.strip().splitlines()
    assert warning.startswith("orch: warning: policy old-split left out of this export: ")
    assert error == "orch: error: 1 left out of the export; nothing written (--strict)"
    strict_json = await run_orch(dsn, "mesh", "export", "--strict", "--json")
    assert strict_json.code == 3
    assert [i["name"] for i in strict_json.json()["left_out"]] == ["old-split"]

    disabled = await run_orch(dsn, "mesh", "policy", "disable", "old-split", "--yes")
    assert disabled.code == 0, disabled.stderr
    clean = await run_orch(dsn, "mesh", "export", "--strict", "--output", str(out))
    assert clean.code == 0, clean.stderr
    assert not out.read_text().startswith("#")
    refused = await run_orch(dsn, "mesh", "policy", "enable", "old-split", "--yes")
    assert refused.code == 2
    assert refused.stderr.startswith(
        "orch: error: policy_config.traffic_splitting.routes.0.destination: "
    )


async def test_api_export_names_what_was_left_out(orch: Orch) -> None:
    await booking_with_an_old_split(orch)
    secret, _ = await orch.tokens.create(name="reader", role="platform_engineer", actor="t")
    auth = {"Authorization": f"Bearer {secret}"}
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        as_yaml = await api.get("/api/orchestration/mesh/export", headers=auth)
        as_json = await api.get(
            "/api/orchestration/mesh/export", params={"output": "json"}, headers=auth
        )
        schema = (await api.get("/openapi.json")).json()

    assert as_yaml.status_code == 200, as_yaml.text
    assert as_yaml.headers["x-orch-left-out"] == "1"
    assert as_yaml.text.startswith("# orch: policy old-split left out of this export: ")
    assert kinds(list(yaml.safe_load_all(as_yaml.text))) == [
        ("DestinationRule", "booking"),
        ("VirtualService", "booking"),
    ]
    body = as_json.json()
    assert [(i["kind"], i["name"]) for i in body["left_out"]] == [("policy", "old-split")]
    assert len(body["documents"]) == 2
    route = schema["components"]["schemas"]["TrafficRoute"]["properties"]["destination"]
    assert route["pattern"] == "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
    answers = schema["paths"]["/api/orchestration/mesh/export"]["get"]["responses"]["200"]
    assert answers["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/IstioExport"}},
        # A stream of YAML documents: no one schema describes it (see api/mesh.py).
        "application/yaml": {},
    }


async def test_api_refuses_a_split_to_service_colon_version(orch: Orch) -> None:
    secret, _ = await orch.tokens.create(name="writer", role="platform_engineer", actor="t")
    auth = {"Authorization": f"Bearer {secret}"}
    body = {
        "policy_name": "payments-canary",
        "policy_type": "traffic",
        "target_services": ["payment-service"],
        "policy_config": OLD_SPLIT,
    }
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        refused = await api.post("/api/orchestration/mesh/policies", json=body, headers=auth)

    assert refused.status_code == 422
    detail = refused.json()["detail"][0]
    assert detail["loc"] == [
        "body",
        "policy_config",
        "traffic_splitting",
        "routes",
        0,
        "destination",
    ]
    assert "write '1.0.0'" in detail["msg"]
