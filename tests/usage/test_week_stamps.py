"""`UsageStorePort.week_stamps` on every backend: a week's stamp changes with any write that changes what
it reads (new buckets, a late correction, compaction, a chunk imported), and only that week's."""

from __future__ import annotations

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, PRESENT, Bucket, Chunk
from sitivmon.usage.periods import BUCKET_S
from sitivmon.usage.port import UsageStorePort
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.store import SqliteUsageStore
from tests.usage.test_store_contract import Backend, backend, reopened, usage_store  # noqa: F401 (fixtures)

K = UsageKey("venissieux", "l1", Quantity.TRAFFIC_IN)
G = UsageKey("givors", "l2", Quantity.LINK_UP)
W0 = 2960  # three weeks: W0, W0 + 1, W0 + 2
T = W0 * CHUNK_S


def b(value: int = 10) -> Bucket:
    return Bucket(value, 300_000_000, 5, 5000, PRESENT)


def stamps(store: UsageStorePort) -> dict[int, bytes]:
    return store.week_stamps(T, T + 3 * CHUNK_S)


def changed(before: dict[int, bytes], after: dict[int, bytes]) -> list[int]:
    assert before.keys() == after.keys() == {W0, W0 + 1, W0 + 2}
    return [w for w in sorted(before) if before[w] != after[w]]


def test_stamps_follow_every_write_to_their_week_only(backend: Backend, usage_store: UsageStorePort) -> None:  # noqa: F811
    s = usage_store
    assert isinstance(s, SqliteUsageStore | PostgresUsageStore)
    empty = stamps(s)
    assert changed(empty, stamps(s)) == []  # stable while nothing is written
    assert s.week_stamps(T, T) == {}
    assert s.week_stamps(T + 10, T + 20).keys() == {W0}  # any overlap names the week

    s.write({(K, T + i * BUCKET_S): b() for i in range(24)}, {(K, T + 24 * BUCKET_S): b()}, {})
    one = stamps(s)
    assert changed(empty, one) == [W0]
    with reopened(backend, read_only=True) as reader:  # another connection reads the same stamps
        assert reader.week_stamps(T, T + 3 * CHUNK_S) == one

    s.write({}, {(K, T + 24 * BUCKET_S): b()}, {})  # the same open buckets again: nothing reads otherwise
    assert changed(one, stamps(s)) == []
    s.write({}, {(K, T + 24 * BUCKET_S): b(11)}, {})  # an open bucket that grew
    two = stamps(s)
    assert changed(one, two) == [W0]

    opened = {(K, T + 24 * BUCKET_S): b(11)}  # still open: each flush writes the set again
    s.write({(K, T + CHUNK_S + 5 * BUCKET_S): b()}, opened, {})  # a bucket of the next week
    three = stamps(s)
    assert changed(two, three) == [W0 + 1]

    s.write({(K, T + 3 * BUCKET_S): b(1)}, opened, {})  # a late correction, added into a closed bucket
    four = stamps(s)
    assert changed(three, four) == [W0]
    s.write({}, {}, {})
    assert changed(four, stamps(s)) == [W0]  # the open bucket closed without a bucket to show (gone)
    s.write({}, opened, {})
    assert changed(four, stamps(s)) == []

    s.compact()  # pending closed buckets merged into their chunks: the rows read change
    five = stamps(s)
    assert changed(four, five) == [W0, W0 + 1]
    s.write({(K, T + 3 * BUCKET_S): b(1)}, opened, {})
    s.compact()  # a correction merged straight into the chunk (the chunk row rewritten in place)
    assert changed(five, stamps(s)) == [W0]

    six = stamps(s)
    s.import_chunks([(G, W0 + 2, Chunk([1, 5000, 5000, PRESENT]))])  # another series' chunk
    assert changed(six, stamps(s)) == [W0 + 2]


def test_a_replica_of_a_pair_changes_the_stamps_of_the_weeks_it_writes(backend: Backend) -> None:  # noqa: F811
    if backend.settings.store != "postgresql":
        return  # SQLite has no replicas
    from sitivmon.usage.backends import open_usage_store

    with open_usage_store(backend.settings, backend.state_dir) as a:
        a.write({(K, T + i * BUCKET_S): b() for i in range(6)}, {}, {})
        before = stamps(a)
        with open_usage_store(backend.settings, backend.state_dir, replica="b") as other:
            other.write({(K, T + CHUNK_S + i * BUCKET_S): b() for i in range(6)}, {}, {})
            assert isinstance(other, PostgresUsageStore)
            other.compact()
        assert changed(before, stamps(a)) == [W0 + 1]
