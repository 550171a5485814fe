"""GET /api/orchestration/events against the real API on loopback (and a real daemon
process for a restart), followed by orchcore.client.events.EventStream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from orchcore import ManualClock, Orch, Settings
from orchcore.api import create_app
from orchcore.api.app import close_event_streams
from orchcore.client.events import EventStream
from orchcore.events import EventFeed
from orchcore.events.feed import LISTEN_INTERRUPTED, LISTEN_LOST
from tests.support.api import serve_asgi, token
from tests.support.daemons import DaemonProcess
from tests.support.http import free_port
from tests.support.polling import eventually
from tests.support.raw_http import RawServer, raw_server

EVENTS = "/api/orchestration/events"
SERVICE = {
    "service_version": "1.0.0",
    "service_type": "api",
    "deployment_environment": "production",
    "dependencies": [],
}


class Seen:
    """What a stream's subscribers and state handlers were told, in order."""

    def __init__(self, stream: EventStream) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.states: list[bool] = []
        stream.subscribe(self.payloads.append)
        stream.on_connection_state(self.states.append)

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [p for p in self.payloads if p.get("topic") == topic]

    def services(self) -> list[str]:
        return [p["service_name"] for p in self.of("service")]


class Served:
    def __init__(self, base_url: str, feed: EventFeed) -> None:
        self.base_url = base_url
        self.feed = feed


@contextlib.asynccontextmanager
async def served(orch: Orch) -> AsyncIterator[Served]:
    app = create_app(orch, daemon_name="test")
    async with serve_asgi(app) as base_url:
        try:
            yield Served(base_url, app.state.event_feed)
        finally:
            close_event_streams(app)  # as the daemon does before the server stops


@contextlib.asynccontextmanager
async def following(
    base_url: str, headers: dict[str, str], **options: Any
) -> AsyncIterator[tuple[EventStream, Seen]]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        stream = EventStream(client, **options)
        seen = Seen(stream)
        await stream.start()
        try:
            yield stream, seen
        finally:
            await stream.close()


async def register(orch: Orch, name: str) -> None:
    await orch.registry.register_service({**SERVICE, "service_name": name}, actor="t")


@pytest.fixture
async def api(orch: Orch) -> AsyncIterator[Served]:
    async with served(orch) as server:
        yield server


async def test_a_change_reaches_a_client_with_a_read_token(orch: Orch, api: Served) -> None:
    reader = await token(orch, "monitoring_system")
    async with following(api.base_url, reader) as (stream, seen):
        assert stream.connected and stream.last_error is None
        assert seen.states == [True]
        await register(orch, "venue")
        await eventually(lambda: seen.services() == ["venue"], message="the change")
        (change,) = seen.of("service")
        assert change["op"] == "insert"
        assert stream.last_event_id == api.feed.event_id(api.feed.seq)
    assert seen.states == [True, False]


async def test_a_client_back_with_its_last_event_id_gets_exactly_what_it_missed(
    orch: Orch, api: Served
) -> None:
    reader = await token(orch, "monitoring_system")
    async with following(api.base_url, reader) as (stream, seen):
        await register(orch, "before")
        await eventually(lambda: seen.services() == ["before"])
        last_id = stream.last_event_id
    while_away = [f"away-{n}" for n in range(5)]
    for name in while_away:
        await register(orch, name)
        # One event each (a window each), so the resume spans several events.
        await eventually(lambda n=name: n in str(api.feed.after(api.feed.seq - 1)))
    async with httpx.AsyncClient(base_url=api.base_url, headers=reader) as client:
        stream = EventStream(client, last_event_id=last_id)  # what it kept from before
        back = Seen(stream)
        await stream.start()
        try:
            await eventually(lambda: len(back.of("service")) >= len(while_away))
            await register(orch, "after")
            await eventually(lambda: "after" in back.services())
        finally:
            await stream.close()
    assert back.services() == [*while_away, "after"]  # nothing twice, nothing missed
    assert back.of("reset") == []


async def test_an_id_of_another_run_or_daemon_gets_a_reset_first(orch: Orch, api: Served) -> None:
    reader = await token(orch, "monitoring_system")
    foreign = f"{EventFeed(None).epoch}-3"
    async with (
        httpx.AsyncClient(base_url=api.base_url, headers=reader) as client,
        client.stream("GET", EVENTS, headers={"Last-Event-ID": foreign}) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cache-control"] == "no-cache"
        lines: list[str] = []
        async for line in answer.aiter_lines():
            lines.append(line)
            if line.startswith("event: reset"):
                break
    current = api.feed.event_id(api.feed.seq)
    assert lines[:6] == [
        "retry: 1000",
        "",
        f"id: {current}",
        "event: open",
        'data: {"heartbeat_seconds":5.0}',
        "",
    ]
    assert lines[6:8] == [f"id: {current}", "event: reset"]
    # The client turns it into a reset for its subscribers.
    async with httpx.AsyncClient(base_url=api.base_url, headers=reader) as client:
        stream = EventStream(client, last_event_id=foreign)
        seen = Seen(stream)
        await stream.start()
        try:
            await eventually(lambda: seen.of("reset"))
        finally:
            await stream.close()
    (reset,) = seen.of("reset")
    assert "not from this daemon's run" in reset["reason"]


async def test_the_query_parameter_resumes_and_max_seconds_ends_the_stream(
    orch: Orch, api: Served
) -> None:
    reader = await token(orch, "monitoring_system")
    await register(orch, "venue")
    await eventually(lambda: api.feed.seq == 1)
    async with httpx.AsyncClient(base_url=api.base_url, headers=reader) as client:
        answer = await client.get(
            EVENTS, params={"last_event_id": api.feed.event_id(0), "max_seconds": 0.2}
        )
    assert answer.status_code == 200
    assert f"id: {api.feed.event_id(1)}\nevent: change\n" in answer.text
    assert '"service_name":"venue"' in answer.text


async def test_heartbeats_come_at_the_configured_period(dsn: str) -> None:
    period = 0.3
    engine = await Orch.open(Settings(database_url=dsn, events_heartbeat_seconds=period))
    try:
        reader = await token(engine, "monitoring_system")
        async with (
            served(engine) as api,
            httpx.AsyncClient(base_url=api.base_url, headers=reader) as client,
            client.stream("GET", EVENTS) as answer,
        ):
            beats: list[float] = []
            async with asyncio.timeout(10):
                async for line in answer.aiter_lines():
                    if line == 'data: {"heartbeat_seconds":0.3}':
                        opened = time.monotonic()
                    if line == ": heartbeat":
                        beats.append(time.monotonic())
                        if len(beats) == 3:
                            break
    finally:
        await engine.close()
    gaps = [b - a for a, b in zip([opened, *beats], beats, strict=False)]
    # Not more often than asked (how much later depends on the machine's load).
    assert all(gap >= period * 0.9 for gap in gaps), gaps


async def test_the_client_takes_a_silent_link_for_dead_and_reconnects() -> None:
    opening = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
        b'id: x-0\nevent: open\ndata: {"heartbeat_seconds": 5}\n\n'
    )

    async def answer_then_go_silent(
        server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(opening)
        await writer.drain()
        await asyncio.Event().wait()  # the link stays up and carries nothing

    async with (
        raw_server(answer_then_go_silent) as server,
        following(f"http://127.0.0.1:{server.port}", {}, dead_after_seconds=0.5) as (
            stream,
            seen,
        ),
    ):
        assert stream.connected
        await eventually(lambda: seen.states[:2] == [True, False], message="noticed")
        assert "no byte from the daemon for 0.5 s" in (stream.last_error or "")
        await eventually(lambda: len(server.requests) >= 2 and stream.connected)
        assert b"last-event-id: x-0" in server.requests[1].lower()


async def test_no_token_is_401_and_the_client_says_so_and_asks_again_slowly(
    orch: Orch, api: Served
) -> None:
    answer = await httpx.AsyncClient(base_url=api.base_url).get(EVENTS)
    assert answer.status_code == 401
    assert answer.json()["error"] == "Unauthenticated"
    service = await token(orch, "service", "venue")
    async with httpx.AsyncClient(base_url=api.base_url, headers=service) as client:
        assert (await client.get(EVENTS)).status_code == 403
    asked: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        asked.append(request)

    async with httpx.AsyncClient(base_url=api.base_url, event_hooks={"request": [count]}) as client:
        stream = EventStream(client, refused_retry_seconds=0.3)
        await stream.start()
        try:
            assert not stream.connected
            assert (stream.last_error or "").startswith("the daemon refused the token (401)")
            await eventually(lambda: len(asked) >= 2, message="asked again")
        finally:
            await stream.close()


async def test_a_lost_listen_connection_tells_clients_to_refresh(
    orch: Orch, api: Served, dsn: str
) -> None:
    reader = await token(orch, "monitoring_system")
    async with following(api.base_url, reader) as (_stream, seen):
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'orch-listen'"
            )
        finally:
            await conn.close()
        await eventually(lambda: len(seen.of("reset")) == 2, timeout=20, message="two resets")
        assert seen.of("reset") == [
            {"topic": "reset", "reason": LISTEN_LOST},
            {"topic": "reset", "reason": LISTEN_INTERRUPTED},
        ]
        await register(orch, "venue")  # and the feed follows the new connection
        await eventually(lambda: seen.services() == ["venue"])


async def test_a_restarted_daemon_is_followed_again_after_a_reset(orch: Orch, dsn: str) -> None:
    reader = await token(orch, "monitoring_system")
    listen = f"127.0.0.1:{free_port()}"
    args = ("--listen", listen, "--no-health-checks", "--no-workflows", "--no-push")
    first = await DaemonProcess(dsn, "events-1", *args).start()
    second: DaemonProcess | None = None
    try:
        async with following(f"http://{listen}", reader) as (stream, seen):
            assert stream.connected
            await register(orch, "venue")
            await eventually(lambda: seen.services() == ["venue"])
            # A stream open must not hold the daemon's shutdown: within the 10 s the
            # daemon grants its API, far less in fact.
            assert await first.terminate(timeout=8) == 0
            await eventually(lambda: not stream.connected, message="noticed the stop")
            second = await DaemonProcess(dsn, "events-2", *args).start()
            await eventually(lambda: seen.of("reset") and stream.connected, timeout=20)
            assert "not from this daemon's run" in seen.of("reset")[0]["reason"]
            await register(orch, "payment")
            await eventually(lambda: seen.services() == ["venue", "payment"])
    finally:
        await first.ensure_stopped()
        if second is not None:
            await second.ensure_stopped()


async def test_the_openapi_document_describes_the_stream(api: Served) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        document = (await client.get("/openapi.json")).json()
    operation = document["paths"][EVENTS]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    answers = operation["responses"]
    assert {"200", "401", "403", "422", "500", "503"} <= set(answers)
    assert set(answers["200"]["content"]) == {"text/event-stream"}
    events = answers["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
    assert [e["properties"]["event"]["const"] for e in events] == ["open", "change", "reset"]
    header = [p for p in operation["parameters"] if p["in"] == "header"]
    assert [p["name"] for p in header] == ["Last-Event-ID"]


async def test_a_revoked_token_s_stream_ends_and_is_refused_again(orch: Orch, api: Served) -> None:
    secret, issued = await orch.tokens.create(name="rota", role="monitoring_system", actor="t")
    headers = {"Authorization": f"Bearer {secret}"}
    async with following(api.base_url, headers, refused_retry_seconds=60) as (stream, seen):
        assert stream.connected
        await orch.tokens.revoke(str(issued.id), actor="t")
        await eventually(lambda: seen.states == [True, False], message="the stream ended")
        await eventually(
            lambda: (stream.last_error or "").startswith("the daemon refused the token (401)")
        )


async def test_a_stream_ends_when_its_token_expires(
    orch: Orch, api: Served, clock: ManualClock
) -> None:
    secret, _ = await orch.tokens.create(
        name="rota", role="monitoring_system", actor="t", expires_in=timedelta(seconds=1)
    )
    headers = {"Authorization": f"Bearer {secret}"}
    async with following(api.base_url, headers, refused_retry_seconds=60) as (stream, seen):
        assert stream.connected
        await clock.advance(2)  # the engine's time past the expiry; the stream's second ends
        await eventually(lambda: seen.states[:2] == [True, False], message="the stream ended")
        await eventually(
            lambda: (stream.last_error or "").startswith("the daemon refused the token (401)")
        )


async def test_a_daemon_that_follows_nothing_answers_503_and_the_client_retries(
    dsn: str,
) -> None:
    engine = await Orch.open(Settings(database_url=dsn), listen=False)
    try:
        reader = await token(engine, "monitoring_system")
        async with served(engine) as api, following(api.base_url, reader) as (stream, _seen):
            assert not stream.connected
            assert stream.last_error == (
                "the daemon answered 503: this daemon does not follow the database's notifications"
            )
    finally:
        await engine.close()
