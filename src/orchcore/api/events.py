"""GET /api/orchestration/events: what changed, as server-sent events.

What the console follows over LISTEN, for a client that has only a token: the
daemon's :class:`~orchcore.events.EventFeed`, resumed after the client's
``Last-Event-ID``. The stream opens with ``retry:`` and an ``open`` event naming the
position and the heartbeat period; an idle stream sends a heartbeat comment every
``events_heartbeat_seconds``, so a client notices a dead link within a few periods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from orchcore.api.auth import Caller, Engine, allowed
from orchcore.api.contract import ContractRoute
from orchcore.auth import Action
from orchcore.errors import OrchError
from orchcore.events import EventFeed, Resumption
from orchcore.events.sse import HEARTBEAT, encode_event, encode_retry

router = APIRouter(prefix="/api/orchestration", tags=["events"], route_class=ContractRoute)

#: How long an EventSource waits before it reconnects after the stream ends.
RETRY_MILLISECONDS = 1000
MAX_EVENT_ID_LENGTH = 200

STREAM_DESCRIPTION = """\
`text/event-stream`, until the client goes, the daemon stops, `max_seconds` pass, or the
token is revoked (a reconnection then gets 401). First `retry:` and an
`open` event (`id:` the position, data `{"heartbeat_seconds": N}`); then, as things
change:

- `event: change`, `id: <epoch>-<seq>`, data `{"changes": [payload, ...]}`: the
  notifications (each naming its `topic`) that arrived within about 50 ms, each once;
- `event: reset`, data `{"reason": "..."}`: what changed is not known (the client's
  `Last-Event-ID` is from another daemon or run, or older than the events kept, or
  the daemon's own connection to the database was interrupted): refresh everything.

An idle stream sends the comment `: heartbeat` every `events_heartbeat_seconds`.
"""


def _event_schema(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """One event of the stream, as OpenAPI 3.1 reads an event stream's ``schema``:
    its fields, its data JSON text of the given shape."""
    return {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"const": event},
            "id": {"type": "string", "description": "<epoch>-<seq>"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"type": "object", **data},
            },
        },
    }


STREAM_EVENT_SCHEMA = {
    "oneOf": [
        _event_schema(
            "open",
            {
                "required": ["heartbeat_seconds"],
                "properties": {"heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0}},
            },
        ),
        _event_schema(
            "change",
            {
                "required": ["changes"],
                "properties": {
                    "changes": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["topic"],
                            "properties": {"topic": {"type": "string"}},
                        },
                    }
                },
            },
        ),
        _event_schema(
            "reset",
            {"required": ["reason"], "properties": {"reason": {"type": "string"}}},
        ),
    ]
}


class FeedUnavailable(OrchError):
    http_status = 503


def event_feed(request: Request) -> EventFeed:
    feed: EventFeed = request.app.state.event_feed
    return feed


@router.get(
    "/events",
    dependencies=[allowed(Action.READ)],
    # Not FastAPI's EventSourceResponse: it takes the endpoint for a generator of its
    # own, with a fixed keep-alive period; this stream keeps its own.
    response_class=StreamingResponse,
    responses={
        200: {
            "description": STREAM_DESCRIPTION,
            "content": {"text/event-stream": {"schema": STREAM_EVENT_SCHEMA}},
        },
        503: {"description": "the database does not answer, or this daemon follows no changes"},
    },
)
async def stream_events(
    request: Request,
    orch: Engine,
    caller: Caller,
    last_event_id_header: str | None = Header(
        default=None,
        alias="Last-Event-ID",
        max_length=MAX_EVENT_ID_LENGTH,
        description="resume after this event (what an EventSource sends when it reconnects)",
    ),
    last_event_id: str | None = Query(
        default=None,
        max_length=MAX_EVENT_ID_LENGTH,
        description="resume after this event, for a first connection (the header wins)",
    ),
    max_seconds: float | None = Query(
        default=None,
        gt=0,
        le=86_400,
        description="end the stream after this long (the client resumes with Last-Event-ID)",
    ),
) -> StreamingResponse:
    """What changed, as it happens (server-sent events), resumable by event id."""
    feed = event_feed(request)
    if feed.closed:
        raise FeedUnavailable("the daemon is stopping")
    if not feed.following:
        raise FeedUnavailable("this daemon does not follow the database's notifications")
    start = feed.resume(last_event_id_header or last_event_id)
    return StreamingResponse(
        _stream(
            feed,
            start,
            heartbeat_seconds=orch.settings.events_heartbeat_seconds,
            max_seconds=_until_expiry(max_seconds, caller.expires_at, orch.clock.now()),
            token_id=None if caller.token_id is None else str(caller.token_id),
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _until_expiry(
    max_seconds: float | None, expires_at: datetime | None, now: datetime
) -> float | None:
    """The stream's length: as asked, and no longer than its token is valid (a stream
    outliving its token would go on telling what the token may no longer read; the
    client's reconnection then gets 401)."""
    if expires_at is None:
        return max_seconds
    left = max((expires_at - now).total_seconds(), 0.001)
    return left if max_seconds is None else min(max_seconds, left)


async def _stream(
    feed: EventFeed,
    start: Resumption,
    *,
    heartbeat_seconds: float,
    max_seconds: float | None,
    token_id: str | None,
) -> AsyncIterator[bytes]:
    """The stream's bytes. It ends when the feed closes (the daemon stops), at
    ``max_seconds``, or when its token is revoked (the client's reconnection then gets
    401); a client that goes is noticed by Starlette, which cancels it."""
    loop = asyncio.get_running_loop()
    ends_at = None if max_seconds is None else loop.time() + max_seconds
    opening = encode_retry(RETRY_MILLISECONDS) + encode_event(
        "open", {"heartbeat_seconds": heartbeat_seconds}, event_id=feed.event_id(start.seq)
    )
    if start.reset_reason is not None:
        opening += _reset(feed, start.seq, start.reset_reason)
    yield opening + b"".join(event.wire for event in start.events)
    position = start.events[-1].seq if start.events else start.seq
    next_beat = loop.time() + heartbeat_seconds
    while not feed.closed:
        if token_id is not None and feed.revoked(token_id):
            return
        events = feed.after(position)
        if events is None:  # this stream fell behind the buffer
            position = feed.seq
            yield _reset(feed, position, "the stream fell behind the events kept")
            next_beat = loop.time() + heartbeat_seconds
        elif events:
            position = events[-1].seq
            yield b"".join(event.wire for event in events)
            next_beat = loop.time() + heartbeat_seconds
        now = loop.time()
        if ends_at is not None and now >= ends_at:
            return
        if now >= next_beat:
            yield HEARTBEAT
            next_beat = now + heartbeat_seconds
        wake_at = next_beat if ends_at is None else min(next_beat, ends_at)
        await feed.wait_beyond(position, timeout=wake_at - now)


def _reset(feed: EventFeed, seq: int, reason: str) -> bytes:
    return encode_event("reset", {"reason": reason}, event_id=feed.event_id(seq))
