"""Every span orch records or receives, forwarded to an OTLP/HTTP endpoint.

For a team that outgrows PostgreSQL for traces: ``ORCH_OTLP_EXPORT_ENDPOINT`` names
their collector, Jaeger or Tempo (``http://collector:4318``, to which ``/v1/traces`` is
added, or the full ``.../v1/traces``). Spans are queued in memory and sent in batches
of ``BATCH`` as protobuf, one request at a time, by a task of their own, so recording a
span never waits for the network. A failed export is retried with backoff (honouring
Retry-After) when OTLP/HTTP calls it retryable (429, 502, 503, 504, or no answer), and
dropped otherwise; while the endpoint is down the queue keeps at most ``MAX_QUEUED``
spans, the oldest going first, and counts what it dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable

import httpx

from orchcore.resilience.retry import retry_after_seconds
from orchcore.tracing.otlp import PROTOBUF, spans_to_otlp
from orchcore.tracing.spans import Span

log = logging.getLogger("orch.tracing")

BATCH = 512
MAX_QUEUED = 50_000
#: A batch waits at most this long for more spans.
LINGER_SECONDS = 1.0
RETRYABLE = frozenset({429, 502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0


def traces_url(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class OtlpForwarder:
    def __init__(
        self,
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        batch: int = BATCH,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.url = traces_url(endpoint)
        self._headers = {"Content-Type": PROTOBUF, **(headers or {})}
        self._timeout = timeout
        self._batch = batch
        self._queue: deque[Span] = deque(maxlen=max_queued)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.sent = 0
        self.dropped = 0
        self.failed_batches = 0

    def forward(self, spans: Iterable[Span]) -> None:
        for span in spans:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1  # the deque drops the oldest
            self._queue.append(span)
        if len(self._queue) >= self._batch:
            self._ready.set()
        self.ensure_running()

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send_forever(), name="otlp-forward")

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Send what is queued now (until it is sent, or a batch is refused for good)."""
        while self._queue:
            try:
                if not await self._send_batch():
                    return
            except _RetryLater:
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._send_batch(), timeout=self._timeout)  # last words
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send_forever(self) -> None:
        backoff = 0.5
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER_SECONDS):
                    await self._ready.wait()
            self._ready.clear()
            while self._queue:
                try:
                    delivered = await self._send_batch()
                except _RetryLater as later:
                    wait = later.after if later.after is not None else backoff
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    await asyncio.sleep(min(wait, MAX_BACKOFF_SECONDS))
                    continue
                except Exception:  # never let forwarding die quietly
                    log.exception("forwarding spans to %s failed", self.url)
                    await asyncio.sleep(backoff)
                    continue
                backoff = 0.5
                if not delivered:
                    break

    async def _send_batch(self) -> bool:
        """Send up to one batch; True when sent (or refused for good and dropped)."""
        if not self._queue:
            return False
        batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
        body = spans_to_otlp(batch).SerializeToString()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._client.post(self.url, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            self._put_back(batch)
            self._note_failure(f"no answer ({type(exc).__name__}: {exc})")
            raise _RetryLater(None) from exc
        if response.status_code in RETRYABLE:
            self._put_back(batch)
            self._note_failure(f"HTTP {response.status_code}")
            raise _RetryLater(retry_after_seconds(response.headers.get("retry-after")))
        if response.status_code >= 300:
            self.dropped += len(batch)
            self._note_failure(f"HTTP {response.status_code}, {len(batch)} spans dropped")
            return True
        self.sent += len(batch)
        return True

    def _put_back(self, batch: list[Span]) -> None:
        room = (self._queue.maxlen or 0) - len(self._queue)
        keep = batch[-room:] if room < len(batch) else batch
        self.dropped += len(batch) - len(keep)
        self._queue.extendleft(reversed(keep))

    def _note_failure(self, why: str) -> None:
        self.failed_batches += 1
        if self.failed_batches == 1 or self.failed_batches % 100 == 0:
            log.warning(
                "forwarding spans to %s: %s (%d failed batches)", self.url, why, self.failed_batches
            )


class _RetryLater(Exception):
    def __init__(self, after: float | None) -> None:
        super().__init__(after)
        self.after = after
