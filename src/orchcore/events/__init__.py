"""What changed, as a stream a client far from the database can follow: the daemon's
LISTEN notifications numbered, buffered for resume and coalesced (see feed.py), in the
server-sent-events wire format (sse.py)."""

from orchcore.events.feed import EventFeed, FeedEvent, Resumption

__all__ = ["EventFeed", "FeedEvent", "Resumption"]
