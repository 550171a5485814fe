"""The saga benchmark's participant: a minimal HTTP/1.1 service on loopback, its own process.

``POST /step/{n}`` answers 200 with ``{"step": n, "id": "<n>-<k>"}`` at once, keeping
connections alive. Idempotency is honoured minimally: the answer is remembered by
its ``Idempotency-Key`` (the last 200,000 keys), and a repeated key gets the same
answer again and is counted as a replay, so a benchmark can tell a duplicated call
from a new one. ``GET /stats`` answers the counts (requests, replays, requests per
step, requests without a key) and ``POST /stats/reset`` zeroes them.

A plain asyncio protocol, not a framework, so the participant costs the systems
under test as little CPU as possible; TCP_NODELAY is set on every accepted
connection so Nagle's algorithm never holds a reply back. On start it prints its
port on one line of stdout; it runs until terminated.

    .venv/bin/python bench/saga_participant.py [--port 0]
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict

from loopback_http import RequestProtocol, header, json_response, main

REMEMBERED_KEYS = 200_000


class Ledger:
    """What was asked, and the answer given to each idempotency key."""

    def __init__(self) -> None:
        self.answers: OrderedDict[bytes, bytes] = OrderedDict()
        self.requests = 0
        self.replays = 0
        self.without_key = 0
        self.per_step: Counter[str] = Counter()
        self.issued = 0

    def answer_step(self, step: str, key: bytes | None) -> bytes:
        self.requests += 1
        self.per_step[step] += 1
        if key is None:
            self.without_key += 1
        else:
            known = self.answers.get(key)
            if known is not None:
                self.replays += 1
                return known
        self.issued += 1
        body = b'{"step":' + step.encode() + b',"id":"' + f"{step}-{self.issued}".encode() + b'"}'
        if key is not None:
            self.answers[key] = body
            if len(self.answers) > REMEMBERED_KEYS:
                self.answers.popitem(last=False)
        return body

    def stats(self) -> bytes:
        return json.dumps(
            {
                "requests": self.requests,
                "replays": self.replays,
                "without_key": self.without_key,
                "per_step": dict(sorted(self.per_step.items())),
            }
        ).encode()

    def reset(self) -> None:
        self.requests = self.replays = self.without_key = 0
        self.per_step.clear()


class StepProtocol(RequestProtocol):
    """Answers ``/step/{n}`` through the ledger, and the ledger's statistics."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self._ledger = ledger

    def answer(self, head: bytes) -> bytes:
        request_line = head.split(b"\r\n", 1)[0]
        method, _, rest = request_line.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        if method == b"POST" and path.startswith(b"/step/"):
            step = path[len(b"/step/") :].decode(errors="replace")
            if step.isdigit():
                key = header(head, b"idempotency-key")
                return json_response(b"200 OK", self._ledger.answer_step(step, key))
        if method == b"GET" and path == b"/stats":
            return json_response(b"200 OK", self._ledger.stats())
        if method == b"POST" and path == b"/stats/reset":
            self._ledger.reset()
            return json_response(b"200 OK", b"{}")
        return json_response(b"404 Not Found", b'{"error":"not found"}')


if __name__ == "__main__":
    ledger = Ledger()
    main(__doc__.split("\n\n")[0], lambda: StepProtocol(ledger))
