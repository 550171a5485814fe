"""A minimal HTTP/1.1 service on loopback, run in its own process by benchmarks.

Answers every request with 200 and a small JSON body, keeping connections alive,
with as little work as possible so that what a benchmark measures is the client's
side. Plain asyncio protocol; TCP_NODELAY is set on every accepted connection so
Nagle's algorithm never holds back a reply. On start it prints its port on one
line of stdout; it runs until terminated.

    .venv/bin/python bench/loopback_service.py [--port 0]
"""

from __future__ import annotations

from loopback_http import RequestProtocol, json_response, main

RESPONSE = json_response(b"200 OK", b'{"pong":true}')


class PongProtocol(RequestProtocol):
    """Every request gets the same reply."""

    def answer(self, head: bytes) -> bytes:
        return RESPONSE


if __name__ == "__main__":
    main(__doc__.split("\n\n")[0], PongProtocol)
