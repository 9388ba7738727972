"""Long GAP/UNKNOWN intervals kept as spans (`buckets.Span`) must store exactly what their buckets did.

The recorder's accumulator keeps an unobserved interval over many buckets as one span, and the store
merges it into its week chunks run by run (issue 15: a two-day restart gap was 576 `Bucket` objects per
series). Nothing a reader sees may change: the same random histories (long gaps across week and month
boundaries, late corrections landing in a span's buckets, poll intervals changing, failed writes
retried, restarts) go through the per-bucket path (`span_buckets=0`) and the span path into two real
stores, and every stored row (chunk blobs, pending closed buckets, open buckets, baselines), every
month's slots and every indicator must be equal. A dropped or doubled span must make them differ.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sitivmon.readings import CounterInterval, Flag, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, PRESENT, SLOTS, Bucket, Chunk, Span
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.indicators import usage_document
from sitivmon.usage.periods import BUCKET_S, bucket_start, month_range
from sitivmon.usage.port import StoreBusy, UsageStorePort
from sitivmon.usage.postgres import WRITE_LOCK, PostgresUsageStore
from sitivmon.usage.recorder import SPAN_BUCKETS, Accumulator, UsageRecorder
from sitivmon.usage.store import SqliteUsageStore
from tests.support.postgres import PostgresServer
from tests.usage.support import communes, link_keys, pick, poll_link

LINKS = ("l1", "l2", "l3")
KEYS = [UsageKey("venissieux", link, q) for link in LINKS for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT)]
UP = {link: UsageKey("venissieux", link, Quantity.LINK_UP) for link in LINKS}
MONTHS = [month_range(m) for m in ("2026-10", "2026-11", "2026-12")]
T0 = MONTHS[0].end - 6 * 86400 + 123.4567  # six days before November (Paris): gaps cross weeks and months
STAMP = 1_800_000_000.0
FAST = UsageSettings(flush_interval_s=60, busy_timeout_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
GAPS = [frozenset({Flag.GAP}), frozenset({Flag.UNKNOWN}), frozenset({Flag.GAP, Flag.RESET})]


# -- histories ---------------------------------------------------------------------------------------------


Step = tuple[str, PollBatch | None]


def history(seed: int, steps: int = 90) -> list[Step]:
    """Batches (one per link and poll) with flushes, failed flushes and restarts in between."""
    rng = random.Random(seed)
    t = {link: T0 + rng.uniform(0, 300) for link in LINKS}
    out: list[Step] = []
    for n in range(steps):
        for link in LINKS:
            kind = rng.random()
            flags: frozenset[Flag] = frozenset()
            start = t[link]
            if kind < 0.55:
                end = start + rng.choice([10.0, 60.0, 59.9999997])
            elif kind < 0.75:  # the daemon or the agent away: hours to days, now and then a month
                hours = rng.choice([rng.uniform(1.1, 6), rng.uniform(6, 80), rng.uniform(80, 24 * 36)])
                end = start + hours * 3600
                if rng.random() < 0.3:  # ends a hair before a bucket boundary (microsecond rounding)
                    end = bucket_start(end) + BUCKET_S - rng.choice([1e-7, 4e-7])
                flags = rng.choice(GAPS)
            elif kind < 0.9:  # a late correction, into buckets closed (and perhaps a span) already
                start = t[link] - rng.uniform(0, 3 * 86400)
                end = start + rng.choice([30.0, 700.0, rng.uniform(3600, 86400)])
                flags = rng.choice([frozenset(), *GAPS])
            else:
                end = start  # a clock standing still
            delta = rng.choice([0, rng.randrange(10**6), rng.randrange(10**12)])
            counters = tuple(
                CounterInterval(UsageKey("venissieux", link, q), start, end, delta + i, flags)
                for i, q in enumerate((Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT))
            )
            at = max(t[link], end)
            t[link] = at
            out.append(
                (
                    "batch",
                    PollBatch(
                        target=f"t-{link}",
                        at=at,
                        interval_s=rng.choice([10.0, 60.0, 7.0]),
                        counters=counters,
                        gauges=(GaugeReading(UP[link], at, rng.choice([0.0, 1.0])),),
                        baselines={link: f"{n}:{at}"},
                    ),
                )
            )
        r = rng.random()
        if r < 0.25:
            out.append(("flush", None))
        elif r < 0.33:
            out.append(("fail", None))
        elif r < 0.37:
            out.append(("restart", None))
    out.append(("flush", None))
    return out


# -- stores --------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One real store, how to make its next write fail (another writer holds it), and its raw rows."""

    store: UsageStorePort
    held: Callable[[], contextlib.AbstractContextManager[None]]
    rows: Callable[[], dict[str, Any]]


def sqlite_target(path: Path, compact_every: int) -> Target:
    store = SqliteUsageStore(path, busy_timeout_s=0.05, compact_every=compact_every)

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()

    def rows() -> dict[str, Any]:
        db, ids = store.db, store.series()
        return {
            "chunk": {(ids[s], w): (d, c) for w, s, d, c in db.execute("SELECT week, series_id, data, crc FROM chunk")},
            "pending": {(ids[r[0]], r[1]): r[2:] for r in db.execute("SELECT * FROM closed_bucket")},
            "open": {(ids[r[0]], r[1]): r[2:] for r in db.execute("SELECT * FROM open_bucket")},
            "baseline": set(db.execute("SELECT subject, state, updated FROM baseline")),
            "corrupt": db.execute("SELECT count(*) FROM chunk_corrupt").fetchone(),
        }

    return Target(store, held, rows)


def postgres_target(dsn: str, compact_every: int) -> Target:
    store = PostgresUsageStore(SecretStr(dsn), busy_timeout_s=0.05, replica="b", compact_every=compact_every)

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        with psycopg.connect(dsn) as other:  # a transaction is open until the block ends
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield

    def rows() -> dict[str, Any]:
        ids = store.series()
        with psycopg.connect(dsn) as db:
            q = db.execute
            return {
                "chunk": {
                    (ids[s], w, r): (bytes(d), c)
                    for w, s, r, d, c in q("SELECT week, series_id, replica, data, crc FROM chunk")
                },
                "pending": {
                    (ids[s], st, r): rest
                    for r, s, st, *rest in q(
                        "SELECT replica, series_id, start, value, received_milli, expected_milli, flags"
                        " FROM closed_bucket"
                    )
                },
                "open": {
                    (ids[s], st, w, r): rest
                    for w, r, s, st, *rest in q(
                        "SELECT writer, replica, series_id, start, value, covered_us, readings, expected_milli,"
                        " flags FROM open_bucket"
                    )
                },
                "baseline": set(q("SELECT replica, subject, state, updated FROM baseline")),
                "corrupt": q("SELECT count(*) FROM chunk_corrupt").fetchone(),
            }

    return Target(store, held, rows)


# -- the recorder's flush, as `UsageRecorder.flush` does it --------------------------------------------------


class Pipeline:
    def __init__(self, target: Target, span_buckets: int, mutate: str = "") -> None:
        self.target, self.span_buckets, self.mutate = target, span_buckets, mutate
        self.acc = Accumulator(target.store.load_open_buckets(), span_buckets=span_buckets)
        self.spans_written: list[Span] = []

    def flush(self, *, fail: bool = False) -> bool:
        acc, store = self.acc, self.target.store
        closed, open_b, baselines, batches = acc.snapshot()
        spans = acc.take_spans(closed)
        written = spans
        if self.mutate == "drop" and spans and not fail:
            written, self.mutate = spans[1:], ""
        elif self.mutate == "double" and spans and not fail:
            written, self.mutate = [*spans, spans[0]], ""
        try:
            with self.target.held() if fail else contextlib.nullcontext():
                store.write(closed, open_b, baselines, now=STAMP, spans=written)
        except StoreBusy:
            acc.restore(closed, baselines, batches)
            acc.restore_spans(spans)
            return False
        self.spans_written += written
        return True

    def run(self, steps: list[Step]) -> None:
        # Every series first, in one order: ids (and with them `compaction_due`) are the same in both stores
        self.target.store.write({}, {(k, 0): Bucket() for k in [*KEYS, *UP.values()]}, {}, now=STAMP)
        for kind, batch in steps:
            if batch is not None:
                self.acc.apply(batch)
            elif kind == "fail":
                assert not self.flush(fail=True)
            elif kind == "flush":
                assert self.flush()
            elif kind == "restart":  # the daemon restarts: what the store holds, nothing else
                assert self.flush()
                self.acc = Accumulator(self.target.store.load_open_buckets(), span_buckets=self.span_buckets)
        assert not self.acc.dirty and not self.acc.spans


def figures(store: UsageStorePort) -> list[Any]:
    """Every slot of every month and every indicator: what readers, reports and the gauges see."""
    out: list[Any] = []
    for month in MONTHS:
        series = store.month_series(month.start, month.end)
        out.append({k: (sm.n, _slots(sm.segments)) for k, sm in series.items()})
        doc = usage_document(store, communes(), month, [*KEYS, *UP.values()], now=STAMP)
        out.append(doc["indicators"])
    return out


def _slots(segments: dict[int, tuple[int, Any, Any, Any, Any]]) -> dict[int, tuple[int, ...]]:
    cell: Callable[[Any, int], int] = lambda col, i: col if isinstance(col, int) else col[i]  # noqa: E731
    return {
        off + i: tuple(cell(c, i) for c in cols)
        for off, (n, *cols) in segments.items()
        for i in range(n)
        if cell(cols[3], i) & PRESENT
    }


def compare(make: Callable[[str], Target], seed: int, span_buckets: int, mutate: str = "") -> tuple[bool, bool]:
    """Run one history both ways: (same rows stored, same figures read)."""
    steps = history(seed)
    plain, spans = make("plain"), make("spans")
    try:
        Pipeline(plain, 0).run(steps)
        p = Pipeline(spans, span_buckets, mutate)
        p.run(steps)
        # The histories must exercise what they claim to: spans, across weeks and months
        assert len(p.spans_written) >= 5
        assert any(sp.start // CHUNK_S != (sp.end - 1) // CHUNK_S for sp in p.spans_written)
        assert any(sp.start < m.start < sp.end for sp in p.spans_written for m in MONTHS)
        return plain.rows() == spans.rows(), figures(plain.store) == figures(spans.store)
    finally:
        plain.store.close()
        spans.store.close()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("compact_every", [1, 12])
@pytest.mark.parametrize("span_buckets", [1, SPAN_BUCKETS])
def test_spans_store_what_buckets_stored_sqlite(
    tmp_path: Path, seed: int, compact_every: int, span_buckets: int
) -> None:
    assert compare(lambda name: sqlite_target(tmp_path / f"{name}.db", compact_every), seed, span_buckets) == (
        True,
        True,
    )


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize(("compact_every", "span_buckets"), [(1, SPAN_BUCKETS), (12, SPAN_BUCKETS), (12, 1)])
def test_spans_store_what_buckets_stored_postgresql(
    postgres_server: PostgresServer, seed: int, compact_every: int, span_buckets: int
) -> None:
    names: list[str] = []

    def make(_name: str) -> Target:
        dsn = postgres_server.create_database()
        names.append(dsn.rsplit("/", 1)[1])
        return postgres_target(dsn, compact_every)

    try:
        assert compare(make, seed, span_buckets) == (True, True)
    finally:
        for name in names:
            postgres_server.drop_database(name)


@pytest.mark.parametrize("mutate", ["drop", "double"])
def test_a_dropped_or_doubled_span_is_seen(tmp_path: Path, mutate: str) -> None:
    """The comparison above can fail: one span lost or written twice changes the stored rows and figures."""
    assert compare(lambda name: sqlite_target(tmp_path / f"{name}.db", 12), 0, SPAN_BUCKETS, mutate) == (
        False,
        False,
    )


# -- units ----------------------------------------------------------------------------------------------------


def test_a_two_day_gap_is_one_span_per_counter_not_576_buckets() -> None:
    k = KEYS[0]
    acc = Accumulator(span_buckets=SPAN_BUCKETS)
    t = 1_790_000_100.0
    acc.apply(PollBatch("t", t, 60.0, (CounterInterval(k, t - 60, t, 5, frozenset()),), (), {}))
    gap = CounterInterval(k, t, t + 48 * 3600 + 30, 10**12, frozenset({Flag.GAP}))
    acc.apply(PollBatch("t", gap.end, 60.0, (gap,), (), {}))
    assert len(acc.spans) == 1
    assert len(acc.closed) <= 3 and sum(len(s) for s in acc.open.values()) == 1
    span = acc.spans[0]
    assert (span.end - span.start) // BUCKET_S == 48 * 12 - 1
    total = span.value() + sum(b.value for b in acc.closed.values()) + sum(b.value for b in acc.open[k].values())
    assert total == 10**12 + 5


def test_take_spans_gives_a_closed_bucket_inside_a_span_the_spans_expected_count() -> None:
    """The general way would have merged that bucket with the span's share in memory; its received
    samples are counted with the larger expected count, and so must they be when written apart."""
    k = KEYS[0]
    acc = Accumulator(span_buckets=SPAN_BUCKETS)
    t = 1_790_000_100.0
    acc.apply(PollBatch("t", t, 60.0, (CounterInterval(k, t - 60, t, 5, frozenset()),), (), {}))
    gap = CounterInterval(k, t, t + 6 * 3600, 10**9, frozenset({Flag.GAP}))
    acc.apply(PollBatch("t", gap.end, 7.0, (gap,), (), {}))  # expected 42,857 per bucket
    late = CounterInterval(k, t + 3600 + 10, t + 3600 + 70, 99, frozenset())
    acc.apply(PollBatch("t", gap.end, 60.0, (late,), (), {}))
    closed, _, _, _ = acc.snapshot()
    inside = closed[(k, bucket_start(late.start))]
    assert inside.expected_milli == 5000
    acc.take_spans(closed)
    assert inside.expected_milli == 42857


@pytest.mark.parametrize("seed", range(30))
def test_add_run_is_merge_slot_by_slot(seed: int) -> None:
    rng = random.Random(seed)

    def chunk() -> Chunk:
        kind = seed % 3
        if kind == 0:
            return Chunk()
        ch = Chunk()
        for _ in range(rng.randrange(1, 50)):
            ch.merge(rng.randrange(SLOTS), rng.randrange(2 ** rng.choice([8, 40, 60])), rng.randrange(5000), 5000, 1)
        return Chunk.decode(ch.encode()) if kind == 2 else ch  # decoded: masked constants, arrays

    base = chunk()
    a, b = sorted(rng.sample(range(SLOTS + 1), 2))
    value = rng.choice([0, 1, 255, 2**40, 2**62])  # past an array item size, within what encodes
    exp, flags = rng.choice([0, 5000, 42857]), rng.choice([4, 8, 12])
    one, two = Chunk.decode(base.encode()), Chunk.decode(base.encode())
    one.add_run(a, b, value, 0, exp, flags)
    for slot in range(a, b):
        two.merge(slot, value, 0, exp, flags)
    assert one.encode() == two.encode()


# -- the recorder ------------------------------------------------------------------------------------------


def _counter(t: float) -> int:
    return int((t - T0) * 1000) + int((t - T0) ** 2) // 7


async def test_the_recorder_writes_a_restart_gap_as_spans_and_retries_them_after_a_failed_write(
    tmp_path: Path,
) -> None:
    """Two days down across a month's end, the store locked at the first flush after it: the spans
    are kept (`restore_spans`), written at the retry, and the months read as the per-bucket path's."""
    down = (MONTHS[0].end - 86400 + 17.0, MONTHS[0].end + 86400 + 29.0)
    batches = list(poll_link("venissieux", "l1", T0, down[1] + 3 * 3600, 60, _counter, down=[down]))
    cut = next(i for i, b in enumerate(batches) if b.at > down[0])
    reg = CollectorRegistry()
    path = tmp_path / "rec.db"
    async with UsageRecorder(SqliteUsageStore(path, busy_timeout_s=0.05), reg, FAST) as rec:
        for b in batches[: cut + 1]:  # up to the first poll after the downtime
            rec.submit(b)
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        assert not await rec.flush()
        assert reg.get_sample_value("sitivmon_usage_write_errors_total", {"error": "StoreBusy"}) == 1
        assert len(rec._acc.spans) == 2  # in and out, kept for the retry
        locker.execute("ROLLBACK")
        locker.close()
        for b in batches[cut + 1 :]:
            rec.submit(b)
        assert await rec.flush()
        assert not rec._acc.spans
    reference = SqliteUsageStore(tmp_path / "ref.db")
    acc = Accumulator()  # the per-bucket path, one flush
    for b in batches:
        acc.apply(b)
    closed, open_b, baselines, _ = acc.snapshot()
    reference.write(closed, open_b, baselines)
    with SqliteUsageStore(path, read_only=True) as got, reference:
        assert figures(got) == figures(reference)
        total = sum(
            pick(usage_document(got, communes(), m, link_keys("venissieux", "l1"), now=STAMP), "venissieux",
                 "traffic_volume", "in")["value"]
            for m in MONTHS
        )  # fmt: skip
    assert total == _counter(batches[-1].at) - _counter(T0)
