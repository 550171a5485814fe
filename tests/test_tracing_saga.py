"""A saga's trace: the workflow is the root, each step and compensation a child of it,
each call attempt a child of its step, and the traceparent a participant receives names
the attempt's span, so the participant's own spans join below it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from orchcore.callpath.tracecontext import TraceContext
from orchcore.tracing.sagaspans import workflow_span_id
from tests.support.polling import eventually
from tests.support.sagas import Env


async def trace_of(env: Env, workflow_id: str, *, spans: int) -> dict[str, dict[str, Any]]:
    trace_id = await env.orch.tracing.trace_of_workflow(workflow_id)

    async def complete() -> bool:
        await env.orch.tracing.flush()
        rows = await env.orch.db.fetch(
            "SELECT span_id FROM distributed_traces WHERE trace_id = $1", trace_id
        )
        return len(rows) >= spans

    await eventually(complete, timeout=10, message=f"{spans} spans recorded")
    detail = await env.orch.tracing.trace(trace_id)
    return {s.span_id: s.model_dump() for s in detail.spans}


def by_operation(spans: dict[str, dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    return [s for s in spans.values() if s["operation_name"] == operation]


async def test_a_completed_saga_is_one_trace_rooted_at_the_workflow(env: Env) -> None:
    env.services["catering"].fail["/orders"] = [503]  # one retry
    workflow_id = await env.start()
    await env.advance_until(workflow_id, "completed", step=0.1)
    # root + 4 steps + 5 call attempts (catering twice)
    spans = await trace_of(env, workflow_id, spans=10)
    [root] = by_operation(spans, "workflow booking")
    assert root["parent_span_id"] is None and root["depth"] == 0
    assert root["span_id"] == workflow_span_id(UUID(workflow_id))
    steps = [s for s in spans.values() if s["operation_name"].startswith("step ")]
    assert sorted(s["operation_name"] for s in steps) == [
        "step charge_deposit", "step confirm", "step order_catering", "step reserve_venue",
    ]  # fmt: skip
    assert all(s["parent_span_id"] == root["span_id"] for s in steps)
    [catering] = by_operation(spans, "step order_catering")
    attempts = [spans[c] for c in catering["children"]]
    assert [a["tags"]["orch.call.attempt"] for a in attempts] == [1, 2]
    assert [a["tags"]["http.response.status_code"] for a in attempts] == [503, 201]
    assert attempts[0]["status_code"] == "error" and attempts[1]["status_code"] == "unset"
    assert attempts[1]["tags"]["http.request.resend_count"] == 1
    assert attempts[0]["tags"]["peer.service"] == "catering"
    assert attempts[0]["tags"]["orch.idempotency_key"] == f"{workflow_id}:order_catering:forward"
    assert [log["message"] for log in catering["logs"]] == ["retry scheduled"]
    # What each participant received names its attempt's span as the parent.
    received = [TraceContext.parse(c.traceparent) for c in env.services["catering"].calls]
    assert [r.span_id for r in received if r] == [a["span_id"] for a in attempts]
    trace_id = await env.orch.tracing.trace_of_workflow(workflow_id)
    assert {r.trace_id for r in received if r} == {trace_id}
    # The workflow names its trace, and the trace its workflow.
    assert (await env.orch.workflows.status(workflow_id)).workflow.trace_id == trace_id
    detail = await env.orch.tracing.trace(trace_id)
    assert str(detail.trace.workflow_id) == workflow_id


async def test_compensation_spans_hang_under_the_root_with_their_calls(env: Env) -> None:
    env.services["payment"].always_fail["/charges"] = 409  # refused: compensate
    workflow_id = await env.start()
    await env.until(workflow_id, "compensated")
    # root, 3 forward steps (2 ok, 1 failed), 3 attempts, 2 compensations + 2 attempts
    spans = await trace_of(env, workflow_id, spans=11)
    [root] = by_operation(spans, "workflow booking")
    assert root["status_code"] == "error"
    [failed] = by_operation(spans, "step charge_deposit")
    assert failed["status_code"] == "error"
    undo = [s for s in spans.values() if s["operation_name"].startswith("compensate ")]
    assert sorted(s["operation_name"] for s in undo) == [
        "compensate order_catering",
        "compensate reserve_venue",
    ]
    for span in undo:
        assert span["parent_span_id"] == root["span_id"]
        [call] = [spans[c] for c in span["children"]]
        assert call["span_kind"] == "client"
        assert call["tags"]["orch.idempotency_key"].endswith(":compensate")


async def sample_nothing(env: Env) -> None:
    """An observability policy between the initiator and every participant: rate 0."""
    await env.orch.mesh.create(
        {
            "policy_name": "no-tracing",
            "policy_type": "observability",
            "source_services": ["booking"],
            "target_services": ["venue", "catering", "payment", "notification"],
            "policy_config": {"tracing": {"sampling_rate": 0}},
        },
        actor="t",
    )


async def test_an_unsampled_workflow_records_nothing_but_its_errors(env: Env) -> None:
    await sample_nothing(env)
    fine = await env.start(correlation_id="unsampled-ok")
    await env.until(fine, "completed")
    env.services["payment"].always_fail["/charges"] = 409
    failing = await env.start(correlation_id="unsampled-bad")
    await env.until(failing, "compensated")
    await env.orch.tracing.flush()
    # The sampling decision is the root's, and every call carries it in its flags.
    calls = env.services["venue"].calls
    assert {c.traceparent[-2:] for c in calls if c.traceparent} == {"00"}
    quiet = await env.orch.tracing.trace_of_workflow(fine)
    assert (
        await env.orch.db.fetchval(
            "SELECT count(*) FROM distributed_traces WHERE trace_id = $1", quiet
        )
        == 0
    )
    # An error keeps its trace: the failed step and the spans after it are recorded.
    kept = await env.orch.tracing.trace_of_workflow(failing)
    spans = await trace_of(env, failing, spans=2)
    assert any(s["operation_name"] == "step charge_deposit" for s in spans.values())
    assert any(s["operation_name"] == "workflow booking" for s in spans.values())
    assert kept != quiet
