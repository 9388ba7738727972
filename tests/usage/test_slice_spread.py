"""Two reads of the month-to-date refresh done in C rather than slot by slot (issue 15): a masked
column sliced over a part of the week is spread as an array (`Chunk.slice`, as `merged_slice` does),
and the buckets where any series is present are found by translating flags bytes
(`scans._present_mask`). Both against their plain definitions."""

from __future__ import annotations

import random
from array import array

import pytest

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import _SLOT_MAX as SLOT_MAX
from sitivmon.usage.buckets import _SLOT_TYPE as SLOT_TYPE
from sitivmon.usage.buckets import PRESENT, SLOTS, Chunk, Col
from sitivmon.usage.port import SeriesMonth
from sitivmon.usage.scans import _present_mask, per_bucket_totals


def values(col: Col, n: int) -> list[int]:
    return [col] * n if isinstance(col, int) else list(col)


def masked_blob(rng: random.Random) -> bytes:
    """A week written on some slots with columns constant there (masked when encoded), or varying."""
    lo = rng.randrange(SLOTS)
    hi = rng.choice([lo + 1, min(SLOTS, lo + rng.randrange(1, 500)), SLOTS])
    written = [s for s in range(lo, hi) if rng.random() < rng.choice([1.0, 1.0, 0.7])] or [lo]
    value = rng.choice([0, 7, 2**40, "varying"])
    rec = rng.choice([5000, 30_000, 0, "varying"])
    exp = rng.choice([5000, 2**32 - 1, 2**40])  # 2**40: masked, past the 32-bit arrays
    flags = rng.choice([0, 0, 2, 8])
    ch = Chunk()
    for s in written:
        ch.merge(
            s,
            rng.randrange(10**6) if value == "varying" else int(value),
            rng.randrange(6000) if rec == "varying" else int(rec),
            exp,
            flags,
        )
    return ch.encode()


def test_a_masked_column_sliced_over_part_of_the_week_is_the_constant_on_written_slots() -> None:
    rng = random.Random(1201)
    arrays = lists = 0
    for _ in range(800):
        blob = masked_blob(rng)
        a = rng.randrange(SLOTS)
        b = rng.choice([a + 1, min(SLOTS, a + rng.randrange(1, 700)), SLOTS])
        ch = Chunk.decode(blob)
        masked = {i: ch.cols[i] for i in ch.masked}
        got = ch.slice(a, b)
        whole = Chunk.decode(blob).slice(0, SLOTS)  # every column spread for real
        for i, col in enumerate(got):
            want = values(whole[i], SLOTS)[a:b]
            assert values(col, b - a) == want, (i, a, b)
            if isinstance(col, int):
                assert want.count(col) == len(want)  # an int only when constant over the slice
                continue
            assert want.count(want[0]) != len(want)  # and always then
            c = masked.get(i)
            if isinstance(c, int):  # spread here: an array of the slot's type when the constant fits it
                if 0 <= c <= SLOT_MAX[i]:
                    assert isinstance(col, array) and col.typecode == SLOT_TYPE[i]
                    arrays += 1
                else:
                    assert isinstance(col, list)
                    lists += 1
    assert arrays > 300 and lists > 50  # both ways taken


def plain_mask(flags: list[Col], n: int) -> bytes:
    return bytes(1 if any(fb & PRESENT for fb in (values(f, n)[i] for f in flags)) else 0 for i in range(n))


@pytest.mark.parametrize("seed", range(6))
def test_present_mask_is_any_series_present(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 2, 12, 288, SLOTS])
    for _ in range(60):
        flags: list[Col] = []
        for _ in range(rng.randrange(1, 6)):
            kind = rng.choice(["int", "B", "list", "big", "I", "bool"])
            if kind == "int":
                flags.append(rng.choice([0, 2, 8]))  # without PRESENT (the caller's check)
            elif kind == "B":
                flags.append(array("B", (rng.choice([0, PRESENT, 2, PRESENT | 8, 255]) for _ in range(n))))
            elif kind == "list":
                flags.append([rng.choice([0, PRESENT, 4]) for _ in range(n)])
            elif kind == "big":  # over a byte: slot by slot
                flags.append([rng.choice([0, PRESENT, 256, 256 | PRESENT]) for _ in range(n)])
            elif kind == "I":  # another array type: slot by slot, never its memory
                flags.append(array("I", (rng.choice([0, PRESENT, PRESENT << 8, 2**31]) for _ in range(n))))
            else:
                flags.append([rng.random() < 0.5 for _ in range(n)])
        assert _present_mask(flags, n) == plain_mask(flags, n)


def test_per_bucket_totals_marks_the_buckets_with_data() -> None:
    k = UsageKey("c0", "l1", Quantity.TRAFFIC_IN)
    n = 6
    a = SeriesMonth(k, 0, n, {0: (4, array("Q", [1, 2, 3, 4]), 0, 0, array("B", [PRESENT, 0, 0, PRESENT]))})
    b = SeriesMonth(k, 0, n, {0: (4, 5, 0, 0, [0, PRESENT, 0, 0]), 4: (2, 1, 0, 0, 0)})
    totals, present = per_bucket_totals([a, b], n)
    assert totals == [6, 7, 8, 9, 1, 1]
    assert bytes(present) == bytes([1, 1, 0, 1, 0, 0])
