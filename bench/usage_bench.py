"""Benchmark: monthly indicators for 1,000 links over a 31-day month (8,928 buckets each).

Run: .venv/bin/python bench/usage_bench.py [--links 1000] [--dir /tmp/x] [--naive-links 100]

Prints the time to compute every indicator of every commune (target < 2 s), the store's size on
disk per link-month, and, for comparison, a naive row-per-bucket SQLite layout on a subset of links
(its time scaled linearly to the same number of links, and its size per link-month).
"""

from __future__ import annotations

import argparse
import gc
import random
import sqlite3
import sys
import tempfile
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, PRESENT, SLOTS, Chunk
from sitivmon.usage.indicators import compute_indicators, nearest_rank_p95
from sitivmon.usage.periods import month_range
from sitivmon.usage.store import SqliteUsageStore

COMMUNES = [
    "givors",
    "grigny",
    "pierre-benite",
    "rive-de-gier",
    "vaulx-en-velin",
    "venissieux",
    "corbas",
    "saint-chamond",
]
MONTH = "2026-01"  # 31 days, no DST change: 744 h, 8,928 buckets


def generate(store: SqliteUsageStore, links: int, start: int, end: int, seed: int = 7) -> None:
    """Random traffic in every bucket of the month (nothing outside it), a short outage in 10% of the
    link-weeks, link always up with 5 readings per bucket (60 s polling)."""
    rng = random.Random(seed)
    for li in range(links):
        commune = COMMUNES[li % len(COMMUNES)]
        link = f"link-{li:04d}"
        scale = rng.choice([10**6, 10**7, 10**8, 10**9])
        items = []
        for week in range(start // CHUNK_S, (end - 1) // CHUNK_S + 1):
            w0 = week * CHUNK_S
            inside = [start <= w0 + i * 300 < end for i in range(SLOTS)]
            full = all(inside)

            def col(v: int, inside: list[bool] = inside, full: bool = full) -> int | list[int]:
                return v if full else [v if x else 0 for x in inside]

            for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT):
                values = [rng.randrange(scale) if x else 0 for x in inside]
                flags = col(PRESENT)
                if rng.random() < 0.1:  # a short outage now and then: gaps, slow path
                    flags = [PRESENT if x else 0 for x in inside]
                    a = rng.randrange(SLOTS - 12)
                    flags[a : a + 12] = [0] * 12
                    for i in range(a, a + 12):
                        values[i] = 0
                received = col(5000) if isinstance(flags, int) else [5000 if f else 0 for f in flags]
                items.append(
                    (UsageKey(commune, link, q), week, Chunk([array("Q", values), received, col(5000), flags]))
                )
            items.append(
                (UsageKey(commune, link, Quantity.LINK_UP), week, Chunk([col(5), col(5000), col(5000), col(PRESENT)]))
            )
        store.import_chunks(items)


def naive(path: Path, links: int, start: int, end: int, seed: int = 7) -> tuple[float, int]:
    """Row per bucket, aggregates in SQL, p95 by fetching and sorting every commune's buckets."""
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE b (series INTEGER, commune TEXT, quantity TEXT, start INTEGER, value INTEGER,"
        " received INTEGER, expected INTEGER, flags INTEGER, PRIMARY KEY (series, start)) WITHOUT ROWID"
    )
    db.execute("BEGIN")
    sid = 0
    for li in range(links):
        commune = COMMUNES[li % len(COMMUNES)]
        for q in ("traffic_in", "traffic_out", "link_up"):
            sid += 1
            db.executemany(
                "INSERT INTO b VALUES (?, ?, ?, ?, ?, 5000, 5000, 128)",
                ((sid, commune, q, t, 5 if q == "link_up" else rng.randrange(10**8)) for t in range(start, end, 300)),
            )
    db.execute("COMMIT")
    t0 = time.perf_counter()
    db.execute(
        "SELECT commune, quantity, SUM(value), SUM(MIN(received, expected)) FROM b"
        " WHERE start >= ? AND start < ? GROUP BY commune, quantity",
        (start, end),
    ).fetchall()
    for c in COMMUNES:
        for q in ("traffic_in", "traffic_out"):
            rows = db.execute(
                "SELECT SUM(value) FROM b WHERE commune=? AND quantity=? AND start >= ? AND start < ? GROUP BY start",
                (c, q, start, end),
            ).fetchall()
            nearest_rank_p95([r[0] for r in rows])
    elapsed = time.perf_counter() - t0
    db.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return elapsed, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=1000)
    ap.add_argument("--naive-links", type=int, default=100)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--no-gc", action="store_true", help="disable the cyclic GC while computing")
    args = ap.parse_args()
    month = month_range(MONTH, "Europe/Paris")
    assert month.buckets == 8928
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="usage-bench-"))
    reuse = (workdir / "usage.sqlite3").exists()
    store = SqliteUsageStore(workdir / "usage.sqlite3")
    t0 = time.perf_counter()
    if not reuse:
        generate(store, args.links, month.start, month.end)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    gen = time.perf_counter() - t0
    size = store.size_bytes()
    print(f"generated {args.links} links x {month.buckets} buckets in {gen:.1f} s")
    weeks = (month.end - 1) // CHUNK_S - month.start // CHUNK_S + 1
    steady = size / args.links * (month.end - month.start) / (weeks * CHUNK_S)
    print(
        f"store size: {size / 1e6:.1f} MB, {size / args.links / 1e3:.1f} kB per link-month as stored "
        f"({weeks} week rows per series, the edge weeks half empty); ~{steady / 1e3:.1f} kB per link-month "
        "when neighbouring months fill them"
    )
    times = []
    for _ in range(5):
        data = inds = None  # type: ignore[assignment]
        gc.collect()
        if args.no_gc:
            gc.disable()
        t0 = time.perf_counter()
        t_read = time.perf_counter()
        data = store.month_series(month.start, month.end)
        t_read = time.perf_counter() - t_read
        inds = compute_indicators(data, COMMUNES, month.start, month.buckets)
        times.append((time.perf_counter() - t0, t_read))
        gc.enable()
    best = min(times)
    print(
        f"indicators ({len(inds)} values for {len(COMMUNES)} communes): best {best[0]:.2f} s "
        f"(read+decode {best[1]:.2f} s), runs {', '.join(f'{t:.2f}' for t, _ in times)} s"
    )
    store.close()
    if args.naive_links:
        nt, nsize = naive(workdir / "naive.sqlite3", args.naive_links, month.start, month.end)
        scale = args.links / args.naive_links
        print(
            f"naive row-per-bucket ({args.naive_links} links): {nt:.2f} s -> ~{nt * scale:.1f} s for "
            f"{args.links} links (volumes + p95 only); {nsize / args.naive_links / 1e3:.1f} kB per link-month"
        )


if __name__ == "__main__":
    main()
