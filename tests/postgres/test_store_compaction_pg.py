"""Deferred chunk merging on PostgreSQL (`PostgresUsageStore(compact_every=k)`, schema v4): whatever is
still pending in `closed_bucket`, readers and indicators see exactly what merging every bucket at once
gives, for one daemon and for a replica pair (pending rows are added into their replica's chunk
before the replicas are merged). Same feed as tests/usage/test_store_compaction.py: 45 five-minute
closes across a week boundary, silent series, late corrections to older buckets (some last week's)."""

from __future__ import annotations

import random

import psycopg
import pytest
from pydantic import SecretStr

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage import postgres as pg_mod
from sitivmon.usage.buckets import CHUNK_S, PRESENT, Bucket
from sitivmon.usage.periods import BUCKET_S
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.store import compaction_due
from tests.support.postgres import PostgresServer
from tests.usage.test_store_compaction import KEYS, WEEK_END, M, dense, snapshot

BucketMap = dict[tuple[UsageKey, int], Bucket]


def feed(rng: random.Random, t: int, flush: int, silent: float) -> tuple[BucketMap, BucketMap]:
    """One flush's closed and open buckets (odd flushes close the bucket at `t`)."""
    closed: BucketMap = {}
    opened: BucketMap = {}
    for key in KEYS:
        if rng.random() < silent:
            continue  # this series silent in this flush (for a replica: a bucket it did not observe)
        gauge = key.quantity is Quantity.LINK_UP
        b = Bucket(rng.randrange(1, 10**9), rng.randrange(0, 300_000_000), int(gauge), 5000, 0x80)
        if flush % 2:
            closed[(key, t)] = b
            if rng.random() < 0.2:  # a late correction to an older bucket (possibly last week's)
                closed[(key, t - rng.randrange(1, 30) * BUCKET_S)] = Bucket(rng.randrange(10**6), 0, 0, 5000, 0x81)
        else:
            opened[(key, t)] = b
    return closed, opened


def pending(store: PostgresUsageStore) -> int:
    row = store.conn.execute("SELECT count(*) FROM closed_bucket WHERE replica = %s", (store.replica,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("replicas", [("",), ("a", "b")], ids=["one", "pair"])
@pytest.mark.parametrize("k", [5, 12])
def test_deferred_merging_reads_exactly_as_immediate(
    postgres_server: PostgresServer, k: int, replicas: tuple[str, ...]
) -> None:
    now_dsn, later_dsn = postgres_server.create_database(), postgres_server.create_database()
    try:
        now = [PostgresUsageStore(SecretStr(now_dsn), replica=r) for r in replicas]  # merged at once
        later = [PostgresUsageStore(SecretStr(later_dsn), replica=r, compact_every=k) for r in replicas]
        rngs = [random.Random(f"{k}-{r}") for r in replicas]
        t = WEEK_END - 40 * BUCKET_S
        for flush in range(90):
            for i, rng in enumerate(rngs):  # the second replica misses more, and reads other values
                closed, opened = feed(rng, t, flush, 0.1 + 0.2 * i)
                baselines = {f"l{j}": f"state-{flush}" for j in range(4)}
                assert now[i].write(closed, opened, baselines) == []
                assert later[i].write(closed, opened, baselines) == []
            if flush % 2:
                t += BUCKET_S
            if flush % 7 == 0 or flush > 85:
                assert snapshot(later[0]) == snapshot(now[0])
        whole = {key: dense(sm) for key, sm in later[0].month_series(M.start, M.end).items()}
        pieces = list(later[0].month_series_batches(M.start, M.end, batch=5))  # by series id ranges
        assert len(pieces) == -(-len(KEYS) // 5)
        assert {key: dense(sm) for piece in pieces for key, sm in piece.items()} == whole
        for n, lt in zip(now, later, strict=True):
            assert 0 < pending(lt) <= len(KEYS) * (k + 5)  # bounded: each series merged about every k closes
            assert pending(n) == 0
            assert lt.load_open_buckets() == n.load_open_buckets()
            assert lt.load_baselines() == n.load_baselines()
        with (
            PostgresUsageStore(SecretStr(later_dsn), read_only=True) as ro,
            PostgresUsageStore(SecretStr(now_dsn), read_only=True) as ro_now,
        ):
            assert snapshot(ro) == snapshot(ro_now)
        later[0].compact()
        assert pending(later[0]) == 0
        if len(replicas) == 2:
            assert pending(later[1]) > 0  # one replica compacted, the other still pending: same figures
        assert snapshot(later[0]) == snapshot(now[0])
        if len(replicas) == 2:  # both replicas hold chunks of the same series and weeks: the merge is exercised
            both = "SELECT count(*) FROM chunk a JOIN chunk b USING (week, series_id) WHERE a.replica < b.replica"
            row = later[0].conn.execute(both).fetchone()
            assert row is not None and row[0] >= len(KEYS)
        for lt in later[1:]:
            assert lt.compact() == []
        chunks = "SELECT replica, week, series_id, data FROM chunk ORDER BY replica, week, series_id"
        with psycopg.connect(now_dsn) as a, psycopg.connect(later_dsn) as b:
            assert b.execute(chunks).fetchall() == a.execute(chunks).fetchall()  # compacted: the same rows
        for s in now + later:
            s.close()
    finally:
        postgres_server.drop_database(now_dsn.rsplit("/", 1)[1])
        postgres_server.drop_database(later_dsn.rsplit("/", 1)[1])


def test_pending_rows_of_a_moved_series_are_merged_by_its_new_writer(postgres_dsn: str) -> None:
    """Pending rows belong to the replica, not to the shard that wrote them: after a move, the new
    owner's turn merges what the old owner left pending, and the reader adds both all along."""
    key = KEYS[0]
    t = WEEK_END - 20 * BUCKET_S
    week = t // CHUNK_S * CHUNK_S
    with (
        PostgresUsageStore(SecretStr(postgres_dsn), writer="0", compact_every=12) as old,
        PostgresUsageStore(SecretStr(postgres_dsn), writer="1", compact_every=12) as new,
    ):
        old.write({}, {(key, t): Bucket(1, 0, 0, 5000, PRESENT)}, {})  # the series gets its id
        sid = next(i for i, k in old.series().items() if k == key)
        starts = range(t, t + 12 * BUCKET_S, BUCKET_S)
        first = next(s for s in starts if not compaction_due(s, sid, 12))
        turn = next(s for s in starts if compaction_due(s, sid, 12))
        old.write({(key, first): Bucket(7, 0, 0, 5000, PRESENT)}, {}, {})
        new.write({(key, first): Bucket(5, 0, 0, 5000, PRESENT)}, {}, {})  # the bytes after the move
        assert pending(new) == 1
        at = (first - week) // BUCKET_S
        assert dense(new.month_series(week, week + CHUNK_S)[key])[at] == (12, 0, 5000, PRESENT)
        new.write({(key, turn): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {})  # the new owner's turn
        assert pending(new) == 0
        data = dense(new.month_series(week, week + CHUNK_S)[key])
        assert data[at] == (12, 0, 5000, PRESENT)
        assert data[(turn - week) // BUCKET_S] == (1, 0, 5000, PRESENT)


def test_a_store_of_schema_v3_is_read_as_it_is_and_migrated_by_a_writer(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store of schema v3 (before pending rows) is read read-only as it is, and a writer migrates it
    (under the advisory lock, like every migration) and goes on from its chunks."""
    key = KEYS[0]
    t = WEEK_END - 3 * BUCKET_S
    week = t // CHUNK_S * CHUNK_S
    with monkeypatch.context() as m:  # what sitivmon before v4 left
        m.setattr(pg_mod, "MIGRATIONS", pg_mod.MIGRATIONS[:3])
        with PostgresUsageStore(SecretStr(postgres_dsn)) as v3:
            v3.write(
                {(key, t): Bucket(40, 0, 0, 5000, PRESENT)}, {(key, t + BUCKET_S): Bucket(2, 0, 0, 0, PRESENT)}, {}
            )
            assert v3.schema_version() == 3
    with PostgresUsageStore(SecretStr(postgres_dsn), read_only=True) as ro:
        assert ro.schema_version() == 3
        data = dense(ro.month_series(week, week + CHUNK_S)[key])
        assert data[(t - week) // BUCKET_S] == (40, 0, 5000, PRESENT)
    with PostgresUsageStore(SecretStr(postgres_dsn), compact_every=12) as v4:
        assert v4.schema_version() == pg_mod.SCHEMA_VERSION == 4
        assert v4.load_open_buckets() == {(key, t + BUCKET_S): Bucket(2, 0, 0, 0, PRESENT)}
        v4.write({(key, t): Bucket(2, 0, 0, 5000, PRESENT)}, {}, {})  # a late correction, pending or merged
        data = dense(v4.month_series(week, week + CHUNK_S)[key])
        assert data[(t - week) // BUCKET_S] == (42, 0, 5000, PRESENT)
