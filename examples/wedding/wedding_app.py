"""The HTTP face of one instance: health, business routes, knobs and stats.

Every instance gets its own FastAPI app (its own knobs and port); the instances of
one service share a :class:`ServiceState` (the book and the call ledger), as real
replicas share a database.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from wedding_domain import (
    BookingRequest,
    BusEvent,
    CateringBook,
    ChargeRequest,
    IdMaker,
    NotificationOutbox,
    NotificationRequest,
    OrderRequest,
    PaymentBook,
    PhotographerBook,
    RefundRequest,
    ReservationRequest,
    VenueBook,
    id_maker,
)
from wedding_faults import FaultInjector, Knobs, KnobsUpdate
from wedding_ledger import CallLedger, Outcome, TraceSeen, request_fingerprint

IDEMPOTENCY_HEADER = "idempotency-key"


@dataclass
class ServiceState:
    """What all instances of one service share."""

    name: str
    version: str
    book: Any
    ledger: CallLedger


@dataclass
class InstanceContext:
    service: ServiceState
    instance_id: str
    faults: FaultInjector

    async def business_call(self, request: Request) -> None:
        """Runs before every business route: count the call, then apply the faults."""
        if request.method != "GET":
            self.service.ledger.count_call(
                self.instance_id, request.headers.get(IDEMPOTENCY_HEADER)
            )
        await self.faults.before_business_call()

    def mutate(
        self, request: Request, payload: BaseModel | None, operation: Callable[[], Outcome]
    ) -> JSONResponse:
        """Run a state-changing operation once per Idempotency-Key."""
        body = payload.model_dump(mode="json") if payload is not None else {}
        fingerprint = request_fingerprint(request.method, request.url.path, body)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        outcome, replayed = self.service.ledger.perform(
            self.instance_id, key, fingerprint, operation
        )
        response = answer(outcome)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response


def answer(outcome: Outcome) -> JSONResponse:
    return JSONResponse(outcome.body, status_code=outcome.status)


class CorrelationAndTrace:
    """Echoes ``X-Correlation-ID`` on every answer and notes incoming ``traceparent``s.

    Health checks and the ``/_`` control endpoints are left out of the trace notes
    so the few kept show business traffic.
    """

    def __init__(self, app: ASGIApp, context: InstanceContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        self._note_trace(scope, headers.get(b"traceparent"))
        correlation = headers.get(b"x-correlation-id")
        if correlation is None:
            await self.app(scope, receive, send)
            return

        async def send_with_correlation(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-correlation-id", correlation)]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_correlation)

    def _note_trace(self, scope: Scope, traceparent: bytes | None) -> None:
        path: str = scope["path"]
        if traceparent is None or path == "/health" or path.startswith("/_"):
            return
        seen = TraceSeen(
            traceparent.decode("latin-1"), self.context.instance_id, scope["method"], path
        )
        self.context.service.ledger.note_trace(seen)


# -- routes ------------------------------------------------------------------------------


def control_routes(ctx: InstanceContext) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        status, body = await ctx.faults.health_answer()
        headers = {"Retry-After": "1"} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @router.get("/_knobs")
    async def get_knobs() -> Knobs:
        return ctx.faults.knobs

    @router.post("/_knobs")
    async def set_knobs(change: KnobsUpdate) -> Knobs:
        return ctx.faults.update(change)

    @router.delete("/_knobs")
    async def reset_knobs() -> Knobs:
        return ctx.faults.reset()

    @router.get("/_stats")
    async def stats() -> dict[str, Any]:
        return {
            "service": ctx.service.name,
            "instance_id": ctx.instance_id,
            **ctx.service.ledger.snapshot(ctx.instance_id),
        }

    return router


def business_router(ctx: InstanceContext) -> APIRouter:
    return APIRouter(dependencies=[Depends(ctx.business_call)])


def venue_routes(ctx: InstanceContext, book: VenueBook) -> APIRouter:
    router = business_router(ctx)
    me = ctx.instance_id

    @router.post("/reservations", status_code=201)
    async def reserve(body: ReservationRequest, request: Request) -> JSONResponse:
        return ctx.mutate(request, body, lambda: book.reserve(body, me))

    @router.post("/reservations/{reservation_id}/cancel")
    async def cancel(reservation_id: str, request: Request) -> JSONResponse:
        return ctx.mutate(request, None, lambda: book.cancel(reservation_id, me))

    @router.get("/reservations/{reservation_id}")
    async def get(reservation_id: str) -> JSONResponse:
        return answer(book.get(reservation_id))

    return router


def catering_routes(ctx: InstanceContext, book: CateringBook) -> APIRouter:
    router = business_router(ctx)
    me = ctx.instance_id

    @router.post("/orders", status_code=201)
    async def order(body: OrderRequest, request: Request) -> JSONResponse:
        return ctx.mutate(request, body, lambda: book.order(body, me))

    @router.post("/orders/{order_id}/cancel")
    async def cancel(order_id: str, request: Request) -> JSONResponse:
        return ctx.mutate(request, None, lambda: book.cancel(order_id, me))

    @router.get("/orders/{order_id}")
    async def get(order_id: str) -> JSONResponse:
        return answer(book.get(order_id))

    return router


def photographer_routes(ctx: InstanceContext, book: PhotographerBook) -> APIRouter:
    router = business_router(ctx)
    me = ctx.instance_id

    @router.post("/bookings", status_code=201)
    async def book_photographer(body: BookingRequest, request: Request) -> JSONResponse:
        return ctx.mutate(request, body, lambda: book.book(body, me))

    @router.post("/bookings/{booking_id}/cancel")
    async def cancel(booking_id: str, request: Request) -> JSONResponse:
        return ctx.mutate(request, None, lambda: book.cancel(booking_id, me))

    @router.get("/bookings/{booking_id}")
    async def get(booking_id: str) -> JSONResponse:
        return answer(book.get(booking_id))

    return router


def payment_routes(ctx: InstanceContext, book: PaymentBook) -> APIRouter:
    router = business_router(ctx)
    me = ctx.instance_id

    @router.post("/charges", status_code=201)
    async def charge(body: ChargeRequest, request: Request) -> JSONResponse:
        return ctx.mutate(request, body, lambda: book.charge(body, me))

    @router.get("/charges/{charge_id}")
    async def get(charge_id: str) -> JSONResponse:
        return answer(book.get_charge(charge_id))

    @router.post("/refunds", status_code=201)
    async def refund(body: RefundRequest, request: Request) -> JSONResponse:
        return ctx.mutate(request, body, lambda: book.refund(body, me))

    return router


def notification_routes(ctx: InstanceContext, book: NotificationOutbox) -> APIRouter:
    router = business_router(ctx)
    me = ctx.instance_id

    @router.post("/notifications", status_code=202)
    async def send(body: NotificationRequest, request: Request) -> JSONResponse:
        return ctx.mutate(request, body, lambda: book.send(body, me))

    @router.get("/notifications/{notification_id}")
    async def get(notification_id: str) -> JSONResponse:
        return answer(book.get(notification_id))

    @router.post("/events")
    async def on_event(body: BusEvent, request: Request) -> JSONResponse:
        """Booking events pushed by orch's bus (queue booking_events): once per
        Idempotency-Key (msg:<queue>:<id>), so a redelivery changes nothing."""
        reject = ctx.faults.rejects_event()
        return ctx.mutate(request, body, lambda: book.on_event(body, me, reject=reject))

    return router


def booking_routes(ctx: InstanceContext, book: None) -> APIRouter:
    """The booking site's backend serves people, not orch: orch only checks its health."""
    return business_router(ctx)


#: service name -> (how its book is made, how its routes are made)
SERVICES: dict[str, tuple[Callable[[IdMaker], Any], Callable[[InstanceContext, Any], APIRouter]]]
SERVICES = {
    "booking": (lambda _ids: None, booking_routes),
    "venue": (VenueBook, venue_routes),
    "catering": (CateringBook, catering_routes),
    "photographer": (PhotographerBook, photographer_routes),
    "payment": (PaymentBook, payment_routes),
    "notification": (NotificationOutbox, notification_routes),
}


def service_state(name: str, version: str, ids: random.Random) -> ServiceState:
    make_book, _ = SERVICES[name]
    return ServiceState(name, version, make_book(id_maker(ids)), CallLedger())


def instance_app(ctx: InstanceContext) -> FastAPI:
    _, make_routes = SERVICES[ctx.service.name]
    app = FastAPI(
        title=f"wedding {ctx.service.name} ({ctx.instance_id})", version=ctx.service.version
    )
    app.include_router(control_routes(ctx))
    app.include_router(make_routes(ctx, ctx.service.book))
    app.add_middleware(CorrelationAndTrace, context=ctx)
    return app
