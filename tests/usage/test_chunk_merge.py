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


def _enc_before(vals: list[int], written: bytes | None = None) -> bytes:
    """`buckets._enc` as it was before its unsigned fast way (the reference for the bytes stored)."""
    from array import array

    first = vals[0]
    if vals.count(first) == len(vals) and -(2**63) <= first <= 2**63 - 1:
        return b"=" + first.to_bytes(8, "little", signed=True)
    hi = None
    if written is not None:
        c = hi = max(vals)
        n = written.count(1)
        if (
            c <= 2**63 - 1
            and vals.count(c) == n
            and (c == 0 or vals.count(0) == len(vals) - n)
            and bytes(map(bool, vals)) == written
        ):
            return b"~" + c.to_bytes(8, "little", signed=True)
    lo = min(vals)
    if hi is None:
        hi = max(vals)
    tc = "q"
    if lo >= 0:
        tc = next(t for t, lim in (("B", 0xFF), ("H", 0xFFFF), ("I", 0xFFFF_FFFF), ("Q", 2**64 - 1)) if hi <= lim)
    return tc.encode() + array(tc, vals).tobytes()


def test_column_encoding_is_the_same_bytes_as_before() -> None:
    """Every kind of column (constant, masked, each width, signed, past 64 bits, odd `written`)
    encodes to the bytes the general way wrote: what is stored does not change."""
    import random

    from sitivmon.usage.buckets import _enc

    rng = random.Random(15)
    n = SLOTS
    for trial in range(400):
        kind = trial % 8
        cut = rng.randrange(1, n)
        written = bytes([1] * cut + [0] * (n - cut)) if trial % 3 else bytes(rng.choice((0, 1)) for _ in range(n))
        top = rng.choice((1, 2**8 - 1, 2**8, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1))
        if kind == 0:  # masked: a constant on the written slots
            c = rng.randrange(1, top + 1)
            vals = [c if w else 0 for w in written]
        elif kind == 1:  # masked but for one slot
            c = rng.randrange(1, top + 1)
            vals = [c if w else 0 for w in written]
            i = rng.randrange(n)
            vals[i] = 0 if vals[i] else c
        elif kind == 2:  # varying below `top`
            vals = [rng.randrange(0, top + 1) for _ in range(n)]
        elif kind == 3:  # varying, written slots only
            vals = [rng.randrange(1, top + 1) if w else 0 for w in written]
        elif kind == 4:  # signed
            vals = [rng.randrange(-top, top + 1) for _ in range(n)]
        elif kind == 5:  # past 64 bits somewhere
            vals = [rng.randrange(0, 2**32) for _ in range(n)]
            vals[rng.randrange(n)] = 2**64 + rng.randrange(2**60)
            vals = [min(v, 2**64 - 1) for v in vals] if trial % 16 < 8 else vals
        elif kind == 6:  # a constant everywhere (unwritten slots too)
            vals = [top] * n
        else:  # masked, with `written` telling something else (flags past a byte) or nothing
            c = rng.randrange(1, top + 1)
            vals = [c if w else 0 for w in written]
            written = bytes(2 if w else 0 for w in written) if trial % 16 < 8 else written[:-1]
        for wr in (written, None):
            try:
                want: bytes | type[Exception] = _enc_before(vals, wr)
            except (StopIteration, OverflowError) as exc:  # past 64 bits: the general way's own limit
                want = type(exc)
            if not isinstance(want, bytes):
                with pytest.raises(want):
                    _enc(vals, wr)
            else:
                assert _enc(vals, wr) == want, (trial, kind, top)


def test_encode_of_array_columns_is_the_bytes_of_their_lists() -> None:
    """A chunk's columns held as unsigned arrays of any width (as decoded and merged in place) are
    encoded without becoming lists (`Chunk._enc_col`): the bytes must be those of the same values
    as lists, for constant, masked-looking, varying and wide columns."""
    import random
    from array import array

    from sitivmon.usage.buckets import _dec

    rng = random.Random(1515)
    widths = (("B", 2**8 - 1), ("H", 2**16 - 1), ("I", 2**32 - 1), ("L", 2**64 - 1), ("Q", 2**64 - 1))
    seen: set[str] = set()
    for trial in range(300):
        cut = rng.randrange(1, SLOTS + 1)
        flags = [PRESENT if i < cut else 0 for i in range(SLOTS)]
        if trial % 4 == 0:
            flags = [rng.choice((0, PRESENT, PRESENT | 4)) for _ in range(SLOTS)]
        cols: list[list[int]] = []
        for _ in range(3):
            top = rng.choice((1, 2**8 - 1, 2**16, 2**32 - 1, 2**40, 2**63 - 1, 2**63, 2**64 - 1))
            kind = rng.randrange(4)
            if kind == 0:  # constant everywhere
                vals = [rng.randrange(0, top + 1)] * SLOTS
            elif kind == 1:  # a constant on the written slots, 0 elsewhere
                c = rng.randrange(1, top + 1)
                vals = [c if f else 0 for f in flags]
            elif kind == 2:  # varying
                vals = [rng.randrange(0, top + 1) for _ in range(SLOTS)]
            else:  # varying on the written slots only
                vals = [rng.randrange(0, top + 1) if f else 0 for f in flags]
            cols.append(vals)
        want = Chunk([list(c) for c in cols] + [list(flags)]).encode()
        held: list[object] = []
        for vals in cols:
            fits = [tc for tc, lim in widths if max(vals) <= lim]
            held.append(array(rng.choice(fits), vals))
        got = Chunk([*held, array("B", flags)]).encode()  # type: ignore[list-item]
        assert got == want, trial
        pos = 1
        for _ in range(3):
            seen.add(chr(want[pos]))
            pos = _dec(want, pos)[1]
    assert seen == set("=~BHIQ")  # every encoding of a column was compared
