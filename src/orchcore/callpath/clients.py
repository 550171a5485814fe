"""The HTTP clients of the call path: a few small connection pools instead of one big one.

httpcore's pool walks every connection it holds on each request and each response
(checking idle ones for a server-side close with a poll syscall and anyio's socket
attributes), so a request costs time in proportion to the pool's size. At 32 calls in
flight to one service that walk was the largest single cost of a saga step. Spreading
calls over several clients, each taking the call to the one with the fewest calls in
flight, keeps every pool small while the total concurrency stays the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from ssl import SSLContext

import httpx

from orchcore.callpath.network import coalesce_writes

#: How many clients share the calls; each stays small at the concurrency a daemon runs.
SHARDS = 8
_CONNECTIONS_PER_SHARD = 64
_KEEPALIVE_PER_SHARD = 16


def _client(verify: SSLContext | bool) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        verify=verify,
        limits=httpx.Limits(
            max_connections=_CONNECTIONS_PER_SHARD,
            max_keepalive_connections=_KEEPALIVE_PER_SHARD,
        ),
    )
    coalesce_writes(transport)
    return httpx.AsyncClient(
        transport=transport, follow_redirects=False, headers={"User-Agent": "orch/0.1"}
    )


class ClientShards:
    def __init__(self, *, verify: SSLContext | bool, shards: int = SHARDS) -> None:
        self._clients = [_client(verify) for _ in range(shards)]
        self._in_flight = [0] * shards

    @contextmanager
    def client(self) -> Iterator[httpx.AsyncClient]:
        """The client with the fewest calls in flight, for the length of one call."""
        shard = self._in_flight.index(min(self._in_flight))
        self._in_flight[shard] += 1
        try:
            yield self._clients[shard]
        finally:
            self._in_flight[shard] -= 1

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()
