"""The incremental month-to-date refresh (`live.MonthScans`) gives the whole month's gauges, sample for
sample, over a sequence of writes: new buckets, late corrections in past weeks (counters, gauges, the
lead-in before the month), compaction, a replica of a pair (PostgreSQL), a week boundary and a month
boundary; and it reads again only the weeks that changed. Both backends (`usage_store` fixtures)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import pytest

from sitivmon.config.model import Commune
from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.backends import open_usage_store, usage_reader_factory
from sitivmon.usage.buckets import CHUNK_S, COUNTERS, FLAG_BITS, PRESENT, Bucket
from sitivmon.usage.indicators import LEAD_IN_BUCKETS
from sitivmon.usage.live import UsageLiveCollector
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.port import UsageStorePort
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.store import SqliteUsageStore
from tests.usage.test_store_contract import Backend, backend, usage_store  # noqa: F401 (fixtures: both backends)

TZ = "Europe/Paris"
M = month_range("2026-10", TZ)  # starts 2026-09-30 22:00 UTC: the month's first week is a two-hour slice
NEXT = month_range("2026-11", TZ)
COMMUNES = [Commune(id=c, name=c.title(), insee=f"6900{i}") for i, c in enumerate(("givors", "corbas"))]
KEYS = [UsageKey(c, f"{c[:3]}-{i}", q) for c in ("givors", "corbas", "elsewhere") for i in range(2) for q in Quantity]
SILENT = UsageKey("givors", "silent", Quantity.TRAFFIC_IN)  # configured, never written


def bucket(rng: random.Random, key: UsageKey, level: dict[UsageKey, int]) -> Bucket:
    """A closed bucket with varied samples, poll intervals, flags and gauge levels."""
    interval = rng.choice([60, 60, 60, 90, 300, 600]) if rng.random() < 0.15 else 60
    n = max(1, 300 // interval) if rng.random() > 0.03 else 0
    if key.quantity in COUNTERS:
        value = rng.randrange(0, 10**9)
    else:
        if rng.random() < 0.05:
            level[key] = rng.randrange(0, 2) if key.quantity is Quantity.LINK_UP else rng.randrange(1, 10**6)
        value = level[key] * n
    flags = PRESENT | (rng.choice(list(FLAG_BITS.values())) if rng.random() < 0.02 else 0)
    return Bucket(value, n * interval * 1_000_000, n, 300_000 // interval, flags)


class Writer:
    """Writes buckets for KEYS from a time on, flush by flush, as the recorder would (with its `compact_every`)."""

    def __init__(self, store: UsageStorePort, seed: int, t: int) -> None:
        self.store, self.rng, self.t = store, random.Random(seed), t
        self.level = {k: self.rng.randrange(0, 2) for k in KEYS}

    def until(self, end: int, per_flush: int = 72) -> None:
        while self.t < end:
            closed = {}
            for _ in range(per_flush):
                if self.t >= end:
                    break
                for k in KEYS:
                    if self.rng.random() > 0.04:  # a missed bucket now and then
                        closed[(k, self.t)] = bucket(self.rng, k, self.level)
                self.t += BUCKET_S
            opened = {(k, self.t): Bucket(7, 30_000_000, 1, 5000, PRESENT) for k in KEYS[::3]}
            self.store.write(closed, opened, {}, now=self.t + 40)

    def correct(self, at: int, keys: list[UsageKey]) -> None:
        """Late corrections: closed buckets added to buckets long closed (a restart's spread gap)."""
        self.store.write({(k, at): bucket(self.rng, k, self.level) for k in keys}, {}, {}, now=self.t + 41)


@pytest.fixture
def pair(backend: Backend) -> Iterator[tuple[UsageLiveCollector, UsageLiveCollector, list[float]]]:  # noqa: F811
    """Two collectors on the same store and clock: one incremental, one computing the whole month."""
    clock = [0.0]
    made = []
    for incremental in (True, False):
        col = UsageLiveCollector(
            usage_reader_factory(backend.settings, backend.state_dir), COMMUNES, TZ, [SILENT],
            refresh_s=0, clock=lambda: clock[0],
        )  # fmt: skip
        col.incremental = incremental
        col.batch = 5  # several pieces per week
        made.append(col)
    yield made[0], made[1], clock


def samples(col: UsageLiveCollector) -> list[tuple[str, list[tuple[str, str]], float]]:
    """One refresh (`refresh_s` 0: each collect refreshes) and its samples, but its CPU time and the
    series it scanned from the week's start."""
    return sorted(
        (s.name, sorted(s.labels.items()), s.value)
        for f in col.collect()
        for s in f.samples
        if s.name
        not in (
            "sitivmon_usage_month_to_date_refresh_cpu_seconds_total",
            "sitivmon_usage_month_to_date_rescanned_series_total",  # what differs, by design
        )
    )


def week(t: int) -> int:
    return t // CHUNK_S


def check(inc: UsageLiveCollector, whole: UsageLiveCollector) -> list[int]:
    """Both collectors' gauges are the same; returns the weeks the incremental one read."""
    got, want = samples(inc), samples(whole)
    assert len(want) > 40  # 2 communes x 7 indicators x directions, coverage, the stamp
    assert got == want
    return [w for w in inc._scans.read_weeks if w >= 0]


@pytest.mark.parametrize("settle_s", [0, 700])  # the scan kept up to the newest closed bucket, or 2-3 before it
def test_incremental_refresh_equals_the_whole_month_over_a_sequence_of_writes(
    backend: Backend,  # noqa: F811
    usage_store: UsageStorePort,  # noqa: F811
    pair: tuple[UsageLiveCollector, UsageLiveCollector, list[float]],
    settle_s: float,
) -> None:
    inc, whole, clock = pair
    inc.settle_s = settle_s
    w = Writer(usage_store, 3, M.start - 6 * BUCKET_S)  # from before the month: the lead-in
    now = M.start + 9 * 86400 + 600  # Oct 9: the two-hour first week, one full week, the current one
    w.until(now)
    clock[0] = now + 30
    first = check(inc, whole)
    assert first == list(range(week(M.start), week(now) + 1))

    w.until(now + 3600, per_flush=6)  # an hour of ordinary flushes: only the current week is read again
    clock[0] = now + 3600 + 30
    assert check(inc, whole) == [week(now)]
    assert inc._scans.rescanned == 0  # every series of the current week scanned from the previous refresh on

    w.correct(w.t - 24 * BUCKET_S, KEYS[:10])  # late corrections two hours back in the current week
    assert check(inc, whole) == [week(now)]
    assert 0 < inc._scans.rescanned <= 10  # those series (that changed) scanned again from the week's start

    past = week(now) * CHUNK_S - 3 * 86400  # three days into the full week
    w.correct(past, [k for k in KEYS if k.commune == "givors"][:4])  # counters and gauges
    assert check(inc, whole) == [week(past), week(now)]

    w.correct(week(now) * CHUNK_S - BUCKET_S, [k for k in KEYS if k.quantity not in COUNTERS])  # last slot
    assert week(now) * CHUNK_S - BUCKET_S >= M.start
    check(inc, whole)  # the gauges' holds into the current week changed: it is read again anyway

    w.correct(M.start - BUCKET_S, KEYS)  # the lead-in: where each gauge stood at the month's start
    check(inc, whole)
    w.correct(M.start, KEYS[:7])  # the month's two-hour first week
    assert week(M.start) in check(inc, whole)

    store = usage_store
    assert isinstance(store, SqliteUsageStore | PostgresUsageStore)
    store.compact()  # pending closed buckets merged into their chunks: rewritten, same figures
    check(inc, whole)
    assert check(inc, whole) == [week(now)]  # nothing changed since: kept

    if backend.settings.store == "postgresql":  # a replica of a pair: its rows are merged bucket by bucket
        with open_usage_store(backend.settings, backend.state_dir, replica="b") as other:
            twin = Writer(other, 4, past - 3600)
            twin.until(past + 3600, per_flush=6)
            twin.t = w.t - 2 * BUCKET_S
            twin.until(w.t, per_flush=1)
        assert week(past) in check(inc, whole)

    boundary = (week(now) + 1) * CHUNK_S  # across a week boundary: the current week becomes a past one
    w.until(boundary + 7200)
    clock[0] = boundary + 7200 + 30
    assert check(inc, whole) == [week(now), week(boundary)]
    w.until(boundary + 7500, per_flush=1)
    clock[0] = boundary + 7500 + 30
    assert check(inc, whole) == [week(boundary)]

    w.t = NEXT.start - 2 * BUCKET_S  # across the month boundary: nothing kept of October applies
    w.until(NEXT.start + 86400)
    clock[0] = NEXT.start + 86400 + 30
    assert check(inc, whole) == list(range(week(NEXT.start), week(NEXT.start + 86400) + 1))
    w.until(NEXT.start + 86400 + 900, per_flush=1)
    clock[0] = NEXT.start + 86400 + 930
    assert check(inc, whole) == [week(NEXT.start + 86400)]


def test_the_comparison_fails_when_a_changed_week_is_kept(
    backend: Backend,  # noqa: F811
    usage_store: UsageStorePort,  # noqa: F811
    pair: tuple[UsageLiveCollector, UsageLiveCollector, list[float]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stamps blind to a late correction: the incremental gauges keep the old week, and the comparison
    above would see it (so it can fail)."""
    inc, whole, clock = pair

    def blind(self: object, start: int, end: int) -> dict[int, bytes]:
        return {x: b"same" for x in range(start // CHUNK_S, (end - 1) // CHUNK_S + 1)} if end > start else {}

    monkeypatch.setattr(type(usage_store), "week_stamps", blind)
    w = Writer(usage_store, 5, M.start)
    now = M.start + 9 * 86400
    w.until(now)
    clock[0] = now + 30
    check(inc, whole)
    w.correct(week(now) * CHUNK_S - 3 * 86400, [k for k in KEYS if k.quantity is Quantity.TRAFFIC_IN])
    assert samples(inc) != samples(whole)


AZORES = "Atlantic/Azores"
JAN = month_range("2026-01", AZORES)  # Thursday 1 January, 01:00 UTC: one hour into an (epoch) week


def test_the_first_days_of_a_month_read_the_current_week_once(
    backend: Backend,  # noqa: F811
    usage_store: UsageStorePort,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The month began in the current week: its lead-in, whose stamp changes at every flush, is taken
    from the week's one read instead of being read again at each refresh. Here the lead-in also
    reaches back into the previous week. The gauges are the whole month's throughout, and once
    the week is over the lead-in is read on its own again, then kept."""
    lead = JAN.start - LEAD_IN_BUCKETS * BUCKET_S
    assert week(lead) == week(JAN.start) - 1 and JAN.start % CHUNK_S == 3600
    clock = [0.0]
    inc, whole = (
        UsageLiveCollector(
            usage_reader_factory(backend.settings, backend.state_dir), COMMUNES, AZORES, [SILENT],
            refresh_s=0, clock=lambda: clock[0],
        )
        for _ in range(2)
    )  # fmt: skip
    whole.incremental = False
    inc.batch = whole.batch = 5
    reads: list[tuple[int, int]] = []
    real = type(usage_store).month_series_batches

    def counted(self: UsageStorePort, start: int, end: int, keys: Iterable[UsageKey] = (), *, batch: int = 1000):  # type: ignore[no-untyped-def]
        reads.append((start, end))
        return real(self, start, end, keys, batch=batch)  # type: ignore[arg-type]

    monkeypatch.setattr(type(usage_store), "month_series_batches", counted)

    def refresh(now: int) -> list[tuple[int, int]]:
        """Both collectors' gauges at `now` are the same; returns what the incremental one read."""
        clock[0] = now + 30
        del reads[:]
        got = samples(inc)
        mine = list(reads)
        assert got == samples(whole)
        assert len(got) > 40
        return mine

    w = Writer(usage_store, 7, lead - 6 * BUCKET_S)
    now = JAN.start + 6 * 3600
    w.until(now)
    assert refresh(now) == [(lead, now + BUCKET_S)]  # one read: the lead-in with the week
    w.until(now + 3600, per_flush=6)
    now += 3600
    assert refresh(now) == [(lead, now + BUCKET_S)]
    gauges = [k for k in KEYS if k.quantity not in COUNTERS]
    w.correct(week(JAN.start) * CHUNK_S - BUCKET_S, gauges)  # the lead-in's part in the previous week
    refresh(now)
    w.correct(JAN.start - BUCKET_S, gauges)  # and in the current week
    refresh(now)
    w.correct(JAN.start, KEYS[:9])  # the month's first bucket
    refresh(now)
    assert isinstance(usage_store, SqliteUsageStore | PostgresUsageStore)
    usage_store.compact()
    refresh(now)

    nxt = (week(JAN.start) + 1) * CHUNK_S  # the next week: the lead-in lies in a past week, read alone
    w.until(nxt + 7200)
    now = nxt + 7200
    assert refresh(now)[0] == (lead, JAN.start)
    w.until(now + 900, per_flush=1)
    now += 900
    assert refresh(now) == [(nxt, now + BUCKET_S)]  # the lead-in and the first week kept


def test_a_column_that_stops_being_constant_keeps_the_kept_scan(
    usage_store: UsageStorePort,  # noqa: F811
    pair: tuple[UsageLiveCollector, UsageLiveCollector, list[float]],
) -> None:
    """The current week's received and expected counts are the same in every bucket for a day (a read
    gives them as ints), then the poll interval changes (60 s to 10 s) and they vary (arrays). The
    buckets the previous refresh scanned read the same values: the kept scans go on from there, and
    the gauges are the whole month's. Before, the digest told the representations apart and every
    series was scanned again from the week's start."""
    inc, whole, clock = pair
    keys = [k for k in KEYS if k.commune != "elsewhere"]
    now = M.start + 9 * 86400 + 600

    def write(start: int, end: int, interval: int) -> None:
        n = 300 // interval
        t = start
        while t < end:
            closed = {}
            for _ in range(12):
                for i, k in enumerate(keys):
                    value = (t // BUCKET_S * 7 + i) % 1000 if k.quantity in COUNTERS else n
                    closed[(k, t)] = Bucket(value, n * interval * 1_000_000, n, 300_000 // interval, PRESENT)
                t += BUCKET_S
            usage_store.write(closed, {}, {}, now=t + 40)

    write(week(now) * CHUNK_S - 86400, now, 60)
    clock[0] = now + 30
    check(inc, whole)
    write(now, now + 3600, 10)
    clock[0] = now + 3600 + 30
    assert check(inc, whole) == [week(now)]
    assert inc._scans.rescanned == 0


def test_a_value_correction_in_the_current_week_keeps_counter_scans_not_gauge_ones(
    usage_store: UsageStorePort,  # noqa: F811
    pair: tuple[UsageLiveCollector, UsageLiveCollector, list[float]],
) -> None:
    """A counter's kept scan of the current week is of its received, expected and flags columns only
    (`scan_series` does not read values; the bucket totals are summed afresh from each read): a late
    correction of values alone in buckets it covers keeps it, and the gauges are the whole month's.
    A gauge's scan reads its values: the same correction scans that series again from the week's start."""
    inc, whole, clock = pair
    w = Writer(usage_store, 11, M.start + 8 * 86400)
    now = M.start + 9 * 86400 + 600
    w.until(now)
    clock[0] = now + 30
    check(inc, whole)
    w.until(now + 3600)
    clock[0] = now + 3600 + 30
    check(inc, whole)
    assert inc._scans.rescanned == 0
    counters = [k for k in KEYS if k.quantity in COUNTERS and k.commune != "elsewhere"][:3]
    at = now - 2 * 3600 // BUCKET_S * BUCKET_S  # closed, written, and scanned by both refreshes
    # A value added alone: no samples, no expected count, no flag (merging adds values and received
    # samples, keeps the larger expected count, ORs the flags).
    usage_store.write({(k, at): Bucket(12_345, 0, 0, 0, 0) for k in counters}, {}, {}, now=w.t + 41)
    clock[0] += 1
    assert check(inc, whole) == [week(now)]
    assert inc._scans.rescanned == 0
    gauge = next(k for k in KEYS if k.quantity not in COUNTERS and k.commune != "elsewhere")
    usage_store.write({(gauge, at): Bucket(3, 0, 0, 0, 0)}, {}, {}, now=w.t + 42)
    clock[0] += 1
    assert check(inc, whole) == [week(now)]
    assert inc._scans.rescanned == 1


_WIDTHS = {"B": 1, "H": 2, "I": 4, "Q": 8}


@pytest.mark.parametrize("typecode", ["Q", "I", "H", "B"])
def test_the_digest_is_of_values_not_of_their_representation(typecode: str) -> None:
    """Every form a read may give (an int for a constant, an array of any width or sign, a list)
    digests alike for the same values, through the item-by-item conversion and the byte-plane
    widening (`_widened`) alike; other values digest otherwise."""
    from array import array

    from sitivmon.usage.live import _digest

    rng = random.Random(typecode)
    top = 2 ** (8 * _WIDTHS[typecode])
    for _ in range(300):
        k = rng.choice([1, 2, 5, 40])
        n = k + rng.randrange(3)
        const = rng.random() < 0.4
        values = [7] * n if const else [rng.randrange(rng.choice([256, top])) for _ in range(n)]
        forms: list[object] = [array(typecode, values), list(values), array("Q", values), array("L", values)]
        for code in "BHIbhilq":  # every narrower or signed array that holds them
            if max(values) < 2 ** (8 * array(code).itemsize - (code in "bhilq")):
                forms.append(array(code, values))
        if const:
            forms.append(7)
        ref = _digest([forms[0]] * 4, k)  # type: ignore[list-item]
        for f in forms:
            assert _digest([f] * 4, k) == ref, (f, k)  # type: ignore[list-item]
        other = list(values)
        i = rng.randrange(k)
        other[i] = (other[i] + 1) % top
        assert _digest([other] * 4, k) != ref
        assert _digest([array(typecode, other)] * 4, k) != ref
        assert _digest([forms[0]] * 3 + [[-1] * n], k) != ref  # a value no array of the type holds
    big = [2**70, 1]
    assert _digest([big, 0, 0, 0], 2) == _digest([list(big), 0, 0, 0], 2) != _digest([[2**70, 2], 0, 0, 0], 2)


def test_plain_buckets_join_as_their_scan_would() -> None:
    """`_plain_covered`, the refresh's short way for a counter's newest buckets, gives what scanning
    them (`scan_series`) and joining the scan to the kept one gives, whenever it answers; and it
    answers for plain buckets (written, no flag, samples received) in every representation a read
    gives (ints, arrays, lists), with expected counts varying, zero or below the received ones."""
    from array import array
    from fractions import Fraction

    from sitivmon.readings import Quantity, UsageKey
    from sitivmon.usage.buckets import PRESENT
    from sitivmon.usage.live import _cscan, _joined, _plain_covered
    from sitivmon.usage.port import SeriesMonth

    rng = random.Random(15)
    key = UsageKey("givors", "l", Quantity.TRAFFIC_IN)
    answered = 0
    for _ in range(3000):
        n = rng.randrange(1, 30)
        lo = rng.randrange(n)
        hi = rng.randrange(lo + 1, n + 1)
        plain = rng.random() < 0.7
        odd = [0, PRESENT, PRESENT | 1, PRESENT | 4, PRESENT | 8]  # unwritten, plain, reset, gap, unknown
        flags = [PRESENT] * n if plain else [rng.choice(odd) for _ in range(n)]
        received = [rng.choice([1, 5, 6, 30]) if plain else rng.choice([0, 1, 5, 30]) for _ in range(n)]
        expected = [rng.choice([5, 6, 30]) if rng.random() > 0.05 else 0 for _ in range(n)]

        def form(col: list[int], code: str) -> object:
            if col.count(col[0]) == len(col) and rng.random() < 0.5:
                return col[0]  # constant over the read: an int
            return array(code, col) if rng.random() < 0.7 else list(col)

        v, r, e, f = form([7] * n, "I"), form(received, "I"), form(expected, "H"), form(flags, "B")
        runs = ((0, 2, frozenset({"missing"})),) * rng.randrange(2)
        prefix = (Fraction(rng.randrange(50), rng.choice([1, 3])), runs, (("gap", 1),) * rng.randrange(2))
        more = _plain_covered(r, e, f, lo, hi)  # type: ignore[arg-type]
        cut = [c if isinstance(c, int) else c[lo:hi] for c in (v, r, e, f)]
        part = SeriesMonth(key, 0, hi - lo, {0: (hi - lo, *cut)})  # type: ignore[arg-type]
        want = _joined(prefix, _cscan(part), lo)
        if more is None:
            assert not plain or (not isinstance(e, int) and 0 in expected[lo:hi])  # left to the scan
            continue
        answered += 1
        assert (prefix[0] + more, prefix[1], prefix[2]) == want
    assert answered > 1500
