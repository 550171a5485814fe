"""Message bus routes over real HTTP: the seed's shapes, pull delivery, dead letters, and
who may send and consume (the service from the token, never from the body)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchcore import Orch
from orchcore.audit import recent_actions
from tests.support.api import serve_api, token
from tests.support.polling import eventually

API = "/api/orchestration/messages"

BOOKINGS = {
    "queue_name": "booking_events",
    "queue_type": "queue",
    "producer_services": ["booking"],
    "consumer_services": ["notification"],
    "max_message_size": 512,
    "dlq_enabled": True,
    "dlq_max_retries": 1,
    "monitoring_config": {"alert_on_backlog": 100, "alert_on_processing_time": 5000},
}


@pytest.fixture
async def api(orch: Orch) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(orch) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client


@pytest.fixture
async def ops(orch: Orch) -> dict[str, str]:
    return await token(orch, "platform_engineer")


@pytest.fixture
async def bookings(api: httpx.AsyncClient, ops: dict[str, str]) -> dict[str, Any]:
    created = await api.post(f"{API}/queues", json=BOOKINGS, headers=ops)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def message(**overrides: Any) -> dict[str, Any]:
    return {
        "queue_name": "booking_events",
        "message_type": "booking.confirmed",
        "message_payload": {"booking_id": "b-1"},
        "correlation_id": "wedding-1",
        "headers": {"x-tenant": "t1"},
        **overrides,
    }


async def test_create_list_show_and_update_a_queue(
    api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    assert bookings["queue_name"] == "booking_events"
    assert bookings["dead_letter_queue"] == "booking_events_dlq"
    assert bookings["is_active"] is True
    assert bookings["producer_services"] == ["booking"]
    again = await api.post(f"{API}/queues", json=BOOKINGS, headers=ops)
    assert again.status_code == 409, again.text

    listing = (await api.get(f"{API}/queues", headers=ops)).json()
    assert listing["total_queues"] == 1
    [entry] = listing["queues"]
    assert entry["queue_name"] == "booking_events"
    assert entry["queue_metrics"]["pending_messages"] == 0

    shown = await api.get(f"{API}/queues/booking_events", headers=ops)
    assert shown.status_code == 200, shown.text
    assert shown.json()["queue"]["dlq_max_retries"] == 1
    assert set(shown.json()["queue_metrics"]) >= {
        "total_messages",
        "pending_messages",
        "processing_messages",
        "failed_messages",
        "average_age_seconds",
    }

    updated = await api.patch(
        f"{API}/queues/booking_events", json={"dlq_max_retries": 4}, headers=ops
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["dlq_max_retries"] == 4
    assert updated.json()["producer_services"] == ["booking"]  # unchanged

    bad_name = await api.post(
        f"{API}/queues", json={**BOOKINGS, "queue_name": "Booking-Events"}, headers=ops
    )
    assert bad_name.status_code == 422
    assert bad_name.json()["detail"][0]["loc"][-1] == "queue_name"
    unknown = await api.get(f"{API}/queues/nope", headers=ops)
    assert unknown.status_code == 404


async def test_send_receive_ack_over_http(
    api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    sent = await api.post(f"{API}/send", json=message(), headers=ops)
    assert sent.status_code == 201, sent.text
    answer = sent.json()
    assert answer["queue_name"] == "booking_events"
    assert answer["status"] == "queued"
    assert answer["message_id"].isdigit()  # PGMQ's msg_id as a string

    listed = (await api.get(f"{API}/queues/booking_events/messages", headers=ops)).json()
    assert listed["queue_metrics"]["pending_messages"] == 1
    [entry] = listed["messages"]
    assert entry["message_id"] == answer["message_id"]
    assert entry["message_type"] == "booking.confirmed"
    assert entry["correlation_id"] == "wedding-1"

    received = await api.post(
        f"{API}/queues/booking_events/receive",
        json={"max_messages": 5, "visibility_timeout_seconds": 60},
        headers=ops,
    )
    assert received.status_code == 200, received.text
    [got] = received.json()["messages"]
    assert set(got) == {
        "message_id",
        "message_type",
        "message_payload",
        "correlation_id",
        "headers",
        "retry_count",
        "produced_at",
    }
    assert got["message_id"] == answer["message_id"]
    assert got["message_payload"] == {"booking_id": "b-1"}
    assert got["headers"]["x-tenant"] == "t1"
    assert got["retry_count"] == 0

    hidden = await api.post(f"{API}/queues/booking_events/receive", json={}, headers=ops)
    assert hidden.json()["messages"] == []  # in flight: no one else gets it
    extended = await api.post(
        f"{API}/queues/booking_events/messages/{got['message_id']}/extend",
        json={"visibility_timeout_seconds": 120},
        headers=ops,
    )
    assert extended.status_code == 200, extended.text
    acked = await api.post(
        f"{API}/queues/booking_events/messages/{got['message_id']}/ack", headers=ops
    )
    assert acked.status_code == 200, acked.text
    assert acked.json() == {
        "queue_name": "booking_events",
        "message_id": got["message_id"],
        "status": "acked",
        "outcome": None,
    }
    metrics = (await api.get(f"{API}/queues/booking_events", headers=ops)).json()["queue_metrics"]
    assert metrics["pending_messages"] == 0
    assert metrics["processing_messages"] == 0
    again = await api.post(
        f"{API}/queues/booking_events/messages/{got['message_id']}/ack", headers=ops
    )
    assert again.status_code == 404, again.text


async def test_nack_brings_a_message_back_with_its_retry_count(
    api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    await api.post(f"{API}/send", json=message(), headers=ops)
    first = (await api.post(f"{API}/queues/booking_events/receive", headers=ops)).json()
    [got] = first["messages"]
    nacked = await api.post(
        f"{API}/queues/booking_events/messages/{got['message_id']}/nack",
        json={"delay_seconds": 0, "error_message": "venue busy"},
        headers=ops,
    )
    assert nacked.status_code == 200, nacked.text
    assert nacked.json()["outcome"] == "retry"  # one retry allowed: it comes back

    async def redelivered() -> list[dict[str, Any]]:
        answer = await api.post(f"{API}/queues/booking_events/receive", headers=ops)
        found: list[dict[str, Any]] = answer.json()["messages"]
        return found

    [back] = await eventually(redelivered, message="the nacked message back")
    assert back["message_id"] == got["message_id"]
    assert back["retry_count"] == 1


async def test_refusals_say_why(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    too_large = await api.post(
        f"{API}/send", json=message(message_payload={"blob": "x" * 600}), headers=ops
    )
    assert too_large.status_code == 413, too_large.text
    assert "max_message_size" in too_large.text or "512" in too_large.text
    listed = (await api.get(f"{API}/queues/booking_events/messages", headers=ops)).json()
    assert listed["messages"] == []  # nothing stored

    stranger = await token(orch, "service", "catering")
    refused = await api.post(f"{API}/send", json=message(), headers=stranger)
    assert refused.status_code == 403, refused.text
    assert "catering" in refused.json()["message"]

    unknown = await api.post(f"{API}/send", json=message(queue_name="nope"), headers=ops)
    assert unknown.status_code == 404, unknown.text
    unknown_receive = await api.post(f"{API}/queues/nope/receive", headers=ops)
    assert unknown_receive.status_code == 404
    unknown_messages = await api.get(f"{API}/queues/nope/messages", headers=ops)
    assert unknown_messages.status_code == 404

    no_type = {k: v for k, v in message().items() if k != "message_type"}
    bad = await api.post(f"{API}/send", json=no_type, headers=ops)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-1] == "message_type"
    bad_receive = await api.post(
        f"{API}/queues/booking_events/receive", json={"max_messages": 0}, headers=ops
    )
    assert bad_receive.status_code == 422
    assert bad_receive.json()["detail"][0]["loc"][-1] == "max_messages"
    for bad_id in ("abc", "²", str(2**63)):  # not digits; a digit int() refuses; past bigint
        not_an_id = await api.post(
            f"{API}/queues/booking_events/messages/{bad_id}/ack", headers=ops
        )
        assert not_an_id.status_code == 422, bad_id
        assert not_an_id.json()["detail"][0]["loc"] == ["message_id"]
    bad_extend = await api.post(
        f"{API}/queues/booking_events/messages/1/extend", json={}, headers=ops
    )
    assert bad_extend.status_code == 422

    assert (await api.post(f"{API}/send", json=message())).status_code == 401
    reader = await token(orch, "monitoring_system")
    assert (await api.get(f"{API}/queues", headers=reader)).status_code == 200
    assert (await api.post(f"{API}/send", json=message(), headers=reader)).status_code == 403
    receive_as_reader = await api.post(f"{API}/queues/booking_events/receive", headers=reader)
    assert receive_as_reader.status_code == 403
    create_as_reader = await api.post(
        f"{API}/queues", json={**BOOKINGS, "queue_name": "other"}, headers=reader
    )
    assert create_as_reader.status_code == 403


async def test_a_service_token_sends_and_consumes_only_as_its_service(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    booking = await token(orch, "service", "booking")
    notification = await token(orch, "service", "notification")
    sent = await api.post(f"{API}/send", json=message(), headers=booking)
    assert sent.status_code == 201, sent.text
    listed = (await api.get(f"{API}/queues/booking_events/messages", headers=ops)).json()
    assert listed["messages"][0]["producer_service"] == "booking"  # from the token

    # booking produces to this queue but does not consume it
    not_consumer = await api.post(f"{API}/queues/booking_events/receive", headers=booking)
    assert not_consumer.status_code == 403, not_consumer.text
    # notification consumes but does not produce
    not_producer = await api.post(f"{API}/send", json=message(), headers=notification)
    assert not_producer.status_code == 403, not_producer.text
    # a service token manages no queues and reads no listings
    create = await api.post(
        f"{API}/queues", json={**BOOKINGS, "queue_name": "mine"}, headers=booking
    )
    assert create.status_code == 403
    assert (await api.get(f"{API}/queues", headers=booking)).status_code == 403

    received = await api.post(
        f"{API}/queues/booking_events/receive", json={"max_messages": 10}, headers=notification
    )
    assert received.status_code == 200, received.text
    [got] = received.json()["messages"]
    assert got["message_id"] == sent.json()["message_id"]
    ack_as_producer = await api.post(
        f"{API}/queues/booking_events/messages/{got['message_id']}/ack", headers=booking
    )
    assert ack_as_producer.status_code == 403
    acked = await api.post(
        f"{API}/queues/booking_events/messages/{got['message_id']}/ack", headers=notification
    )
    assert acked.status_code == 200, acked.text


async def test_send_batch_goes_to_one_queue(
    api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    items = [{"message_type": "booking.confirmed", "message_payload": {"n": n}} for n in range(3)]
    mixed = await api.post(
        f"{API}/send-batch",
        json={"queue_name": "booking_events", "messages": [*items, message(queue_name="x")]},
        headers=ops,
    )
    assert mixed.status_code == 422
    assert mixed.json()["detail"][0]["loc"] == ["messages", "3", "queue_name"]
    sent = await api.post(
        f"{API}/send-batch", json={"queue_name": "booking_events", "messages": items}, headers=ops
    )
    assert sent.status_code == 201, sent.text
    ids = [m["message_id"] for m in sent.json()["messages"]]
    assert len(set(ids)) == 3
    received = await api.post(
        f"{API}/queues/booking_events/receive", json={"max_messages": 10}, headers=ops
    )
    assert [m["message_payload"]["n"] for m in received.json()["messages"]] == [0, 1, 2]


async def dead_letter_one(api: httpx.AsyncClient, ops: dict[str, str]) -> dict[str, Any]:
    """Send a message and nack it until the queue's retry limit dead-letters it."""
    sent = (await api.post(f"{API}/send", json=message(), headers=ops)).json()
    outcomes: list[str] = []

    async def dead() -> list[dict[str, Any]]:
        got = await api.post(f"{API}/queues/booking_events/receive", headers=ops)
        for m in got.json()["messages"]:
            nacked = await api.post(
                f"{API}/queues/booking_events/messages/{m['message_id']}/nack",
                json={"error_message": "template missing"},
                headers=ops,
            )
            outcomes.append(nacked.json()["outcome"])
        letters = await api.get(f"{API}/queues/booking_events/dead-letters", headers=ops)
        assert letters.status_code == 200, letters.text
        mine: list[dict[str, Any]] = [
            d
            for d in letters.json()["dead_letters"]
            if d["original_message_id"] == sent["message_id"]
        ]
        return mine

    [letter] = await eventually(dead, message="the message dead-lettered")
    assert outcomes == ["retry", "dead_lettered"]  # dlq_max_retries 1: two deliveries
    return letter


async def test_dead_letters_redrive_and_purge_need_a_reason_and_are_audited(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    letter = await dead_letter_one(api, ops)
    assert letter["original_queue"] == "booking_events"
    assert letter["last_error"] == "template missing"
    assert letter["attempts"] >= 1
    assert letter["message_payload"] == {"booking_id": "b-1"}

    reader = await token(orch, "monitoring_system")
    seen = await api.get(f"{API}/queues/booking_events/dead-letters", headers=reader)
    assert seen.status_code == 200
    refused = await api.post(
        f"{API}/queues/booking_events/dead-letters/redrive",
        json={"reason": "fixed"},
        headers=reader,
    )
    assert refused.status_code == 403

    no_reason = await api.post(
        f"{API}/queues/booking_events/dead-letters/redrive", json={}, headers=ops
    )
    assert no_reason.status_code == 422
    assert no_reason.json()["detail"][0]["loc"][-1] == "reason"
    redriven = await api.post(
        f"{API}/queues/booking_events/dead-letters/redrive",
        json={"message_ids": [letter["message_id"]], "reason": "template deployed"},
        headers=ops,
    )
    assert redriven.status_code == 200, redriven.text
    assert redriven.json()["affected"] == 1
    back = await api.post(f"{API}/queues/booking_events/receive", headers=ops)
    [again] = back.json()["messages"]
    assert again["message_payload"] == {"booking_id": "b-1"}
    assert again["retry_count"] == 0  # the count starts over
    await api.post(f"{API}/queues/booking_events/messages/{again['message_id']}/ack", headers=ops)

    await dead_letter_one(api, ops)
    no_reason = await api.post(
        f"{API}/queues/booking_events/dead-letters/purge", json={"reason": ""}, headers=ops
    )
    assert no_reason.status_code == 422
    purged = await api.post(
        f"{API}/queues/booking_events/dead-letters/purge",
        json={"reason": "test data"},
        headers=ops,
    )
    assert purged.status_code == 200, purged.text
    assert purged.json()["affected"] == 1
    empty = await api.get(f"{API}/queues/booking_events/dead-letters", headers=ops)
    assert empty.json()["dead_letters"] == []

    entries = await recent_actions(orch.db.pool, limit=100)
    done = {(e.action, e.reason, e.actor) for e in entries}
    redrives = [e for e in entries if "redrive" in e.action]
    purges = [e for e in entries if "purge" in e.action]
    assert redrives and redrives[0].reason == "template deployed", done
    assert redrives[0].actor == "token:platform_engineer"
    assert purges and purges[0].reason == "test data", done


async def test_deactivate_needs_a_reason_and_stops_sends(
    orch: Orch, api: httpx.AsyncClient, ops: dict[str, str], bookings: dict[str, Any]
) -> None:
    no_reason = await api.post(f"{API}/queues/booking_events/deactivate", json={}, headers=ops)
    assert no_reason.status_code == 422
    done = await api.post(
        f"{API}/queues/booking_events/deactivate", json={"reason": "retired"}, headers=ops
    )
    assert done.status_code == 200, done.text
    assert done.json()["is_active"] is False
    refused = await api.post(f"{API}/send", json=message(), headers=ops)
    assert refused.status_code == 409, refused.text
    listing = (await api.get(f"{API}/queues", headers=ops)).json()
    assert listing["queues"] == []
    everything = (
        await api.get(f"{API}/queues", params={"include_inactive": "true"}, headers=ops)
    ).json()
    assert [q["queue_name"] for q in everything["queues"]] == ["booking_events"]
    back = await api.post(
        f"{API}/queues/booking_events/reactivate", json={"reason": "needed"}, headers=ops
    )
    assert back.status_code == 200, back.text
    assert back.json()["is_active"] is True
    assert (await api.post(f"{API}/send", json=message(), headers=ops)).status_code == 201
    entries = await recent_actions(orch.db.pool, limit=50)
    assert {"retired", "needed"} <= {e.reason for e in entries}
