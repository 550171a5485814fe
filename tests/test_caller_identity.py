"""Caller identity comes from the token: a service token calls and starts workflows as
its own service; an operator may name a source, and that is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from orchcore import Orch
from orchcore.audit import AuditEntry, recent_actions
from orchcore.auth import Principal
from orchcore.errors import PermissionDeniedError
from tests.support.api import serve_api
from tests.support.callers import known_callers
from tests.support.http import SwitchableServer
from tests.support.registry import healthy_service
from tests.support.sagas import BOOKING

API = "/api/orchestration"
CALL = f"{API}/services/venue/call"


def principal(role: str, service: str | None = None) -> Principal:
    return Principal(uuid4(), f"{role}-token", role, service)  # type: ignore[arg-type]


def test_a_service_token_acts_as_its_own_service_whatever_it_asks() -> None:
    booking = principal("service", "booking")
    assert booking.acting_as(None, default="orch-api") == "booking"
    assert booking.acting_as("booking", default="orch-api") == "booking"
    with pytest.raises(PermissionDeniedError, match=r"acts as service 'booking'.*'payment'"):
        booking.acting_as("payment", default="orch-api")
    assert not booking.audits_acting_as("booking")
    with pytest.raises(PermissionDeniedError, match="names no service"):
        principal("service").acting_as(None, default="orch-api")


def test_an_operator_may_name_a_source_and_that_is_audited() -> None:
    ops = principal("platform_engineer")
    assert ops.acting_as(None, default="orch-api") == "orch-api"
    assert ops.acting_as("payment", default="orch-api") == "payment"
    assert ops.audits_acting_as("payment")
    assert not ops.audits_acting_as(None)


@pytest.fixture
async def api(orch: Orch, http_server: SwitchableServer) -> AsyncIterator[httpx.AsyncClient]:
    await healthy_service(orch, "venue", [http_server])
    await known_callers(orch, "booking", "catering")
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client


async def bearer(orch: Orch, role: str, service: str | None = None) -> dict[str, str]:
    secret, _ = await orch.tokens.create(
        name=f"{service or role}-token", role=role, service_name=service, actor="t"
    )
    return {"Authorization": f"Bearer {secret}"}


async def calls_audited(orch: Orch) -> list[AuditEntry]:
    entries = await recent_actions(orch.db.pool, target_kind="service")
    return [e for e in entries if e.action == "call.as_source"]


async def sources_seen(orch: Orch) -> list[str]:
    await orch.events.flush()
    rows = await orch.db.fetch("SELECT source_service FROM service_events ORDER BY created_at")
    return [r["source_service"] for r in rows]


async def test_a_service_token_calls_as_its_own_service(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    booking = await bearer(orch, "service", "booking")
    plain = await api.post(
        CALL, json={"endpoint": "/reservations", "method": "GET"}, headers=booking
    )
    assert plain.status_code == 200, plain.text
    named = await api.post(
        CALL, json={"endpoint": "/x", "method": "GET", "source": "booking"}, headers=booking
    )
    assert named.status_code == 200, named.text
    assert await sources_seen(orch) == ["booking", "booking"]
    assert await calls_audited(orch) == []


async def test_a_service_token_naming_another_source_is_403_and_nothing_is_sent(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    booking = await bearer(orch, "service", "booking")
    answer = await api.post(
        CALL,
        json={"endpoint": "/payments/refund", "method": "POST", "source": "catering"},
        headers=booking,
    )
    assert answer.status_code == 403
    assert answer.json()["detail"] == (
        "token 'booking-token' acts as service 'booking' and may not act as 'catering'"
    )
    assert http_server.requests == []
    assert await orch.db.fetchval("SELECT count(*) FROM circuit_breakers") == 0


async def test_an_operator_naming_a_source_is_audited_with_the_token(
    orch: Orch, api: httpx.AsyncClient
) -> None:
    ops = await bearer(orch, "platform_engineer")
    answer = await api.post(
        CALL,
        json={"endpoint": "/x", "method": "GET", "source": "catering", "correlation_id": "c-7"},
        headers=ops,
    )
    assert answer.status_code == 200, answer.text
    (entry,) = await calls_audited(orch)
    assert (entry.actor, entry.target_id) == ("token:platform_engineer-token", "venue")
    assert entry.details == {
        "source": "catering",
        "method": "GET",
        "endpoint": "/x",
        "correlation_id": "c-7",
    }
    unnamed = await api.post(CALL, json={"endpoint": "/x", "method": "GET"}, headers=ops)
    assert unnamed.status_code == 200
    assert await sources_seen(orch) == ["catering", "orch-api"]
    assert len(await calls_audited(orch)) == 1


async def test_an_unknown_source_is_refused_and_leaves_no_breaker(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    ops = await bearer(orch, "platform_engineer")
    answer = await api.post(
        CALL, json={"endpoint": "/x", "method": "GET", "source": "nobody"}, headers=ops
    )
    assert answer.status_code == 403
    assert answer.json()["error"] == "UnknownCallerError"
    assert "unknown calling service 'nobody'" in answer.json()["detail"]
    assert http_server.requests == []
    assert await orch.db.fetchval("SELECT count(*) FROM circuit_breakers") == 0


async def test_a_dot_segment_through_the_api_is_422_naming_the_endpoint(
    orch: Orch, api: httpx.AsyncClient, http_server: SwitchableServer
) -> None:
    ops = await bearer(orch, "platform_engineer")
    answer = await api.post(
        CALL,
        json={"endpoint": "/reservations/../payments/refund", "method": "POST"},
        headers=ops,
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["endpoint"]
    assert "dot segment" in answer.json()["message"]
    assert http_server.requests == []


@pytest.mark.parametrize(("role", "expected"), [("monitoring_system", 403), ("system_admin", 200)])
async def test_who_may_call(orch: Orch, api: httpx.AsyncClient, role: str, expected: int) -> None:
    answer = await api.post(
        CALL, json={"endpoint": "/x", "method": "GET"}, headers=await bearer(orch, role)
    )
    assert answer.status_code == expected, answer.text


# -- starting workflows --------------------------------------------------------------------


async def start(
    api: httpx.AsyncClient, headers: dict[str, str], **fields: object
) -> httpx.Response:
    body = {"workflow_name": "booking", "context_data": {"wedding_id": "w-1"}, **fields}
    return await api.post(f"{API}/workflows", json=body, headers=headers)


async def initiator(orch: Orch, answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    status = await orch.workflows.status(answer.json()["workflow_id"])
    return status.workflow.initiating_service


async def test_a_service_token_starts_workflows_as_its_own_service(
    orch: Orch, api: httpx.AsyncClient
) -> None:
    await orch.workflow_definitions.register(BOOKING, actor="t")
    booking = await bearer(orch, "service", "booking")
    assert await initiator(orch, await start(api, booking)) == "booking"
    assert await initiator(orch, await start(api, booking, initiating_service="booking")) == (
        "booking"
    )
    refused = await start(api, booking, initiating_service="catering")
    assert refused.status_code == 403
    assert "may not act as 'catering'" in refused.json()["detail"]
    assert (await orch.workflows.list_workflows()).total == 2


async def test_an_operator_starts_workflows_as_named_or_as_orch(
    orch: Orch, api: httpx.AsyncClient
) -> None:
    await orch.workflow_definitions.register(BOOKING, actor="t")
    ops = await bearer(orch, "platform_engineer")
    assert await initiator(orch, await start(api, ops)) == "orch"
    assert await initiator(orch, await start(api, ops, initiatingService="catering")) == "catering"
    reader = await bearer(orch, "monitoring_system")
    assert (await start(api, reader)).status_code == 403
