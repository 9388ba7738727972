"""The current week's read merges the pending and open buckets into the slice asked for only
(`Chunk.merged_slice`, `store.place_merged`): the same segments, item types included, as merging
them into the whole week then slicing (`merge_all`, `slice`), which it must fall back to on anything
unusual (issue 15)."""

from __future__ import annotations

import random
from array import array
from collections import defaultdict
from pathlib import Path

import pytest

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, PRESENT, SLOTS, Bucket, Chunk, Col
from sitivmon.usage.periods import BUCKET_S
from sitivmon.usage.port import SeriesMonth
from sitivmon.usage.store import SqliteUsageStore, decode_checked, place_chunk

Item = tuple[int, int, int, int, int]


def exact(cols: tuple[Col, ...] | list[Col]) -> list[object]:
    """Columns with their item types: an int, an array by type code and bytes, or a list."""
    out: list[object] = []
    for c in cols:
        if isinstance(c, int):
            out.append(("int", c))
        elif isinstance(c, array):
            out.append(("array", c.typecode, c.tobytes()))
        else:
            out.append(("list", list(c)))
    return out


def old_way(blob: bytes, a: int, b: int, items: list[Item]) -> list[object]:
    ch = Chunk.decode(blob)
    ch.merge_all(items)
    return exact(ch.slice(a, b))


def random_blob(rng: random.Random) -> bytes:
    """A week written on a prefix, a part or all of its slots, columns masked, constant or varying."""
    kind = rng.choice(["prefix", "part", "all", "none"])
    if kind == "prefix":
        written = list(range(rng.randrange(1, SLOTS)))
    elif kind == "part":
        lo = rng.randrange(SLOTS - 1)
        written = sorted(rng.sample(range(lo, SLOTS), rng.randrange(1, min(400, SLOTS - lo) + 1)))
    elif kind == "all":
        written = list(range(SLOTS))
    else:
        return Chunk().encode()
    big = rng.choice([0, 200, 60_000, 2**31, 2**62])
    value = rng.choice(["const", "varying"])
    rec = rng.choice([5000, 0, "varying"])
    exp = rng.choice([5000, 2**32 - 1, 2**40, "varying"])  # 2**40: masked, past the 32-bit arrays
    ch = Chunk()
    for s in written:
        ch.merge(
            s,
            big if value == "const" else rng.randrange(big + 1),
            rng.randrange(6000) if rec == "varying" else int(rec),
            rng.randrange(1, 6000) if exp == "varying" else int(exp),
            rng.choice([0, 0, 0, 1, 4]) if rng.random() < 0.3 else 0,
        )
    return ch.encode()


def random_items(rng: random.Random, a: int, b: int) -> list[Item]:
    items: list[Item] = []
    for _ in range(rng.choice([0, 1, 3, 13])):
        r = rng.random()
        if r < 0.05:  # outside the slice (the general way)
            slot = rng.choice([s for s in (a - 1, b, 0, SLOTS - 1) if 0 <= s < SLOTS and not a <= s < b] or [a])
        else:
            slot = rng.randrange(a, b)
        value = rng.randrange(10**9)
        rec, exp, flags = rng.choice([5000, 3333, 0]), rng.choice([5000, 3333]), rng.choice([0, 0, 2, 8])
        if r > 0.97:  # past an array's item size: a list, the general way
            value, rec, flags = rng.choice([(2**64, rec, flags), (-5, rec, flags), (1, 2**33, flags), (1, rec, 256)])
        items.append((slot, value, rec, exp, flags))
    return items


def test_merged_slice_equals_merging_the_whole_week_then_slicing() -> None:
    rng = random.Random(15)
    taken = 0
    for _ in range(1500):
        blob = random_blob(rng)
        a = rng.randrange(SLOTS)
        b = rng.choice([a + 1, min(SLOTS, a + rng.randrange(1, 300)), SLOTS])
        if rng.random() < 0.05:
            a, b = 0, SLOTS
        items = random_items(rng, a, b)
        ch = Chunk.decode(blob)
        got = ch.merged_slice(a, b, items)
        if got is None:
            ch.merge_all(items)
            got = ch.slice(a, b)
        elif items:
            taken += 1
            fresh = Chunk.decode(blob)  # the chunk is left as it was
            assert exact(ch.cols) == exact(fresh.cols) and ch.masked == fresh.masked
        assert exact(got) == old_way(blob, a, b, items), (a, b, items)
    assert taken > 400  # the cases under test mostly take the fast way


@pytest.mark.parametrize(
    "items",
    [
        [(1500, 2**64, 0, 0, 0)],  # value past Q
        [(1500, -8, 0, 0, 0)],  # below an unsigned array (7 - 8)
        [(1500, 1, 2**32, 0, 0)],  # received past I
        [(1500, 1, 0, 0, 256)],  # flags past a byte
        [(1499, 1, 0, 0, 0)],  # before the slice
        [(1500, 1, 0, 0, 0), (1600, 1, 0, 0, 0)],  # one past the slice
    ],
)
def test_unusual_overlays_take_the_general_way(items: list[Item]) -> None:
    ch = Chunk()
    for s in range(1550):
        ch.merge(s, 7, 5000, 5000, 0)
    blob = ch.encode()
    assert Chunk.decode(blob).merged_slice(1500, 1600, items) is None
    assert Chunk.decode(blob).merged_slice(1500, 1600, [(1500, 1, 0, 0, 0)]) is not None


K = UsageKey("c0", "sw1/ge-0/0/1", Quantity.TRAFFIC_IN)


def test_store_reads_the_same_segments_as_merging_whole_weeks(tmp_path: Path) -> None:
    """A store with chunks, pending closed buckets (`compact_every`) and open buckets, read over
    windows inside, across and outside the current week: the segments of the old read."""
    rng = random.Random(7)
    week = 2969
    w0 = week * CHUNK_S
    keys = [UsageKey("c0", f"sw1/ge-0/0/{i}", q) for i in range(6) for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT)]
    with SqliteUsageStore(tmp_path / "u.db", compact_every=12) as st:
        upto = 1500
        for t in range(w0 - 50 * BUCKET_S, w0 + upto * BUCKET_S, BUCKET_S):  # closing each bucket as it goes
            closed = {(k, t): Bucket(rng.randrange(10**6), 300_000_000, 0, 5000, 0) for k in keys if rng.random() < 0.9}
            opened = {
                (k, t + BUCKET_S): Bucket(rng.randrange(10**6), rng.randrange(300_000_000), 0, 5000, 0) for k in keys
            }
            st.write(closed, opened, {}, now=t + BUCKET_S + 30)
        assert st.db.execute("SELECT count(*) FROM closed_bucket").fetchone()[0] > 0  # the case under test
        for a, b in [
            (w0 + 1428 * BUCKET_S, w0 + (upto + 1) * BUCKET_S),  # the month's start to now, in the week
            (w0 + 1415 * BUCKET_S, w0 + 1428 * BUCKET_S),  # a lead-in
            (w0 - 20 * BUCKET_S, w0 + 40 * BUCKET_S),  # across the week's start
            (w0, w0 + CHUNK_S),  # the whole week
            (w0 - CHUNK_S, w0 + CHUNK_S),
        ]:
            assert {k: sm.segments for k, sm in st.month_series(a, b).items()} == reference(st, a, b), (a, b)
            got = {k: exact(seg[1:]) for k, sm in st.month_series(a, b).items() for seg in sm.segments.values()}
            want = {k: exact(seg[1:]) for k, segs in reference(st, a, b).items() for seg in segs.values()}
            assert got == want


def reference(st: SqliteUsageStore, start: int, end: int) -> dict[UsageKey, dict[int, tuple[int, Col, Col, Col, Col]]]:
    """The read as it was: each week decoded, its pending then open buckets merged into the whole
    week (`Bucket.received_milli`), then sliced."""
    ids = st.series()
    n = (end - start) // BUCKET_S
    out = {k: SeriesMonth(k, start, n) for k in ids.values()}
    by: dict[tuple[int, int], list[Item]] = defaultdict(list)
    for sid, t, v, r, e, f in st.db.execute(
        "SELECT series_id, start, value, received_milli, expected_milli, flags FROM closed_bucket"
        " WHERE start >= ? AND start < ?",
        (start, end),
    ):
        by[(sid, t // CHUNK_S)].append(((t % CHUNK_S) // BUCKET_S, v, r, e, f))
    for sid, t, v, cov, readings, e, f in st.db.execute(
        "SELECT series_id, start, value, covered_us, readings, expected_milli, flags FROM open_bucket"
        " WHERE start >= ? AND start < ?",
        (start, end),
    ):
        ob = Bucket(v, cov, readings, e, f)
        by[(sid, t // CHUNK_S)].append(
            ((t % CHUNK_S) // BUCKET_S, ob.value, ob.received_milli, ob.expected_milli, ob.flags)
        )
    for sid, day, data, crc in st.db.execute(
        "SELECT series_id, week, data, crc FROM chunk WHERE week BETWEEN ? AND ?",
        (start // CHUNK_S, (end - 1) // CHUNK_S),
    ):
        ch = decode_checked(st.location, ids[sid], day, data, crc)
        ch.merge_all(by.pop((sid, day), ()))
        place_chunk(out[ids[sid]], day, ch, start, end)
    for (sid, day), items in by.items():
        ch = Chunk()
        ch.merge_all(items)
        place_chunk(out[ids[sid]], day, ch, start, end)
    return {k: sm.segments for k, sm in out.items()}


def test_a_week_without_chunk_reads_its_overlays(tmp_path: Path) -> None:
    """The first buckets of a week (no chunk row yet): the open bucket merged into the slice only."""
    w0 = 2970 * CHUNK_S
    t = w0 + 3 * BUCKET_S
    with SqliteUsageStore(tmp_path / "u.db") as st:
        st.write({}, {(K, t): Bucket(123, 150_000_000, 0, 5000, 0)}, {}, now=t + 30)
        length, v, r, e, f = st.month_series(w0, t + BUCKET_S)[K].segments[0]
        assert length == 4
        assert exact((v, r, e, f)) == exact(
            (
                array("Q", [0, 0, 0, 123]),
                array("I", [0, 0, 0, 2500]),
                array("I", [0, 0, 0, 5000]),
                array("B", [0, 0, 0, PRESENT]),
            )
        )
        for a, b in [(w0, t + BUCKET_S), (w0 - 5 * BUCKET_S, t + BUCKET_S), (t, t + BUCKET_S)]:
            assert {k: s.segments for k, s in st.month_series(a, b).items()} == reference(st, a, b)


@pytest.mark.parametrize("typecode", ["B", "H", "I", "Q"])
@pytest.mark.parametrize(
    "written",
    [
        bytes([PRESENT]) * SLOTS,  # every slot
        bytes([PRESENT]) * 1500 + bytes(SLOTS - 1500),  # a prefix (the current week)
        bytes(SLOTS),  # none
        bytes([0, PRESENT, 1, 0, 0, 9, 0]) * 288,  # holes, flags other than PRESENT
        bytes(7) + bytes([PRESENT]) * 100,  # unwritten first
        b"",
    ],
)
def test_spread_is_the_constant_on_written_slots(typecode: str, written: bytes) -> None:
    """`_spread` (masked columns made arrays) against the plain definition, for constants filling
    one byte, several, and the item's top byte."""
    from sitivmon.usage.buckets import _spread

    size = array(typecode).itemsize
    for c in {1, 0xFF, 0x1234 % 256**size, 5000 % 256**size, 256**size - 1, 0x0102030405060708 % 256**size}:
        got = _spread(c, typecode, written)
        assert got.typecode == typecode
        assert got.tolist() == [c if w else 0 for w in written], c
