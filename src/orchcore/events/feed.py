"""The daemon's feed of changes: its LISTEN notifications, numbered and kept for resume.

A client of the HTTP API cannot LISTEN, so the daemon does it for it. Each event gets
an id ``<epoch>-<seq>``: the epoch is a random token of this feed, so an id a client
kept from another daemon, or from this one before a restart, is recognised as foreign
instead of being taken for a position here. The last ``capacity`` events stay in a ring
buffer; a client that comes back with an id still in it gets exactly what it missed,
any other is told to refresh in full (a *reset*).

Notifications come in bursts (a saga step commits the workflow, its steps and an
alert), so those arriving within ``coalesce_seconds`` go out as one event carrying the
distinct payloads, each once.

NOTIFY has no replay: when the daemon's own LISTEN connection drops and comes back,
whatever changed meanwhile is unknown, and the feed records a reset for every client;
it records one as the connection drops too, so clients look again at once (and find the
daemon unable to reach its database) instead of at their next slow refresh.

Timing here is the event loop's, not the engine's clock: coalescing and waiting are
about the network and the wall, and a test's manual clock must not hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from orchcore.events.sse import encode_event

if TYPE_CHECKING:
    from orchcore.db.listen import NotificationListener

#: Events kept for resume: at a busy daemon's few hundred a minute, most of an hour.
BUFFER_EVENTS = 10_000
#: Notifications within this many seconds of the first go out as one event.
COALESCE_SECONDS = 0.05
#: A burst past this many distinct payloads goes out at once, not at the window's end.
MAX_CHANGES_PER_EVENT = 500

#: Notifications that stay in the daemon: a token's revocation is for the daemons' caches
#: of verified tokens, no state a console shows, and tokens are not a READ token's to see.
PRIVATE_TOPICS = frozenset({"token"})

LISTEN_LOST = (
    "the daemon's notification connection to the database is lost: until it is back, "
    "changes are not followed (refresh, and expect the daemon to answer 503 meanwhile)"
)
LISTEN_INTERRUPTED = (
    "the daemon's notification connection to the database was lost and restored: "
    "what changed meanwhile is unknown"
)

Kind = Literal["change", "reset"]


@dataclass(frozen=True)
class FeedEvent:
    seq: int
    id: str
    kind: Kind
    changes: tuple[dict[str, Any], ...]
    reason: str | None
    #: the event as sent, encoded once for every stream
    wire: bytes


@dataclass(frozen=True)
class Resumption:
    """Where a stream starts: after ``seq``, having sent ``events`` first; with
    ``reset_reason`` set, the client must refresh in full (its id was no use)."""

    seq: int
    events: list[FeedEvent]
    reset_reason: str | None = None


class EventFeed:
    def __init__(
        self,
        listener: NotificationListener | None,
        *,
        capacity: int = BUFFER_EVENTS,
        coalesce_seconds: float = COALESCE_SECONDS,
    ) -> None:
        self.epoch = secrets.token_hex(6)
        self._listener = listener
        self._capacity = capacity
        self._coalesce_seconds = coalesce_seconds
        self._events: deque[FeedEvent] = deque(maxlen=capacity)
        self._seq = 0
        self._pending: dict[str, dict[str, Any]] = {}
        self._flush_timer: asyncio.TimerHandle | None = None
        self._listen_lost = False
        # Few in a daemon's life: kept for good, so a stream learns even late.
        self._revoked_tokens: set[str] = set()
        self._woken = asyncio.Event()
        self.closed = False

    @property
    def following(self) -> bool:
        """Whether there is anything to follow (an engine opened without LISTEN has not)."""
        return self._listener is not None and not self.closed

    @property
    def seq(self) -> int:
        return self._seq

    def revoked(self, token_id: str) -> bool:
        """Whether the token was revoked since this feed began (its streams must end)."""
        return token_id in self._revoked_tokens

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def open(self) -> None:
        if self._listener is not None:
            self._listener.subscribe(self.on_notification)
            self._listener.on_connection_state(self.on_listen_state)

    def close(self) -> None:
        """Stop following, and end every stream (they watch ``closed``)."""
        if self.closed:
            return
        self.closed = True
        if self._listener is not None:
            self._listener.unsubscribe(self.on_notification)
            self._listener.remove_connection_state_handler(self.on_listen_state)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._wake()

    # -- in ------------------------------------------------------------------------

    def on_notification(self, payload: dict[str, Any]) -> None:
        if payload.get("topic") in PRIVATE_TOPICS:
            if payload.get("topic") == "token" and payload.get("op") == "revoke":
                self._revoked_tokens.add(str(payload.get("id")))
                self._wake()  # a stream under that token ends
            return
        key = json.dumps(payload, sort_keys=True, default=str)
        self._pending.setdefault(key, payload)
        if len(self._pending) >= MAX_CHANGES_PER_EVENT:
            self.flush()
        elif self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(self._coalesce_seconds, self.flush)

    def on_listen_state(self, connected: bool) -> None:
        if not connected:
            if not self._listen_lost:
                # Told at once, not at a client's next slow refresh: a console refetches,
                # finds the daemon cannot reach its database, and says so in its banner.
                self._listen_lost = True
                self.flush()
                self.record_reset(LISTEN_LOST)
            return
        if self._listen_lost:
            self._listen_lost = False
            self.flush()
            self.record_reset(LISTEN_INTERRUPTED)

    def flush(self) -> None:
        """Send what the coalescing window holds now."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._pending and not self.closed:
            changes = tuple(self._pending.values())
            self._pending = {}
            self._record("change", changes, None)

    def record_reset(self, reason: str) -> None:
        self._record("reset", (), reason)

    def _record(self, kind: Kind, changes: tuple[dict[str, Any], ...], reason: str | None) -> None:
        self._seq += 1
        event_id = self.event_id(self._seq)
        data: dict[str, Any] = (
            {"changes": list(changes)} if kind == "change" else {"reason": reason}
        )
        wire = encode_event(kind, data, event_id=event_id)
        self._events.append(FeedEvent(self._seq, event_id, kind, changes, reason, wire))
        self._wake()

    def _wake(self) -> None:
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    # -- out -----------------------------------------------------------------------

    def resume(self, last_event_id: str | None) -> Resumption:
        """Where a stream that last saw ``last_event_id`` starts (None: from now)."""
        if last_event_id is None:
            return Resumption(self._seq, [])
        seq = self._seq_of(last_event_id)
        if seq is None:
            why = (
                f"event id {last_event_id!r} is not from this daemon's run "
                "(it restarted, or the id is another daemon's)"
            )
        elif seq > self._seq:
            why = f"event id {last_event_id!r} was never sent by this daemon"
        elif (missed := self.after(seq)) is None:
            why = f"event id {last_event_id!r} is older than the {self._capacity} events kept"
        else:
            return Resumption(seq, missed)
        return Resumption(self._seq, [], reset_reason=why)

    def after(self, seq: int) -> list[FeedEvent] | None:
        """The events after ``seq``, oldest first; None when some were dropped already."""
        count = self._seq - seq
        if count <= 0:
            return []
        if count > len(self._events):
            return None
        newest_first = itertools.islice(reversed(self._events), count)
        return list(newest_first)[::-1]

    async def wait_beyond(self, seq: int, timeout: float) -> None:
        """Return once there is an event after ``seq``, the feed closes, or ``timeout``."""
        if self._seq > seq or self.closed or timeout <= 0:
            return
        woken = self._woken
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await woken.wait()

    def _seq_of(self, event_id: str) -> int | None:
        epoch, _, number = event_id.strip().rpartition("-")
        if epoch != self.epoch or not (number.isascii() and number.isdigit()):
            return None
        return int(number)
