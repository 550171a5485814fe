"""The daemon's event stream (``GET /api/orchestration/events``) followed by a client:
what :class:`~orchcore.db.listen.NotificationListener` is to a face that holds the
database, over HTTP with a token.

Handlers get each changed payload (a dict naming its ``topic``), as from LISTEN, and
``{"topic": "reset", "reason": ...}`` when the daemon cannot say what changed (the
client was away too long, the daemon restarted, or its own LISTEN connection was
interrupted): refresh everything then.

The stream is resumed after the last event seen (``Last-Event-ID``), so a reconnect to
the same daemon misses nothing. A link that carries no byte for ``dead_after_seconds``
(by default three of the daemon's heartbeat periods) is taken for dead and reconnected.

A token the daemon refuses (401, 403) is not retried in a fast loop: ``last_error``
says so, and the stream asks again every ``refused_retry_seconds`` (30 s), since a
daemon whose database was briefly unable to confirm a token, or an operator who
re-issued a role, lets the same client in again without a restart.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx

from orchcore.events.sse import SseEvent, SseLineReader, SseParser

log = logging.getLogger("orch.client.events")

EVENTS_PATH = "/api/orchestration/events"
#: Until the daemon names its heartbeat period (its ``open`` event): its default.
DEFAULT_HEARTBEAT_SECONDS = 5.0
#: Heartbeat periods without a byte before the link counts as dead.
DEAD_AFTER_HEARTBEATS = 3
CONNECT_TIMEOUT_SECONDS = 10.0
FIRST_BACKOFF_SECONDS = 0.25
LONGEST_BACKOFF_SECONDS = 5.0
REFUSED_RETRY_SECONDS = 30.0

Handler = Callable[[dict[str, Any]], None]
StateHandler = Callable[[bool], None]


class StreamRefused(Exception):
    """The daemon refused the token: retrying at once would be refused the same."""


class DeadLink(Exception):
    pass


class EventStream:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        path: str = EVENTS_PATH,
        dead_after_seconds: float | None = None,
        refused_retry_seconds: float = REFUSED_RETRY_SECONDS,
        last_event_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``last_event_id``: resume after this event (one kept from an earlier stream);
        None starts from now."""
        self._client = client
        self._path = path
        self._dead_after = dead_after_seconds
        self._heartbeat = DEFAULT_HEARTBEAT_SECONDS
        self._refused_retry = refused_retry_seconds
        self._rng = rng or random.Random()
        self._handlers: list[Handler] = []
        self._state_handlers: list[StateHandler] = []
        self._parser = SseParser()
        self._parser.last_event_id = last_event_id
        self._task: asyncio.Task[None] | None = None
        self._first_outcome = asyncio.Event()
        self._up = asyncio.Event()
        self.connected = False
        self.last_error: str | None = None

    # -- the console's interface (as NotificationListener's) -------------------------

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def unsubscribe(self, handler: Handler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)

    def on_connection_state(self, handler: StateHandler) -> None:
        self._state_handlers.append(handler)

    def remove_connection_state_handler(self, handler: StateHandler) -> None:
        if handler in self._state_handlers:
            self._state_handlers.remove(handler)

    @property
    def last_event_id(self) -> str | None:
        return self._parser.last_event_id

    @property
    def dead_after_seconds(self) -> float:
        if self._dead_after is not None:
            return self._dead_after
        return DEAD_AFTER_HEARTBEATS * self._heartbeat

    async def start(self) -> None:
        """Follow the stream in the background, having waited for the first attempt's
        outcome: once connected, every change after this call is delivered. It never
        raises; ``connected`` and ``last_error`` tell how it went."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow_forever(), name="orch-event-stream")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS + 1):
                await self._first_outcome.wait()

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_connected(False)

    async def wait_connected(self, timeout: float) -> bool:
        """Whether the stream is (or gets) connected within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._up.wait()
        return self.connected

    # -- following -------------------------------------------------------------------

    async def _follow_forever(self) -> None:
        failures = 0
        while True:
            try:
                opened = await self._follow_once()
                self.last_error = "the daemon ended the stream"
                failures = 0 if opened else failures + 1
                delay = self._backoff(failures)
            except StreamRefused as refused:
                self.last_error = str(refused)
                delay = self._refused_retry
            except (httpx.HTTPError, DeadLink, OSError) as exc:
                self.last_error = _describe(exc)
                failures += 1
                delay = self._backoff(failures)
            except Exception as exc:
                # A fault of our own (a malformed answer, say) must not end the task: a
                # stream that silently stopped would leave the console stale for good.
                log.exception("event stream failed; starting over")
                self.last_error = _describe(exc)
                failures += 1
                delay = self._backoff(failures)
            self._set_connected(False)
            self._first_outcome.set()
            log.info("event stream down (%s); retrying in %.2f s", self.last_error, delay)
            await asyncio.sleep(delay)

    async def _follow_once(self) -> bool:
        """Read one stream until it ends; whether it opened."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._parser.last_event_id:
            headers["Last-Event-ID"] = self._parser.last_event_id
        # The read timeout is ours (a deadline moved on every chunk), not httpx's.
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS)
        async with self._client.stream(
            "GET", self._path, headers=headers, timeout=timeout
        ) as response:
            if response.status_code in (401, 403):
                await response.aread()
                raise StreamRefused(_refusal(response))
            if response.status_code != 200:
                await response.aread()
                raise httpx.HTTPStatusError(
                    _refusal(response), request=response.request, response=response
                )
            return await self._read(response)

    async def _read(self, response: httpx.Response) -> bool:
        self._parser = _continuing(self._parser)
        lines = SseLineReader()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        opened = False
        chunks = response.aiter_bytes()
        while True:
            try:
                async with asyncio.timeout(self.dead_after_seconds):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return opened
            except TimeoutError:
                raise DeadLink(
                    f"no byte from the daemon for {self.dead_after_seconds:g} s"
                ) from None
            for line in lines.feed(decoder.decode(chunk)):
                event = self._parser.feed_line(line)
                if event is not None:
                    opened = self._take(event) or opened

    def _take(self, event: SseEvent) -> bool:
        """Act on one event; whether it was the stream's opening."""
        try:
            data = json.loads(event.data)
        except ValueError:
            log.warning("ignoring an event whose data is not JSON: %r", event.data[:200])
            return False
        if event.event == "open":
            heartbeat = data.get("heartbeat_seconds") if isinstance(data, dict) else None
            if isinstance(heartbeat, int | float) and heartbeat > 0:
                self._heartbeat = float(heartbeat)
            self.last_error = None
            self._set_connected(True)
            self._first_outcome.set()
            return True
        if event.event == "change" and isinstance(data, dict):
            for payload in data.get("changes", []):
                if isinstance(payload, dict):
                    self._dispatch(payload)
        elif event.event == "reset":
            reason = data.get("reason") if isinstance(data, dict) else None
            self._dispatch({"topic": "reset", "reason": reason or "the daemon asked"})
        return False

    def _dispatch(self, payload: dict[str, Any]) -> None:
        for handler in list(self._handlers):
            try:
                handler(payload)
            except Exception:
                log.exception("event handler failed")

    def _set_connected(self, value: bool) -> None:
        if value != self.connected:
            self.connected = value
            if value:
                self._up.set()
            else:
                self._up.clear()
            for handler in list(self._state_handlers):
                try:
                    handler(value)
                except Exception:
                    log.exception("connection state handler failed")

    def _backoff(self, failures: int) -> float:
        """Doubling from a quarter second to five, with jitter so clients of a restarted
        daemon do not all come back in the same instant."""
        if failures <= 0:
            return FIRST_BACKOFF_SECONDS
        ceiling = min(LONGEST_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2.0 ** (failures - 1))
        return ceiling * self._rng.uniform(0.5, 1.0)


def _continuing(parser: SseParser) -> SseParser:
    """A parser for a new stream that remembers where the last one was."""
    fresh = SseParser()
    fresh.last_event_id = parser.last_event_id
    return fresh


def _refusal(response: httpx.Response) -> str:
    message = ""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            message = str(body.get("message", ""))
    code = response.status_code
    if code in (401, 403):
        said = f": {message}" if message else ""
        return f"the daemon refused the token ({code}){said}"
    return f"the daemon answered {code}" + (f": {message}" if message else "")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return str(exc.args[0]) if exc.args else str(exc)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"cannot reach the daemon: {text}"
    return text
