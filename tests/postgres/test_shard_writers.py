"""Several shards writing one PostgreSQL usage store: each flush replaces only its own writer's open
buckets, readers add up every writer's, baselines are shared by link, and a store made by schema v1
keeps its open buckets (as the unsharded writer '') through the migration."""

from __future__ import annotations

import psycopg
from pydantic import SecretStr

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage import postgres as pg_mod
from sitivmon.usage.buckets import Bucket
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.postgres import PostgresUsageStore

A = UsageKey("givors", "link-a", Quantity.TRAFFIC_IN)
B = UsageKey("grigny", "link-b", Quantity.TRAFFIC_IN)
_M = month_range("2026-11", "UTC")
START, END = _M.start, _M.end
T0 = START + 10 * BUCKET_S


def shard(dsn: str, writer: str) -> PostgresUsageStore:
    return PostgresUsageStore(SecretStr(dsn), writer=writer)


def value(s: PostgresUsageStore, key: UsageKey, start: int) -> int:
    sm = s.month_series(START, END)[key]
    total = 0
    for offset, (n, v, *_rest) in sm.segments.items():
        if offset <= (start - START) // BUCKET_S < offset + n:
            i = (start - START) // BUCKET_S - offset
            total += v if isinstance(v, int) else v[i]
    return total


def test_a_flush_replaces_only_its_own_writers_open_buckets(postgres_dsn: str) -> None:
    with shard(postgres_dsn, "1") as one, shard(postgres_dsn, "2") as two:
        one.write({}, {(A, T0): Bucket(100, 300_000_000, 1, 300_000, 1)}, {})
        two.write({}, {(B, T0): Bucket(7, 300_000_000, 1, 300_000, 1)}, {})
        one.write({}, {(A, T0): Bucket(150, 300_000_000, 2, 300_000, 1)}, {})  # shard 1's next flush
        assert one.load_open_buckets() == {(A, T0): Bucket(150, 300_000_000, 2, 300_000, 1)}
        assert two.load_open_buckets() == {(B, T0): Bucket(7, 300_000_000, 1, 300_000, 1)}
        assert value(one, A, T0) == 150 and value(one, B, T0) == 7  # reads see every writer
        two.write({}, {}, {})  # an empty set deletes shard 2's rows only
        assert value(one, A, T0) == 150 and value(one, B, T0) == 0


def test_a_moved_series_counts_both_owners_once(postgres_dsn: str) -> None:
    """Link a moved from shard 1 to shard 2 mid-bucket: shard 1's open bucket (the bytes before the
    move) and shard 2's (after) both count, in the month and once closed."""
    with shard(postgres_dsn, "1") as one, shard(postgres_dsn, "2") as two:
        one.write({}, {(A, T0): Bucket(100, 100_000_000, 1, 300_000, 1)}, {"link-a": "snap-1"})
        assert two.load_baselines() == {"link-a": "snap-1"}  # the new owner continues from it
        two.write({}, {(A, T0): Bucket(40, 200_000_000, 1, 300_000, 1)}, {"link-a": "snap-2"})
        assert value(two, A, T0) == 140
        one.write({(A, T0): Bucket(100, 100_000_000, 1, 300_000, 1)}, {}, {})  # shard 1 closes its part
        two.write({(A, T0): Bucket(40, 200_000_000, 1, 300_000, 1)}, {}, {})
        assert value(one, A, T0) == 140
        assert one.load_baselines() == {"link-a": "snap-2"}


def test_open_buckets_of_schema_v1_belong_to_the_unsharded_writer(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        pg_mod.migrate_component(conn, pg_mod.COMPONENT, pg_mod.MIGRATIONS[:1], "test")
        conn.execute("INSERT INTO series(commune, subject, quantity) VALUES ('givors', 'link-a', 'traffic_in')")
        conn.execute(
            "INSERT INTO open_bucket(series_id, start, value, covered_us, readings, expected_milli, flags)"
            " SELECT id, %s, 42, 1, 1, 300000, 1 FROM series",
            (T0,),
        )
    with shard(postgres_dsn, "") as unsharded, shard(postgres_dsn, "1") as one:
        assert unsharded.schema_version() == pg_mod.SCHEMA_VERSION
        assert unsharded.load_open_buckets() == {(A, T0): Bucket(42, 1, 1, 300_000, 1)}
        assert one.load_open_buckets() == {}
        assert value(one, A, T0) == 42
