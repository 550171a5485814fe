"""A consumer process of an orch queue, for tests that kill consumers.

    python -m tests.support.bus_worker DSN QUEUE CONSUMER VISIBILITY_SECONDS

It takes up to 50 messages a read and acks what it handled in one call; a message whose
payload ``i`` is a multiple of 97 fails every time (nacked), so it ends dead-lettered.
It reports on stdout, one line each, with the machine's monotonic clock (the same in
every process) so a test can put several workers' lines in one order. A line is written
before the call it announces (an ack, a nack): another process may see the call's effect
before this one has said it returned.

    got <t> <id>...        received these (before handling them)
    acking <t> <id>...     about to ack these
    acked <t> <id>...      the ack returned: these were acked by this call
    nacking <t> <id>       about to give this one back (it may be visible again at once)
    done <t>               the queue is empty: exiting with 0

A test SIGKILLs it at any moment; what it held comes back after the visibility timeout.
"""

from __future__ import annotations

import asyncio
import sys
import time

from orchcore import Orch, Settings

POISON_EVERY = 97


def say(word: str, *ids: str) -> None:
    sys.stdout.write(" ".join((word, f"{time.monotonic():.6f}", *ids)) + "\n")
    sys.stdout.flush()


async def work(dsn: str, queue: str, consumer: str, visibility: int) -> None:
    orch = await Orch.open(Settings(database_url=dsn), start_discovery=False)
    try:
        say("ready")
        while True:
            request = {
                "max_messages": 50,
                "visibility_timeout_seconds": visibility,
                "wait_seconds": 0.5,
            }
            got = (await orch.bus.receive(queue, request, consumer=consumer)).messages
            if not got:
                if (await orch.bus.metrics(queue)).total_messages == 0:
                    say("done")
                    return
                continue
            say("got", *(m.message_id for m in got))
            to_ack = []
            for m in got:
                if m.message_payload["i"] % POISON_EVERY == 0:
                    say("nacking", m.message_id)
                    await orch.bus.nack(
                        queue, m.message_id, {"error_message": "poison"}, consumer=consumer
                    )
                else:
                    to_ack.append(m.message_id)
            say("acking", *to_ack)
            done = await orch.bus.ack_batch(queue, to_ack, consumer=consumer)
            say("acked", *done)
    finally:
        await orch.close()


if __name__ == "__main__":
    dsn_arg, queue_arg, consumer_arg, visibility_arg = sys.argv[1:5]
    asyncio.run(work(dsn_arg, queue_arg, consumer_arg, int(visibility_arg)))
