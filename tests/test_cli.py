"""The `orch` verbs as a user runs them: real subprocesses, --json, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchcore import Orch
from tests.support.cli import run_orch


async def test_service_and_instance_verbs_with_json(dsn: str, orch: Orch) -> None:
    created = await run_orch(
        dsn,
        "service",
        "register",
        "venue",
        "--version",
        "1.2.0",
        "--env",
        "production",
        "--depends-on",
        "payment",
        "--cpu",
        "500m",
        "--memory",
        "512Mi",
        "--replicas",
        "1:3",
        "--check",
        "interval_seconds=2",
        "--check",
        "timeout_seconds=1",
        "--json",
    )
    assert created.code == 0, created.stderr
    service = created.json()
    assert service["service_name"] == "venue"
    assert service["health_check"]["interval_seconds"] == 2
    assert service["scaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_cpu_percent": 70,
    }

    inst = await run_orch(
        dsn,
        "instance",
        "register",
        "venue",
        "--id",
        "venue-1",
        "--address",
        "127.0.0.1",
        "--port",
        "9001",
        "--version",
        "1.2.0",
        "--weight",
        "3",
        "--json",
    )
    assert inst.code == 0, inst.stderr
    assert inst.json()["metadata"] == {"weight": 3}

    listing = await run_orch(dsn, "service", "list", "--json")
    assert [s["service_name"] for s in listing.json()] == ["venue"]
    assert listing.json()[0]["instance_counts"] == {"starting": 1}

    shown = (await run_orch(dsn, "service", "show", "venue", "--json")).json()
    assert shown["dependencies"] == [
        {
            "service_name": "payment",
            "registered": False,
            "dependency_type": "synchronous",
            "is_critical": False,
        },
    ]
    assert [e["to_status"] for e in shown["recent_events"]] == ["starting"]

    instances = (await run_orch(dsn, "instance", "list", "venue", "--json")).json()
    assert [i["instance_id"] for i in instances] == ["venue-1"]

    gone = await run_orch(
        dsn, "instance", "deregister", "venue", "venue-1", "--yes", "--reason", "drain", "--json"
    )
    assert gone.json()["status"] == "terminating"
    events = await orch.registry.instance_events("venue-1")
    assert (events[0].reason, events[0].actor) == ("drain", "tester")

    human = await run_orch(dsn, "service", "list")
    assert "venue" in human.stdout and "SERVICE" in human.stdout


async def test_bad_input_exits_2_with_one_line(dsn: str) -> None:
    bad = await run_orch(dsn, "service", "register", "Venue!")
    assert bad.code == 2
    assert bad.stderr.strip().splitlines() == [
        "orch: error: service_name: must be 1-63 characters of lower-case letters, digits "
        "and '-', starting with a letter"
    ]
    port = await run_orch(
        dsn,
        "instance",
        "register",
        "venue",
        "--id",
        "x",
        "--address",
        "10.0.0.1",
        "--port",
        "99999",
        "--version",
        "1",
    )
    assert (port.code, port.stderr.strip()) == (
        2,
        "orch: error: port: Input should be less than or equal to 65535",
    )


async def test_destructive_verbs_need_confirmation(dsn: str, orch: Orch) -> None:
    await orch.registry.register_service(
        {"service_name": "venue", "service_type": "api", "deployment_environment": "staging"},
        actor="t",
    )
    refused = await run_orch(dsn, "service", "deactivate", "venue")
    assert refused.code == 2
    assert "confirm with --yes" in refused.stderr
    assert (await orch.registry.get_service("venue")).is_active
    done = await run_orch(dsn, "service", "deactivate", "venue", "--yes", "--json")
    assert done.code == 0
    assert done.json()["is_active"] is False


async def test_conflict_and_not_found_exit_1(dsn: str) -> None:
    assert (await run_orch(dsn, "service", "register", "venue")).code == 0
    again = await run_orch(dsn, "service", "register", "venue")
    assert again.code == 1
    assert again.stderr.strip() == "orch: error: service 'venue' is already registered"
    missing = await run_orch(dsn, "service", "show", "nope")
    assert (missing.code, missing.stderr.strip()) == (1, "orch: error: service 'nope' not found")


async def test_register_from_file(dsn: str, tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "svc.yaml"  # type: ignore[operator]
    path.write_text(
        "service_name: catering\nservice_type: worker\ndeployment_environment: production\n"
        "dependencies: [venue]\nhealth_check: {kind: ttl, ttl_seconds: 15}\n"
    )
    created = await run_orch(dsn, "service", "register", "--file", str(path), "--json")
    assert created.code == 0, created.stderr
    assert created.json()["health_check"]["kind"] == "ttl"
    assert created.json()["service_type"] == "worker"


async def test_token_verbs(dsn: str) -> None:
    made = await run_orch(
        dsn, "token", "create", "--role", "service", "--service", "venue", "--json"
    )
    assert made.code == 0, made.stderr
    token = made.json()
    assert token["token"].startswith("orch_")
    assert token["role"] == "service"
    listed = (await run_orch(dsn, "token", "list", "--json")).json()
    assert [t["token_name"] for t in listed] == ["venue-service"]
    assert "token" not in listed[0]
    revoked = await run_orch(dsn, "token", "revoke", token["id"], "--yes", "--json")
    assert revoked.json()["revoked_at"] is not None
    assert (await run_orch(dsn, "token", "list", "--json")).json() == []
    bad = await run_orch(dsn, "token", "create", "--role", "service")
    assert (bad.code, bad.stderr.strip()) == (
        2,
        "orch: error: service: a service token must name its service",
    )


async def test_heartbeat_and_status_and_db_verbs(dsn: str, orch: Orch) -> None:
    await orch.registry.register_service(
        {
            "service_name": "payment",
            "service_type": "api",
            "deployment_environment": "staging",
            "health_check": {"kind": "ttl"},
        },
        actor="t",
    )
    await orch.registry.register_instance(
        "payment",
        {"instance_id": "p1", "ip_address": "127.0.0.1", "port": 1, "version": "1"},
        actor="t",
    )
    beat = await run_orch(
        dsn, "instance", "heartbeat", "payment", "p1", "--usage", "cpu_percent=5", "--json"
    )
    assert beat.json()["status"] == "healthy"
    status = (await run_orch(dsn, "status", "--json")).json()
    assert status["services_healthy"] == 1
    assert status["instances_by_state"] == {"healthy": 1}
    migrated = (await run_orch(dsn, "db", "migrate", "--json")).json()
    assert migrated["applied"] == []
    db_status = (await run_orch(dsn, "db", "status", "--json")).json()
    assert db_status["pending_migrations"] == []


async def test_call_breaker_and_mesh_verbs(dsn: str, orch: Orch, tmp_path: Path) -> None:
    from tests.support.callers import known_callers
    from tests.support.http import SwitchableServer
    from tests.support.registry import healthy_service

    server = await SwitchableServer().start()
    try:
        await healthy_service(orch, "venue", [server])
        await known_callers(orch, "booking")
        answered = await run_orch(
            dsn,
            "call",
            "venue",
            "/reservations",
            "--data",
            '{"guests": 120}',
            "--source",
            "booking",
            "--idempotency-key",
            "k-1",
            "--json",
        )
        assert answered.code == 0, answered.stderr
        body = answered.json()
        assert (body["status_code"], body["instance_id"]) == (200, "venue-0")
        assert server.requests[-1].headers["idempotency-key"] == "k-1"

        await server.set_mode("error")
        failed = await run_orch(
            dsn, "call", "venue", "/x", "--source", "booking", "--attempts", "1"
        )
        assert failed.code == 1
        assert "HTTP 500 from venue-0" in failed.stderr

        listed = (await run_orch(dsn, "breaker", "list", "--json")).json()
        assert [(b["service_name"], b["failure_count"]) for b in listed] == [("booking", 1)]
        forced = await run_orch(
            dsn,
            "breaker",
            "force-open",
            "booking:venue",
            "--reason",
            "maintenance",
            "--yes",
            "--json",
        )
        assert forced.json()["current_state"] == "forced_open"
        refused = await run_orch(dsn, "call", "venue", "/x", "--source", "booking")
        assert refused.code == 1
        assert refused.stderr.strip() == (
            "orch: error: circuit breaker booking → venue * is forced-open: calls rejected "
            "until an operator resets it"
        )
        no_reason = await run_orch(dsn, "breaker", "reset", "booking:venue", "--yes")
        assert no_reason.code == 2
        shown = (await run_orch(dsn, "breaker", "show", listed[0]["id"][:8], "--json")).json()
        assert shown["state_history"][0]["to_state"] == "forced_open"
        assert shown["metrics"]["total_requests_24h"] == 2
    finally:
        await server.stop()

    policy = tmp_path / "limit.yaml"
    policy.write_text(
        "policy_name: venue-limit\npolicy_type: traffic\ntarget_services: [venue]\n"
        "policy_config:\n  rate_limiting: {requests_per_second: 5, burst_size: 10}\n"
    )
    created = await run_orch(dsn, "mesh", "policy", "create", "--file", str(policy), "--json")
    assert created.code == 0, created.stderr
    listed_policies = (await run_orch(dsn, "mesh", "policy", "list", "--json")).json()
    assert listed_policies["policies"][0]["policy_summary"] == "rate limit 5/s burst 10"
    applied = await run_orch(dsn, "mesh", "policy", "apply", "venue-limit", "--json")
    assert applied.json()["application_status"] == "success"
    disabled = await run_orch(dsn, "mesh", "policy", "disable", "venue-limit", "--yes", "--json")
    assert disabled.json()["is_enabled"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "policy_name: x\npolicy_type: traffic\npolicy_config: {mutual_tls: {mode: strict}}\n"
    )
    rejected = await run_orch(dsn, "mesh", "policy", "create", "--file", str(bad))
    assert (rejected.code, rejected.stderr.strip()) == (
        2,
        "orch: error: policy_config.mutual_tls: not a traffic setting (traffic policies "
        "hold load_balancing, rate_limiting, traffic_splitting)",
    )


async def test_mesh_export_writes_valid_istio_yaml(dsn: str, orch: Orch, tmp_path: Path) -> None:
    import yaml

    from orchcore.mesh.istio_validation import validate_documents

    await orch.registry.register_service(
        {"service_name": "venue", "service_type": "api", "deployment_environment": "staging"},
        actor="t",
    )
    for i, version in enumerate(["1.4.0", "2.0.0"]):
        await orch.registry.register_instance(
            "venue",
            {
                "instance_id": f"venue-{i}",
                "ip_address": "127.0.0.1",
                "port": 9000 + i,
                "version": version,
            },
            actor="t",
        )
    for name, kind, config in [
        (
            "canary",
            "traffic",
            {
                "traffic_splitting": {
                    "routes": [
                        {"destination": "1.4.0", "weight": 90},
                        {"destination": "2.0.0", "weight": 10},
                    ]
                }
            },
        ),
        (
            "retries",
            "resilience",
            {
                "retry_policy": {"max_attempts": 3, "timeout_per_attempt": 2},
                "circuit_breaker": {"failure_threshold": 5, "timeout_duration": 30},
            },
        ),
        (
            "strict",
            "security",
            {
                "mutual_tls": {"mode": "strict"},
                "authorization": {"rules": [{"from": ["booking"], "to": ["venue"]}]},
            },
        ),
    ]:
        await orch.mesh.create(
            {
                "policy_name": name,
                "policy_type": kind,
                "target_services": ["venue"],
                "policy_config": config,
            },
            actor="t",
        )
    out = tmp_path / "venue.yaml"
    exported = await run_orch(
        dsn, "mesh", "export", "--format", "istio", "--service", "venue", "--output", str(out)
    )
    assert exported.code == 0, exported.stderr
    assert "valid against Istio v1 schemas" in exported.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    assert sorted(d["kind"] for d in docs) == [
        "AuthorizationPolicy",
        "DestinationRule",
        "PeerAuthentication",
        "VirtualService",
    ]
    assert validate_documents(docs) == []
    unknown = await run_orch(dsn, "mesh", "export", "--service", "ghost")
    assert (unknown.code, unknown.stderr.strip()) == (1, "orch: error: service 'ghost' not found")
