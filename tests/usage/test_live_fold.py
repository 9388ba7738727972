"""The month-to-date refresh folds the month a piece of series at a time (issue 15): the same figures as
the whole month computed at once, on a store with every kind of series, gaps, flags, pending and open
buckets, whatever the size of the pieces."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sitivmon.config.model import Commune
from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import COUNTERS, FLAG_BITS, PRESENT, Bucket
from sitivmon.usage.indicators import compute_indicators, compute_indicators_folded, lead_in, lead_in_of
from sitivmon.usage.live import UsageLiveCollector
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.port import SeriesMonth, UsageStorePort
from sitivmon.usage.scans import scan_gauge
from sitivmon.usage.store import SqliteUsageStore
from tests.usage.test_store_contract import backend, usage_store  # noqa: F401 (fixtures: both backends)

M = month_range("2026-10", "UTC")
COMMUNES = ["givors", "venissieux", "corbas"]
NOW = M.start + 9 * 86400 + 1234  # nine days in: two weeks' chunks and the current week's buckets


def build(path: Path, seed: int) -> list[UsageKey]:
    """Random buckets for every quantity from before the month (the lead-in) to NOW: values, samples and
    flags vary, some series skip buckets, some start late, link states go down; closed buckets pending
    (`compact_every`) or merged, and open buckets at the end. Returns keys of configured silent links too."""
    rng = random.Random(seed)
    keys = [
        UsageKey(c, f"{c[:3]}-{i}", q)
        for c in (*COMMUNES, "elsewhere")  # a commune not configured: its series are left out
        for i in range(rng.randrange(1, 4))
        for q in Quantity
    ]
    first = {k: M.start - 3 * BUCKET_S + BUCKET_S * rng.choice([0, 0, 0, 40, 900]) for k in keys}
    level = {k: rng.randrange(1, 1000) for k in keys}
    with SqliteUsageStore(path, compact_every=5) as store:
        t = M.start - 3 * BUCKET_S
        while t < NOW - BUCKET_S:
            closed: dict[tuple[UsageKey, int], Bucket] = {}
            for _ in range(24):  # two hours per flush
                for k in keys:
                    if t < first[k] or rng.random() < 0.03:
                        continue  # not yet, or a missed bucket
                    gauge = k.quantity not in COUNTERS
                    interval = rng.choice([60, 60, 60, 90, 300]) if rng.random() < 0.1 else 60
                    n = 300 // interval
                    if rng.random() < 0.02:
                        n = 0  # written, without a sample
                    if gauge:
                        if rng.random() < 0.02:
                            level[k] = (
                                rng.randrange(0, 2) if k.quantity is Quantity.LINK_UP else rng.randrange(1, 10**6)
                            )
                        value = (level[k] if k.quantity is not Quantity.LINK_UP else min(level[k], 1)) * n
                    else:
                        value = rng.randrange(0, 10**9)
                    flags = PRESENT
                    if rng.random() < 0.01:
                        flags |= rng.choice(list(FLAG_BITS.values()))
                    closed[(k, t)] = Bucket(value, n * interval * 1_000_000, n, 300_000 // interval, flags)
                t += BUCKET_S
            store.write(closed, {}, {})
        opened = {(k, t): Bucket(7 * (k.quantity in COUNTERS), 30_000_000, 1, 5000, PRESENT) for k in keys[::2]}
        store.write({}, opened, {})
    return [*keys, UsageKey("givors", "silent", Quantity.TRAFFIC_IN), UsageKey("corbas", "silent", Quantity.LINK_UP)]


@pytest.mark.parametrize("seed", [1, 2])
def test_folded_pieces_give_every_row_of_the_whole_month(tmp_path: Path, seed: int) -> None:
    keys = build(tmp_path / "usage.db", seed)
    end = NOW // BUCKET_S * BUCKET_S + BUCKET_S
    n = (end - M.start) // BUCKET_S
    with SqliteUsageStore(tmp_path / "usage.db", read_only=True) as store:
        whole = compute_indicators(
            store.month_series(M.start, end, keys), COMMUNES, M.start, n, lead_in(store, M.start)
        )
        assert any(i.gaps for i in whole) and any(i.detail.get("flagged_buckets") for i in whole)
        assert {i.indicator for i in whole if i.value is not None} >= {
            "traffic_volume",
            "availability",
            "storage",
            "energy",
        }
        for batch in (1, 4, 7, 10_000):
            pieces = list(store.month_series_batches(M.start, end, keys, batch=batch))
            assert all(len(p) <= batch for p in pieces)
            assert sum(len(p) for p in pieces) == len(store.month_series(M.start, end, keys))  # each series once
            held = {}
            for piece in store.month_series_batches(M.start - 3 * BUCKET_S, M.start, batch=batch):
                held.update(lead_in_of(piece))
            assert held == lead_in(store, M.start)
            folded = compute_indicators_folded(pieces, COMMUNES, M.start, n, held)
            assert folded == whole  # values, coverage, gaps (in order), flags, details


def test_collector_gauges_are_the_whole_month_figures(tmp_path: Path) -> None:
    """The table communes x indicators that /metrics serves, against the full computation."""
    keys = build(tmp_path / "usage.db", 3)
    col = UsageLiveCollector(
        lambda: SqliteUsageStore(tmp_path / "usage.db", read_only=True),
        [Commune(id=c, name=c, insee="69000") for c in COMMUNES],
        "UTC",
        keys,
        clock=lambda: float(NOW),
    )
    col.batch = 5
    col.refresh()
    got = {
        (s.name, s.labels["commune"], s.labels["indicator"], s.labels["direction"]): s.value
        for f in col.collect()
        for s in f.samples
        if s.labels
    }
    end = NOW // BUCKET_S * BUCKET_S + BUCKET_S
    with SqliteUsageStore(tmp_path / "usage.db", read_only=True) as store:
        whole = compute_indicators(
            store.month_series(M.start, end, keys),
            COMMUNES,
            M.start,
            (end - M.start) // BUCKET_S,
            lead_in(store, M.start),
        )
    want = {}
    for i in whole:
        if i.value is not None:
            want[("sitivmon_usage_month_to_date", i.commune, i.indicator, i.direction or "")] = float(i.value)
        want[("sitivmon_usage_month_to_date_coverage_ratio", i.commune, i.indicator, i.direction or "")] = float(
            i.coverage
        )
    assert got == want
    assert len(want) > 3 * 10 and any(v not in (0.0, 1.0) for v in want.values())


def test_gauge_scan_by_runs_is_the_scan_bucket_by_bucket() -> None:
    """`scan_gauge` takes runs of equal buckets in closed form: the same as one bucket at a time."""
    rng = random.Random(7)
    for _ in range(200):
        length = rng.randrange(1, 60)
        cols: list[list[int]] = [[], [], [], []]
        while len(cols[0]) < length:
            run = rng.randrange(1, 12)
            n = rng.choice([0, 1, 2, 3, 4, 5, 5, 5])
            interval = rng.choice([60, 90, 100, 300, 600])
            row = (
                rng.choice([0, 1, n, 7 * n]),
                n * 1000 + rng.choice([0, 0, 0, 500]),
                300_000 // interval,
                rng.choice([0, PRESENT, PRESENT, PRESENT | FLAG_BITS[next(iter(FLAG_BITS))]]),
            )
            for c, x in zip(cols, row, strict=True):
                c.extend([x] * run)
        cols = [c[:length] for c in cols]
        key = UsageKey("givors", "l", Quantity.STORAGE_BYTES)
        runs = SeriesMonth(key, 0, length + 3, {1: (length, cols[0], cols[1], cols[2], cols[3])})
        one_by_one = SeriesMonth(
            key, 0, length + 3, {1 + i: (1, cols[0][i], cols[1][i], cols[2][i], cols[3][i]) for i in range(length)}
        )
        held = scan_gauge(SeriesMonth(key, 0, 1, {0: (1, 5, 1000, 1000, PRESENT)})).held
        assert scan_gauge(runs, held) == scan_gauge(one_by_one, held)


def test_pieces_hold_every_series_once_on_every_backend(usage_store: UsageStorePort) -> None:  # noqa: F811
    """The port's `month_series_batches` on SQLite and PostgreSQL: `month_series` in pieces."""
    keys = [UsageKey(c, f"l{i}", q) for c in COMMUNES for i in range(3) for q in Quantity]
    t = M.start + 86400
    usage_store.write(
        {(k, t + j * BUCKET_S): Bucket(j + 1, 60_000_000, 1, 1000, PRESENT) for j in range(3) for k in keys[::2]},
        {(k, t + 9 * BUCKET_S): Bucket(5, 30_000_000, 1, 1000, PRESENT) for k in keys[1::3]},
        {},
    )
    silent = [UsageKey("givors", "silent", Quantity.TRAFFIC_IN)]
    whole = usage_store.month_series(M.start, M.end, silent)
    merged: dict[UsageKey, SeriesMonth] = {}
    for piece in usage_store.month_series_batches(M.start, M.end, silent, batch=4):
        assert not piece.keys() & merged.keys()
        merged.update(piece)
    assert merged == whole and len(whole) == len({*keys[::2], *keys[1::3]}) + 1
    assert any(sm.segments for sm in whole.values())
