"""Benchmark: the usage store at 20,000 links on SQLite and on PostgreSQL, in the same run (issue 13).

Both stores get the same history and the same flushes, through the production path
(`backends.open_usage_store` with `usage.store: sqlite | postgresql`):

- history: every 5-minute bucket of every series (links x traffic in, traffic out, link state) from the
  first week that touches the month up to `--now` (default 2026-11-30 20:00 UTC, as profile_store.py),
  imported with the stores' `import_chunks`. Values are drawn per slot from a pool of random weeks, so
  chunks compress like real traffic without generating 400 M random numbers.
- write: the recorder's `Accumulator` (recorder.py) fed one poll per link every 60 s of simulated time
  and flushed after each poll, as the daemon does: an ordinary flush replaces every open bucket and
  baseline; once per 5 minutes the poll crosses a bucket boundary and the flush also merges the closed
  buckets into their week chunks. Timed: `Accumulator.snapshot` + `store.write`, as profile_store.py.
- month: the `sitivmon usage` document of the month (`indicators.usage_document`: month_series then
  compute_indicators over every series, the input of `allocate` and `report`), on a read-only store
  opened as the CLI opens it; `month_series` alone is timed too, so the read and the computation show.

Each measurement is repeated (`--buckets` bucket cycles of flushes, `--reads` month documents) and
reported as median and min-max: the machine is shared, the spread is its noise.

PostgreSQL: without `--dsn`, a real server started for the run (tests/support/postgres.py, fsync on),
as pg_driver_bench.py does.

Run: /work/main/.venv/bin/python bench/store_scale_bench.py [--links 20000] [--buckets 3] [--reads 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_driver_bench import server
from profile_store import COMMUNES, NOW, batch, bucket, keys_of

from sitivmon.config.model import Commune
from sitivmon.readings import UsageKey
from sitivmon.usage.backends import open_usage_store
from sitivmon.usage.buckets import CHUNK_S, PRESENT, SLOTS, Chunk
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.indicators import usage_document
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.port import UsageStorePort
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.recorder import Accumulator
from sitivmon.usage.store import SqliteUsageStore

MONTH = "2026-11"
TIMEZONE = "Europe/Paris"
POLL_S = 60.0
POOL = 64  # distinct random weeks of values the series draw from


@dataclass
class Figures:
    store: str
    history_s: float = 0.0
    chunks: int = 0
    ordinary_s: list[float] = field(default_factory=list)
    closing_s: list[float] = field(default_factory=list)
    month_series_s: list[float] = field(default_factory=list)
    document_s: list[float] = field(default_factory=list)
    indicators: int = 0
    size_bytes: int = 0


def history(links: int, now: int) -> Iterator[tuple[UsageKey, int, Chunk]]:
    """Every week chunk from the month's first week up to `now`'s bucket, written slots filled."""
    rng = random.Random(7)
    pool = [array("Q", [rng.randrange(10**6, 10**9) for _ in range(SLOTS)]) for _ in range(POOL)]
    month = month_range(MONTH, TIMEZONE)
    first, last = month.start // CHUNK_S, now // CHUNK_S
    keys = keys_of(links)
    for week in range(first, last + 1):
        upto = SLOTS if week < last else (now - week * CHUNK_S) // BUCKET_S
        written = array("I", [5000] * upto + [0] * (SLOTS - upto))
        flags = array("B", [PRESENT] * upto + [0] * (SLOTS - upto))
        up = array("Q", [5] * upto + [0] * (SLOTS - upto))
        for _s, kin, kout, kup in keys:
            for k in (kin, kout):
                values = array("Q", pool[rng.randrange(POOL)][:upto]) + array("Q", bytes(8 * (SLOTS - upto)))
                yield k, week, Chunk([values, written, written, flags])
            yield kup, week, Chunk([up, written, written, flags])


def settings(kind: str, dsn: str | None) -> UsageSettings:
    doc: dict[str, str] = {"store": kind}
    if dsn:
        doc["dsn"] = dsn
    return UsageSettings.model_validate(doc)


def measure(kind: str, cfg: UsageSettings, state_dir: Path, links: int, now: int, buckets: int, reads: int) -> Figures:
    fig = Figures(kind)
    store: UsageStorePort
    with open_usage_store(cfg, state_dir) as store:
        started = time.perf_counter()
        items = history(links, now)
        counted = 0

        def counting() -> Iterator[tuple[UsageKey, int, Chunk]]:
            nonlocal counted
            for item in items:
                counted += 1
                yield item

        assert isinstance(store, SqliteUsageStore | PostgresUsageStore)  # import_chunks is theirs, not the port's
        store.import_chunks(counting())
        fig.history_s, fig.chunks = time.perf_counter() - started, counted
        print(f"{kind}: history of {counted:,} week chunks imported in {fig.history_s:.1f} s", flush=True)

        acc = Accumulator(store.load_open_buckets())
        t = float(bucket(now) + 1)
        for _ in range(buckets):
            boundary = bucket(t) + BUCKET_S
            while True:  # polls every 60 s until one crosses the bucket's end: that flush closes buckets
                end = t + POLL_S
                acc.apply(batch(links, t, end, POLL_S))
                started = time.perf_counter()
                closed, open_b, baselines, _ = acc.snapshot()
                store.write(closed, open_b, baselines, now=end)
                took = time.perf_counter() - started
                (fig.closing_s if closed else fig.ordinary_s).append(took)
                t = end
                if end >= boundary:
                    break
        print(
            f"{kind}: {len(fig.ordinary_s)} ordinary flushes, median {statistics.median(fig.ordinary_s):.2f} s;"
            f" {len(fig.closing_s)} closing, median {statistics.median(fig.closing_s):.2f} s",
            flush=True,
        )
        fig.size_bytes = store.size_bytes()

    communes = [Commune(id=f"c{i}", name=f"C{i}", insee=f"6900{i}") for i in range(COMMUNES)]
    month = month_range(MONTH, TIMEZONE)
    keys = [k for _s, *ks in keys_of(links) for k in ks]
    until = bucket(t)  # month to date, as the live gauges and a provisional `sitivmon usage` read it
    for _ in range(reads):
        with open_usage_store(cfg, state_dir, read_only=True) as reader:
            started = time.perf_counter()
            series = reader.month_series(month.start, until, keys)
            fig.month_series_s.append(time.perf_counter() - started)
            assert len(series) == len(keys)
            del series
            started = time.perf_counter()
            doc = usage_document(reader, communes, month, keys, until=until, now=until)
            fig.document_s.append(time.perf_counter() - started)
            fig.indicators = len(doc["indicators"])
    print(
        f"{kind}: usage document median {statistics.median(fig.document_s):.2f} s"
        f" (month_series {statistics.median(fig.month_series_s):.2f} s)",
        flush=True,
    )
    return fig


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--links", type=int, default=20_000)
    ap.add_argument("--now", type=int, default=NOW)
    ap.add_argument("--buckets", type=int, default=3, help="5-minute bucket cycles of flushes per store")
    ap.add_argument("--reads", type=int, default=3, help="month documents per store")
    ap.add_argument("--dsn", help="an existing, empty PostgreSQL database (else a server is started)")
    ap.add_argument("--stores", default="sqlite,postgresql", help="which stores, in this order")
    ap.add_argument("--dir", type=Path, help="where the SQLite store goes (default: a temporary directory)")
    args = ap.parse_args()
    series = args.links * 3
    print(f"{args.links:,} links x 3 series = {series:,} series; month {MONTH} ({TIMEZONE}) to {args.now}")
    print(f"machine: {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}", flush=True)
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, server(args.dsn) as dsn:
        for kind in args.stores.split(","):
            cfg = settings(kind, dsn if kind == "postgresql" else None)
            results.append(measure(kind, cfg, Path(tmp), args.links, args.now, args.buckets, args.reads))
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print()
    print("seconds, median (min-max); throughput = series written per second of a flush")
    print(
        f"{'store':<11} {'history import':>15} {'ordinary flush':>22} {'closing flush':>22} {'series/s':>17}"
        f" {'month_series':>22} {'usage document':>22} {'size MiB':>9}"
    )
    for f in results:
        rate = f"{series / statistics.median(f.ordinary_s):,.0f}/{series / statistics.median(f.closing_s):,.0f}"
        size = f"{f.size_bytes / 2**20:9.0f}"
        print(
            f"{f.store:<11} {f.history_s:>14.1f}s {spread(f.ordinary_s):>22} {spread(f.closing_s):>22}"
            f" {rate:>17} {spread(f.month_series_s):>22} {spread(f.document_s):>22} {size}"
        )
    print(
        f"\n{results[0].chunks:,} week chunks of history; {results[0].indicators} indicator rows per document;"
        f" one flush per {POLL_S:.0f} s poll, the one crossing a bucket's end closes {series:,} buckets"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
