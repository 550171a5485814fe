"""The event feed's numbering, resume and coalescing, and the SSE wire format, without a
database: the feed is driven as its listener would drive it."""

from __future__ import annotations

import asyncio
import json

from orchcore.events import EventFeed
from orchcore.events.feed import LISTEN_INTERRUPTED, LISTEN_LOST
from orchcore.events.sse import SseEvent, SseLineReader, SseParser, encode_event
from tests.support.polling import eventually


def parse(text: str) -> tuple[list[SseEvent], SseParser]:
    parser, reader = SseParser(), SseLineReader()
    events = []
    for line in reader.feed(text):
        if (event := parser.feed_line(line)) is not None:
            events.append(event)
    return events, parser


def test_the_parser_follows_the_standard() -> None:
    events, parser = parse(
        ": a comment\n"
        "retry: 1500\n"
        'id: e-1\nevent: change\ndata: {"a":\ndata: 1}\n\n'
        "data:no space\n\n"  # no event named: a "message"; the id sticks
        "id: e-2\n\n"  # no data: nothing dispatched, but the id counts
        "retry: soon\n"  # not digits: ignored
        "id: bad\0id\n"  # holds NUL: ignored
        "event: reset\ndata: {}\n\n"
    )
    assert events == [
        SseEvent("change", '{"a":\n1}', "e-1"),
        SseEvent("message", "no space", "e-1"),
        SseEvent("reset", "{}", "e-2"),
    ]
    assert parser.retry_milliseconds == 1500
    assert parser.last_event_id == "e-2"


def test_lines_end_in_crlf_lf_or_cr_even_split_across_chunks() -> None:
    reader = SseLineReader()
    assert reader.feed("a\r") == []  # an LF may follow
    assert reader.feed("\nb\rc\n") == ["a", "b", "c"]
    assert reader.feed("d") == []
    assert reader.feed("\r\r\n") == ["d", ""]


def test_an_encoded_event_reads_back() -> None:
    wire = encode_event("change", {"changes": [{"topic": "breaker", "x": "a\nb"}]}, event_id="e-7")
    events, _ = parse(wire.decode())
    assert [(e.event, json.loads(e.data), e.last_event_id) for e in events] == [
        ("change", {"changes": [{"topic": "breaker", "x": "a\nb"}]}, "e-7")
    ]


async def test_a_burst_goes_out_as_one_event_with_each_payload_once() -> None:
    feed = EventFeed(None, coalesce_seconds=0.05)
    feed.on_notification({"topic": "workflow", "id": 1})
    feed.on_notification({"topic": "alert", "id": 2})
    feed.on_notification({"id": 1, "topic": "workflow"})  # the same payload again
    feed.on_notification({"topic": "token", "op": "revoke", "id": 3})  # the daemons' own
    assert feed.seq == 0  # held for the window
    await eventually(lambda: feed.seq == 1)
    assert feed.revoked("3")  # not sent, but the token's streams end
    (event,) = feed.after(0) or []
    assert event.kind == "change"
    assert event.changes == ({"topic": "workflow", "id": 1}, {"topic": "alert", "id": 2})
    assert event.id == f"{feed.epoch}-1"
    feed.on_notification({"topic": "workflow", "id": 1})  # a later window: sent again
    await eventually(lambda: feed.seq == 2)


async def test_a_stream_resumes_strictly_after_an_id_it_was_sent() -> None:
    feed = EventFeed(None, capacity=3)
    for n in range(5):
        feed.on_notification({"topic": "service", "n": n})
        feed.flush()
    assert [e.seq for e in feed.after(2) or []] == [3, 4, 5]
    resumed = feed.resume(feed.event_id(3))
    assert resumed.reset_reason is None
    assert [e.changes[0]["n"] for e in resumed.events] == [3, 4]
    assert feed.resume(feed.event_id(5)).events == []
    # Events 1 and 2 are gone: after 1 cannot be told, after 2 can.
    assert "older than the 3 events kept" in (feed.resume(feed.event_id(1)).reset_reason or "")
    assert feed.resume(feed.event_id(2)).reset_reason is None


def test_a_foreign_or_unknown_id_means_refresh_everything() -> None:
    feed = EventFeed(None)
    feed.record_reset("x")
    earlier_run = EventFeed(None)
    for last_id, why in [
        (earlier_run.event_id(1), "not from this daemon's run"),
        ("garbage", "not from this daemon's run"),
        (f"{feed.epoch}-٣", "not from this daemon's run"),  # an Arabic-Indic digit
        (feed.event_id(9), "never sent"),
    ]:
        resumed = feed.resume(last_id)
        assert why in (resumed.reset_reason or ""), last_id
        assert resumed.seq == feed.seq and resumed.events == []
    assert feed.resume(None).reset_reason is None


async def test_a_lost_and_regained_listen_connection_is_a_reset_for_every_stream() -> None:
    feed = EventFeed(None)
    feed.on_notification({"topic": "breaker"})
    feed.on_listen_state(False)
    feed.on_listen_state(False)  # still lost: told once
    feed.on_listen_state(True)
    kinds = [(e.kind, e.reason) for e in feed.after(0) or []]
    # What was held goes out first, then a reset as it is lost (clients look at once and
    # find the daemon without its database) and one as it is back.
    assert kinds == [("change", None), ("reset", LISTEN_LOST), ("reset", LISTEN_INTERRUPTED)]
    feed.on_listen_state(True)  # connected, and still: no other reset
    assert feed.seq == 3


async def test_closing_wakes_every_waiting_stream() -> None:
    feed = EventFeed(None)
    waiting = asyncio.create_task(feed.wait_beyond(0, timeout=60))
    await asyncio.sleep(0)
    feed.close()
    await asyncio.wait_for(waiting, 5)
    assert feed.closed and not feed.following
