"""Deferred chunk merging (`SqliteUsageStore(compact_every=k)`, issue 15): whatever is still pending in
`closed_bucket`, readers and indicators see exactly what merging every bucket at once gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, Bucket
from sitivmon.usage.indicators import compute_indicators, lead_in
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.port import SeriesMonth, UsageStorePort
from sitivmon.usage.store import SqliteUsageStore

M = month_range("2026-10", "UTC")
WEEK_END = (M.start // CHUNK_S + 2) * CHUNK_S  # the flushes below cross this week boundary
KEYS = [
    UsageKey(c, f"l{i}", q)
    for c in ("givors", "venissieux")
    for i in range(4)
    for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT, Quantity.LINK_UP)
]


def dense(sm: SeriesMonth) -> list[tuple[int, ...]]:
    """The series slot by slot (segments may be cut differently, the slots may not differ)."""
    out = [(0, 0, 0, 0)] * sm.n
    for off, (length, *cols) in sm.segments.items():
        for i in range(length):
            out[off + i] = tuple(c if isinstance(c, int) else c[i] for c in cols)
    return out


def snapshot(store: UsageStorePort) -> tuple[dict[UsageKey, list[tuple[int, ...]]], list[object]]:
    data = store.month_series(M.start, M.end)
    n = (M.end - M.start) // BUCKET_S
    inds = compute_indicators(data, ["givors", "venissieux"], M.start, n, lead_in(store, M.start))
    return {k: dense(sm) for k, sm in data.items()}, [repr(i) for i in inds]


@pytest.mark.parametrize("k", [5, 12])
def test_deferred_merging_reads_exactly_as_immediate(tmp_path: Path, k: int) -> None:
    rng = random.Random(k)
    now = SqliteUsageStore(tmp_path / "now.db")  # every closed bucket into its chunk at once
    later = SqliteUsageStore(tmp_path / "later.db", compact_every=k)
    t = WEEK_END - 40 * BUCKET_S
    with now, later:
        for flush in range(90):  # 45 five-minute closes across the week boundary
            closed: dict[tuple[UsageKey, int], Bucket] = {}
            opened: dict[tuple[UsageKey, int], Bucket] = {}
            for key in KEYS:
                if rng.random() < 0.1:
                    continue  # this series silent in this flush
                gauge = key.quantity is Quantity.LINK_UP
                b = Bucket(rng.randrange(1, 10**9), rng.randrange(0, 300_000_000), int(gauge), 5000, 0x80)
                if flush % 2:
                    closed[(key, t)] = b
                    if rng.random() < 0.2:  # a late correction to an older bucket (possibly last week's)
                        closed[(key, t - rng.randrange(1, 30) * BUCKET_S)] = Bucket(
                            rng.randrange(10**6), 0, 0, 5000, 0x81
                        )
                else:
                    opened[(key, t)] = b
            baselines = {f"l{i}": f"state-{flush}" for i in range(4)}
            assert now.write(closed, opened, baselines) == []
            assert later.write(closed, opened, baselines) == []
            if flush % 2:
                t += BUCKET_S
            if flush % 7 == 0 or flush > 85:
                assert snapshot(later) == snapshot(now)
        pending = later.db.execute("SELECT count(*) FROM closed_bucket").fetchone()[0]
        assert 0 < pending <= len(KEYS) * (k + 5)  # bounded: each series merged about every k closes
        assert later.load_open_buckets() == now.load_open_buckets()
        assert later.compact() == []
        assert later.db.execute("SELECT count(*) FROM closed_bucket").fetchone()[0] == 0
        assert snapshot(later) == snapshot(now)
        with SqliteUsageStore(later.path, read_only=True) as ro, SqliteUsageStore(now.path, read_only=True) as ro_now:
            assert snapshot(ro) == snapshot(ro_now)
