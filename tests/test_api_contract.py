"""The OpenAPI document is the contract clients are generated from: every answer it
documents, in orch's one error body, and a property-based fuzz run of the whole
document (schemathesis, every check) against the real API on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from orchcore import Orch, Settings
from tests.support.api import serve_api, token
from tests.support.contract_rules import RULES, rule_for

ROOT = Path(__file__).resolve().parent.parent
#: Examples a phase draws per operation: bounded so the run fits CI (about a minute on
#: two cores), seeded so it is the same run every time.
MAX_EXAMPLES = 5
SEED = 20261203
#: A guard against a hung run, not its budget: the run takes 80-120 s on two busy cores.
FUZZ_TIMEOUT_SECONDS = 240


@pytest.fixture
async def live_orch(dsn: str) -> AsyncIterator[Orch]:
    """An engine on the system clock: the fuzz run long-polls, and a manual clock
    would hold those waits until a test moved it."""
    engine = await Orch.open(Settings(database_url=dsn))
    yield engine
    await engine.close()


@pytest.fixture
async def api(live_orch: Orch) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(live_orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client


async def spec_of(api: httpx.AsyncClient) -> dict[str, object]:
    answer = await api.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, object] = answer.json()
    return document


def operations(spec: dict[str, object]) -> list[tuple[str, str, dict[str, object]]]:
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return [(method, path, op) for path, ops in paths.items() for method, op in ops.items()]


async def test_the_schema_declares_the_bearer_token_on_every_route_but_the_probes(
    api: httpx.AsyncClient,
) -> None:
    spec = await spec_of(api)
    schemes = spec["components"]["securitySchemes"]  # type: ignore[index]
    assert schemes == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "a token from `orch token create`",
        }
    }
    for method, path, op in operations(spec):
        if path in ("/healthz", "/readyz"):
            assert "security" not in op, path
            continue
        assert op.get("security") == [{"HTTPBearer": []}], (method, path)


async def test_every_operation_documents_its_refusals_in_orchs_error_body(
    api: httpx.AsyncClient,
) -> None:
    spec = await spec_of(api)
    schemas = spec["components"]["schemas"]  # type: ignore[index]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"error", "message", "detail"}
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for method, path, op in operations(spec):
        responses = op["responses"]
        assert isinstance(responses, dict)
        if path in ("/healthz", "/readyz"):
            continue
        assert {"401", "403", "500"} <= set(responses), (method, path)
        if op.get("parameters") or op.get("requestBody"):
            assert path == "/v1/traces" or "422" in responses, (method, path)
        if op.get("requestBody"):
            assert "413" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if method in ("post", "put", "patch", "delete") and path != "/v1/traces":
            assert "409" in responses, (method, path)
        for status, answer in responses.items():
            if int(status) >= 400 and path != "/v1/traces":
                assert answer["content"] == {"application/json": {"schema": error_body}}, (
                    method,
                    path,
                    status,
                )
    readyz = spec["paths"]["/readyz"]["get"]["responses"]  # type: ignore[index]
    assert set(readyz) == {"200", "500", "503"}
    export = spec["paths"]["/api/orchestration/mesh/export"]["get"]["responses"]  # type: ignore[index]
    assert set(export["200"]["content"]) == {"application/json", "application/yaml"}


async def test_a_validation_error_is_orchs_error_body_naming_every_field(
    live_orch: Orch, api: httpx.AsyncClient
) -> None:
    admin = await token(live_orch, "platform_engineer")
    answer = await api.post(
        "/api/orchestration/services",
        json={"service_name": "venue", "service_type": "spaceship", "port": "80"},
        headers=admin,
    )
    assert answer.status_code == 422
    body = answer.json()
    assert set(body) == {"error", "message", "detail"}
    assert body["error"] == "ValidationFailed"
    fields = {tuple(problem["loc"]): problem for problem in body["detail"]}
    assert ("body", "service_type") in fields
    assert ("body", "deployment_environment") in fields
    assert fields["body", "deployment_environment"]["type"] == "missing"
    assert body["message"].startswith(".".join(body["detail"][0]["loc"]) + ": ")
    # What was sent is not echoed back.
    assert all(set(problem) == {"loc", "msg", "type"} for problem in body["detail"])
    assert "spaceship" not in answer.text


async def test_a_bad_query_parameter_is_orchs_error_body(
    live_orch: Orch, api: httpx.AsyncClient
) -> None:
    admin = await token(live_orch, "monitoring_system")
    answer = await api.get("/api/orchestration/workflows?limit=0&started_after=0.5", headers=admin)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "ValidationFailed"
    assert {tuple(p["loc"]) for p in body["detail"]} == {
        ("query", "limit"),
        ("query", "started_after"),
    }


async def test_a_body_is_read_as_its_json_schema_says_after_the_token(
    live_orch: Orch, api: httpx.AsyncClient
) -> None:
    """FastAPI alone takes "5" for an integer and 0 for a boolean; the schema does not."""
    admin = await token(live_orch, "platform_engineer")
    body = {
        "service_name": "venue",
        "target_service": "payment",
        "failure_threshold": "5",
        "count_429_as_failure": 0,
    }
    refused = await api.post("/api/orchestration/circuit-breakers", json=body, headers=admin)
    assert refused.status_code == 422, refused.text
    locs = {tuple(p["loc"]) for p in refused.json()["detail"]}
    assert locs == {("body", "failure_threshold"), ("body", "count_429_as_failure")}
    # Without a token the answer is 401, whatever the body.
    anonymous = await api.post("/api/orchestration/circuit-breakers", json=body)
    assert anonymous.status_code == 401
    # 5.0 is an integer to JSON Schema.
    whole = {**body, "failure_threshold": 5.0, "count_429_as_failure": False}
    assert (
        await api.post("/api/orchestration/circuit-breakers", json=whole, headers=admin)
    ).status_code == 201


async def test_unknown_paths_and_methods_answer_in_orchs_error_body(
    live_orch: Orch, api: httpx.AsyncClient
) -> None:
    admin = await token(live_orch, "platform_engineer")
    missing = await api.get("/api/orchestration/nothing-here", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFoundError"
    # GET and POST are two routes of this path: Allow names both.
    wrong = await api.delete("/api/orchestration/circuit-breakers", headers=admin)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "MethodNotAllowed"
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    # A verb is a route of its own: another word there is no route, not bad input.
    status = await api.post("/api/orchestration/workflows/w-1/status", headers=admin)
    assert status.status_code == 405
    not_json = await api.post(
        "/api/orchestration/services",
        content=b"\xff\xfe not json",
        headers={**admin, "content-type": "application/json"},
    )
    assert not_json.status_code in (400, 422)
    assert set(not_json.json()) == {"error", "message", "detail"}


def test_the_named_rules_read_their_own_refusals() -> None:
    """Each rule matches the refusal it names and no other rule does."""
    samples = {
        "traffic-split weights add up to 100": (
            422,
            "body.policy_config.traffic_splitting: route weights must add up to 100, not 90",
        ),
        "a message id fits PGMQ's bigint (at most 2**63 - 1)": (
            422,
            "message_id: not a PGMQ message id (a bigint, digits only)",
        ),
        "a message fits its queue's max_message_size": (
            413,
            "message_payload: 2 bytes is over the limit of queue 'a' (1 bytes)",
        ),
        "a workflow list's after is a next_cursor the list gave": (
            422,
            "after: not a cursor (give the next_cursor of an earlier page)",
        ),
        "a workflow list takes offset or after, not both": (
            422,
            "offset: give offset or after, not both",
        ),
    }
    for name, (status, message) in samples.items():
        rule = rule_for(status, {"error": "ValidationFailed", "message": message})
        assert rule is not None and rule.name == name
    assert rule_for(422, {"message": "service_name: must be 1-63 characters"}) is None
    assert len({rule.name for rule in RULES}) == len(RULES)


async def test_a_fuzz_run_of_the_whole_schema_passes_every_check(
    live_orch: Orch, tmp_path: Path
) -> None:
    """schemathesis (every phase, every check) against the API on loopback, as an
    operator. A schema-valid request may be refused only by a rule of
    tests/support/contract_rules.py, which names each; every other failure fails."""
    admin = await token(live_orch, "platform_engineer")
    report = tmp_path / "report.json"
    met = tmp_path / "rules.ndjson"
    async with serve_api(live_orch) as base_url:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{base_url}/openapi.json",
            "--checks=all",
            f"--max-examples={MAX_EXAMPLES}",
            f"--seed={SEED}",
            # One worker: hypothesis describes strategies by parsing source, which is
            # not thread-safe on Python 3.11 ("AST constructor recursion depth mismatch").
            "--workers=1",
            "--generation-database=none",
            "--request-timeout=30",
            "--no-color",
            "--report=json",
            f"--report-json-path={report}",
            "--header",
            f"Authorization: {admin['Authorization']}",
            # Its cache of earlier failures (.schemathesis/) goes with the test's folder:
            # every run starts from nothing.
            cwd=tmp_path,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.support.contract_rules",
                "ORCH_CONTRACT_RULES_LOG": str(met),
                "PYTHONPATH": str(ROOT),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), FUZZ_TIMEOUT_SECONDS)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        took = time.monotonic() - started
    # Requests the fuzzer sends can be long: each line cut short, so the failures show.
    text = "\n".join(line[:400] for line in output.decode(errors="replace").splitlines())
    assert process.returncode == 0, text[-30_000:]
    summary = json.loads(report.read_text())
    assert summary["operations"]["tested"] == summary["operations"]["selected"] > 60
    assert summary["failures"] == [] and summary["errors"] == []
    assert {phase for phase, state in summary["phases"].items() if state["status"] != "skip"} >= {
        "coverage",
        "fuzzing",
        "stateful",
    }
    named = {rule.name for rule in RULES}
    for line in met.read_text().splitlines() if met.exists() else []:
        assert json.loads(line)["rule"] in named
    print(f"fuzz run: {summary['test_cases']['generated']} cases in {took:.1f} s")
