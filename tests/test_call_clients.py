"""The call path spreads calls over small connection pools (see orchcore.callpath.clients)."""

from __future__ import annotations

import asyncio

from orchcore.callpath.clients import ClientShards
from tests.support.http import SwitchableServer


async def test_calls_in_flight_go_to_the_least_busy_client() -> None:
    shards = ClientShards(verify=True, shards=3)
    try:
        with shards.client() as first, shards.client() as second, shards.client() as third:
            assert len({id(first), id(second), id(third)}) == 3
            with shards.client() as fourth:
                assert fourth in (first, second, third)
        with shards.client() as again:  # all idle once more: the first is least busy
            assert again is first
    finally:
        await shards.close()


async def test_concurrent_calls_keep_each_pool_small(http_server: SwitchableServer) -> None:
    shards = ClientShards(verify=True, shards=4)
    gate = asyncio.Event()
    in_flight = 0

    async def call() -> int:
        nonlocal in_flight
        with shards.client() as client:
            in_flight += 1
            if in_flight == 8:
                gate.set()
            await gate.wait()  # all eight in flight at once
            response = await client.get(f"http://127.0.0.1:{http_server.port}/ok")
            return response.status_code

    try:
        assert await asyncio.gather(*(call() for _ in range(8))) == [200] * 8
        pools = [client._transport._pool for client in shards._clients]  # type: ignore[attr-defined]
        assert [len(pool.connections) for pool in pools] == [2, 2, 2, 2]
    finally:
        await shards.close()
