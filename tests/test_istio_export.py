"""`orch mesh export --format istio`, the engine half: documents, mappings, validator, YAML."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from uuid import uuid4

import pytest
import yaml

from orchcore import NotFoundError, Orch, ValidationFailed
from orchcore.mesh import istio, istio_validation
from orchcore.mesh.istio import (
    ServiceWorkloads,
    Workload,
    build_istio_documents,
    dump_yaml,
    export_istio,
    istio_duration,
    subset_name,
    subset_names,
)
from orchcore.mesh.istio_validation import parse_duration, validate_documents
from orchcore.mesh.models import MeshPolicy

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

    documents = await export_istio(orch, namespace="weddings")

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

    documents = await export_istio(orch)

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

    documents = await export_istio(orch, service="venue")

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

    documents = await export_istio(orch)

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

    documents = await export_istio(orch)

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

    documents = await export_istio(orch)

    rule = find(documents, "DestinationRule", "booking")
    assert rule["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 2
    assert "orch/notes" not in rule["metadata"]["annotations"]


async def test_weighted_balancing_becomes_route_weights_per_version(orch: Orch) -> None:
    await register(
        orch, "venue", ["1.0.0", "1.1.0", "1.1.0"], weights=[3, 1, 0], load_balancing="weighted"
    )

    documents = await export_istio(orch)

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

    documents = await export_istio(orch)

    routes = find(documents, "VirtualService", "venue")["spec"]["http"][0]["route"]
    assert [r["weight"] for r in routes] == [34, 33, 33]
    assert validate_documents(documents) == []


async def test_split_to_a_version_without_instances_still_has_its_subset(orch: Orch) -> None:
    await register(orch, "booking", ["1.4.0"])
    await add_policy(orch, "canary", "traffic", SPLIT)

    documents = await export_istio(orch)

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

    documents = await export_istio(orch)

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

    documents = await export_istio(orch)

    allow = find(documents, "AuthorizationPolicy", "booking-allow")
    assert "rules" not in allow["spec"]  # Istio's "allow nothing", as orch denies these calls
    assert validate_documents(documents) == []


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


def _policy(name: str, kind: str, config: dict[str, Any]) -> MeshPolicy:
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
        }
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
