"""The example wedding platform as the demo runs it: one real process, real HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from examples.wedding.manifest import SERVICE_VERSIONS

from tests.examples.platform_process import PlatformProcess

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def post(
    client: httpx.Client, url: str, body: dict[str, Any] | None = None, *, key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(url, json=body, headers=headers)


def stats(client: httpx.Client, base_url: str) -> dict[str, Any]:
    response = client.get(f"{base_url}/_stats")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def set_knobs(client: httpx.Client, base_url: str, **knobs: Any) -> dict[str, Any]:
    response = client.post(f"{base_url}/_knobs", json=knobs)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


# -- start-up and health -------------------------------------------------------------------


def test_every_instance_announces_itself_on_its_own_port(wedding: PlatformProcess) -> None:
    assert sorted(wedding.instances) == [
        "catering-1",
        "notification-1",
        "payment-1",
        "photographer-1",
        "photographer-2",
        "venue-1",
        "venue-2",
    ]
    ports = {a.port for a in wedding.instances.values()}
    assert len(ports) == len(wedding.instances)
    for announcement in wedding.instances.values():
        assert announcement.host == "127.0.0.1"
        assert announcement.version == SERVICE_VERSIONS[announcement.service]


def test_every_instance_is_healthy(wedding: PlatformProcess, client: httpx.Client) -> None:
    for announcement in wedding.instances.values():
        response = client.get(f"{announcement.base_url}/health")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})


# -- business endpoints ------------------------------------------------------------------------


def test_venue_reservation_holds_the_date_until_cancelled(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    venue = wedding.url("venue-1")
    request = {"wedding_id": "w-1", "venue_id": "orangery", "date": "2027-06-12", "guests": 80}
    created = post(client, f"{venue}/reservations", request)
    assert created.status_code == 201
    reservation = created.json()
    assert reservation["status"] == "confirmed"
    assert reservation["handled_by"] == "venue-1"

    # The instances share the service's state: the other one knows it and refuses the date.
    other = wedding.url("venue-2")
    fetched = client.get(f"{other}/reservations/{reservation['reservation_id']}")
    assert fetched.json()["guests"] == 80
    taken = post(client, f"{other}/reservations", {**request, "wedding_id": "w-2"})
    assert (taken.status_code, taken.json()["code"]) == (409, "venue_unavailable")

    cancelled = post(client, f"{venue}/reservations/{reservation['reservation_id']}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    again = post(client, f"{other}/reservations", {**request, "wedding_id": "w-2"})
    assert again.status_code == 201


def test_catering_and_photographer_book_and_cancel(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    catering = wedding.url("catering-1")
    order = post(client, f"{catering}/orders", {"wedding_id": "w", "menu": "vegan", "guests": 10})
    assert order.status_code == 201
    assert order.json()["total_cents"] == 10 * 5800
    cancel = post(client, f"{catering}/orders/{order.json()['order_id']}/cancel")
    assert cancel.json()["status"] == "cancelled"

    photographer = wedding.url("photographer-2")
    booking = {"wedding_id": "w", "date": "2027-07-03", "package": "signature"}
    booked = post(client, f"{photographer}/bookings", booking)
    assert booked.status_code == 201
    cancel = post(client, f"{photographer}/bookings/{booked.json()['booking_id']}/cancel")
    assert cancel.json()["status"] == "cancelled"
    assert post(client, f"{photographer}/bookings/nope/cancel").status_code == 404


def test_payment_charges_refunds_and_declines(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    payment = wedding.url("payment-1")
    charge = post(
        client, f"{payment}/charges", {"wedding_id": "w", "amount_cents": 250_00, "currency": "eur"}
    )
    assert charge.status_code == 201
    assert charge.json()["currency"] == "EUR"
    charge_id = charge.json()["charge_id"]

    refund = post(client, f"{payment}/refunds", {"charge_id": charge_id})
    assert (refund.status_code, refund.json()["amount_cents"]) == (201, 250_00)
    twice = post(client, f"{payment}/refunds", {"charge_id": charge_id})
    assert (twice.status_code, twice.json()["code"]) == (409, "already_refunded")
    assert post(client, f"{payment}/refunds", {"charge_id": "ch_none"}).status_code == 404

    too_much = {"wedding_id": "w", "amount_cents": 90_000_00, "currency": "EUR"}
    declined = post(client, f"{payment}/charges", too_much)
    assert (declined.status_code, declined.json()["code"]) == (402, "card_declined")


def test_notification_is_queued(wedding: PlatformProcess, client: httpx.Client) -> None:
    body = {"wedding_id": "w", "channel": "email", "template": "venue-confirmed"}
    sent = post(client, f"{wedding.url('notification-1')}/notifications", body)
    assert sent.status_code == 202
    assert sent.json()["notification_id"].startswith("ntf_")


def test_invalid_request_is_told_which_field(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    body = {"wedding_id": "w", "channel": "pigeon", "template": "x"}
    refused = post(client, f"{wedding.url('notification-1')}/notifications", body)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "channel"]


# -- idempotency, correlation, traces ------------------------------------------------------------


def test_same_idempotency_key_twice_is_two_calls_one_effect(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    payment = wedding.url("payment-1")
    key = new_key()
    body = {"wedding_id": "w", "amount_cents": 100_00, "currency": "EUR"}
    before = stats(client, payment)

    first = post(client, f"{payment}/charges", body, key=key)
    second = post(client, f"{payment}/charges", body, key=key)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    after = stats(client, payment)
    assert after["by_key"][key] == {"calls": 2, "effects": 1}
    assert after["calls"] - before["calls"] == 2
    assert after["effects"] - before["effects"] == 1


def test_a_retry_on_another_instance_finds_the_first_answer(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    key = new_key()
    body = {"wedding_id": "w", "venue_id": "barn", "date": "2027-09-09", "guests": 40}
    first = post(client, f"{wedding.url('venue-1')}/reservations", body, key=key)
    retry = post(client, f"{wedding.url('venue-2')}/reservations", body, key=key)
    assert retry.json()["reservation_id"] == first.json()["reservation_id"]
    assert stats(client, wedding.url("venue-2"))["by_key"][key] == {"calls": 2, "effects": 1}


def test_an_answer_lost_to_a_client_timeout_took_effect_once(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    """The case a saga's retry must survive: applied, but the caller never heard."""
    venue = wedding.url("venue-1")
    set_knobs(client, venue, latency_ms=300)
    key = new_key()
    body = {"wedding_id": "w", "venue_id": "mill", "date": "2027-10-10", "guests": 60}
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            f"{venue}/reservations", json=body, headers={"Idempotency-Key": key}, timeout=0.05
        )
    deadline = time.monotonic() + 5
    while stats(client, venue)["by_key"][key]["effects"] == 0:
        assert time.monotonic() < deadline, "the timed-out call never took effect"
        time.sleep(0.02)

    retry = post(client, f"{wedding.url('venue-2')}/reservations", body, key=key)
    assert (retry.status_code, retry.headers["Idempotent-Replayed"]) == (201, "true")
    assert stats(client, venue)["by_key"][key] == {"calls": 2, "effects": 1}


def test_a_key_reused_for_another_request_is_refused(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    notification = wedding.url("notification-1")
    key = new_key()
    body = {"wedding_id": "w", "channel": "sms", "template": "reminder"}
    assert post(client, f"{notification}/notifications", body, key=key).status_code == 202
    other = post(client, f"{notification}/notifications", {**body, "channel": "push"}, key=key)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert stats(client, notification)["by_key"][key] == {"calls": 2, "effects": 1}


def test_correlation_id_is_echoed_and_traceparent_kept(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    catering = wedding.url("catering-1")
    response = client.post(
        f"{catering}/orders",
        json={"wedding_id": "w", "menu": "classic", "guests": 2},
        headers={"X-Correlation-ID": "wedding-42", "traceparent": TRACEPARENT},
    )
    assert response.headers["X-Correlation-ID"] == "wedding-42"
    seen = stats(client, catering)
    assert seen["last_traceparent"] == TRACEPARENT
    assert seen["recent_traces"][0] == {
        "traceparent": TRACEPARENT,
        "instance_id": "catering-1",
        "method": "POST",
        "path": "/orders",
    }
    # Also on an error answered before the route runs.
    refused = client.post(f"{catering}/orders", json={}, headers={"X-Correlation-ID": "c-2"})
    assert (refused.status_code, refused.headers["X-Correlation-ID"]) == (422, "c-2")


# -- knobs -------------------------------------------------------------------------------------


def test_health_knob_fails_and_throttles_one_instance(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    venue_1, venue_2 = wedding.url("venue-1"), wedding.url("venue-2")
    set_knobs(client, venue_1, health="fail")
    assert client.get(f"{venue_1}/health").status_code == 503
    assert client.get(f"{venue_2}/health").status_code == 200

    assert set_knobs(client, venue_1, health="throttle")["health"] == "throttle"
    throttled = client.get(f"{venue_1}/health")
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")

    set_knobs(client, venue_1, health="ok")
    assert client.get(f"{venue_1}/health").status_code == 200


def test_failure_rate_one_fails_every_call_without_effect(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    payment = wedding.url("payment-1")
    set_knobs(client, payment, failure_rate=1.0)
    key = new_key()
    body = {"wedding_id": "w", "amount_cents": 500, "currency": "EUR"}
    for _ in range(3):
        assert post(client, f"{payment}/charges", body, key=key).status_code == 503
    assert stats(client, payment)["by_key"][key] == {"calls": 3, "effects": 0}

    set_knobs(client, payment, failure_rate=0.0)
    assert post(client, f"{payment}/charges", body, key=key).status_code == 201
    assert stats(client, payment)["by_key"][key] == {"calls": 4, "effects": 1}


def test_latency_knob_delays_answers(wedding: PlatformProcess, client: httpx.Client) -> None:
    catering = wedding.url("catering-1")
    knobs = set_knobs(client, catering, latency_ms=300)
    assert knobs == {"health": "ok", "latency_ms": 300, "failure_rate": 0.0, "hang": False}
    started = time.monotonic()
    assert client.get(f"{catering}/health").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_hang_knob_leaves_business_calls_unanswered(
    wedding: PlatformProcess, client: httpx.Client
) -> None:
    photographer = wedding.url("photographer-1")
    set_knobs(client, photographer, hang=True)
    body = {"wedding_id": "w", "date": "2027-08-08", "package": "classic"}
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{photographer}/bookings", json=body, timeout=0.3)
    assert client.get(f"{photographer}/health").status_code == 200


def test_invalid_knobs_are_refused(wedding: PlatformProcess, client: httpx.Client) -> None:
    venue = wedding.url("venue-1")
    assert client.post(f"{venue}/_knobs", json={"failure_rate": 2}).status_code == 422
    assert client.post(f"{venue}/_knobs", json={"explode": True}).status_code == 422
    assert client.get(f"{venue}/_knobs").json()["failure_rate"] == 0.0
