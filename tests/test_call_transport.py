"""The call path's transport (over http; https in test_https_transport.py) against real
loopback servers that misbehave on cue, and what the call path makes of each failure:
whether the service may have acted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from orchcore import ManualClock, Orch
from orchcore.callpath import CallFailed, ServiceCaller
from orchcore.callpath.transport import HttpTransport, PoolStats
from orchcore.resilience.retry import RetryPolicy
from tests.support.clockwork import run_driving_clock
from tests.support.polling import eventually
from tests.support.raw_http import RawServer, keep_alive_ok, once_a_connection, raw_server
from tests.support.registry import mark


async def silent_on_the_first_connection(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The first connection gets its request read and never answered; later ones are served."""
    if len(server.connections) == 1:
        await server.read_request(reader)
        await reader.read()
        return
    await keep_alive_ok(server, reader, writer)


@asynccontextmanager
async def client(**limits: float) -> AsyncIterator[httpx.AsyncClient]:
    transport = HttpTransport(**limits)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as http:
        yield http


async def test_requests_reuse_one_keep_alive_connection_and_carry_their_body() -> None:
    async with raw_server(keep_alive_ok) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/orders?x=1"
        first = await http.post(url, json={"venue": "barn"})
        second = await http.get(url)
    assert first.status_code == 200 and first.json() == {"venue": "barn"}
    assert first.reason_phrase == "OK" and first.http_version == "HTTP/1.1"
    assert second.content == b"ok"
    assert len(server.connections) == 1
    post = server.requests[0]
    assert post.startswith(b"POST /orders?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in post and b"\r\nContent-Length: 16\r\n" in post
    assert server.requests[1].startswith(b"GET /orders?x=1 HTTP/1.1\r\n")
    assert b"Content-Length" not in server.requests[1]


async def test_a_streamed_request_body_goes_out_with_its_length() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"deposit"
        yield b"=100"

    async with raw_server(keep_alive_ok) as server, client() as http:
        response = await http.post(f"http://127.0.0.1:{server.port}/pay", content=chunks())
    assert response.content == b"deposit=100"
    assert b"Transfer-Encoding" not in server.requests[0]
    assert b"\r\nContent-Length: 11\r\n" in server.requests[0]


async def test_concurrent_calls_stay_within_the_connection_cap() -> None:
    gate = asyncio.Event()
    arrived = 0

    async def answer_when_three_arrived(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal arrived
        while True:
            await server.read_request(reader)
            arrived += 1
            if arrived >= 3:
                gate.set()
            await gate.wait()
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with raw_server(answer_when_three_arrived) as server, client(max_connections=3) as http:
        url = f"http://127.0.0.1:{server.port}/"
        statuses = await asyncio.gather(*(http.get(url) for _ in range(12)))
    assert [r.status_code for r in statuses] == [204] * 12
    assert len(server.connections) == 3


async def test_waiting_for_a_connection_past_the_pool_timeout_raises_pool_timeout() -> None:
    release = asyncio.Event()

    async def hold(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(hold) as server, client(max_connections=1) as http:
        url = f"http://127.0.0.1:{server.port}/"
        busy = asyncio.create_task(http.get(url))
        await eventually(lambda: len(server.requests) == 1, message="the first request")
        with pytest.raises(httpx.PoolTimeout, match=r"no connection free within 0\.05s"):
            await http.get(url, timeout=httpx.Timeout(5.0, pool=0.05))
        release.set()
        assert (await busy).status_code == 200


async def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    async def chunked_then_close_delimited(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"5\r\nhello\r\n")
        await writer.drain()
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async with raw_server(chunked_then_close_delimited) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/"
        assert (await http.get(url)).content == b"hello world"
        assert (await http.get(url)).content == b"until the end"


async def test_interim_answers_are_skipped_and_head_answers_have_no_body() -> None:
    async def early_hints(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(early_hints) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/"
        created = await http.post(url, content=b"x")
        assert (created.status_code, created.content) == (201, b"done")
        assert "link" not in created.headers
        head = await http.head(url)
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "999")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"this is not http\r\n\r\n", "malformed HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection before"),
        (b"", "closed the connection before"),
    ],
    ids=["garbage", "cut-mid-body", "closed-unanswered"],
)
async def test_a_broken_answer_raises_a_protocol_error_and_the_connection_is_dropped(
    answer: bytes, error: str
) -> None:
    async def broken_then_fine(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if len(server.connections) == 1:
            await server.read_request(reader)
            writer.write(answer)
            await writer.drain()
            writer.close()
            return
        await keep_alive_ok(server, reader, writer)

    async with raw_server(broken_then_fine) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/"
        with pytest.raises(httpx.RemoteProtocolError, match=error):
            await http.get(url)
        assert (await http.get(url)).status_code == 200
    assert len(server.connections) == 2


async def test_a_silent_service_times_out_on_read_and_its_connection_is_not_reused() -> None:
    async with raw_server(silent_on_the_first_connection) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/"
        with pytest.raises(httpx.ReadTimeout, match=r"no response data for 0\.1s"):
            await http.get(url, timeout=0.1)
        assert (await http.get(url)).status_code == 200
    assert len(server.connections) == 2


async def test_the_read_timeout_counts_silence_not_the_whole_answer() -> None:
    async def trickle(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"trickl":  # 6 x 60 ms: longer than the 0.25 s timeout in all
            await asyncio.sleep(0.06)
            writer.write(bytes([byte]))
            await writer.drain()
        await reader.read()

    async with raw_server(trickle) as server, client() as http:
        response = await http.get(f"http://127.0.0.1:{server.port}/", timeout=0.25)
    assert response.content == b"trickl"


async def test_a_refused_connection_raises_connect_error() -> None:
    async with raw_server(keep_alive_ok) as server:
        port = server.port
    async with client() as http:
        with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_a_connection_the_service_closed_while_idle_is_not_reused() -> None:
    close_now = asyncio.Event()

    async def answer_once_then_close(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await close_now.wait()
        writer.close()  # the service ends the keep-alive connection

    async with raw_server(answer_once_then_close) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/"
        transport = http._transport
        assert isinstance(transport, HttpTransport)
        assert (await http.get(url)).status_code == 200
        (idle,) = transport._pools[("http", "127.0.0.1", server.port)].idle
        close_now.set()
        await eventually(lambda: idle.closed, message="the service's close seen")
        assert (await http.get(url)).status_code == 200
    assert len(server.connections) == 2


def stats(http: httpx.AsyncClient, port: int) -> PoolStats:
    transport = http._transport
    assert isinstance(transport, HttpTransport)
    return transport.stats()[f"http://127.0.0.1:{port}"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
async def test_an_idempotent_request_on_a_connection_closed_at_reuse_goes_again_on_a_new_one(
    method: str,
) -> None:
    async with raw_server(once_a_connection) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/venues/barn"
        assert (await http.get(url)).status_code == 200
        again = await http.request(method, url)
        assert again.status_code == 200
        figures = stats(http, server.port)
        assert (figures.opened, figures.requests, figures.reused, figures.resent) == (2, 3, 1, 1)
    # the service saw it twice: on the connection it closed, then on the new one
    verb = method.encode()
    assert [r.split(b" ", 1)[0] for r in server.requests] == [b"GET", verb, verb]
    assert len(server.connections) == 2


async def test_a_post_on_a_connection_closed_at_reuse_is_not_sent_again() -> None:
    async with raw_server(once_a_connection) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/charges"
        assert (await http.post(url, content=b"first")).status_code == 200
        with pytest.raises(
            httpx.RemoteProtocolError,
            match="closed a kept-alive connection as the request went out; not sent again: "
            "POST is not idempotent and the request has no Idempotency-Key",
        ):
            await http.post(url, content=b"second")
        assert stats(http, server.port).resent == 0
    assert len(server.requests) == 2 and len(server.connections) == 1


async def test_a_post_with_an_idempotency_key_is_sent_again_on_a_new_connection() -> None:
    async with raw_server(once_a_connection) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/charges"
        assert (await http.post(url, content=b"first")).status_code == 200
        again = await http.post(url, content=b"deposit", headers={"Idempotency-Key": "k-1"})
        assert again.content == b"deposit"
        assert stats(http, server.port).resent == 1
    assert len(server.connections) == 2
    assert all(b"\r\nIdempotency-Key: k-1\r\n" in r for r in server.requests[1:])


async def test_a_new_connection_closed_unanswered_is_not_sent_again() -> None:
    async def read_then_close(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)

    async with raw_server(read_then_close) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="before a complete response"):
            await http.get(f"http://127.0.0.1:{server.port}/")
        assert stats(http, server.port).resent == 0
    assert len(server.connections) == 1


async def test_many_calls_to_a_slow_service_never_open_more_sockets_than_the_cap() -> None:
    async def slow(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            await server.read_request(reader)
            await asyncio.sleep(0.005)  # the service's own work, not a test's wait
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with raw_server(slow) as server, client(max_connections=4) as http:
        url = f"http://127.0.0.1:{server.port}/"
        answers = await asyncio.gather(*(http.get(url) for _ in range(60)))
        assert stats(http, server.port).opened == 4
    assert [a.status_code for a in answers] == [204] * 60
    assert len(server.connections) == 4 and server.most_open == 4


async def test_connections_closed_at_reuse_and_resent_keep_within_the_cap() -> None:
    """Every connection serves one request: each later one is resent on a new
    connection, which must wait its turn like any other."""
    async with raw_server(once_a_connection) as server, client(max_connections=3) as http:
        url = f"http://127.0.0.1:{server.port}/"
        answers = await asyncio.gather(*(http.get(url) for _ in range(30)))
        figures = stats(http, server.port)
    assert [a.status_code for a in answers] == [200] * 30
    assert server.most_open <= 3
    assert figures.opened == len(server.connections) and figures.resent > 0


async def test_a_cancelled_call_closes_its_connection() -> None:
    async with (
        raw_server(silent_on_the_first_connection) as server,
        client(max_connections=1) as http,
    ):
        url = f"http://127.0.0.1:{server.port}/"
        call = asyncio.create_task(http.get(url))
        await eventually(lambda: len(server.requests) == 1, message="the request")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # the cap of one is free again, on a fresh connection
        assert (await http.get(url)).status_code == 200
    assert len(server.connections) == 2


async def test_only_http_and_https_are_spoken() -> None:
    async with client() as http:
        with pytest.raises(httpx.UnsupportedProtocol, match="not ftp://"):
            await http.get("ftp://127.0.0.1:1/")


def test_the_transport_runs_on_uvloop_as_the_daemon_does() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def two_calls() -> list[int]:
        async with raw_server(keep_alive_ok) as server, client() as http:
            url = f"http://127.0.0.1:{server.port}/"
            statuses = [(await http.post(url, json={"n": n})).status_code for n in range(2)]
            assert len(server.connections) == 1
            return statuses

    assert uvloop.run(two_calls()) == [200, 200]


# -- through the call path: may the service have acted? --------------------------------------

ONCE = RetryPolicy.single_attempt()


async def read_then_hang_up(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The request is read whole, then the connection closes without an answer."""
    await server.read_request(reader)


async def venue_at(orch: Orch, port: int) -> ServiceCaller:
    await orch.registry.register_service(
        {"service_name": "venue", "service_type": "api", "deployment_environment": "staging"},
        actor="t",
    )
    await orch.registry.register_instance(
        "venue",
        {"instance_id": "venue-raw", "ip_address": "127.0.0.1", "port": port, "version": "1"},
        actor="t",
    )
    await mark(orch, "venue-raw", "healthy")
    await orch.discovery.refresh_all()
    return await orch.caller()


async def test_a_request_read_and_never_answered_has_an_unknown_outcome(orch: Orch) -> None:
    async with raw_server(silent_on_the_first_connection) as server:
        caller = await venue_at(orch, server.port)
        with pytest.raises(
            CallFailed, match=r"timed out after 0\.2s awaiting the answer"
        ) as caught:
            await caller.call(
                "orch", "venue", "/charges", json={"cents": 100}, timeout=0.2, retry=ONCE
            )
    assert len(server.requests) == 1  # it did arrive
    assert caught.value.outcome_unknown
    assert caught.value.attempts[0].outcome_unknown
    assert caught.value.to_dict()["outcome_unknown"] is True


async def test_a_connection_cut_after_the_request_has_an_unknown_outcome(orch: Orch) -> None:
    async with raw_server(read_then_hang_up) as server:
        caller = await venue_at(orch, server.port)
        with pytest.raises(CallFailed, match="RemoteProtocolError") as caught:
            await caller.call("orch", "venue", "/charges", json={}, retry=ONCE)
    assert caught.value.outcome_unknown


async def test_a_refused_connection_is_known_not_to_have_reached_the_service(orch: Orch) -> None:
    async with raw_server(keep_alive_ok) as server:
        port = server.port
    caller = await venue_at(orch, port)  # the port is closed again
    with pytest.raises(CallFailed, match="connection failed") as caught:
        await caller.call("orch", "venue", "/charges", json={}, retry=ONCE)
    assert not caught.value.outcome_unknown
    assert caught.value.to_dict()["attempts"][0]["outcome_unknown"] is False


async def test_an_answered_attempt_is_not_unknown(orch: Orch) -> None:
    async with raw_server(keep_alive_ok) as server:
        caller = await venue_at(orch, server.port)
        result = await caller.call("orch", "venue", "/charges", json={"n": 1}, retry=ONCE)
    assert [a.outcome_unknown for a in result.attempts] == [False]


async def test_a_breaker_refusing_the_retry_keeps_the_first_attempts_unknown_outcome(
    orch: Orch, clock: ManualClock
) -> None:
    await orch.breakers.create(
        {"service_name": "orch", "target_service": "venue", "failure_threshold": 1},
        actor="t",
    )
    twice = RetryPolicy(max_attempts=2, jitter=0)
    async with raw_server(read_then_hang_up) as server:
        caller = await venue_at(orch, server.port)
        with pytest.raises(CallFailed, match="failed after 2 attempts: circuit breaker") as caught:
            await run_driving_clock(
                clock, caller.call("orch", "venue", "/charges", method="GET", retry=twice)
            )
    first, refused = caught.value.attempts
    assert (first.outcome_unknown, refused.outcome_unknown) == (True, False)
    assert refused.instance_id is None and "is open" in (refused.error or "")
    assert caught.value.outcome_unknown
    assert len(server.requests) == 1  # the refused retry sent nothing


async def test_calls_go_straight_to_the_instance_whatever_the_proxy_variables_say(
    orch: Orch, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxied.append(await reader.read(100))
        writer.close()

    listener = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy_url)
        monkeypatch.setenv(name.lower(), proxy_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        async with raw_server(keep_alive_ok) as server:
            url = f"http://127.0.0.1:{server.port}/"
            async with httpx.AsyncClient() as plain:  # the variables are in force ...
                with pytest.raises(httpx.HTTPError):
                    await plain.get(url)
            assert proxied and not server.requests
            proxied.clear()
            caller = await venue_at(orch, server.port)  # ... and orch's calls ignore them
            result = await caller.call("orch", "venue", "/ping", method="GET", retry=ONCE)
    finally:
        listener.close()
    assert result.status_code == 200 and len(server.requests) == 1
    assert proxied == []
