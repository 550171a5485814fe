"""The business rules of the five example services, in memory and free of HTTP.

Each book is shared by all instances of its service. Operations return an
:class:`Outcome` (status, body, whether state changed); rules that refuse a
request answer 4xx with a ``code`` a saga can branch on. Cancelling what is
already cancelled succeeds without effect, so compensations can be repeated.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from wedding_ledger import Outcome

IdMaker = Callable[[str], str]


def id_maker(rng: random.Random) -> IdMaker:
    """Ids such as ``res_3f9a0c41d2e7``; reproducible when the platform is seeded."""

    def make(prefix: str) -> str:
        return f"{prefix}_{rng.getrandbits(48):012x}"

    return make


def _refused(status: int, code: str, detail: str) -> Outcome:
    return Outcome(status, {"detail": detail, "code": code})


def _not_found(kind: str, key: str) -> Outcome:
    return _refused(404, f"{kind}_not_found", f"no {kind} {key!r}")


class _Request(BaseModel):
    # Unknown fields are ignored, as a tolerant API would, so saga input mappings
    # may pass more than a service needs.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    wedding_id: str = Field(min_length=1, max_length=100)


# -- venue ---------------------------------------------------------------------------


class ReservationRequest(_Request):
    venue_id: str = Field(min_length=1, max_length=100)
    date: dt.date
    guests: int = Field(ge=1, le=500, description="the largest venue seats 500")


class VenueBook:
    """A venue is held for one wedding a date."""

    def __init__(self, new_id: IdMaker) -> None:
        self._new_id = new_id
        self._reservations: dict[str, dict[str, Any]] = {}
        self._held: dict[tuple[str, str], str] = {}  # (venue_id, ISO date) -> id

    def reserve(self, req: ReservationRequest, handled_by: str) -> Outcome:
        slot = (req.venue_id, req.date.isoformat())
        if slot in self._held:
            return _refused(
                409, "venue_unavailable", f"venue {req.venue_id} is taken on {req.date}"
            )
        reservation_id = self._new_id("res")
        reservation = {
            "reservation_id": reservation_id,
            **req.model_dump(mode="json"),
            "status": "confirmed",
            "handled_by": handled_by,
        }
        self._reservations[reservation_id] = reservation
        self._held[slot] = reservation_id
        return Outcome(201, dict(reservation), changed=True)

    def cancel(self, reservation_id: str, handled_by: str) -> Outcome:
        outcome = _cancel(self._reservations, "reservation", reservation_id, handled_by)
        if outcome.changed:
            reservation = self._reservations[reservation_id]
            self._held.pop((reservation["venue_id"], reservation["date"]), None)
        return outcome

    def get(self, reservation_id: str) -> Outcome:
        return _get(self._reservations, "reservation", reservation_id)


# -- catering ------------------------------------------------------------------------

#: Price per guest in cents.
MENU_PRICES = {"classic": 6500, "vegetarian": 5800, "vegan": 5800, "premium": 11000}

Menu = Literal["classic", "vegetarian", "vegan", "premium"]


class OrderRequest(_Request):
    menu: Menu
    guests: int = Field(ge=1, le=500)


class CateringBook:
    def __init__(self, new_id: IdMaker) -> None:
        self._new_id = new_id
        self._orders: dict[str, dict[str, Any]] = {}

    def order(self, req: OrderRequest, handled_by: str) -> Outcome:
        order = {
            "order_id": self._new_id("ord"),
            **req.model_dump(mode="json"),
            "total_cents": MENU_PRICES[req.menu] * req.guests,
            "currency": "EUR",
            "status": "confirmed",
            "handled_by": handled_by,
        }
        self._orders[order["order_id"]] = order
        return Outcome(201, dict(order), changed=True)

    def cancel(self, order_id: str, handled_by: str) -> Outcome:
        return _cancel(self._orders, "order", order_id, handled_by)

    def get(self, order_id: str) -> Outcome:
        return _get(self._orders, "order", order_id)


# -- photographer ----------------------------------------------------------------------

#: A small studio: this many weddings on one date at most.
BOOKINGS_PER_DATE = 3

Package = Literal["essential", "classic", "signature"]


class BookingRequest(_Request):
    date: dt.date
    package: Package


class PhotographerBook:
    def __init__(self, new_id: IdMaker) -> None:
        self._new_id = new_id
        self._bookings: dict[str, dict[str, Any]] = {}

    def book(self, req: BookingRequest, handled_by: str) -> Outcome:
        date = req.date.isoformat()
        taken = sum(
            1 for b in self._bookings.values() if b["date"] == date and b["status"] == "booked"
        )
        if taken >= BOOKINGS_PER_DATE:
            return _refused(409, "fully_booked", f"no photographer is free on {date}")
        booking = {
            "booking_id": self._new_id("bkg"),
            **req.model_dump(mode="json"),
            "status": "booked",
            "handled_by": handled_by,
        }
        self._bookings[booking["booking_id"]] = booking
        return Outcome(201, dict(booking), changed=True)

    def cancel(self, booking_id: str, handled_by: str) -> Outcome:
        return _cancel(self._bookings, "booking", booking_id, handled_by)

    def get(self, booking_id: str) -> Outcome:
        return _get(self._bookings, "booking", booking_id)


# -- payment -------------------------------------------------------------------------

#: Charges above this are declined (402), a failure a saga must compensate.
DECLINE_ABOVE_CENTS = 5_000_000


class ChargeRequest(_Request):
    amount_cents: int = Field(gt=0, le=100_000_000)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217, e.g. EUR")


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    charge_id: str = Field(min_length=1, max_length=100)


class PaymentBook:
    def __init__(self, new_id: IdMaker) -> None:
        self._new_id = new_id
        self._charges: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, dict[str, Any]] = {}

    def charge(self, req: ChargeRequest, handled_by: str) -> Outcome:
        if req.amount_cents > DECLINE_ABOVE_CENTS:
            return _refused(402, "card_declined", "the card was declined")
        charge_id = self._new_id("ch")
        charge: dict[str, Any] = {
            "charge_id": charge_id,
            "wedding_id": req.wedding_id,
            "amount_cents": req.amount_cents,
            "currency": req.currency.upper(),
            "status": "succeeded",
            "handled_by": handled_by,
        }
        self._charges[charge_id] = charge
        return Outcome(201, dict(charge), changed=True)

    def refund(self, req: RefundRequest, handled_by: str) -> Outcome:
        charge = self._charges.get(req.charge_id)
        if charge is None:
            return _not_found("charge", req.charge_id)
        if charge["status"] == "refunded":
            return _refused(409, "already_refunded", f"charge {req.charge_id} is already refunded")
        charge["status"] = "refunded"
        refund = {
            "refund_id": self._new_id("re"),
            "charge_id": req.charge_id,
            "amount_cents": charge["amount_cents"],
            "currency": charge["currency"],
            "status": "succeeded",
            "handled_by": handled_by,
        }
        self._refunds[refund["refund_id"]] = refund
        return Outcome(201, dict(refund), changed=True)

    def get_charge(self, charge_id: str) -> Outcome:
        return _get(self._charges, "charge", charge_id)


# -- notification ----------------------------------------------------------------------

Channel = Literal["email", "sms", "push"]


class NotificationRequest(_Request):
    channel: Channel
    template: str = Field(min_length=1, max_length=100)
    recipient: str | None = Field(default=None, max_length=200)


class BusEvent(BaseModel):
    """A message orch's bus pushes (its pull API's shape plus the queue)."""

    model_config = ConfigDict(extra="allow")

    queue_name: str
    message_id: str
    message_type: str
    message_payload: dict[str, Any]
    correlation_id: str | None = None
    retry_count: int = 0


#: The events the notification service turns into messages to the couple.
EVENT_TEMPLATES = {
    "booking.confirmed": "booking_confirmed",
    "booking.failed": "booking_failed",
}


class NotificationOutbox:
    def __init__(self, new_id: IdMaker) -> None:
        self._new_id = new_id
        self._sent: dict[str, dict[str, Any]] = {}
        self.events_seen = 0

    def on_event(self, event: BusEvent, handled_by: str, *, reject: bool) -> Outcome:
        """A booking event pushed by the bus: a notification to the couple, or a refusal
        a retry cannot cure (an event type it has no template for, a rejected one)."""
        template = EVENT_TEMPLATES.get(event.message_type)
        if template is None:
            return Outcome(422, {"error": "unknown_event", "message_type": event.message_type})
        if reject:
            return Outcome(
                422, {"error": "undeliverable", "detail": "no contact address for this couple"}
            )
        self.events_seen += 1
        notification = {
            "notification_id": self._new_id("ntf"),
            "wedding_id": event.message_payload.get("wedding_id"),
            "channel": event.message_payload.get("channel", "email"),
            "template": template,
            "event": {"queue": event.queue_name, "message_id": event.message_id},
            "status": "queued",
            "handled_by": handled_by,
        }
        self._sent[notification["notification_id"]] = notification
        return Outcome(200, dict(notification), changed=True)

    def send(self, req: NotificationRequest, handled_by: str) -> Outcome:
        notification = {
            "notification_id": self._new_id("ntf"),
            **req.model_dump(mode="json"),
            "status": "queued",
            "handled_by": handled_by,
        }
        self._sent[notification["notification_id"]] = notification
        return Outcome(202, dict(notification), changed=True)

    def get(self, notification_id: str) -> Outcome:
        return _get(self._sent, "notification", notification_id)


# -- shared by the books -----------------------------------------------------------------


def _get(records: dict[str, dict[str, Any]], kind: str, key: str) -> Outcome:
    record = records.get(key)
    return Outcome(200, dict(record)) if record is not None else _not_found(kind, key)


def _cancel(records: dict[str, dict[str, Any]], kind: str, key: str, handled_by: str) -> Outcome:
    record = records.get(key)
    if record is None:
        return _not_found(kind, key)
    changed = record["status"] != "cancelled"
    record["status"] = "cancelled"
    return Outcome(200, {**record, "handled_by": handled_by}, changed=changed)
