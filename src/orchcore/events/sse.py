"""The server-sent-events wire format (WHATWG HTML, "server-sent events"): writing an
event, and reading a stream back into events, for the daemon and its clients alike.

Kept free of any HTTP library: the daemon writes bytes into a streaming response, a
client feeds the lines it reads into :class:`SseParser`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: A comment line: no event for an EventSource, but bytes on the wire, so a client sees
#: the link is alive.
HEARTBEAT = b": heartbeat\n\n"


def encode_event(event: str, data: Any, *, event_id: str | None = None) -> bytes:
    """One event: ``data`` as JSON on one ``data:`` line (JSON has no raw newline)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'), default=str)}")
    return ("\n".join(lines) + "\n\n").encode()


def encode_retry(milliseconds: int) -> bytes:
    """How long an EventSource waits before it reconnects, for the rest of the stream."""
    return f"retry: {milliseconds}\n\n".encode()


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (``message`` when none was named), its data
    lines joined by newlines, and the stream's last event id at that point."""

    event: str
    data: str
    last_event_id: str | None


class SseParser:
    """Lines in, events out, as the standard's parsing rules say: ``data`` lines
    accumulate, a blank line dispatches, a comment is ignored, ``id`` sticks across
    events (one holding NUL is ignored), ``retry`` takes digits only, an event with no
    data is not dispatched (its id still counts)."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_milliseconds: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed_line(self, line: str) -> SseEvent | None:
        """Take one line (without its line ending); an event when the line ends one."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry" and value.isdigit():
            self.retry_milliseconds = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent(event or "message", "\n".join(data), self.last_event_id)


class SseLineReader:
    """Text chunks in, lines out: a stream's lines end in CRLF, LF or CR, and a chunk may
    end anywhere, even between the CR and LF of one line ending."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        buffer = self._buffer + text
        lines: list[str] = []
        start = 0
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if lf == -1 or (cr != -1 and cr < lf):
                if cr == len(buffer) - 1:
                    break  # an LF may follow in the next chunk: wait for it
                lines.append(buffer[start:cr])
                start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                lines.append(buffer[start:lf])
                start = lf + 1
        self._buffer = buffer[start:]
        return lines
