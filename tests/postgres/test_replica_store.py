"""Replica pairs on the PostgreSQL usage store (schema v3), against a real server.

Both replicas of a pair write the same series; each keeps its own chunks, open buckets and
baselines; every read merges them bucket by bucket taking one replica's bucket (never the sum), so a
hole in one replica is no gap and no bucket counts twice, and a hole in both is the gap one daemon
would show. Shards of one replica still add up.
"""

from __future__ import annotations

import itertools
import random

import psycopg
import pytest
from pydantic import SecretStr

from sitivmon.readings import CounterInterval, Flag, PollBatch, Quantity, UsageKey
from sitivmon.usage import postgres as pg_mod
from sitivmon.usage.buckets import FLAG_BITS, PRESENT, Bucket
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.port import CorruptChunk, SeriesMonth
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.recorder import Accumulator

A = UsageKey("givors", "link-a", Quantity.TRAFFIC_IN)
SOLO = UsageKey("grigny", "link-s", Quantity.TRAFFIC_IN)
GAP = FLAG_BITS[Flag.GAP]
_M = month_range("2026-11", "UTC")
START, END = _M.start, _M.end
T0 = START + 10 * BUCKET_S
FULL_US = BUCKET_S * 1_000_000
EXP = 10_000  # a 30 s poll


def whole(value: int) -> Bucket:
    return Bucket(value, FULL_US, 0, EXP, PRESENT)


def gap(value: int) -> Bucket:
    return Bucket(value, 0, 0, EXP, PRESENT | GAP)


def store(dsn: str, replica: str, writer: str = "") -> PostgresUsageStore:
    return PostgresUsageStore(SecretStr(dsn), writer=writer, replica=replica)


def slots(sm: SeriesMonth) -> dict[int, tuple[int, int, int, int]]:
    """Written slots (offset from the month start) as (value, received, expected, flags)."""
    out: dict[int, tuple[int, int, int, int]] = {}
    for off, (n, *cols) in sm.segments.items():
        full = [[c] * n if isinstance(c, int) else list(c) for c in cols]
        for i in range(n):
            if full[3][i]:
                out[off + i] = (full[0][i], full[1][i], full[2][i], full[3][i])
    return out


def total(sm: SeriesMonth) -> int:
    return sum(v for v, *_ in slots(sm).values())


def write_closed(s: PostgresUsageStore, key: UsageKey, buckets: list[Bucket]) -> None:
    s.write({(key, T0 + i * BUCKET_S): b for i, b in enumerate(buckets)}, {}, {})


def test_two_replicas_of_one_series_count_once(postgres_dsn: str) -> None:
    with store(postgres_dsn, "a") as a, store(postgres_dsn, "b") as b:
        write_closed(a, A, [whole(100 + i) for i in range(6)])
        write_closed(b, A, [whole(200 + i) for i in range(6)])  # another poll phase, other shares
        got = slots(a.month_series(START, END)[A])
    assert [got[10 + i][0] for i in range(6)] == [100 + i for i in range(6)]  # a's, not a + b
    assert all(r == e == EXP and not f & GAP for _, r, e, f in got.values())


def test_a_hole_in_one_replica_is_no_gap_and_no_double_count(postgres_dsn: str) -> None:
    a_buckets = [whole(100), whole(100), gap(30), gap(30), whole(100), whole(100)]
    b_buckets = [whole(101)] * 6
    with store(postgres_dsn, "a") as a, store(postgres_dsn, "b") as b:
        write_closed(a, A, a_buckets)
        write_closed(b, A, b_buckets)
        got = slots(b.month_series(START, END)[A])
    assert len(got) == 6
    assert all(r == e == EXP and not f & GAP for _, r, e, f in got.values())  # no gap, whole coverage
    assert got[12][1:] == got[13][1:] == (EXP, EXP, PRESENT)  # b's buckets filled a's hole
    # a came back from its baseline, its gap buckets carrying every byte: the buckets taken from b
    # keep b's shape but add up to a's total over them (sitivmon.usage.replicas, "Exactness")
    assert sum(v for v, *_ in got.values()) == sum(x.value for x in a_buckets)


def test_a_hole_in_both_replicas_is_the_gap_of_one_daemon(postgres_dsn: str) -> None:
    """Both replicas down at once: the merged series is exactly what one daemon (replica '')
    recording a's buckets shows, so coverage drops as it would: one gap bucket, never two added."""
    a_buckets = [whole(100), gap(60), gap(60), whole(100)]
    b_buckets = [whole(100), gap(40), gap(80), whole(100)]
    with store(postgres_dsn, "a") as a, store(postgres_dsn, "b") as b, store(postgres_dsn, "") as solo:
        write_closed(a, A, a_buckets)
        write_closed(b, A, b_buckets)
        write_closed(solo, SOLO, a_buckets)
        month = solo.month_series(START, END)
    pair, one = slots(month[A]), slots(month[SOLO])
    assert pair == one
    assert [pair[10 + i][3] & GAP for i in range(4)] == [0, GAP, GAP, 0]
    assert pair[11][1] == pair[12][1] == 0  # no sample received: the coverage drop of one daemon


def test_each_replica_replaces_only_its_own_open_buckets_and_baselines(postgres_dsn: str) -> None:
    with store(postgres_dsn, "a") as a, store(postgres_dsn, "b") as b:
        a.write({}, {(A, T0): Bucket(100, FULL_US // 3, 0, EXP, PRESENT)}, {"link-a": "a-1"})
        b.write({}, {(A, T0): Bucket(110, FULL_US // 2, 0, EXP, PRESENT)}, {"link-a": "b-1"})
        a.write({}, {(A, T0): Bucket(150, FULL_US // 2 + 1, 0, EXP, PRESENT)}, {"link-a": "a-2"})
        assert a.load_open_buckets() == {(A, T0): Bucket(150, FULL_US // 2 + 1, 0, EXP, PRESENT)}
        assert b.load_open_buckets() == {(A, T0): Bucket(110, FULL_US // 2, 0, EXP, PRESENT)}
        assert a.load_baselines() == {"link-a": "a-2"} and b.load_baselines() == {"link-a": "b-1"}
        assert slots(a.month_series(START, END)[A])[10][0] == 150  # a saw more of the bucket
        a.write({}, {}, {})  # a's next flush has no open bucket: b's stays
        assert b.load_open_buckets() != {}
        assert slots(a.month_series(START, END)[A])[10][0] == 110


def test_shards_of_one_replica_add_up_and_replicas_do_not(postgres_dsn: str) -> None:
    """Link a moved from shard 1 to shard 2 of replica a mid-bucket: a's two parts add up (140, the
    whole bucket), replica b's whole bucket (150) is not added to them."""
    with (
        store(postgres_dsn, "a", "1") as a1,
        store(postgres_dsn, "a", "2") as a2,
        store(postgres_dsn, "b", "1") as b1,
    ):
        a1.write({}, {(A, T0): Bucket(100, FULL_US // 3, 0, EXP, PRESENT)}, {"link-a": "a-1"})
        assert a2.load_baselines() == {"link-a": "a-1"}  # the new owner continues from a's baseline
        a2.write({}, {(A, T0): Bucket(40, FULL_US - FULL_US // 3, 0, EXP, PRESENT)}, {"link-a": "a-2"})
        b1.write({}, {(A, T0): Bucket(150, FULL_US, 0, EXP, PRESENT)}, {"link-a": "b-1"})
        assert slots(b1.month_series(START, END)[A])[10][:2] == (140, EXP)
        a2.write({}, {}, {})  # a's second part not there yet: b observed more of the bucket...
        # ...but its bytes are a's count up to a's latest poll (the base's latest bucket, module doc of
        # sitivmon.usage.replicas), b's 150 and a's 100 never added
        assert slots(b1.month_series(START, END)[A])[10][:2] == (100, EXP)
        assert a1.load_baselines() == {"link-a": "a-2"} and b1.load_baselines() == {"link-a": "b-1"}


def test_a_replica_without_a_baseline_continues_from_the_daemon_it_replaces(postgres_dsn: str) -> None:
    with store(postgres_dsn, "") as solo:
        solo.write({}, {}, {"link-a": "solo", "link-s": "solo-s"})
    with store(postgres_dsn, "a") as a, store(postgres_dsn, "b") as b:
        a.write({}, {}, {"link-a": "a-1"})
        assert a.load_baselines() == {"link-a": "a-1", "link-s": "solo-s"}
        assert b.load_baselines() == {"link-a": "solo", "link-s": "solo-s"}
    with store(postgres_dsn, "") as solo:
        assert solo.load_baselines() == {"link-a": "solo", "link-s": "solo-s"}


def test_rows_of_schema_v2_belong_to_replica_empty(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # what sitivmon before v3 left
        pg_mod.migrate_component(conn, pg_mod.COMPONENT, pg_mod.MIGRATIONS[:2], "test")
        conn.execute("INSERT INTO series(commune, subject, quantity) VALUES ('givors', 'link-a', 'traffic_in')")
        conn.execute(
            "INSERT INTO open_bucket(writer, series_id, start, value, covered_us, readings, expected_milli, flags)"
            " SELECT '', id, %s, 42, %s, 0, %s, %s FROM series",
            (T0, FULL_US, EXP, PRESENT),
        )
        conn.execute("INSERT INTO baseline(subject, state, updated) VALUES ('link-a', 'old', 1)")
    with store(postgres_dsn, "") as v3, store(postgres_dsn, "a") as a:
        assert v3.schema_version() == pg_mod.SCHEMA_VERSION == 4
        assert v3.load_open_buckets() == {(A, T0): Bucket(42, FULL_US, 0, EXP, PRESENT)}
        assert v3.load_baselines() == {"link-a": "old"}
        assert a.load_open_buckets() == {}
        write_closed(a, A, [gap(7)])  # a replica whose bucket is worse than the old daemon's
        assert slots(a.month_series(START, END)[A])[10] == (42, EXP, EXP, PRESENT)
        v3.write({(A, T0 + BUCKET_S): whole(5)}, {}, {})
        rows = v3.conn.execute("SELECT replica, count(*) FROM chunk GROUP BY replica ORDER BY replica").fetchall()
        assert rows == [("", 1), ("a", 1)]


def test_a_single_daemon_reads_exactly_as_before(postgres_dsn: str) -> None:
    """Replica '' alone: the merge returns its chunks untouched (same objects, no per-slot work)."""
    buckets = [whole(100), gap(30), whole(7)]
    with store(postgres_dsn, "") as solo:
        write_closed(solo, A, buckets)
        solo.write({}, {(A, T0 + 3 * BUCKET_S): Bucket(9, FULL_US // 2, 0, EXP, PRESENT)}, {})
        got = slots(solo.month_series(START, END)[A])
    assert [got[10 + i][0] for i in range(4)] == [100, 30, 7, 9]
    assert got[11][3] & GAP and got[13][1] == EXP // 2


def test_a_replica_killed_across_the_month_start_leaves_both_months_exact(postgres_dsn: str) -> None:
    """Bursty traffic, replica a killed for two minutes across midnight of 1 November and restarted from
    its baseline, b polling 34 s later in the minute: each month's total through the merged read is
    the counter's increase over the month as one daemon (a's buckets, replica '') records it, to the
    byte, with no gap left in November."""
    rng = random.Random(13)
    lo, hi = START - 7_200, START + 7_200
    per_s = [rng.randrange(1_000) for _ in range(hi - lo + 1)]
    for _ in range(60):
        per_s[rng.randrange(len(per_s))] += rng.randrange(1, 1_000_000_000)
    cum = list(itertools.accumulate(per_s, initial=0))

    def counter(t: int) -> int:
        return cum[t - lo]

    def buckets(key: UsageKey, polls: list[int]) -> dict[tuple[UsageKey, int], Bucket]:
        acc = Accumulator()
        for p, q in itertools.pairwise(polls):
            flags = frozenset({Flag.GAP}) if q - p > 150 else frozenset()
            iv = CounterInterval(key, float(p), float(q), counter(q) - counter(p), flags)
            acc.apply(PollBatch("t", float(q), 60, counters=(iv,)))
        closed, open_b, _, _ = acc.snapshot()
        return {**closed, **open_b}

    a_polls = [t for t in range(lo + 7, hi, 60) if not START - 60 < t < START + 60]
    b_polls = list(range(lo + 41, hi - 60, 60))
    oct_ = month_range("2026-10", "UTC")
    with store(postgres_dsn, "a") as a, store(postgres_dsn, "b") as b, store(postgres_dsn, "") as solo:
        a.write(buckets(A, a_polls), {}, {})
        b.write(buckets(A, b_polls), {}, {})
        solo.write(buckets(SOLO, a_polls), {}, {})
        nov, octo = solo.month_series(START, END), solo.month_series(oct_.start, oct_.end)
    assert total(octo[A]) + total(nov[A]) == counter(a_polls[-1]) - counter(a_polls[0])
    assert total(nov[A]) == total(nov[SOLO]) and total(octo[A]) == total(octo[SOLO])
    assert not [f for _, _, _, f in slots(nov[A]).values() if f & GAP]
    assert [f for _, _, _, f in slots(nov[SOLO]).values() if f & GAP]  # one daemon alone has the hole


def test_a_corrupt_chunk_of_either_replica_is_refused_by_readers(postgres_dsn: str) -> None:
    """The other replica's chunk is not silently read instead: a damaged chunk is an incident to see."""
    with store(postgres_dsn, "a") as a, store(postgres_dsn, "b") as b:
        write_closed(a, A, [whole(100)])
        write_closed(b, A, [whole(101)])
        b.conn.execute("UPDATE chunk SET crc = crc + 1 WHERE replica = 'b'")
        with pytest.raises(CorruptChunk):
            a.month_series(START, END)
        assert a.write({(A, T0 + BUCKET_S): whole(5)}, {}, {}) == []  # a's own chunk is sound
        found = b.write({(A, T0 + BUCKET_S): whole(6)}, {}, {})  # b's writer sets its damaged one aside
        assert [c.key for c in found] == [A]
        assert slots(a.month_series(START, END)[A])[11][0] == 5  # b's week restarted from its bucket: a's base
