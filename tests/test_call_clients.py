"""The call path's HTTP clients: small pools, one write a request, closed connections seen."""

from __future__ import annotations

import asyncio

import httpcore

from orchcore.callpath.clients import ClientShards
from orchcore.callpath.network import _CoalescingStream
from tests.support.http import SwitchableServer
from tests.support.polling import eventually


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


class _RecordingStream(httpcore.AsyncNetworkStream):
    """Below the layer under test: what reaches the socket, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b""

    async def aclose(self) -> None:
        return None


async def test_a_request_leaves_in_one_write() -> None:
    inner = _RecordingStream()
    stream = _CoalescingStream(inner)
    await stream.write(b"POST /orders HTTP/1.1\r\nContent-Length: 2\r\n\r\n")
    await stream.write(b"{}")
    await stream.write(b"")  # the end of a body of known length writes nothing
    assert inner.writes == []  # nothing sent before the answer is read
    await stream.read(65536)
    assert inner.writes == [b"POST /orders HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"]


async def test_a_connection_the_service_closed_is_not_reused() -> None:
    # Idle connections are asked whether the service closed them; a wrong answer
    # sends the next call down a dead connection ("server disconnected").
    connections: list[asyncio.StreamWriter] = []
    close_now = asyncio.Event()

    async def answer_once_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connections.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await close_now.wait()
        writer.close()  # the service ends the keep-alive connection

    server = await asyncio.start_server(answer_once_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    shards = ClientShards(verify=True, shards=1)
    try:
        with shards.client() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
            pool = client._transport._pool  # type: ignore[attr-defined]
            stream = pool.connections[0]._connection._network_stream
            assert stream.get_extra_info("is_readable") is False  # open and quiet
            close_now.set()

            def closed_seen() -> bool:
                return bool(stream.get_extra_info("is_readable"))

            await eventually(closed_seen, message="the service's close")
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
        assert len(connections) == 2
    finally:
        await shards.close()
        server.close()
        await server.wait_closed()
