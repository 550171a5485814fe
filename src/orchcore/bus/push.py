"""Push delivery: the daemons deliver a push queue's messages to its consumer service.

A queue with a ``push_endpoint`` (a path such as ``/events``) is delivered to its
consumer service (the first of ``consumer_services``) by POSTing each message there
through the call path, so breakers, mesh policies, rate limits, traces and service
events apply as to any other call. Every attempt of a message carries the idempotency
key ``msg:<queue>:<msg_id>``: a consumer that dedupes on it applies a redelivered
message once.

**The lease.** PGMQ's read hides a message for the queue's visibility timeout: that
is the lease, and PGMQ's read (``FOR UPDATE SKIP LOCKED``) hands a message to one reader
only. A delivery never outlives its lease: the call is cut off a margin before the
lease ends and its outcome is written before it does, so no message is in flight to two
consumers at once, however many daemons share the queue. A daemon that dies while
pushing writes nothing: its messages come back when their leases end, and whichever
daemon reads them next delivers them again under the same key.

**Outcomes.**

- a 2xx answer acks the message;
- a 4xx answer (but 408 and 429) dead-letters it at once, the answer as its error:
  the same message would be refused again;
- a 5xx, 408 or 429 answer, no answer, or no answer before the lease's end gives it
  back with the error, to come back when its lease ends (or after a Retry-After), and
  the bus's rule buries it after ``dlq_max_retries`` redeliveries;
- a call refused before sending (breaker open, no healthy instance, rate limited, an
  unregistered consumer) gives the message back for the time the refusal names, and
  the queue's reads pause for as long; such a give-back does not count as a delivery
  (no call was made), so an outage of any length buries nothing. While the consumer
  service has no healthy instance (or is not registered) the queue is not read at all;
- a call the mesh denies, or an endpoint that cannot be called, dead-letters at once.

**Waking.** A queue's loop reads as many messages as it has free slots (its bound on
concurrency), then waits for PGMQ's insert notification (:mod:`orchcore.bus.wakeups`),
a freed slot, the next visibility timeout running out, or at the latest
``safety_seconds``: no busy polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from orchcore.bus.bus import MessageBus
from orchcore.bus.models import MessageQueue, QueueType, ReceivedMessage
from orchcore.callpath import CallDenied, CallFailed, CallResult, ServiceCaller
from orchcore.callpath.headers import check_header_value
from orchcore.callpath.identity import SAGA_SOURCE
from orchcore.callpath.refusals import InvalidCallError
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.db.failures import UNREACHABLE
from orchcore.errors import NoHealthyInstanceError, NotFoundError, OrchError
from orchcore.mesh.store import MeshPolicies
from orchcore.registry.discovery import ServiceDiscovery
from orchcore.resilience.breakers import BreakerOpenError
from orchcore.resilience.ratelimit import RateLimitedError
from orchcore.resilience.retry import RetryPolicy, retry_after_seconds
from orchcore.storable import storable_text
from orchcore.supervision import TaskSupervisor

log = logging.getLogger("orch.bus")
Q = Queries("orchcore.bus")

#: The calling identity of a push: orch itself, as for sagas (mesh policies from
#: ``orch`` to the consumer service apply).
PUSH_SOURCE = SAGA_SOURCE
#: Deliveries in flight per queue and daemon, unless the daemon is told otherwise.
MAX_IN_FLIGHT_PER_QUEUE = 16
#: A loop re-reads at least this often, whatever it heard (NOTIFY has no replay).
SAFETY_SECONDS = 1.0
#: How often the list of push queues is read again without a notification.
REFRESH_SECONDS = 30.0
#: Answers that say "later", not "never": given back rather than dead-lettered.
_TRANSIENT_4XX = frozenset({408, 429})
#: The longest a refused call pauses a queue's reads.
_MAX_PAUSE_SECONDS = 30.0
#: How long a queue waits before looking again at a consumer with no healthy instance.
_NO_CONSUMER_PAUSE_SECONDS = 2.0


def idempotency_key(queue_name: str, message_id: str) -> str:
    """The same on every delivery of one message, from any daemon."""
    return f"msg:{queue_name}:{message_id}"


def lease_margin(visibility_timeout: float) -> float:
    """How long before its lease ends a delivery is cut off, to write its outcome."""
    return min(2.0, max(0.05, visibility_timeout * 0.2))


class PushEngine(Protocol):
    """What push delivery needs of the engine (the facade provides it)."""

    db: Database

    # Read-only: the facade makes each concern when it is first asked for.
    @property
    def bus(self) -> MessageBus: ...

    @property
    def mesh(self) -> MeshPolicies: ...

    @property
    def discovery(self) -> ServiceDiscovery: ...

    @property
    def clock(self) -> Clock: ...

    async def caller(self) -> ServiceCaller: ...


@dataclass(frozen=True)
class PushTarget:
    """Where one queue's messages go."""

    queue_name: str
    service: str
    endpoint: str
    visibility_timeout: int

    @classmethod
    def of(cls, queue: MessageQueue) -> PushTarget | None:
        """The queue's push target, or None for a queue its consumers pull."""
        if not queue.push_endpoint or not queue.is_active:
            return None
        if queue.queue_type is QueueType.TOPIC:
            return None
        if not queue.consumer_services or not queue.push_endpoint.startswith("/"):
            return None
        return cls(
            queue.queue_name,
            queue.consumer_services[0],
            queue.push_endpoint,
            queue.visibility_timeout_seconds,
        )


def misconfigured(queue: MessageQueue) -> str | None:
    """Why a queue with a push endpoint cannot be pushed (None when it can, or has none)."""
    if not queue.push_endpoint or not queue.is_active or queue.queue_type is QueueType.TOPIC:
        return None
    if not queue.consumer_services:
        return "it names no consumer service to push to"
    if not queue.push_endpoint.startswith("/"):
        return "its push_endpoint is not a path on the consumer service (it must start with '/')"
    return None


# -- what a delivery comes to --------------------------------------------------------------


@dataclass(frozen=True)
class Acked:
    status_code: int


@dataclass(frozen=True)
class DeadLetter:
    error: str


@dataclass(frozen=True)
class GiveBack:
    error: str
    #: seconds before it is visible again (None: when its lease ends)
    delay: float | None = None
    #: seconds the queue's reads pause (a refusal before sending)
    pause: float = 0.0
    #: whether the delivery counts against dlq_max_retries: not when no call was made
    spent: bool = True


PushOutcome = Acked | DeadLetter | GiveBack


def judge_answer(result: CallResult) -> PushOutcome:
    """What an HTTP answer means for the message."""
    status = result.status_code
    if 200 <= status < 300:
        return Acked(status)
    error = f"HTTP {status} from {_describe_answer(result)}"
    if status < 500 and status not in _TRANSIENT_4XX:
        return DeadLetter(error)
    hinted = retry_after_seconds(result.headers.get("retry-after"))
    return GiveBack(error, delay=hinted)


def judge_refusal(exc: Exception, now: datetime) -> PushOutcome:
    """What a call that raised means for the message."""
    if isinstance(exc, BreakerOpenError):
        wait = 5.0
        if exc.next_attempt_at is not None:
            wait = max(1.0, (exc.next_attempt_at - now).total_seconds())
        return GiveBack(str(exc), delay=wait, pause=wait, spent=False)
    if isinstance(exc, RateLimitedError):
        wait = max(exc.retry_after or 1.0, 0.1)
        return GiveBack(str(exc), delay=wait, pause=wait, spent=False)
    if isinstance(exc, NoHealthyInstanceError | NotFoundError):
        return GiveBack(str(exc), pause=5.0, spent=False)
    if isinstance(exc, CallFailed):
        return GiveBack(storable_text(str(exc)))
    if isinstance(exc, CallDenied | InvalidCallError):
        return DeadLetter(storable_text(str(exc)))
    if isinstance(exc, OrchError):
        return DeadLetter(storable_text(str(exc)))
    return GiveBack(storable_text(f"{type(exc).__name__}: {exc}"[:500]))


def _describe_answer(result: CallResult) -> str:
    text = result.text.strip()
    try:
        body = result.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "reason"):
            if key in body:
                text = str(body[key])
                break
    reason = storable_text(text[:300]) if text else "(no body)"
    return f"{result.instance_id}: {reason}"


def push_body(queue_name: str, message: ReceivedMessage) -> dict[str, Any]:
    """What the consumer receives: the pull API's message, plus its queue."""
    return {
        "queue_name": queue_name,
        **message.model_dump(mode="json"),
    }


def _header_safe(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_header_value("correlation_id", value)
    except InvalidCallError:
        return None  # a correlation id no header can carry: the call gets one of its own


# -- one queue -------------------------------------------------------------------------------


class QueuePusher:
    """Reads one push queue as its slots free up and delivers each message."""

    def __init__(
        self,
        engine: PushEngine,
        target: PushTarget,
        *,
        max_in_flight: int = MAX_IN_FLIGHT_PER_QUEUE,
        safety_seconds: float = SAFETY_SECONDS,
    ) -> None:
        self._engine = engine
        self.target = target
        self.max_in_flight = max_in_flight
        self.safety_seconds = safety_seconds
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._changed = asyncio.Event()
        self._stopping = False
        self._paused_until = 0.0
        self._unavailable: str | None = None
        #: deliveries finished here, by outcome (tests and status pages read them)
        self.delivered = {"acked": 0, "dead_lettered": 0, "given_back": 0}

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def retarget(self, target: PushTarget) -> None:
        """The queue's settings changed: the next read uses the new ones."""
        self.target = target
        self._changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        bus = self._engine.bus
        while not self._stopping:
            self._slot_freed.clear()
            self._changed.clear()
            pause = self._paused_until - loop.time()
            if pause > 0:
                await self._wait_for(None, pause)
                continue
            target = self.target
            why_not = await self._consumer_unavailable(target)
            if why_not is not None:
                # Reading now would only spend deliveries on calls that cannot be made.
                self._note_unavailable(target, why_not)
                await self._wait_for(None, _NO_CONSUMER_PAUSE_SECONDS)
                continue
            self._unavailable = None
            signal = await bus.wakeups.signal(target.queue_name)
            ticket = signal.ticket()  # before the read: an insert after it wakes us
            free = self.max_in_flight - len(self._in_flight)
            if free <= 0:
                await self._wait_for(None, self.safety_seconds)
                continue
            try:
                got = await self._read_and_start(target, free)
            except UNREACHABLE as exc:
                log.warning("push %s: reading failed (%s); trying again", target.queue_name, exc)
                await self._wait_for(None, self.safety_seconds)
                continue
            if got >= free:
                continue  # there may be more
            timeout = self.safety_seconds
            with contextlib.suppress(*UNREACHABLE):
                next_visible = await self._engine.db.fetchval(Q.next_visible_in, target.queue_name)
                if next_visible is not None:
                    # <= 0: visible but locked by another reader this instant
                    timeout = min(timeout, max(next_visible, 0.04) + 0.01)
            await self._wait_for(ticket, timeout)

    async def _consumer_unavailable(self, target: PushTarget) -> str | None:
        """Why the consumer cannot be called now (None: it can), from discovery's cache."""
        discovery = self._engine.discovery
        try:
            if not await discovery.is_registered(target.service):
                return f"the consumer service {target.service!r} is not registered"
            await discovery.healthy(target.service)
        except NoHealthyInstanceError as exc:
            return str(exc)
        except UNREACHABLE as exc:
            return f"the registry could not be read ({exc})"
        return None

    def _note_unavailable(self, target: PushTarget, why: str) -> None:
        if self._unavailable != why:
            self._unavailable = why
            log.warning("push %s waits: %s", target.queue_name, why)

    async def _wait_for(self, ticket: asyncio.Event | None, timeout: float) -> None:
        waits = [
            asyncio.ensure_future(self._slot_freed.wait()),
            asyncio.ensure_future(self._changed.wait()),
        ]
        if ticket is not None:
            waits.append(asyncio.ensure_future(ticket.wait()))
        try:
            await asyncio.wait(
                waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _read_and_start(self, target: PushTarget, free: int) -> int:
        loop = asyncio.get_running_loop()
        read_at = loop.time()  # the leases began at or after this instant
        received = await self._engine.bus.receive(
            target.queue_name,
            {
                "max_messages": free,
                "visibility_timeout_seconds": target.visibility_timeout,
                "wait_seconds": 0,
            },
            consumer=target.service,
        )
        lease_end = read_at + target.visibility_timeout
        for message in received.messages:
            task = asyncio.create_task(
                self._deliver(target, message, lease_end),
                name=f"push-{target.queue_name}-{message.message_id}",
            )
            self._in_flight[message.message_id] = task
            task.add_done_callback(self._finished)
        return len(received.messages)

    def _finished(self, task: asyncio.Task[None]) -> None:
        for message_id, running in list(self._in_flight.items()):
            if running is task:
                del self._in_flight[message_id]
        self._slot_freed.set()

    # -- one delivery ----------------------------------------------------------------------

    async def _deliver(
        self, target: PushTarget, message: ReceivedMessage, lease_end: float
    ) -> None:
        outcome: PushOutcome
        try:
            outcome = await self._push(target, message, lease_end)
        except asyncio.CancelledError:
            # Stopping: hand it back at once (it may have reached the consumer; the next
            # delivery carries the same key), unless the lease is nearly over anyway.
            await self._settle(
                target, message, GiveBack("the delivering daemon stopped", delay=0), lease_end
            )
            raise
        except Exception as exc:  # never leave a message to its lease unexplained
            log.exception("push %s/%s: delivery crashed", target.queue_name, message.message_id)
            outcome = GiveBack(storable_text(f"{type(exc).__name__}: {exc}"[:500]))
        await self._settle(target, message, outcome, lease_end)

    async def _push(
        self, target: PushTarget, message: ReceivedMessage, lease_end: float
    ) -> PushOutcome:
        loop = asyncio.get_running_loop()
        engine = self._engine
        budget = lease_end - lease_margin(target.visibility_timeout) - loop.time()
        if budget <= 0:
            return GiveBack("its lease ended before it could be delivered")
        caller = await engine.caller()
        policy = await engine.mesh.effective(PUSH_SOURCE, target.service)
        # The queue's redeliveries are a message's retries; a mesh retry policy from
        # orch to the consumer adds the call path's own, within the lease.
        retry = None if policy.retry_policy is not None else RetryPolicy.single_attempt()
        per_attempt = (
            policy.retry_policy.timeout_per_attempt if policy.retry_policy else policy.timeout
        )
        # The call's own timeout ends an attempt first (recorded as a timeout, its breaker
        # permit settled); the cut-off below is the backstop for retries and slow drips.
        timeout = min(per_attempt or budget, budget * 0.9)
        try:
            async with asyncio.timeout(budget) as cut_off:
                result = await caller.call(
                    PUSH_SOURCE,
                    target.service,
                    target.endpoint,
                    method="POST",
                    json=push_body(target.queue_name, message),
                    headers={
                        "X-Orch-Queue": target.queue_name,
                        "X-Orch-Message-Id": message.message_id,
                        "X-Orch-Delivery": str(message.retry_count + 1),
                    },
                    idempotency_key=idempotency_key(target.queue_name, message.message_id),
                    correlation_id=_header_safe(message.correlation_id),
                    # the producer's trace (a saga step's, say) goes on to the consumer
                    traceparent=message.headers.get("traceparent"),
                    tracestate=message.headers.get("tracestate"),
                    timeout=timeout,
                    retry=retry,
                )
        except TimeoutError:
            if cut_off.expired():
                return GiveBack(
                    f"no answer from {target.service} within the visibility timeout "
                    f"({target.visibility_timeout}s)"
                )
            raise
        except Exception as exc:
            return judge_refusal(exc, engine.clock.now())
        return judge_answer(result)

    async def _settle(
        self, target: PushTarget, message: ReceivedMessage, outcome: PushOutcome, lease_end: float
    ) -> None:
        """Write what the delivery came to, while the lease holds; after it, the message
        comes back by itself (and a settle written then could touch another's lease)."""
        loop = asyncio.get_running_loop()
        bus = self._engine.bus
        queue, msg_id, who = target.queue_name, message.message_id, target.service
        delay = 0.0
        attempt = 0
        while True:
            try:
                match outcome:
                    case Acked():
                        await bus.ack(queue, msg_id, consumer=who)
                        self.delivered["acked"] += 1
                    case DeadLetter(error=error):
                        await bus.dead_letter(queue, msg_id, error=error, consumer=who)
                        self.delivered["dead_lettered"] += 1
                        log.info(
                            "push %s/%s dead-lettered: %s",
                            queue,
                            msg_id,
                            error,
                            extra={"queue": queue, "message_id": msg_id},
                        )
                    case GiveBack(error=error, delay=wanted, pause=pause, spent=spent):
                        left = max(lease_end - loop.time(), 0.0)
                        delay = math.ceil(left if wanted is None else max(wanted, 0.0))
                        if spent:
                            await bus.nack(
                                queue,
                                msg_id,
                                {"delay_seconds": delay, "error_message": error[:4000]},
                                consumer=who,
                            )
                        else:  # never called: the refusal must not use up its deliveries
                            await bus.hand_back(
                                queue, msg_id, delay_seconds=delay, reason=error, consumer=who
                            )
                        self.delivered["given_back"] += 1
                        if pause > 0:
                            self._pause(min(pause, _MAX_PAUSE_SECONDS))
                return
            except NotFoundError:
                return  # no longer in the queue (purged, or settled by an operator)
            except UNREACHABLE as exc:
                attempt += 1
                if loop.time() + 0.2 >= lease_end - lease_margin(target.visibility_timeout) / 2:
                    log.warning(
                        "push %s/%s: its outcome could not be written (%s); it comes back "
                        "when its lease ends",
                        queue,
                        msg_id,
                        exc,
                    )
                    return
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            except OrchError as exc:  # the queue changed under us (consumer removed, say)
                log.warning("push %s/%s: settling refused: %s", queue, msg_id, exc)
                return

    def _pause(self, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        if until > self._paused_until:
            self._paused_until = until

    async def stop(self, *, grace_seconds: float) -> None:
        """Stop reading; let deliveries in flight finish, then hand back what is left."""
        self._stopping = True
        self._changed.set()
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace_seconds)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# -- every push queue ---------------------------------------------------------------------


class MessagePusher:
    """The daemon's push delivery: one supervised loop per push queue.

    The set of push queues follows the registry: its NOTIFY (topic ``message_queue``)
    makes the pusher read the list again, as does a listener reconnect and, for what a
    lost notification hid, every :data:`REFRESH_SECONDS`."""

    def __init__(
        self,
        engine: PushEngine,
        *,
        max_in_flight_per_queue: int = MAX_IN_FLIGHT_PER_QUEUE,
        safety_seconds: float = SAFETY_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._engine = engine
        self.max_in_flight_per_queue = max_in_flight_per_queue
        self.safety_seconds = safety_seconds
        self.refresh_seconds = refresh_seconds
        self.queues: dict[str, QueuePusher] = {}
        self.supervisor = TaskSupervisor(logger="orch.bus")
        self._refresh = asyncio.Event()
        self._stopping = False
        self._warned: dict[str, str] = {}

    def on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") == "message_queue":
            self._refresh.set()

    def on_reconnect(self) -> None:
        self._refresh.set()

    async def run_forever(self) -> None:
        try:
            while not self._stopping:
                self._refresh.clear()
                try:
                    await self.refresh()
                except UNREACHABLE as exc:
                    log.warning("push: reading the push queues failed (%s)", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._refresh.wait(), self.refresh_seconds)
        finally:
            await self._stop_queues(grace_seconds=0)

    async def refresh(self) -> None:
        """Start a loop for each new push queue, stop those no longer pushed."""
        queues = await self._engine.bus.list_queues()
        wanted: dict[str, PushTarget] = {}
        for queue in queues:
            target = PushTarget.of(queue)
            if target is not None:
                wanted[queue.queue_name] = target
                self._warned.pop(queue.queue_name, None)
                continue
            why = misconfigured(queue)
            if why is not None and self._warned.get(queue.queue_name) != why:
                self._warned[queue.queue_name] = why
                log.warning("queue %s is not pushed: %s", queue.queue_name, why)
        for name in [n for n in self.queues if n not in wanted]:
            pusher = self.queues.pop(name)
            await pusher.stop(grace_seconds=5.0)
            await self.supervisor.stop(f"push-{name}")
        for name, target in wanted.items():
            existing = self.queues.get(name)
            if existing is not None:
                if existing.target != target:
                    existing.retarget(target)
                continue
            pusher = QueuePusher(
                self._engine,
                target,
                max_in_flight=self.max_in_flight_per_queue,
                safety_seconds=self.safety_seconds,
            )
            self.queues[name] = pusher
            self.supervisor.start(f"push-{name}", _runner(pusher))

    async def stop(self, *, grace_seconds: float = 5.0) -> None:
        """Stop reading; deliveries in flight finish (or are handed back)."""
        self._stopping = True
        self._refresh.set()
        await self._stop_queues(grace_seconds=grace_seconds)

    async def _stop_queues(self, *, grace_seconds: float) -> None:
        pushers = list(self.queues.values())
        self.queues.clear()
        await asyncio.gather(*(p.stop(grace_seconds=grace_seconds) for p in pushers))
        await self.supervisor.stop()


def _runner(pusher: QueuePusher) -> Callable[[], Awaitable[None]]:
    return pusher.run
