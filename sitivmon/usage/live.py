"""Month-to-date usage indicators on /metrics, computed from the store and cached.

Computing the indicators reads the month's buckets (about 1 s for a thousand links), so a scrape
serves the cached families and the computation runs at most every `refresh_s` seconds (the daemon:
in a thread of its own, `background`), with a read-only store of its own opened for each refresh
(`UsageStoreFactory`; SQLite: WAL readers never block the writer). A refresh reads the month
`batch` series at a time and folds each piece into the communes' figures before reading the next
(`compute_indicators_folded`): its memory is one piece's buckets plus a few hundred bytes per series,
not every series' month (1.3 GiB for the daemon at 20,000 links, issue 15).

A refresh is incremental (`MonthScans`): the scans of each past week are kept with the week's stamp
(`UsageStorePort.week_stamps`) and read again only when it changed (a late correction, a compaction),
and the current week's series are scanned from where the previous refresh stopped when their first
buckets read the same (a digest of their columns). So a refresh reads the current week and what
changed, not the month: at 20,000 links at the month's end, see `bench/profile_refresh.py`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sitivmon.config.model import Commune
from sitivmon.readings import Quantity, UsageKey

from .backends import UsageStoreFactory
from .buckets import _BIG, _SLOT_TYPE, _UNSIGNED, CHUNK_S, COUNTERS, PRESENT, Col, as_constant, in_lanes
from .indicators import (
    LEAD_IN_BUCKETS,
    Held,
    Indicator,
    compute_indicators,
    compute_indicators_folded,
    indicators_of_groups,
    lead_in_of,
)
from .periods import BUCKET_S, bucket_start, month_of
from .port import SeriesMonth, StoreError, StoreMissing, StoreUnavailable, UsageStorePort
from .registry import INDICATORS, IndicatorRegistry
from .scans import B_NS, GaugeScan, Group, SeriesScan, _covered, _it, per_bucket_totals, scan_gauge, scan_series

_T = TypeVar("_T")

log = logging.getLogger(__name__)

VALUE = "sitivmon_usage_month_to_date"
COVERAGE = "sitivmon_usage_month_to_date_coverage_ratio"
REFRESHED = "sitivmon_usage_month_to_date_refresh_timestamp_seconds"
REFRESH_CPU = "sitivmon_usage_month_to_date_refresh_cpu_seconds"
REFRESHES = "sitivmon_usage_month_to_date_refreshes"
RESCANNED = "sitivmon_usage_month_to_date_rescanned_series"


class UsageLiveCollector(Collector):
    """Register with `registry.register(UsageLiveCollector(...))` on the daemon's registry."""

    batch = 1000
    """Series read and folded at a time by a refresh: its memory is one piece's buckets (a month of
    1,000 series is tens of MB) plus a few hundred bytes of scans per series, instead of every
    series' month at once (1.3 GiB at 20,000 links, issue 15)."""

    def __init__(
        self,
        open_store: UsageStoreFactory,
        communes: Sequence[Commune],
        timezone: str = "Europe/Paris",
        links: Iterable[UsageKey] = (),
        *,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        background: bool = False,
        settle_s: float = 0.0,
    ) -> None:
        """`background`: a scrape never waits for a refresh; it serves the figures it has (none until
        the first refresh ends) and starts a refresh in a thread of its own when they are stale. The
        daemon uses it: a refresh reads every series of the month (seconds at thousands of links),
        which must not hold up /metrics. Without it, or with `refresh_s` 0 (figures computed for every
        scrape, as tests ask), a scrape refreshes stale figures itself.

        `open_store` opens a read-only store (`backends.usage_reader_factory`); the collector closes it
        after each refresh.

        `settle_s`: how long after its end a bucket may still change in the store: a poll whose interval
        straddles the bucket's end is spread into it when it arrives, and reaches the store at the
        recorder's next flush (the daemon passes its longest poll interval plus the flush interval).
        A refresh keeps its scan of the current week up to the buckets settled by then only: a kept
        bucket that changes later sends its series back to a scan from the week's start, and a refresh
        that fell each time just after a bucket's end did that for every counter series, every time
        (issue 15)."""
        self.open_store = open_store
        self.communes = list(communes)
        self.timezone = timezone
        self.links = list(links)
        self.refresh_s = refresh_s
        self.settle_s = settle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._at: float | None = None
        self._seen_store = False  # a store existed once: its disappearance is not "no usage"
        self.background = background
        self._thread: threading.Thread | None = None
        self._generation = 0  # bumped by follow(): a refresh started before it does not count
        self.incremental = True
        """Reuse the scans of the weeks that did not change since the previous refresh (`MonthScans`);
        False computes the whole month at each refresh (tests and benchmarks compare the two)."""
        self._scans = MonthScans()
        self._scans_lock = threading.Lock()  # one refresh at a time uses the kept scans
        self._cpu_s = 0.0  # CPU time of every refresh so far (its thread's), failed ones too
        self._refreshes = 0
        self._rescanned = 0  # series scanned from the current week's start, all refreshes so far
        self._cost_lock = threading.Lock()  # not `_lock`: a scrape refreshes under that one

    def describe(self) -> Iterable[Metric]:
        """Names only, so that registering does not touch the database."""
        return [
            GaugeMetricFamily(VALUE, "", labels=["commune", "indicator", "direction", "unit"]),
            GaugeMetricFamily(COVERAGE, "", labels=["commune", "indicator", "direction"]),
            GaugeMetricFamily(REFRESHED, ""),
            CounterMetricFamily(REFRESH_CPU, ""),
            CounterMetricFamily(REFRESHES, ""),
            CounterMetricFamily(RESCANNED, ""),
        ]

    def follow(
        self, communes: Sequence[Commune], timezone: str, links: Iterable[UsageKey], settle_s: float | None = None
    ) -> None:
        """Adopt a reloaded configuration (its links decide the coverage); takes effect at the next refresh."""
        with self._lock:
            self.communes, self.timezone, self.links = list(communes), timezone, list(links)
            if settle_s is not None:
                self.settle_s = settle_s
            self._at = None
            self._generation += 1

    def refresh(self) -> None:
        """Compute the figures now. Its CPU time is counted (`REFRESH_CPU`): at thousands of links a
        refresh is one of the daemon's larger costs (bench/README.md, issue 15), which an operator sees
        there, per refresh, rather than inferring it from the process's CPU."""
        cpu0 = time.thread_time()
        try:
            self._refresh()
        finally:
            spent = time.thread_time() - cpu0
            with self._cost_lock:
                self._cpu_s += spent
                self._refreshes += 1

    def _refresh(self) -> None:
        now = self._clock()
        month = month_of(now, self.timezone)
        end = min(month.end, bucket_start(now) + BUCKET_S)
        value = GaugeMetricFamily(
            VALUE,
            "Month-to-date usage indicator per commune (unit in the label; see docs/usage.md)",
            labels=["commune", "indicator", "direction", "unit"],
        )
        cov = GaugeMetricFamily(
            COVERAGE,
            "Share of expected samples received so far this month for the indicator (0..1)",
            labels=["commune", "indicator", "direction"],
        )
        n = (end - month.start) // BUCKET_S
        communes = [c.id for c in self.communes]
        try:
            store = self.open_store()
        except StoreMissing as exc:
            if self._seen_store:  # deleted under the daemon: zeros would be a lie (the recorder rebuilds it)
                raise StoreUnavailable(f"{exc}: it has disappeared") from exc
            inds = compute_indicators({}, communes, month.start, n)
        else:
            self._seen_store = True
            with store:
                inds = self._compute(store, communes, month.start, end, int(now - self.settle_s))
        for ind in inds:
            direction = ind.direction or ""
            if ind.value is not None:
                value.add_metric([ind.commune, ind.indicator, direction, ind.unit], float(ind.value))
            cov.add_metric([ind.commune, ind.indicator, direction], float(ind.coverage))
        stamp = GaugeMetricFamily(REFRESHED, "When the month-to-date usage gauges were computed")
        stamp.add_metric([], now)
        self._families = [value, cov, stamp]
        self._at = now

    def _compute(
        self, store: UsageStorePort, communes: list[str], start: int, end: int, settled: int | None = None
    ) -> list[Indicator]:
        """The month's indicators: from the weeks that changed since the previous refresh and the scans
        kept of the others (`MonthScans`), or, not `incremental`, the whole month folded `batch` series
        at a time (`compute_indicators_folded`). Same figures either way."""
        n = (end - start) // BUCKET_S
        if not n:
            return compute_indicators_folded(store.month_series_batches(start, end, self.links), communes, start, 0)
        if self.incremental:
            with self._scans_lock:
                self._scans.batch = self.batch
                try:
                    return self._scans.compute(store, communes, start, end, self.links, settled)
                finally:
                    with self._cost_lock:
                        self._rescanned += self._scans.rescanned
        held: dict[UsageKey, Held] = {}  # readings just before the month cover its start (`lead_in`)
        with contextlib.closing(store.month_series_batches(start - LEAD_IN_BUCKETS * BUCKET_S, start)) as before:
            for piece in before:
                held.update(lead_in_of(piece))
        with contextlib.closing(store.month_series_batches(start, end, self.links, batch=self.batch)) as pieces:
            return compute_indicators_folded(pieces, communes, start, n, held)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background refresh under way; True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _refresh_in_background(self) -> None:
        generation = self._generation
        try:
            self.refresh()
        except Exception as exc:  # StoreError and anything else: keep the figures, retry next period
            with self._lock:
                self._at = self._clock()
            log.warning("usage month-to-date refresh failed: %s", exc)
        with self._lock:
            if generation != self._generation:
                self._at = None  # the configuration changed meanwhile: refresh again at the next scrape

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = list(self._families)  # what a background scrape serves, whatever the refresh does
            stale = self._at is None or self._clock() - self._at >= self.refresh_s
            if stale and self.background and self.refresh_s > 0:  # 0: fresh figures on every scrape
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._refresh_in_background, name="usage-live-refresh", daemon=True
                    )
                    self._thread.start()
            elif stale:
                try:
                    self.refresh()
                except StoreError as exc:  # keep serving the previous figures, retry next period
                    self._at = self._clock()
                    log.warning("usage month-to-date refresh failed: %s", exc)
                families = list(self._families)
        with self._cost_lock:
            cpu_s, refreshes, rescanned = self._cpu_s, self._refreshes, self._rescanned
        cpu = CounterMetricFamily(REFRESH_CPU, "CPU time spent computing the month-to-date gauges")
        cpu.add_metric([], cpu_s)
        count = CounterMetricFamily(REFRESHES, "Month-to-date computations run (failed ones too)")
        count.add_metric([], refreshes)
        again = CounterMetricFamily(
            RESCANNED,
            "Series the month-to-date refreshes scanned from the current week's start rather than from"
            " where the previous refresh stopped (each series once at the first refresh, then only"
            " those whose earlier buckets changed)",
        )
        again.add_metric([], rescanned)
        yield from families
        yield cpu
        yield count
        yield again


# -- the incremental refresh ----------------------------------------------------------------------------

_State = tuple[int, int, int, bool]
"""Where a gauge series stands at a week's start: the held carry, value and readings, and the link state."""
_START: _State = (0, 0, 0, True)  # a series with nothing before: `scan_gauge` without `held`
_CScan = tuple[Fraction, tuple[tuple[int, int, frozenset[str]], ...], tuple[tuple[str, int], ...]]
"""A counter series' scan of one week: covered buckets, gap runs (week offsets), flag counts."""
_GScan = tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, int, frozenset[str]], ...], int, int, _State]
"""A gauge series' scan of one week: covered ns, level by readings, gap runs, up, down, the state it ends in."""


@dataclass(slots=True)
class _Week:
    """The scans of one week's slice [a, b) of the month (unix seconds), and the stamp they were read under."""

    a: int
    b: int
    stamp: bytes | None
    counters: dict[UsageKey, _CScan] = field(default_factory=dict)  # series with data in the slice
    gauges: dict[UsageKey, tuple[_State, _GScan]] = field(default_factory=dict)  # with the state scanned from
    totals: dict[tuple[str, Quantity], tuple[list[int] | array[int], bytearray]] = field(default_factory=dict)


def _state(gs: GaugeScan) -> _State:
    return (gs.held.carry_ns, gs.held.value, gs.held.readings, gs.ends_up)


def _gscan(sm: SeriesMonth, st: _State) -> _GScan:
    gs = scan_gauge(sm, Held(st[0], st[1], st[2]), st[3])
    return (gs.covered_ns, tuple(gs.level_ns.items()), tuple(gs.gaps), gs.up, gs.down, _state(gs))


def _cscan(sm: SeriesMonth) -> _CScan:
    sc = scan_series(sm)
    return (sc.covered, tuple(sc.gaps), tuple(sorted(sc.flags.items())))


def _cut(col: Col, lo: int, hi: int) -> Col:
    return col if isinstance(col, int) else col[lo:hi]


def _held_state(h: Held) -> _State:
    """The state a gauge's scan of the month's first week starts from: its lead-in hold."""
    return (h.carry_ns, h.value, h.readings, h.value >= h.readings)


def _cut_as_read(col: Col, lo: int, hi: int) -> Col:
    """`_cut`, a part constant throughout becoming an int, as the store's read of that part alone
    gives it (`Chunk.slice`)."""
    if isinstance(col, int):
        return col
    return as_constant(col[lo:hi])


def _split(sm: SeriesMonth, cut: int, into: dict[UsageKey, SeriesMonth] | None) -> SeriesMonth:
    """A series read over [start, end) as its two reads over the `cut` buckets from `start` (put
    `into`, unless None) and over the rest (returned): the same segments, cut where one spans `cut`,
    with the same columns."""
    after = SeriesMonth(sm.key, sm.start + cut * BUCKET_S, sm.n - cut)
    before = SeriesMonth(sm.key, sm.start, cut)
    if into is not None:
        into[sm.key] = before
    for off, (length, *cols) in sm.segments.items():
        end = off + length
        if off < cut and into is not None:
            k = min(end, cut) - off
            c = cols if k == length else [_cut_as_read(col, 0, k) for col in cols]
            before.segments[off] = (k, c[0], c[1], c[2], c[3])
        if end > cut:
            k = max(off, cut) - off
            c = cols if k == 0 else [_cut_as_read(col, k, length) for col in cols]
            after.segments[off + k - cut] = (length - k, c[0], c[1], c[2], c[3])
    return after


def _plain_covered(r: Col, e: Col, f: Col, lo: int, hi: int) -> Fraction | None:
    """The buckets [lo, hi) of a counter series covered, when every one of them is plain (written,
    no flag, samples received), else None.

    Why: a refresh scans each counter series' buckets since the previous one (one to a dozen) and
    joins them to the kept scan; for plain buckets the scan is no gap, no flag and the coverage of
    its (received, expected) pairs, and `scan_series` with its counters, the segment built for it
    and the join cost several times that coverage (~2.7 % of the daemon at 2,000 links, py-spy,
    bench/README.md, issue 15). Exact: each bucket counts whole when all expected samples came (or,
    the column constant, none was expected), else received / expected, as `scans._covered` counts it;
    a varying expected count of 0 is left to `scan_series`."""
    k = hi - lo
    if isinstance(f, int):
        if f != PRESENT:
            return None
    elif f[lo:hi].count(PRESENT) != k:
        return None
    if isinstance(r, int) and isinstance(e, int):
        if r <= 0:
            return None
        return Fraction(k) if e <= 0 or r >= e else Fraction(k * r, e)
    pairs = Counter(zip(_it(_cut(r, lo, hi), k), _it(_cut(e, lo, hi), k), strict=True))
    for rv, ev in pairs:
        if rv <= 0:
            return None  # no sample: a gap (`scan_series` names it)
        if ev <= 0 and not isinstance(e, int):
            return None  # `scan_series` reads it as the column's other expected count (an unwritten slot's 0)
    return _covered(pairs)


def _digest(cols: Sequence[Col], k: int, types: Sequence[str] = _SLOT_TYPE) -> bytes:
    """What the first `k` slots of a segment's columns (of the store's slot `types`) hold, by value,
    however a read represents them.

    A read gives a column constant over its slice as an int and a varying one as an array or a list.
    A column constant over the kept slots becomes an array once a later bucket differs (another
    received count, a gap; the bench's first buckets after its history), and a digest of the
    representation then sent every such series back to a scan from the week's start (all of them at
    the bench's second refresh: bench/README.md, issue 15, evening). Each column is therefore
    digested as `c<value>` when constant over the `k` slots, else as its values in the column's
    slot type (the store's, `_SLOT_TYPE`), else, values that do not fit it, as their repr with its length.
    Equal values give equal digests; different values, different ones (SHA-256, cut to 16 bytes: it
    ran at 1.3 GB/s here against BLAKE2b's 0.5, and a refresh digests every series' current week)."""
    h = hashlib.sha256(b"%d;" % k)
    if k <= 0:
        return h.digest()[:16]
    for typecode, c in zip(types, cols, strict=True):
        if isinstance(c, int):
            h.update(b"c%d;" % c)
            continue
        part = c[:k]
        const = as_constant(part)
        if type(const) is int and (isinstance(part, array) or all(type(x) is int for x in part)):
            h.update(b"c%d;" % const)
            continue
        if isinstance(part, array) and part.typecode != typecode:
            wide = _widened(part, typecode)
            if wide is not None:
                h.update(b"a")
                h.update(wide)
                continue
        if not isinstance(part, array) or part.typecode != typecode:
            try:
                part = array(typecode, part)
            except (OverflowError, TypeError):
                text = repr(list(part)).encode()
                h.update(b"l%d;" % len(text) + text)
                continue
        h.update(b"a")
        h.update(memoryview(part))
    return h.digest()[:16]


_SCANNED_COUNTER = _SLOT_TYPE[1:]
"""The columns a counter series' scan reads (`scan_series`: received, expected, flags; not its values,
which only the bucket totals read, and those are summed afresh from each read)."""


def _scanned(cols: tuple[Col, Col, Col, Col], k: int, counter: bool) -> bytes:
    """The digest of what the kept scan of a series' first `k` buckets was computed from: a counter's
    values are left out, a third of the bytes a refresh hashed (the widest column)."""
    return _digest(cols[1:], k, _SCANNED_COUNTER) if counter else _digest(cols, k)


def _widened(part: array[int], typecode: str) -> bytes | None:
    """The bytes of `array(typecode, part)` for an unsigned array narrower than the unsigned `typecode`,
    laid out in C (each byte plane of the narrow items copied into its place in the wide ones),
    instead of an int object per slot: the store encodes a column in the narrowest type its values
    fit (a counter's bytes in 'I', an expected count in 'H'), so nearly every digest widened, and
    widening item by item was most of a refresh at the end of a week (0.8 of 1.1 CPU-s for the
    digests of 6,000 series, 1,700 buckets each; bench/README.md, issue 15). None when this does
    not apply (a signed or wider array, a big-endian host): the caller converts item by item."""
    wide = array(typecode).itemsize
    if _BIG or part.typecode not in _UNSIGNED or typecode not in _UNSIGNED or part.itemsize >= wide:
        return None
    return bytes(in_lanes(part, wide))


def _joined(x: _CScan | _GScan, y: _CScan | _GScan, off: int) -> _CScan | _GScan:
    """Scans of two consecutive spans of one series joined, the second starting `off` buckets in."""
    runs = list(x[2] if len(x) == 6 else x[1])
    for a, b, reasons in y[2] if len(y) == 6 else y[1]:
        _run(runs, off + a, off + b, reasons)
    if len(x) == 3 and len(y) == 3:
        # Most joins have one side without flags or coverage (a week never written, the month's first
        # week joined to nothing before it): that side's own items are the sum, without a Counter
        # or a Fraction built (both sides' flag items are sorted, as built here and by `_cscan`).
        if not x[2] or not y[2]:
            flag_items = y[2] if not x[2] else x[2]
        else:
            flags = Counter(dict(x[2]))
            flags.update(dict(y[2]))
            flag_items = tuple(sorted(flags.items()))
        covered = y[0] if not x[0] else x[0] if not y[0] else x[0] + y[0]
        return (covered, tuple(runs), flag_items)
    assert len(x) == 6 and len(y) == 6
    level = dict(x[1])
    for r, t in y[1]:
        level[r] = level.get(r, 0) + t
    return (x[0] + y[0], tuple(level.items()), tuple(runs), x[3] + y[3], x[4] + y[4], y[5])


def _missing(
    key: UsageKey, m: int, held: Mapping[UsageKey, Held] | None, before: _CScan | _GScan | None = None
) -> _CScan | _GScan:
    """The scan of `m` buckets never written: one missing run; a gauge stays where it stood (`before`'s
    end, else its lead-in hold, else nothing held). A hold still running is drained (`_gscan`), not this."""
    runs = ((0, m, _MISSING),) if m else ()
    if key.quantity in COUNTERS:
        return (Fraction(0), runs, ())
    if before is not None:
        assert len(before) == 6
        st = before[5]
    else:
        h = held.get(key) if held is not None else None
        st = _held_state(h) if h is not None else _START
    return (0, (), runs, 0, 0, st)


def _run(runs: list[tuple[int, int, frozenset[str]]], a: int, b: int, reasons: frozenset[str]) -> None:
    """Append a gap run, joined to the previous one when they touch (as one scan of the month joins them)."""
    if runs and runs[-1][1] == a:
        runs[-1] = (runs[-1][0], b, runs[-1][2] | reasons)
    else:
        runs.append((a, b, reasons))


_MISSING = frozenset({"missing"})
_ADVANCE = 12
"""Buckets closed in the current week before its kept scan moves on (an hour: the scan of up to 12
buckets again, against a digest of the week's columns, ~70 µs per series)."""


class MonthScans:
    """The month-to-date indicators computed again at each refresh from what changed only.

    Why: a refresh read and scanned every week of the month (31 CPU-s at 20,000 links, issue 15)
    although only the current week gets new buckets; the others change only by a late correction or
    a compaction. So the scans of each past week (per series, and its communes' bucket totals) are
    kept with the week's stamp (`UsageStorePort.week_stamps`) and reused while it is unchanged; the
    current week, a changed week and the lead-in are read again. A gauge's scan of a week also depends
    on where its hold and link state stood at the week's start: a kept week whose series no longer
    start from the same state is read again. The month's figures are then the weeks' scans joined:
    sums, coverage, flags and up/down add, gap runs are joined where they touch, the bucket totals
    (volume, 95th percentile) are placed side by side. The result is the whole-month computation's,
    sample for sample (tests/usage/test_live_incremental.py compares them over a sequence of writes).

    Stamps are read before the data they tag: a write between the two changes the stamp the next
    refresh reads, so a week is at worst read once more, never kept stale.
    """

    def __init__(self, batch: int = 1000, registry: IndicatorRegistry = INDICATORS) -> None:
        self.batch = batch
        self.registry = registry
        self._month: int | None = None
        self._weeks: dict[int, _Week] = {}
        self._lead: tuple[dict[int, bytes], dict[UsageKey, Held]] | None = None
        self._keys: dict[UsageKey, UsageKey] = {}  # one object per series for every week kept
        self._closed: tuple[Mapping[UsageKey, Held], list[_Week], dict[UsageKey, _CScan | _GScan]] | None = None
        self._settled: int | None = None  # `compute`'s
        self._open_at: int | None = None  # where the current week's slice starts (`_open` applies to it)
        self._open: dict[UsageKey, tuple[int, bytes, _State, _CScan | _GScan]] = {}
        """The current week's series: the scan of their first buckets (those settled, `compute`'s
        `settled`: by default all but the last, still open, one), with their number, a digest of those
        buckets' columns and the state the scan started from."""
        self.read_weeks: list[int] = []
        """Weeks read by the last `compute` (tests and benchmarks: what was not reused)."""
        self.rescanned = 0
        """Series of the current week scanned from its start by the last `compute` (the others: from
        the bucket where the previous refresh stopped)."""

    def _key(self, key: UsageKey) -> UsageKey:
        """The series' one key object: each read makes its own, and every week kept held its own copy
        (tens of MB at 20,000 links)."""
        return self._keys.setdefault(key, key)

    def compute(
        self,
        store: UsageStorePort,
        communes: Sequence[str],
        start: int,
        end: int,
        links: Iterable[UsageKey],
        settled: int | None = None,
    ) -> list[Indicator]:
        """`settled`: buckets that end after it may still change (`UsageLiveCollector`'s `settle_s`):
        the scan kept for the next refresh stops before them. None: every bucket but the last."""
        self._settled = settled
        n = (end - start) // BUCKET_S
        if self._month != start:  # a new month: nothing kept applies
            self._month, self._weeks, self._lead, self._keys, self._closed = start, {}, None, {}, None
        self.read_weeks = []
        self.rescanned = 0
        last = (end - 1) // CHUNK_S
        # The lead-in ends in the current week (the month began in it: its first days): its stamp changes
        # at every flush, so it would be read again at every refresh, the week's chunks decoded twice.
        # It is taken from the current week's read instead (`_read`'s `lead`), which fills `held`.
        lead = start - LEAD_IN_BUCKETS * BUCKET_S if start > last * CHUNK_S else None
        if lead is None:
            held = self._lead_in(store, start)
        else:
            held, self._lead = {}, None
            self.read_weeks.append(lead // CHUNK_S - 1_000_000)
        stamps = store.week_stamps(start, last * CHUNK_S) if last * CHUNK_S > start else {}
        states: dict[UsageKey, _State] = {k: _held_state(h) for k, h in held.items()}
        weeks: list[_Week] = []
        drains: dict[tuple[int, UsageKey], _GScan] = {}  # by (place in `weeks`, series)
        keys: list[UsageKey] = []
        for i, w in enumerate(range(start // CHUNK_S, last + 1)):
            a, b = max(start, w * CHUNK_S), min(end, (w + 1) * CHUNK_S)
            week = self._weeks.get(w)
            if (
                w == last
                or week is None
                or (week.a, week.b) != (a, b)
                or week.stamp is None
                or week.stamp != stamps.get(w)
                or any(states.get(k, _START) != st for k, (st, _) in week.gauges.items())
            ):
                current = w == last  # read with the configured keys: every series of the month is in it
                week = self._read(
                    store,
                    a,
                    b,
                    None if current else stamps.get(w),
                    states,
                    links if current else (),
                    keys if current else None,
                    (lead, held) if current and lead is not None else None,
                )
                self.read_weeks.append(w)
                if not current:
                    self._weeks[w] = week
            for k, (_, gs) in week.gauges.items():
                states[k] = gs[5]
            m = (b - a) // BUCKET_S
            for k, st in states.items():
                if k not in week.gauges and st[0] > 0:  # a hold carried into a week without readings
                    gs = _gscan(SeriesMonth(k, a, m), st)
                    drains[(i, k)] = gs
                    states[k] = gs[5]
            weeks.append(week)
        self._weeks = {w: wk for w, wk in self._weeks.items() if start // CHUNK_S <= w < last}
        return self._join(weeks, drains, keys, held, communes, start, n)

    def _lead_in(self, store: UsageStorePort, start: int) -> dict[UsageKey, Held]:
        """Where each gauge series stood at the month's start (`lead_in_of`), kept while its weeks' stamps stay."""
        a = start - LEAD_IN_BUCKETS * BUCKET_S
        stamps = store.week_stamps(a, start)
        if self._lead is not None and self._lead[0] == stamps:
            return self._lead[1]
        held: dict[UsageKey, Held] = {}
        with contextlib.closing(store.month_series_batches(a, start, batch=self.batch)) as before:
            for piece in before:
                self._take_lead_in(piece, held)
        self._lead = (stamps, held)
        self.read_weeks.append(a // CHUNK_S - 1_000_000)  # the lead-in, told apart from the month's weeks
        return held

    def _take_lead_in(self, before: Mapping[UsageKey, SeriesMonth], held: dict[UsageKey, Held]) -> None:
        """Add where each gauge series of a piece read over the lead-in stood at the month's start."""
        held.update((self._key(k), h) for k, h in lead_in_of(before).items())

    def _read(
        self,
        store: UsageStorePort,
        a: int,
        b: int,
        stamp: bytes | None,
        states: dict[UsageKey, _State],
        links: Iterable[UsageKey],
        keys: list[UsageKey] | None,
        lead: tuple[int, dict[UsageKey, Held]] | None = None,
    ) -> _Week:
        """Read and scan the slice [a, b) of one week, `batch` series at a time (one piece's buckets in
        memory); gauges from their `states`. `keys`: filled with every series read (the current week).
        `lead`: (the lead-in's start, `held` to fill): the series are read from there, each piece's
        lead-in taken off (`_split`) into `held` and `states` before the rest is scanned from it."""
        week = _Week(a, b, stamp)
        m = (b - a) // BUCKET_S
        opened: dict[UsageKey, tuple[int, bytes, _State, _CScan | _GScan]] = {}
        quantities = self.registry.quantities()
        interned: dict[object, object] = {}  # a past week: one object for equal scans (most series' week)

        def intern(value: _T) -> _T:
            return value if keys is not None else interned.setdefault(value, value)  # type: ignore[return-value]

        with contextlib.closing(
            store.month_series_batches(a if lead is None else lead[0], b, links, batch=self.batch)
        ) as pieces:
            for piece in pieces:
                if lead is not None:
                    cut = (a - lead[0]) // BUCKET_S
                    before: dict[UsageKey, SeriesMonth] = {}
                    after: dict[UsageKey, SeriesMonth] = {}
                    for k, sm in piece.items():  # only gauges have a lead-in (`lead_in_of`)
                        after[k] = _split(sm, cut, before if k.quantity not in COUNTERS else None)
                    got: dict[UsageKey, Held] = {}
                    self._take_lead_in(before, got)
                    lead[1].update(got)
                    states.update((k, _held_state(h)) for k, h in got.items())
                    piece = after
                by: dict[tuple[str, Quantity], list[SeriesMonth]] = {}
                for key, sm in piece.items():
                    if key.quantity not in quantities:
                        continue
                    key = self._key(key)
                    if keys is not None:
                        keys.append(key)
                    if not sm.segments:  # joined as a missing week (or the hold it drains)
                        continue
                    st = states.get(key, _START)
                    if keys is not None and len(sm.segments) == 1 and 0 in sm.segments and m > 1:
                        scanned = self._scan_current(key, sm, st, opened)
                    else:
                        scanned = _cscan(sm) if key.quantity in COUNTERS else _gscan(sm, st)
                    if key.quantity in COUNTERS:
                        assert len(scanned) == 3
                        week.counters[key] = intern(scanned)
                    else:
                        assert len(scanned) == 6
                        week.gauges[key] = intern((st, scanned))
                    by.setdefault((key.commune, key.quantity), []).append(sm)
                for cq, sms in by.items():
                    add, present = per_bucket_totals(sms, m)
                    if cq in week.totals:
                        tot, pres = week.totals[cq]
                        both = int.from_bytes(pres, "big") | int.from_bytes(present, "big")
                        add, present = list(map(int.__add__, tot, add)), bytearray(both.to_bytes(m, "big"))
                    week.totals[cq] = (add, present)
                del piece, by  # before the next piece is read
        if keys is None:  # a past week, kept: its totals as 8 bytes a bucket rather than an int object each
            for cq, (tot, pres) in week.totals.items():
                if tot and min(tot) >= -(2**63) and max(tot) < 2**63:
                    week.totals[cq] = (array("q", tot), pres)
        if keys is not None:  # one object for equal kept scans (most series' when the week is clean)
            same_st: dict[_State, _State] = {}
            same_scan: dict[_CScan | _GScan, _CScan | _GScan] = {}
            for k, (m1, digest, st, prefix) in opened.items():
                opened[k] = (m1, digest, same_st.setdefault(st, st), same_scan.setdefault(prefix, prefix))
            self._open_at, self._open = a, opened
        return week

    def _scan_current(
        self,
        key: UsageKey,
        sm: SeriesMonth,
        st: _State,
        opened: dict[UsageKey, tuple[int, bytes, _State, _CScan | _GScan]],
    ) -> _CScan | _GScan:
        """A series of the current week, scanned from where the previous refresh stopped when its buckets
        up to there read the same (their digest) and its gauge state at the week's start is the same:
        only the buckets since are scanned, and joined to the kept scan (as weeks are joined). Keeps for
        the next refresh the scan of the buckets settled (`compute`'s `settled`; by default every bucket
        but the last, open: it will change), moving that point on once `_ADVANCE` buckets have closed
        since (each move costs a second digest)."""
        length, v, r, e, f = sm.segments[0]
        cols = (v, r, e, f)
        counter = key.quantity in COUNTERS
        m1 = length - 1
        if self._settled is not None:  # not past the buckets that may still change
            m1 = max(0, min(m1, (self._settled - sm.start) // BUCKET_S))
        kept = self._open.pop(key, None) if self._open_at == sm.start else None  # popped: not twice in memory
        if kept is not None and kept[0] <= m1 and kept[2] == st and kept[1] == _scanned(cols, kept[0], counter):
            m0, prefix = kept[0], kept[3]
            if m1 - m0 < _ADVANCE:  # keep the same point: one digest per refresh instead of two
                opened[key] = kept
                m1 = m0
        else:
            m0, prefix = 0, None
            self.rescanned += 1
        for lo, hi in ((m0, m1), (m1, length)):
            if hi <= lo:
                continue
            if counter and prefix is not None:
                more = _plain_covered(r, e, f, lo, hi)
                if more is not None:  # what `_joined(prefix, _cscan(part), lo)` gives for plain buckets
                    assert len(prefix) == 3
                    prefix = (prefix[0] + more, prefix[1], prefix[2])
                    if hi == m1:
                        opened[key] = (m1, _scanned(cols, m1, counter), st, prefix)
                    continue
            seg = (hi - lo, _cut(v, lo, hi), _cut(r, lo, hi), _cut(e, lo, hi), _cut(f, lo, hi))
            part = SeriesMonth(key, sm.start + lo * BUCKET_S, hi - lo, {0: seg})
            if counter:
                scan: _CScan | _GScan = _cscan(part)
            else:
                scan = _gscan(part, prefix[5] if prefix is not None else st)  # type: ignore[misc]
            prefix = scan if prefix is None else _joined(prefix, scan, lo)
            if hi == m1:
                opened[key] = (m1, _scanned(cols, m1, counter), st, prefix)
        assert prefix is not None
        return prefix

    def _closed_weeks(
        self,
        weeks: list[_Week],
        spans: list[tuple[int, int]],
        drains: Mapping[tuple[int, UsageKey], _GScan],
        held: Mapping[UsageKey, Held],
    ) -> dict[UsageKey, _CScan | _GScan]:
        """Each series' scans of the past weeks joined (offsets from the month's start), kept while the
        same weeks and lead-in are kept: a refresh then joins only the current week to them."""
        kept = self._closed
        if (
            kept is not None
            and kept[0] is held
            and len(kept[1]) == len(weeks)
            and all(a is b for a, b in zip(kept[1], weeks, strict=True))
        ):
            return kept[2]
        keys: set[UsageKey] = {k for i, k in drains if i < len(weeks)}
        for wk in weeks:
            keys.update(wk.counters)
            keys.update(wk.gauges)
        joined: dict[UsageKey, _CScan | _GScan] = {}
        interned: dict[object, object] = {}
        for k in keys:
            x: _CScan | _GScan | None = None
            for i, (wk, (off, m)) in enumerate(zip(weeks, spans, strict=True)):
                y: _CScan | _GScan | None
                if k.quantity in COUNTERS:
                    y = wk.counters.get(k)
                else:
                    entry = wk.gauges.get(k)
                    y = entry[1] if entry is not None else drains.get((i, k))
                if y is None:
                    y = _missing(k, m, held if x is None else None, x)
                x = y if x is None else _joined(x, y, off)
            assert x is not None
            joined[k] = interned.setdefault(x, x)  # type: ignore[assignment]
        self._closed = (held, list(weeks), joined)
        return joined

    def _join(
        self,
        weeks: list[_Week],
        drains: Mapping[tuple[int, UsageKey], _GScan],
        keys: list[UsageKey],
        held: Mapping[UsageKey, Held],
        communes: Sequence[str],
        start: int,
        n: int,
    ) -> list[Indicator]:
        """The month's groups from the weeks' scans, then the indicator rows (`indicators_of_groups`)."""
        wanted = set(communes)
        by: dict[tuple[str, Quantity], list[UsageKey]] = {}
        for k in keys:
            if k.commune in wanted:
                by.setdefault((k.commune, k.quantity), []).append(k)
        spans = [((wk.a - start) // BUCKET_S, (wk.b - wk.a) // BUCKET_S) for wk in weeks]
        closed = self._closed_weeks(weeks[:-1], spans[:-1], drains, held)
        current, (at, m) = weeks[-1], spans[-1]
        last = len(weeks) - 1
        out: list[Indicator] = []
        for commune in communes:  # a commune's month at a time: one commune's scans in memory, not all
            groups: dict[tuple[str, Quantity], Group] = {}
            for (c, q), ks in by.items():
                if c != commune:
                    continue
                ks.sort(key=lambda k: k.subject)
                gauge = q not in COUNTERS
                scans: list[SeriesScan] = []
                gauges: list[GaugeScan] = []
                for k in ks:
                    before = closed.get(k)
                    if before is None:  # nothing in the past weeks (and no hold carried through them)
                        before = _missing(k, at, held)
                    now: _CScan | _GScan | None
                    if gauge:
                        entry = current.gauges.get(k)
                        now = entry[1] if entry is not None else drains.get((last, k))
                    else:
                        now = current.counters.get(k)
                    if now is None:
                        now = _missing(k, m, None, before)
                    x = _joined(before, now, at)
                    if len(x) == 6:
                        cov_ns, lev, gaps, up, down, st = x
                        g = GaugeScan(cov_ns, dict(lev), list(gaps), up, down, Held(st[0], st[1], st[2]), st[3])
                        gauges.append(g)
                        scans.append(SeriesScan(Fraction(cov_ns, B_NS), g.gaps, Counter()))
                    else:
                        scans.append(SeriesScan(x[0], list(x[1]), Counter(dict(x[2]))))
                tot, pres = [0] * n, bytearray(n)
                for wk, (off, span) in zip(weeks, spans, strict=True):
                    part = wk.totals.get((c, q))
                    if part is not None:
                        tot[off : off + span], pres[off : off + span] = part
                series = [SeriesMonth(k, start, n) for k in ks]
                groups[(c, q)] = Group.assembled(start, n, gauge, series, scans, gauges, (tot, pres))
            out.extend(indicators_of_groups(groups, [commune], start, n, held, self.registry))
            del groups
        return out
