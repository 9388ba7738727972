"""Receives poll batches from the poller and writes them to the usage store without blocking it.

`submit` only appends to a bounded deque. A long-lived writer task drains it into an in-memory
`Accumulator` and flushes, in one store transaction run in a worker thread, the buckets that closed,
the current open buckets and the baselines. When a flush fails (locked database, disk full, read-only
file) nothing is lost: the accumulator keeps everything, the failure is logged and counted, and the
next attempt (exponential backoff) writes the union. Polling is never slowed down by the disk.

Error boundary: no value and no store trouble stops the recorder (nor, through it, the daemon).
Each batch is vetted in `submit` (`vet_batch`): a counter delta that no link can carry (negative,
not an integer, faster than `MAX_RATE`, e.g. an HC counter read as 2**64-1), a gauge that is NaN,
infinite or beyond SQLite's integers, a reading at an impossible time, are set aside: counted in
`sitivmon_usage_rejected_values_total{target,reason}`, logged once per subject and reason, and a
rejected counter interval is kept as an UNKNOWN interval of zero bytes, so the baseline still
advances (a restart does not meet the same delta again) and coverage shows the hole. Any other
failure of a flush is logged, counted and retried like a database error, with every commune's data
kept.

A store that cannot be opened (garbage file, malformed database, full disk) does not stop the
daemon either: `sitivmon_usage_store_up` is 0, one log line names the file and the error, batches are
buffered (bounded by `max_queued_batches`, counted by `sitivmon_usage_pending_batches`) and the
store is retried with the write backoff. A reconnect after a failed write happens at the start of
the next attempt, not right after the failure: a file that was unwritable (immutable, read-only
mount) would otherwise be reopened read-only while it still is, and the first attempt after it
came back would fail once more.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sitivmon.aio import wait_event
from sitivmon.readings import Anomaly, Baseline, CounterInterval, Flag, GaugeReading, PollBatch, UsageKey, baseline_text

from .buckets import BUCKET_US, GAPLIKE, PRESENT, SCALE, Bucket, Span, expected_milli, flag_bits
from .config import UsageSettings
from .periods import BUCKET_S, bucket_start, split_delta, split_runs
from .port import BucketKey, CorruptChunk, StoreBusy, StoreError, StoreUnavailable, UsageStorePort

log = logging.getLogger(__name__)

MAX_RATE = 2**40
"""Bytes (or joules) per second above which a counter delta is implausible: 8.8 Tbit/s, more than any
link or site here. It also keeps every bucket far inside SQLite's signed 64-bit integers (a five-minute
bucket holds at most 2**49)."""
MAX_GAUGE = 2**52
"""Largest gauge reading kept (after scaling): exact in a double, and sums stay in 64 bits."""
MIN_TIME, MAX_TIME = 946_684_800.0, 2**33  # 2000-01-01 .. year 2242: anything else is a broken clock
UNKNOWN_ONLY = frozenset({Flag.UNKNOWN})
SPAN_BUCKETS = 12
"""A GAP or UNKNOWN interval covering more than this many whole buckets (an hour) is kept as a `Span`
by the recorder's accumulator (see `Accumulator`): below it, buckets cost less than the bookkeeping."""


def _bad_time(t: float) -> bool:
    return not (isinstance(t, int | float) and math.isfinite(t) and MIN_TIME <= t <= MAX_TIME)


def vet_counter(c: CounterInterval) -> tuple[CounterInterval | None, Anomaly | None]:
    """(what to record, why something was set aside). A counter with an impossible delta is kept as
    an UNKNOWN interval of nothing (coverage drops); one at impossible times is dropped."""
    if _bad_time(c.start) or _bad_time(c.end) or c.end < c.start:
        detail = f"{c.key.quantity.value}: interval {c.start!r}..{c.end!r}"
        return None, Anomaly("usage_bad_time", c.key.subject, detail)
    delta = c.delta
    reason = ""
    if not isinstance(delta, int) or isinstance(delta, bool):
        reason = "usage_delta_not_integer"
    elif delta < 0:
        reason = "usage_delta_negative"
    elif delta > MAX_RATE * max(c.end - c.start, 1.0):
        reason = "usage_delta_implausible"
    if not reason:
        return c, None
    detail = f"{c.key.quantity.value}: delta {delta!r} over {c.end - c.start:.0f}s counted as unknown"
    return replace(c, delta=0, flags=c.flags | UNKNOWN_ONLY), Anomaly(reason, c.key.subject, detail)


def vet_gauge(g: GaugeReading) -> Anomaly | None:
    if _bad_time(g.at):
        return Anomaly("usage_bad_time", g.key.subject, f"{g.key.quantity.value}: reading at {g.at!r}")
    v = g.value
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        return Anomaly("usage_gauge_not_finite", g.key.subject, f"{g.key.quantity.value}: {v!r}")
    if abs(v) * SCALE.get(g.key.quantity, 1) > MAX_GAUGE:
        return Anomaly("usage_gauge_implausible", g.key.subject, f"{g.key.quantity.value}: {v!r}")
    return None


def _plain_counter(c: CounterInterval) -> bool:
    """The common case, checked in one expression (NaN and infinities fail the comparisons)."""
    s, e, d = c.start, c.end, c.delta
    return type(d) is int and MIN_TIME <= s <= e <= MAX_TIME and d >= 0 and (d <= MAX_RATE or d <= MAX_RATE * (e - s))


_PLAIN_GAUGE = MAX_GAUGE / max(SCALE.values(), default=1)  # whatever the quantity's scale


def _plain_gauge(g: GaugeReading) -> bool:
    v = g.value
    return type(v) is float and MIN_TIME <= g.at <= MAX_TIME and -_PLAIN_GAUGE <= v <= _PLAIN_GAUGE


def vet_batch(batch: PollBatch) -> tuple[PollBatch, list[Anomaly]]:
    """The batch the accumulator may apply without raising or overflowing, and what was set aside.

    Runs on the poller's loop for every batch: the plain case costs one comparison chain per value
    and builds nothing."""
    interval = batch.interval_s
    if (
        all(map(_plain_counter, batch.counters))
        and all(map(_plain_gauge, batch.gauges))
        and isinstance(interval, int | float)
        and 0 <= interval < math.inf
    ):
        return batch, []
    anomalies: list[Anomaly] = []
    counters: list[CounterInterval] = []
    gauges: list[GaugeReading] = []
    for c in batch.counters:
        kept, why = vet_counter(c)
        if why is not None:
            anomalies.append(why)
        if kept is not None:
            counters.append(kept)
    for g in batch.gauges:
        why = vet_gauge(g)
        if why is None:
            gauges.append(g)
        else:
            anomalies.append(why)
    if not (isinstance(interval, int | float) and math.isfinite(interval) and interval >= 0):
        anomalies.append(Anomaly("usage_bad_interval", batch.target, f"poll interval {interval!r}"))
        interval = 0.0
    if not anomalies:
        return batch, []
    return replace(batch, interval_s=interval, counters=tuple(counters), gauges=tuple(gauges)), anomalies


class Accumulator:
    """Pure bucket arithmetic: applies batches, closes buckets, hands out what a flush must write.

    A bucket of a series closes when a later reading of the same series arrives past its end (data
    driven, not wall-clock driven, so a link that stops answering keeps its partial bucket open until
    the interval spanning the outage arrives and completes it).

    That interval, after a restart or a long outage, is flagged GAP (or UNKNOWN): with `span_buckets`
    set (the recorder: `SPAN_BUCKETS`), its whole buckets are kept as one `Span` (exact parts of
    `split_delta` in runs, `periods.split_runs`) instead of a `Bucket` each: two days were 576 objects
    per series, gigabytes at 20,000 links (issue 15). The store writes a span into its week chunks as
    those buckets would have been written (`UsageStorePort.write(spans=...)`), so nothing read changes.
    """

    def __init__(self, open_buckets: dict[BucketKey, Bucket] | None = None, *, span_buckets: int = 0) -> None:
        """`span_buckets` > 0: a GAP/UNKNOWN interval covering more whole buckets than that is kept as a
        `Span` (the recorder uses `SPAN_BUCKETS`); the caller then writes `take_spans()` with each
        snapshot. 0: every interval is spread over its buckets (what callers that never take spans get)."""
        self.open: dict[UsageKey, dict[int, Bucket]] = collections.defaultdict(dict)
        for (key, start), b in (open_buckets or {}).items():
            self.open[key][start] = b
        self.closed: dict[BucketKey, Bucket] = {}
        self.spans: list[Span] = []
        self.span_buckets = span_buckets
        self.baselines: dict[str, Baseline] = {}  # rendered by `snapshot`: only the last one of a flush
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
        """Fold a batch into the buckets. Runs for every link on every poll: an interval inside one
        bucket (all but one poll in 300 / interval) skips `split_delta` and looks its series and
        watermark up once (each look-up hashes the key); the result is the general path's.

        The intervals of one poll share their start and end (every link's previous reading came
        from the previous poll), as its gauges share their instant: the bucket arithmetic is done
        again only when the times differ from the previous item's (once per batch, usually)."""
        exp = expected_milli(batch.interval_s)
        opened, watermark = self.open, self._watermark
        t0: float | None = None  # the start and end `s_us` ... `last` were computed for
        t1: float | None = None
        s_us = e_us = covered = last = 0
        one: int | None = None  # the one bucket holding [start, end), if it is in one
        for c in batch.counters:
            key = c.key
            if c.start != t0 or c.end != t1:  # a NaN differs from everything: raises here, as before
                t0, t1 = c.start, c.end
                s_us, e_us = round(c.start * 1e6), round(c.end * 1e6)
                covered = e_us - s_us
                inside = s_us < e_us and s_us // BUCKET_US == (e_us - 1) // BUCKET_US
                one = s_us // BUCKET_US * BUCKET_S if inside else None
                last = bucket_start(c.end)
            bits = flag_bits(c.flags) if c.flags else 0
            if one is not None:
                # `split_delta` gives the one part [(start, delta)], covering e_us - s_us of the bucket.
                b = opened[key].get(one)
                if b is None:
                    b = self._bucket(key, one, exp)
                elif exp > b.expected_milli:
                    b.expected_milli = exp
                b.value += c.delta
                if bits:
                    b.flags |= bits
                if not bits & GAPLIKE:
                    b.covered_us += covered
            elif self.span_buckets and bits & GAPLIKE and covered > (self.span_buckets + 1) * BUCKET_US:
                self._apply_span(key, c.start, c.end, c.delta, bits, exp)
            else:
                observed = not bits & GAPLIKE
                for start, part in split_delta(c.start, c.end, c.delta):
                    b = self._bucket(key, start, exp)
                    b.value += part
                    b.flags |= bits
                    if observed:
                        b.covered_us += min(e_us, (start + BUCKET_S) * 1_000_000) - max(s_us, start * 1_000_000)
            mark = watermark.get(key)
            if mark is None or last > mark:
                self._advance(key, c.end)
        at: float | None = None  # the instant `start` was computed for
        start = 0
        for g in batch.gauges:
            key = g.key
            if g.at != at:
                at = g.at
                start = bucket_start(at)
            b = opened[key].get(start)
            if b is None:
                b = self._bucket(key, start, exp)
            elif exp > b.expected_milli:
                b.expected_milli = exp
            b.value += round(g.value * SCALE.get(key.quantity, 1))
            b.readings += 1
            mark = watermark.get(key)
            if mark is None or start > mark:
                self._advance(key, g.at)
        self.baselines.update(batch.baselines)
        self.batches += 1

    def _apply_span(self, key: UsageKey, start: float, end: float, delta: int, bits: int, exp: int) -> None:
        """A GAP/UNKNOWN interval over many buckets (not observed: no covered time): its whole buckets
        become one `Span`, the rest goes through `_bucket` as in `apply`'s general way.

        Kept out of the span, so that every bucket ends as the general way leaves it: the first and
        last buckets of the interval, a bucket left open by the watermark (`bucket_start(end)` and
        after, when rounding to microseconds makes the interval reach a bucket `end` is not in), and
        any bucket this series still holds open (a span's buckets are all closed at once).
        """
        runs = split_runs(start, end, delta)
        lo = runs[0][0] + BUCKET_S
        hi = min(runs[-1][0], bucket_start(end))
        series = self.open.get(key)
        if series:
            lo = max([lo, *(s + BUCKET_S for s in series if lo <= s < hi)])
        inside: list[tuple[int, int, int]] = []
        for b, n, part in runs:
            for a, z in ((b, min(b + n * BUCKET_S, lo)), (max(b, hi), b + n * BUCKET_S)):
                for s in range(a, z, BUCKET_S):  # outside the span: bucket by bucket
                    bk = self._bucket(key, s, exp)
                    bk.value += part
                    bk.flags |= bits
            a, z = max(b, lo), min(b + n * BUCKET_S, hi)
            if a < z:
                inside.append((a, (z - a) // BUCKET_S, part))
        if inside:
            self.spans.append(Span(key, tuple(inside), exp, bits | PRESENT))

    def take_spans(self, closed: dict[BucketKey, Bucket]) -> list[Span]:
        """The spans the next write must carry with `closed` (the snapshot's closed buckets); taken,
        like the closed buckets (`restore_spans` puts them back after a failed write).

        A closed bucket of the same write inside a span (late or overlapping data) is what the general
        way would have merged with the span's share in memory: its received samples are counted with
        the larger expected count, so that expected count is given to it here (the store then adds
        the span's share and takes the same maximum)."""
        spans, self.spans = self.spans, []
        if spans and closed:
            by_key: dict[UsageKey, list[Span]] = collections.defaultdict(list)
            for sp in spans:
                by_key[sp.key].append(sp)
            for (key, start), b in closed.items():
                for sp in by_key.get(key, ()):
                    if sp.start <= start < sp.end and sp.expected_milli > b.expected_milli:
                        b.expected_milli = sp.expected_milli
        return spans

    def restore_spans(self, spans: list[Span]) -> None:
        """Put back the spans of a write that failed (they add up with any taken since)."""
        self.spans[:0] = spans

    def adopt(self, stored_open: dict[BucketKey, Bucket]) -> None:
        """Add the open buckets of a store opened late (they predate everything applied here)."""
        for (key, start), b in stored_open.items():
            if start < self._watermark.get(key, start):
                prev = self.closed.get((key, start))
                if prev is None:
                    self.closed[(key, start)] = b
                else:
                    prev.merge(b)
                continue
            cur = self.open[key].get(start)
            if cur is None:
                self.open[key][start] = b
                self._watermark.setdefault(key, start)
            else:
                cur.merge(b)

    def snapshot(self) -> tuple[dict[BucketKey, Bucket], dict[BucketKey, Bucket], dict[str, str], int]:
        """What the next flush writes; the closed part and baselines are taken (restored on failure)."""
        closed, self.closed = self.closed, {}
        baselines = {subject: baseline_text(b) for subject, b in self.baselines.items()}
        self.baselines = {}
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
        return bool(self.closed or self.spans or self.baselines or self.batches)


class UsageRecorder:
    """`UsageSink` backed by a usage store (`UsageStorePort`); use as `async with UsageRecorder(store, registry):`.

    Typical wiring (daemon start-up)::

        store = open_usage_store(settings, state_dir, connect=False)
        recorder = await stack.enter_async_context(UsageRecorder(store, registry, settings))
        monitor.seed_baselines(recorder.load_baselines())   # before the first poll
        monitor.usage = recorder

    `store` is owned by the recorder (its connection is used by one worker thread at a time). It is
    opened here if it is not open yet; when that fails the recorder runs without it and retries (see
    the module doc). Call `submit` from the event loop thread (the poller's). Leaving the context
    flushes what is pending.
    """

    def __init__(
        self,
        store: UsageStorePort,
        registry: CollectorRegistry,
        settings: UsageSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or UsageSettings()
        self._clock = clock
        self._queue: collections.deque[PollBatch] = collections.deque()
        self._acc = Accumulator(span_buckets=SPAN_BUCKETS)
        self._wake = asyncio.Event()
        self._closing = False
        self._tg: asyncio.TaskGroup | None = None
        self._retry_at = 0.0
        self._backoff = self.settings.retry_initial_s
        self._write_lock = asyncio.Lock()
        self._inflight = 0
        self._reconnect = False
        self._baselines: dict[str, str] = {}
        self._known_subjects: set[str] = set()
        self._anomalies_seen: set[tuple[str, str]] = set()
        self._loaded = False  # the store's open buckets and baselines are in memory (once, ever)
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
        self.flush_seconds = Histogram(
            "sitivmon_usage_flush_seconds",
            "Wall time of committed flushes (snapshot and write, in the worker thread): what a flush costs",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
            registry=registry,
        )
        self.store_up = Gauge(
            "sitivmon_usage_store_up",
            "1 when the usage store is open and its last flush succeeded, 0 while it cannot be opened or written",
            registry=registry,
        )
        self.rejected = Counter(
            "sitivmon_usage_rejected_values",
            "Values from devices set aside by the usage recorder (counted as unknown, never as usage)",
            ["target", "reason"],
            registry=registry,
        )
        self.file_events = Counter(
            "sitivmon_usage_store_file_events",
            "The database file found deleted (rebuilt from the open handle) or replaced (adopted)",
            ["event"],
            registry=registry,
        )
        self.corrupt_chunks = Counter(
            "sitivmon_usage_corrupt_chunks",
            "Stored chunks that failed their checksum when a flush merged into them (set aside; SQLite: chunk_corrupt)",
            registry=registry,
        )
        self.pending.set_function(lambda: len(self._queue) + self._acc.batches + self._inflight)
        self._open_now()

    def _open_now(self) -> bool:
        """Open the store and, the first time only, load what it holds (later the accumulator already
        has it, and more); False (logged) when it cannot."""
        stored_open: dict[BucketKey, Bucket] = {}
        baselines: dict[str, str] = {}
        try:
            self.store.open()
            if not self._loaded:
                stored_open = self.store.load_open_buckets()
                baselines = self.store.load_baselines()
        except Exception as exc:  # whatever the store holds, the daemon starts (unavailable, corrupt, newer...)
            self.store.close()
            self.store_up.set(0)
            log.error(
                "usage store %s cannot be opened: %s: %s; monitoring goes on, usage is kept in memory "
                "(at most %d batches) and the store is retried",
                self.store.location,
                type(exc).__name__,
                exc,
                self.settings.max_queued_batches,
            )
            return False
        if not self._loaded:
            self._loaded = True
            self._acc.adopt(stored_open)
            self._baselines = baselines
            self._known_subjects.update(baselines)
        self.store_up.set(1)
        return True

    def load_baselines(self) -> dict[str, str]:
        """Counter baselines committed with the last flush, to seed the poller's normaliser (empty
        when the store could not be opened)."""
        if self.store.is_open:
            try:
                return self.store.load_baselines()
            except StoreError as exc:
                log.warning("usage store %s: baselines unreadable (%s)", self.store.location, exc)
        return dict(self._baselines)

    # -- UsageSink --------------------------------------------------------------------------------------

    def submit(self, batch: PollBatch) -> None:
        """Queue a batch; never blocks, never raises. Refused (counted, logged) only when the writer
        is stuck or the store is away that long: queued plus folded-but-uncommitted batches are bounded."""
        try:
            batch, anomalies = vet_batch(batch)
            for a in anomalies:
                self._note(batch.target, a)
        except Exception:  # a value the vetting itself cannot handle: the whole batch is set aside
            log.exception("usage: batch of %s set aside", getattr(batch, "target", "?"))
            self.rejected.labels(str(getattr(batch, "target", "?")), "usage_bad_batch").inc()
            return
        if len(self._queue) + self._acc.batches >= self.settings.max_queued_batches:
            self.dropped.inc()
            log.error("usage queue full (%d batches): batch of %s dropped", len(self._queue), batch.target)
            return
        self._queue.append(batch)
        fresh = batch.baselines.keys() - self._known_subjects
        if fresh:
            # A new series' first baseline: the bytes of its first interval are counted from it, so it
            # must be on disk before a crash can lose it (else they vanish, in neither volume nor gaps).
            self._known_subjects.update(fresh)
            self._wake.set()

    def _note(self, target: str, a: Anomaly) -> None:
        self.rejected.labels(target, a.reason).inc()
        seen = (a.subject, a.reason)
        if seen not in self._anomalies_seen and len(self._anomalies_seen) < 10_000:
            self._anomalies_seen.add(seen)
            log.warning("target %s: usage of %s set aside (%s): %s", target, a.subject, a.reason, a.detail)

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

    def _failed(self, what: str, exc: BaseException) -> None:
        self.write_errors.labels(type(exc).__name__).inc()
        self.store_up.set(0)
        self._retry_at = self._clock() + self._backoff
        if isinstance(exc, StoreError):
            log.warning(
                "usage store %s failed (%s), %d batches kept, retry in %.1fs",
                what,
                exc,
                self._acc.batches,
                self._backoff,
            )
        else:  # not the disk: a bug or a value that got through; keep everything and say where
            log.exception("usage store %s failed unexpectedly, %d batches kept", what, self._acc.batches)
        self._backoff = min(self._backoff * 2, self.settings.retry_max_s)

    def _prepare(self) -> None:
        """Before a write (worker thread): open, reopen or repair the store. Raises on failure."""
        store = self.store
        if self._reconnect:
            store.reopen()
            self._reconnect = False
        incident = store.check()
        if incident is not None:
            log.error("%s", incident.message)
            self.file_events.labels(incident.event).inc()

    def _take(self) -> tuple[dict[BucketKey, Bucket], dict[BucketKey, Bucket], dict[str, str], int, list[Span]]:
        """The flush's snapshot, taken in a worker thread under the write lock (as `_drain`): it renders
        every link's baseline and copies every open bucket, tens of milliseconds at thousands of links
        that must not stall polling."""
        closed, open_b, baselines, batches = self._acc.snapshot()
        return closed, open_b, baselines, batches, self._acc.take_spans(closed)

    def _write(
        self,
        closed: dict[BucketKey, Bucket],
        open_b: dict[BucketKey, Bucket],
        baselines: dict[str, str],
        spans: list[Span],
    ) -> list[CorruptChunk]:
        self._prepare()
        return self.store.write(closed, open_b, baselines, spans=spans)

    async def flush(self) -> bool:
        """Drain the queue and try one write now; True when everything received so far is committed."""
        async with self._write_lock:
            await asyncio.to_thread(self._drain)
            if not self.store.is_open:
                if not await asyncio.to_thread(self._open_now):
                    self._failed("open", StoreUnavailable(f"unable to open {self.store.location}"))
                    return False
                log.warning("usage store %s is open: writing what was kept meanwhile", self.store.location)
            if not self._acc.dirty and not self._reconnect:
                return True
            started = time.perf_counter()
            closed, open_b, baselines, batches, spans = await asyncio.to_thread(self._take)
            self._inflight = batches
            try:
                quarantined = await asyncio.to_thread(self._write, closed, open_b, baselines, spans)
            except Exception as exc:  # the boundary: nothing here may stop the writer or the daemon
                self._acc.restore(closed, baselines, batches)
                self._acc.restore_spans(spans)
                self._failed("write", exc)
                if isinstance(exc, StoreUnavailable) and not isinstance(exc, StoreBusy):
                    self._reconnect = True  # e.g. read-only or I/O error: reopen at the next attempt
                return False
            finally:
                self._inflight = 0
            for bad in quarantined:
                self.corrupt_chunks.inc()
                log.error("usage store: %s; set aside, the week restarts from what is pending", bad)
            self._backoff = self.settings.retry_initial_s
            self._retry_at = 0.0
            self.store_up.set(1)
            self.last_write.set(self._clock())
            self.flush_seconds.observe(time.perf_counter() - started)
            return True

    def _drain(self) -> None:
        """Fold queued batches into the accumulator. Runs in a worker thread, always under the write
        lock (the only other user of the accumulator): the first batch after a long stop is a span per
        counter (`Accumulator`, `SPAN_BUCKETS`), still the most work a batch brings, which must not
        stall polling. `submit` appending meanwhile is safe (deque append/popleft are atomic)."""
        while self._queue:
            batch = self._queue.popleft()
            try:
                self._acc.apply(batch)
            except Exception:  # vetted already: a bug, not a reason to lose the other batches
                log.exception("usage: batch of %s could not be applied, set aside", batch.target)
                self.rejected.labels(batch.target, "usage_bad_batch").inc()

    async def _writer(self) -> None:
        while not self._closing:
            try:
                await wait_event(self._wake, self.settings.flush_interval_s)
                self._wake.clear()
                async with self._write_lock:  # keep the queue short even while the store is failing
                    await asyncio.to_thread(self._drain)
                if self._clock() >= self._retry_at:
                    await self.flush()
            except Exception:  # never let the writer die: it holds every commune's pending usage
                log.exception("usage writer: unexpected error, going on")
                await asyncio.sleep(self.settings.retry_initial_s)
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
