"""Chunk.merge writes decoded array columns in place; a value past the array's item size widens it."""

from __future__ import annotations

import pytest

from sitivmon.usage.buckets import PRESENT, SLOTS, Chunk


def reference(merges: list[tuple[int, int, int, int, int]]) -> list[list[int]]:
    cols = [[0] * SLOTS for _ in range(4)]
    for slot, v, r, e, f in merges:
        cols[0][slot] += v
        cols[1][slot] += r
        cols[2][slot] = max(cols[2][slot], e)
        cols[3][slot] |= f | PRESENT
    return cols


@pytest.mark.parametrize(
    "later",
    [
        [(7, 5, 1000, 30000, 0)],  # fits the decoded arrays
        [(7, 2**40, 1000, 30000, 0)],  # value past a 1-byte array
        [(3, 2**63, 2**33, 2**40, 4)],  # past every unsigned width but Q, and a flag
        [(0, 1, 30000, 30000, 0), (2015, 2**64 - 2, 0, 0, 8)],  # masked columns, last slot
    ],
)
def test_merge_into_a_decoded_chunk_equals_merging_lists(later: list[tuple[int, int, int, int, int]]) -> None:
    first = [(s, s % 7, 30000, 30000, 0) for s in range(0, 300, 3)]
    ch = Chunk()
    for m in first:
        ch.merge(*m)
    decoded = Chunk.decode(ch.encode())
    for m in later:
        decoded.merge(*m)
    expected = reference(first + later)
    again = Chunk.decode(decoded.encode())
    got = [list(c) if not isinstance(c, int) else [c] * SLOTS for c in again.slice(0, SLOTS)]
    assert got == expected


@pytest.mark.parametrize(
    "merges",
    [
        [(1, 2**62, 2**40, 2**33, 0), (1, 5, 5, 5, 4), (9, 3, 0, 0, 0)],  # past the 32-bit columns
        [(0, 5, 30000, 30000, 0), (4, -3, 1, 1, 0)],  # below an unsigned array
    ],
)
def test_fresh_chunk_columns_widen_past_their_arrays(merges: list[tuple[int, int, int, int, int]]) -> None:
    ch = Chunk()
    for m in merges:
        ch.merge(*m)
    assert [list(c) if not isinstance(c, int) else [c] * SLOTS for c in ch.slice(0, SLOTS)] == reference(merges)
    again = Chunk.decode(ch.encode())
    assert [list(c) if not isinstance(c, int) else [c] * SLOTS for c in again.slice(0, SLOTS)] == reference(merges)


def _spread_then_sliced(blob: bytes, a: int, b: int) -> list[object]:
    """What `Chunk.slice` gave before it spread masked columns over the slice only: every column
    spread over the whole week (as lists, `Chunk._list`), then cut and collapsed when constant."""
    ch = Chunk.decode(blob)
    out: list[object] = []
    for i in range(4):
        c = ch.cols[i] if isinstance(ch.cols[i], int) and i not in ch.masked else ch._list(i)[a:b]
        if not isinstance(c, int):
            c = list(c)
            if c.count(c[0]) == len(c):
                c = c[0]
        out.append(c)
    return out


@pytest.mark.parametrize("written", [range(0, 300), range(100, 2016), [*range(10, 20), *range(500, 900)]])
@pytest.mark.parametrize("value", [0, 7, "varying"])
def test_slice_of_masked_columns_spreads_the_part_only(written: range | list[int], value: int | str) -> None:
    """A decoded week written on some slots only (received, expected and maybe value masked): any
    slice reads what spreading the whole week gave, and a slice of a part leaves the chunk masked."""
    ch = Chunk()
    for slot in written:
        ch.merge(slot, slot * 1000 if value == "varying" else int(value), 5000, 5000, 0)
    blob = ch.encode()
    assert Chunk.decode(blob).masked, "the case under test: masked columns"
    for a, b in [(0, 1), (0, 300), (5, 15), (250, 350), (299, 300), (300, 301), (1000, 2016), (0, 2015), (0, SLOTS)]:
        back = Chunk.decode(blob)
        masked = set(back.masked)
        got = [c if isinstance(c, int) else list(c) for c in back.slice(a, b)]
        assert got == _spread_then_sliced(blob, a, b), (a, b)
        if (a, b) != (0, SLOTS):
            assert back.masked == masked  # nothing spread in the chunk itself
            assert [c if isinstance(c, int) else list(c) for c in back.slice(a, b)] == got


@pytest.mark.parametrize(
    "merges",
    [
        [(7, 5, 1000, 30000, 0), (7, 6, 1000, 20000, 2), (8, 1, 1, 1, 0)],  # fits, same slot twice
        [(7, 2**40, 1000, 30000, 0), (7, 1, 2**33, 0, 0), (9, 1, 1, 1, 0)],  # value, then received widen
        [(3, 2**63, 2**33, 2**40, 4), (3, 2**62, 0, 0, 2**9)],  # past every width but Q, flags past a byte
        [(0, 1, 30000, 30000, 0), (2015, 2**64 - 2, 0, 0, 8)],  # masked columns, last slot
        [(0, 5, 30000, 30000, 0), (4, -3, 1, 1, 0), (4, 3, 1, 1, 0)],  # below an unsigned array
        [],
    ],
)
@pytest.mark.parametrize("decoded", [True, False])
def test_merge_all_equals_merging_one_by_one(merges: list[tuple[int, int, int, int, int]], decoded: bool) -> None:
    """`merge_all` (the readers' overlays, the writers' compaction) leaves what `merge` one by one leaves."""
    first = [(s, s % 7, 30000, 30000, 0) for s in range(0, 300, 3)]
    base = Chunk()
    for m in first:
        base.merge(*m)
    blob = base.encode()
    one, many = (Chunk.decode(blob), Chunk.decode(blob)) if decoded else (Chunk(), Chunk())
    for m in merges:
        one.merge(*m)
    many.merge_all(merges)
    assert [list(c) if not isinstance(c, int) else c for c in many.slice(0, SLOTS)] == [
        list(c) if not isinstance(c, int) else c for c in one.slice(0, SLOTS)
    ]
    assert many.encode() == one.encode()
