"""`scans._covered` sums the buckets' coverage with one Fraction per expected count: it must be the
sum, pair by pair, that `scan_series` computed before (kept here as the reference)."""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

from sitivmon.usage.scans import _covered


def bucket_cov(r: int, e: int) -> Fraction:
    """One bucket's coverage, as `scan_series` added it pair by pair."""
    if r <= 0:
        return Fraction(0)
    if e <= 0 or r >= e:
        return Fraction(1)
    return Fraction(r, e)


def test_covered_is_the_sum_pair_by_pair() -> None:
    rng = random.Random(15)
    for _ in range(2000):
        pairs: Counter[tuple[int, int]] = Counter()
        for _ in range(rng.randrange(0, 30)):
            e = rng.choice([-1, 0, 1, 3, 5000, 5001, 30_000, 2**40])
            r = rng.choice([-5, 0, 1, e - 1, e, e + 1, rng.randrange(0, max(1, e) + 10)])
            pairs[(r, e)] += rng.choice([-3, -1, 1, 1, 2, 288, rng.randrange(0, 2017)])  # untrusted take back
        want = sum((count * bucket_cov(r, e) for (r, e), count in pairs.items()), Fraction(0))
        got = _covered(pairs)
        assert got == want and type(got) is Fraction, pairs


def test_covered_of_nothing_is_zero() -> None:
    assert _covered(Counter()) == 0
    assert _covered(Counter({(0, 5000): 7, (-1, 5000): 2})) == 0
