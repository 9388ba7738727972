"""Receives poll batches from the poller and writes them to the usage store without blocking it.

`submit` only appends to a bounded deque. A long-lived writer task drains it into an in-memory
`Accumulator` and flushes, in one SQLite transaction run in a worker thread, the buckets that closed,
the current open buckets and the baselines. When a flush fails (locked database, disk full, read-only
file) nothing is lost: the accumulator keeps everything, the failure is logged and counted, and the
next attempt (exponential backoff) writes the union. Polling is never slowed down by the disk.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge

from sitivmon.aio import wait_event
from sitivmon.readings import PollBatch, UsageKey

from .buckets import GAPLIKE, SCALE, Bucket, expected_milli, flag_bits
from .config import UsageSettings
from .periods import BUCKET_S, bucket_start, split_delta
from .store import UsageStore

log = logging.getLogger(__name__)

BucketKey = tuple[UsageKey, int]


class Accumulator:
    """Pure bucket arithmetic: applies batches, closes buckets, hands out what a flush must write.

    A bucket of a series closes when a later reading of the same series arrives past its end (data
    driven, not wall-clock driven, so a link that stops answering keeps its partial bucket open until
    the interval spanning the outage arrives and completes it).
    """

    def __init__(self, open_buckets: dict[BucketKey, Bucket] | None = None) -> None:
        self.open: dict[UsageKey, dict[int, Bucket]] = collections.defaultdict(dict)
        for (key, start), b in (open_buckets or {}).items():
            self.open[key][start] = b
        self.closed: dict[BucketKey, Bucket] = {}
        self.baselines: dict[str, str] = {}
        self.batches = 0  # applied since the last successful flush
        self._watermark: dict[UsageKey, int] = {k: min(starts) for k, starts in self.open.items() if starts}

    def _bucket(self, key: UsageKey, start: int, exp: int) -> Bucket:
        series = self.open[key]
        b = series.get(start)
        if b is None:
            if start < self._watermark.get(key, start):
                # late contribution to a bucket already closed: merged additively into the chunk
                b = self.closed.get((key, start))
                if b is None:
                    b = self.closed[(key, start)] = Bucket()
            else:
                b = series[start] = Bucket()
        if exp > b.expected_milli:
            b.expected_milli = exp
        return b

    def _advance(self, key: UsageKey, t: float) -> None:
        mark = bucket_start(t)
        if mark <= self._watermark.get(key, mark - 1):
            return
        self._watermark[key] = mark
        series = self.open[key]
        for start in [s for s in series if s + BUCKET_S <= mark]:
            b = series.pop(start)
            prev = self.closed.get((key, start))
            if prev is None:
                self.closed[(key, start)] = b
            else:
                prev.merge(b)

    def apply(self, batch: PollBatch) -> None:
        exp = expected_milli(batch.interval_s)
        for c in batch.counters:
            bits = flag_bits(c.flags)
            observed = not bits & GAPLIKE
            s_us, e_us = round(c.start * 1e6), round(c.end * 1e6)
            for start, part in split_delta(c.start, c.end, c.delta):
                b = self._bucket(c.key, start, exp)
                b.value += part
                b.flags |= bits
                if observed:
                    b.covered_us += min(e_us, (start + BUCKET_S) * 1_000_000) - max(s_us, start * 1_000_000)
            self._advance(c.key, c.end)
        for g in batch.gauges:
            b = self._bucket(g.key, bucket_start(g.at), exp)
            b.value += round(g.value * SCALE.get(g.key.quantity, 1))
            b.readings += 1
            self._advance(g.key, g.at)
        self.baselines.update(batch.baselines)
        self.batches += 1

    def snapshot(self) -> tuple[dict[BucketKey, Bucket], dict[BucketKey, Bucket], dict[str, str], int]:
        """What the next flush writes; the closed part and baselines are taken (restored on failure)."""
        closed, self.closed = self.closed, {}
        baselines, self.baselines = self.baselines, {}
        batches, self.batches = self.batches, 0
        open_copy = {
            (k, s): Bucket(b.value, b.covered_us, b.readings, b.expected_milli, b.flags)
            for k, series in self.open.items()
            for s, b in series.items()
        }
        return closed, open_copy, baselines, batches

    def restore(self, closed: dict[BucketKey, Bucket], baselines: dict[str, str], batches: int) -> None:
        """Put back a snapshot whose write failed; newer baselines win, buckets add up."""
        for k, b in closed.items():
            cur = self.closed.get(k)
            if cur is None:
                self.closed[k] = b
            else:
                b.merge(cur)
                self.closed[k] = b
        self.baselines = {**baselines, **self.baselines}
        self.batches += batches

    @property
    def dirty(self) -> bool:
        return bool(self.closed or self.baselines or self.batches)


class UsageRecorder:
    """`UsageSink` backed by a `UsageStore`; use as `async with UsageRecorder(store, registry):`.

    Typical wiring (daemon start-up)::

        store = UsageStore.in_dir(config.state_dir, settings.db_filename, busy_timeout_s=settings.busy_timeout_s)
        recorder = await stack.enter_async_context(UsageRecorder(store, registry, settings))
        monitor.seed_baselines(recorder.load_baselines())   # before the first poll
        monitor.usage = recorder

    `store` is owned by the recorder (its connection is used by one worker thread at a time). Call
    `submit` from the event loop thread (the poller's). Leaving the context flushes what is pending.
    """

    def __init__(
        self,
        store: UsageStore,
        registry: CollectorRegistry,
        settings: UsageSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or UsageSettings()
        self._clock = clock
        self._queue: collections.deque[PollBatch] = collections.deque()
        self._acc = Accumulator(store.load_open_buckets())
        self._wake = asyncio.Event()
        self._closing = False
        self._tg: asyncio.TaskGroup | None = None
        self._retry_at = 0.0
        self._backoff = self.settings.retry_initial_s
        self._write_lock = asyncio.Lock()
        self._inflight = 0
        self.write_errors = Counter(
            "sitivmon_usage_write_errors",
            "Usage store flushes that failed (retried)",
            ["error"],
            registry=registry,
        )
        self.dropped = Counter(
            "sitivmon_usage_dropped_batches",
            "Poll batches refused because the queue was full",
            registry=registry,
        )
        self.pending = Gauge(
            "sitivmon_usage_pending_batches",
            "Poll batches received but not yet committed to the store",
            registry=registry,
        )
        self.last_write = Gauge(
            "sitivmon_usage_last_write_timestamp_seconds",
            "Unix time of the last committed flush",
            registry=registry,
        )
        self.pending.set_function(lambda: len(self._queue) + self._acc.batches + self._inflight)

    def load_baselines(self) -> dict[str, str]:
        """Counter baselines committed with the last flush, to seed the poller's normaliser."""
        return self.store.load_baselines()

    # -- UsageSink --------------------------------------------------------------------------------------

    def submit(self, batch: PollBatch) -> None:
        """Queue a batch; never blocks. Refused (counted, logged) only if the writer is stuck."""
        if len(self._queue) >= self.settings.max_queued_batches:
            self.dropped.inc()
            log.error("usage queue full (%d batches): batch of %s dropped", len(self._queue), batch.target)
            return
        self._queue.append(batch)

    # -- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> UsageRecorder:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tg.create_task(self._writer(), name="usage-writer")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        self._wake.set()
        assert self._tg is not None
        await self._tg.__aexit__(et, e, tb)

    async def flush(self) -> bool:
        """Drain the queue and try one write now; True when everything received so far is committed."""
        async with self._write_lock:
            await asyncio.to_thread(self._drain)
            if not self._acc.dirty:
                return True
            closed, open_b, baselines, batches = self._acc.snapshot()
            self._inflight = batches
            try:
                await asyncio.to_thread(self.store.write, closed, open_b, baselines)
            except sqlite3.Error as exc:
                self._acc.restore(closed, baselines, batches)
                self.write_errors.labels(type(exc).__name__).inc()
                self._retry_at = self._clock() + self._backoff
                log.warning(
                    "usage store write failed (%s), %d batches kept, retry in %.1fs",
                    exc,
                    self._acc.batches,
                    self._backoff,
                )
                self._backoff = min(self._backoff * 2, self.settings.retry_max_s)
                if isinstance(exc, sqlite3.OperationalError) and "locked" not in str(exc):
                    with contextlib.suppress(sqlite3.Error):  # e.g. read-only or I/O error: reopen
                        await asyncio.to_thread(self.store.reconnect)
                return False
            finally:
                self._inflight = 0
            self._backoff = self.settings.retry_initial_s
            self._retry_at = 0.0
            self.last_write.set(self._clock())
            return True

    def _drain(self) -> None:
        """Fold queued batches into the accumulator. Runs in a worker thread, always under the write
        lock (the only other user of the accumulator): the first batch after a long stop spreads the
        downtime over every five-minute bucket it covers, seconds of work for many links that must
        not stall polling. `submit` appending meanwhile is safe (deque append/popleft are atomic)."""
        while self._queue:
            self._acc.apply(self._queue.popleft())

    async def _writer(self) -> None:
        while not self._closing:
            await wait_event(self._wake, self.settings.flush_interval_s)
            self._wake.clear()
            async with self._write_lock:  # keep the queue short even while the store is failing
                await asyncio.to_thread(self._drain)
            if self._clock() >= self._retry_at:
                await self.flush()
        # closing: a few prompt attempts, then give up loudly (the baselines on disk stay consistent)
        for attempt in range(5):
            if await self.flush():
                return
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        log.error(
            "usage store: closing with %d batches not committed; they will be re-polled from "
            "the last committed baselines",
            self._acc.batches,
        )
