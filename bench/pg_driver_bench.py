"""Benchmark: which PostgreSQL driver for the usage store, psycopg 3 or asyncpg (issue 13).

Run: .venv/bin/python bench/pg_driver_bench.py [--series 2000] [--flushes 6] [--repeat 2] [--dsn DSN]

Without `--dsn` it starts a real PostgreSQL server (tests/support/postgres.py, fsync on) for the run.
Both drivers face the same server, table and data in the same run, in alternating order:

- flush: what `SqliteUsageStore.write` does to PostgreSQL every five minutes once a bucket closes, for
  every series: read the week's chunk of each series (one batched SELECT ... = ANY), then upsert the
  new blob (ON CONFLICT DO UPDATE), all in one transaction. Blobs are real `buckets.Chunk` encodings
  of a partly filled week (a few KB each; their mean size is printed). Reported in chunks per second.
- month read: every chunk of five weeks for every series (what `month_series` reads for the monthly
  indicators), blobs fetched as bytes. Reported in ms and MB/s.

Variants: psycopg sync connection (text and binary result format), psycopg's AsyncConnectionPool
(binary), asyncpg's pool (always binary), each upserting with the driver's `executemany` (pipelined
by both); and, for both drivers, the upsert as one `INSERT ... SELECT FROM unnest(arrays)` statement.
The Python work on the blobs (decode, merge, encode) is the same for every driver and is left out:
the figures are the driver's and the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import psycopg
import psycopg_pool
from pydantic import SecretStr

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, PRESENT, SLOTS, Bucket, Chunk
from sitivmon.usage.periods import BUCKET_S
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.store import SqliteUsageStore

SCHEMA = """
DROP TABLE IF EXISTS chunk;
CREATE TABLE chunk (
    week integer NOT NULL,
    series_id integer NOT NULL,
    data bytea NOT NULL,
    crc bigint,
    PRIMARY KEY (week, series_id)
);
"""
UPSERT_PG = (
    "INSERT INTO chunk(week, series_id, data, crc) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (week, series_id) DO UPDATE SET data = excluded.data, crc = excluded.crc"
)
UPSERT_APG = UPSERT_PG.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1).replace("%s", "$4", 1)
SELECT_WEEK_PG = "SELECT series_id, data, crc FROM chunk WHERE week = %s AND series_id = ANY(%s)"
SELECT_WEEK_APG = "SELECT series_id, data, crc FROM chunk WHERE week = $1 AND series_id = ANY($2::int[])"
UNNEST_PG = (  # %b: psycopg sends a list of bytes as a hex text array with %s (several times slower)
    "INSERT INTO chunk(week, series_id, data, crc)"
    " SELECT * FROM unnest(%b::int[], %b::int[], %b::bytea[], %b::bigint[])"
    " ON CONFLICT (week, series_id) DO UPDATE SET data = excluded.data, crc = excluded.crc"
)
UNNEST_APG = UNNEST_PG.replace("%b", "$1", 1).replace("%b", "$2", 1).replace("%b", "$3", 1).replace("%b", "$4", 1)
MONTH_PG = "SELECT series_id, week, data, crc FROM chunk WHERE week BETWEEN %s AND %s"
MONTH_APG = "SELECT series_id, week, data, crc FROM chunk WHERE week BETWEEN $1 AND $2"

WEEK0 = 2900  # weeks since the epoch (2025-08); the month read takes WEEK0 .. WEEK0+4
MONTH_WEEKS = 5


def make_blob(rng: random.Random, filled: int) -> bytes:
    """A week chunk with `filled` slots written (60 s polling, traffic of a random order of magnitude)."""
    scale = rng.choice([10**4, 10**6, 10**8, 10**9])
    values = [rng.randrange(scale) for _ in range(filled)] + [0] * (SLOTS - filled)
    flags = [PRESENT] * filled + [0] * (SLOTS - filled)
    received = [5000] * filled + [0] * (SLOTS - filled)
    return Chunk([array("Q", values), received, [5000] * filled + [0] * (SLOTS - filled), flags]).encode()


@dataclass
class Data:
    series: int
    month: dict[int, list[bytes]]  # week -> blob per series id (1-based: index sid-1)
    flushes: list[list[bytes]]  # per flush, the new blob of every series in the current week
    mean_blob: float = field(init=False)

    def __post_init__(self) -> None:
        blobs = [b for f in self.flushes for b in f]
        self.mean_blob = statistics.fmean(len(b) for b in blobs)


def make_data(series: int, flushes: int, seed: int = 13) -> Data:
    rng = random.Random(seed)
    month = {WEEK0 + w: [make_blob(rng, SLOTS) for _ in range(series)] for w in range(MONTH_WEEKS - 1)}
    month[WEEK0 + MONTH_WEEKS - 1] = [make_blob(rng, SLOTS // 2) for _ in range(series)]
    # The current week grows by one slot per flush (each flush closes one bucket of every series).
    flush_blobs = [[make_blob(rng, 600 + f) for _ in range(series)] for f in range(flushes)]
    return Data(series, month, flush_blobs)


def rows(blobs: list[bytes], week: int) -> Iterator[tuple[int, int, bytes, int]]:
    for i, b in enumerate(blobs):
        yield (week, i + 1, b, zlib.crc32(b))


def columns(blobs: list[bytes], week: int) -> tuple[list[int], list[int], list[bytes], list[int]]:
    """The same rows as four arrays, for one `INSERT ... SELECT FROM unnest(...)` statement."""
    return [week] * len(blobs), list(range(1, len(blobs) + 1)), blobs, [zlib.crc32(b) for b in blobs]


CURRENT = WEEK0 + MONTH_WEEKS  # the week the flushes write (outside the month read)


@dataclass
class Result:
    name: str
    load_s: list[float] = field(default_factory=list)
    flush_s: list[float] = field(default_factory=list)  # per flush
    month_s: list[float] = field(default_factory=list)
    month_bytes: int = 0


# -- psycopg (sync) -------------------------------------------------------------------------------------


def bench_psycopg_sync(
    dsn: str, data: Data, res: Result, *, binary: bool, month_reads: int, unnest: bool = False
) -> None:
    ids = list(range(1, data.series + 1))
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            conn.execute("TRUNCATE chunk")
        t = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for week, blobs in data.month.items():
                cur.executemany(UPSERT_PG, rows(blobs, week))
        res.load_s.append(time.perf_counter() - t)
        for blobs in data.flushes:
            t = time.perf_counter()
            with conn.transaction(), conn.cursor(binary=binary) as cur:
                cur.execute(SELECT_WEEK_PG, (CURRENT, ids))
                existing = {sid: (bytes(d), crc) for sid, d, crc in cur}
                assert len(existing) in (0, data.series)
                if unnest:
                    cur.execute(UNNEST_PG, columns(blobs, CURRENT))
                else:
                    cur.executemany(UPSERT_PG, rows(blobs, CURRENT))
            res.flush_s.append(time.perf_counter() - t)
        for _ in range(month_reads):
            t = time.perf_counter()
            with conn.transaction(), conn.cursor(binary=binary) as cur:
                cur.execute(MONTH_PG, (WEEK0, WEEK0 + MONTH_WEEKS - 1))
                got = cur.fetchall()
            res.month_s.append(time.perf_counter() - t)
            res.month_bytes = sum(len(r[2]) for r in got)
            assert len(got) == data.series * MONTH_WEEKS


# -- psycopg (async pool) -------------------------------------------------------------------------------


async def bench_psycopg_async(dsn: str, data: Data, res: Result, *, month_reads: int) -> None:
    ids = list(range(1, data.series + 1))
    async with psycopg_pool.AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False) as pool:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            async with conn.transaction():
                await conn.execute("TRUNCATE chunk")
            t = time.perf_counter()
            async with conn.transaction(), conn.cursor() as cur:
                for week, blobs in data.month.items():
                    await cur.executemany(UPSERT_PG, rows(blobs, week))
            res.load_s.append(time.perf_counter() - t)
        for blobs in data.flushes:
            t = time.perf_counter()
            async with pool.connection() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
                await cur.execute(SELECT_WEEK_PG, (CURRENT, ids))
                existing = {sid: (bytes(d), crc) async for sid, d, crc in cur}
                assert len(existing) in (0, data.series)
                await cur.executemany(UPSERT_PG, rows(blobs, CURRENT))
            res.flush_s.append(time.perf_counter() - t)
        for _ in range(month_reads):
            t = time.perf_counter()
            async with pool.connection() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
                await cur.execute(MONTH_PG, (WEEK0, WEEK0 + MONTH_WEEKS - 1))
                got = await cur.fetchall()
            res.month_s.append(time.perf_counter() - t)
            res.month_bytes = sum(len(r[2]) for r in got)
            assert len(got) == data.series * MONTH_WEEKS


# -- asyncpg (pool) -------------------------------------------------------------------------------------


async def bench_asyncpg(dsn: str, data: Data, res: Result, *, month_reads: int, unnest: bool = False) -> None:
    ids = list(range(1, data.series + 1))
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("TRUNCATE chunk")
            t = time.perf_counter()
            async with conn.transaction():
                for week, blobs in data.month.items():
                    await conn.executemany(UPSERT_APG, list(rows(blobs, week)))
            res.load_s.append(time.perf_counter() - t)
        for blobs in data.flushes:
            t = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                found = await conn.fetch(SELECT_WEEK_APG, CURRENT, ids)
                existing = {r[0]: (r[1], r[2]) for r in found}
                assert len(existing) in (0, data.series)
                if unnest:
                    await conn.execute(UNNEST_APG, *columns(blobs, CURRENT))
                else:
                    await conn.executemany(UPSERT_APG, list(rows(blobs, CURRENT)))
            res.flush_s.append(time.perf_counter() - t)
        for _ in range(month_reads):
            t = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                got = await conn.fetch(MONTH_APG, WEEK0, WEEK0 + MONTH_WEEKS - 1)
            res.month_s.append(time.perf_counter() - t)
            res.month_bytes = sum(len(r[2]) for r in got)
            assert len(got) == data.series * MONTH_WEEKS
    finally:
        await pool.close()


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from tests.support import postgres

    with postgres.serve(durable=True) as pg:
        yield pg.create_database("bench")


def bench_stores(dsn: str, data: Data, flushes: int, reads: int) -> None:
    """The stores themselves, end to end (decode, merge, encode, CRC, open buckets, baselines):
    `SqliteUsageStore` and `PostgresUsageStore` (this driver choice) on the same data, same run."""
    qs = (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT, Quantity.LINK_UP)
    keys = [UsageKey(f"commune-{i % 8}", f"link-{i // 3:05d}", qs[i % 3]) for i in range(data.series)]
    history = [(k, week, Chunk.decode(blobs[i])) for week, blobs in data.month.items() for i, k in enumerate(keys)]
    start, end = WEEK0 * CHUNK_S, (WEEK0 + MONTH_WEEKS) * CHUNK_S
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS chunk")  # the driver bench's table: the store makes its own
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[SqliteUsageStore | PostgresUsageStore] = [
            SqliteUsageStore(Path(tmp) / "usage.sqlite3"), PostgresUsageStore(SecretStr(dsn))
        ]
        for store in stores:
            with store:
                t = time.perf_counter()
                store.import_chunks(history)
                load = time.perf_counter() - t
                times = []
                for f in range(flushes):  # each flush closes one bucket of every series, opens the next
                    at = CURRENT * CHUNK_S + f * BUCKET_S
                    closed = {(k, at): Bucket(123_456 + f, 0, 5, 5000, PRESENT) for k in keys}
                    open_b = {(k, at + BUCKET_S): Bucket(7, 60_000_000, 1, 5000, PRESENT) for k in keys}
                    baselines = {k.subject: f"state-{f}" for k in keys}
                    t = time.perf_counter()
                    store.write(closed, open_b, baselines)
                    times.append(time.perf_counter() - t)
                reads_s = []
                for _ in range(reads):
                    t = time.perf_counter()
                    got = store.month_series(start, end)
                    reads_s.append(time.perf_counter() - t)
                    assert len(got) == data.series
                rows.append((type(store).__name__, len(history) / load, statistics.median(times[1:] or times),
                             statistics.median(reads_s)))
    print(f"\nthe stores, end to end ({data.series} series):")
    print(f"{'store':<22} {'import chunks/s':>16} {'write() ms':>11} {'series/s':>9} {'month_series ms':>16}")
    for name, load_rate, flush, month in rows:
        print(f"{name:<22} {load_rate:>16,.0f} {flush * 1000:>11.1f} {data.series / flush:>9,.0f}"
              f" {month * 1000:>16.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2000, help="series (links x quantities) written per flush")
    ap.add_argument("--flushes", type=int, default=6)
    ap.add_argument("--month-reads", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="rounds, the order of the drivers reversed each round")
    ap.add_argument("--dsn", help="an existing, empty database to use (the bench creates and drops its tables)")
    ap.add_argument("--no-stores", action="store_true", help="skip the end-to-end store comparison")
    args = ap.parse_args()

    t = time.perf_counter()
    data = make_data(args.series, args.flushes)
    print(f"data: {args.series} series, {args.flushes} flushes, {MONTH_WEEKS} weeks for the month read, "
          f"mean blob {data.mean_blob / 1024:.1f} KiB (made in {time.perf_counter() - t:.1f} s)")
    mr = args.month_reads
    runners: dict[str, Callable[[str, Result], None]] = {
        "psycopg sync text": lambda d, r: bench_psycopg_sync(d, data, r, binary=False, month_reads=mr),
        "psycopg sync binary": lambda d, r: bench_psycopg_sync(d, data, r, binary=True, month_reads=mr),
        "psycopg async pool": lambda d, r: asyncio.run(bench_psycopg_async(d, data, r, month_reads=mr)),
        "asyncpg pool": lambda d, r: asyncio.run(bench_asyncpg(d, data, r, month_reads=mr)),
        "psycopg sync unnest": lambda d, r: bench_psycopg_sync(d, data, r, binary=True, month_reads=mr, unnest=True),
        "asyncpg unnest": lambda d, r: asyncio.run(bench_asyncpg(d, data, r, month_reads=mr, unnest=True)),
    }
    results = {n: Result(n) for n in runners}
    with server(args.dsn) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            version = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
        print(f"server: PostgreSQL {version[0] if version else '?'}, fsync={fsync[0] if fsync else '?'}; "
              f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}, {psycopg.pq.__impl__}), "
              f"asyncpg {asyncpg.__version__}")
        names = list(runners)
        for rnd in range(args.repeat):
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                runners[name](dsn, results[name])
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("VACUUM chunk")  # the next driver starts from the same table state
        n = args.series
        print()
        print(f"{'variant':<22} {'bulk load chunks/s':>18} {'flush chunks/s':>15} {'flush ms':>9} "
              f"{'month read ms':>14} {'month MB/s':>11}")
        for r in results.values():
            load = n * MONTH_WEEKS / statistics.median(r.load_s)
            # the first flush of a round inserts, the others update: the median is the update case
            flush = statistics.median(r.flush_s)
            month = statistics.median(r.month_s)
            print(f"{r.name:<22} {load:>18,.0f} {n / flush:>15,.0f} {flush * 1000:>9.1f} "
                  f"{month * 1000:>14.1f} {r.month_bytes / month / 1e6:>11.1f}")
        print("\nmedians over", args.repeat, "rounds;", args.flushes, "flushes and", mr, "month reads per round")
        if not args.no_stores:
            bench_stores(dsn, data, args.flushes, mr)


if __name__ == "__main__":
    main()
