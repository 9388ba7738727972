"""Months in a timezone, bucket alignment and exact splitting (pure functions, tables)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitivmon.usage.periods import (
    BUCKET_S,
    bucket_start,
    month_of,
    month_range,
    parse_month,
    split_delta,
    split_runs,
)


@pytest.mark.parametrize(
    ("label", "tz", "hours", "start_iso"),
    [
        ("2026-10", "Europe/Paris", 745, "2026-10-01T00:00:00+02:00"),  # DST ends on the 25th
        ("2026-03", "Europe/Paris", 743, "2026-03-01T00:00:00+01:00"),  # DST starts on the 29th
        ("2026-01", "Europe/Paris", 744, "2026-01-01T00:00:00+01:00"),
        ("2026-02", "Europe/Paris", 672, "2026-02-01T00:00:00+01:00"),
        ("2024-02", "Europe/Paris", 696, "2024-02-01T00:00:00+01:00"),  # leap year
        ("2026-12", "Europe/Paris", 744, "2026-12-01T00:00:00+01:00"),  # year rollover
        ("2026-10", "UTC", 744, "2026-10-01T00:00:00+00:00"),
        ("2026-04", "America/St_Johns", 720, "2026-04-01T00:00:00-02:30"),  # half-hour offset
    ],
)
def test_month_range(label: str, tz: str, hours: int, start_iso: str) -> None:
    m = month_range(label, tz)
    assert m.hours == hours
    assert m.buckets == hours * 12
    assert m.local_iso(m.start) == start_iso
    assert m.start % BUCKET_S == 0 and m.end % BUCKET_S == 0


def test_consecutive_months_tile_time() -> None:
    months = [month_range(f"2026-{i:02d}") for i in range(1, 13)]
    assert all(a.end == b.start for a, b in itertools.pairwise(months))
    assert sum(m.hours for m in months) == 365 * 24


@pytest.mark.parametrize(
    "label",
    ["2026-13", "2026-1", "26-10", "2026/10", "", "2026-00", "2026-10\n", " 2026-10", "0000-01", "9999-12", "1969-12"],
)
def test_bad_month_labels(label: str) -> None:
    with pytest.raises(ValueError):
        parse_month(label)


def test_month_of_uses_local_time() -> None:
    m = month_range("2026-10")
    assert month_of(m.start).label == "2026-10"
    assert month_of(m.start - 1).label == "2026-09"  # 30 Sept 23:59:59 in Paris, 21:59:59 UTC


@pytest.mark.parametrize(
    ("start", "end", "delta", "parts"),
    [
        (0, 300, 1000, [(0, 1000)]),  # exactly one bucket
        (150, 450, 1000, [(0, 500), (300, 500)]),  # half and half
        (150, 450, 1001, [(0, 501), (300, 500)]),  # tie on the remainder: the earlier bucket
        (200, 500, 1000, [(0, 333), (300, 667)]),  # 1/3 and 2/3
        (100, 800, 7, [(0, 2), (300, 3), (600, 2)]),  # 200/700, 300/700, 200/700 of 7
        (290, 310, 0, [(0, 0), (300, 0)]),  # zero traffic still marks both buckets
        (310, 310, 5, [(300, 5)]),  # zero length: the bucket of the reading
        (0.5, 300.5, 600, [(0, 599), (300, 1)]),  # sub-second boundaries
    ],
)
def test_split_delta_table(start: float, end: float, delta: int, parts: list[tuple[int, int]]) -> None:
    assert split_delta(start, end, delta) == parts


@given(
    start=st.floats(min_value=1.7e9, max_value=1.8e9, allow_nan=False),
    length=st.floats(min_value=0.0, max_value=86400.0, allow_nan=False),
    delta=st.integers(min_value=0, max_value=10**15),
)
def test_split_delta_is_exact_and_proportional(start: float, length: float, delta: int) -> None:
    parts = split_delta(start, start + length, delta)
    assert sum(p for _, p in parts) == delta
    assert all(p >= 0 for _, p in parts)
    assert [b for b, _ in parts] == sorted({b for b, _ in parts})
    assert all(b == bucket_start(b) for b, _ in parts)
    if length >= 1:  # each part is within one unit of its exact proportional share
        s_us, e_us = round(start * 1e6), round((start + length) * 1e6)
        for b, p in parts:
            ov = min(e_us, (b + BUCKET_S) * 10**6) - max(s_us, b * 10**6)
            assert abs(p - delta * ov / (e_us - s_us)) <= 1 + delta * 1e-12


def expand(runs: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    return [(b + i * BUCKET_S, part) for b, n, part in runs for i in range(n)]


@given(
    start=st.one_of(
        st.floats(min_value=1.7e9, max_value=1.8e9, allow_nan=False),
        st.integers(min_value=1.7e9 // 300, max_value=1.8e9 // 300).map(lambda b: b * 300.0),  # aligned
    ),
    length=st.one_of(
        st.floats(min_value=-10.0, max_value=3 * 86400.0, allow_nan=False),
        st.integers(min_value=0, max_value=900).map(lambda b: b * 300.0),  # whole buckets
        st.sampled_from([1e-7, 4e-7, 299.9999996, 300.0000004, 600.0]),  # microsecond rounding edges
    ),
    delta=st.one_of(st.integers(min_value=0, max_value=10**15), st.integers(min_value=-(10**6), max_value=10**6)),
)
def test_split_runs_is_split_delta_run_length_encoded(start: float, length: float, delta: int) -> None:
    """Spans (`buckets.Span`) store runs; every stored bucket must be the one `split_delta` gives."""
    runs = split_runs(start, start + length, delta)
    assert expand(runs) == split_delta(start, start + length, delta)
    assert len(runs) <= 4 and all(n >= 1 for _, n, _ in runs)


@pytest.mark.parametrize(
    ("start", "end", "delta"),
    [
        (0.0, 300.0, 5),  # one whole bucket
        (0.0, 600.0, 1),  # two whole buckets, one unit: the earlier one
        (150.0, 750.0, 3),  # half, whole, half
        (299.9999996, 900.0000004, 10**9),  # micro-rounded to whole buckets
        (1.0, 48 * 3600 + 1.0, 10**12 + 7),  # the two-day gap: 577 buckets
        (100.0, 100.0 + 30 * 86400, 2**62),  # a month, large delta
        (10.0, 9.0, 4),  # reversed: the bucket of `end`
    ],
)
def test_split_runs_table(start: float, end: float, delta: int) -> None:
    assert expand(split_runs(start, end, delta)) == split_delta(start, end, delta)


def test_interval_straddling_a_month_boundary_is_split_by_overlap() -> None:
    oct_ = month_range("2026-10")
    parts = dict(split_delta(oct_.start - 150, oct_.start + 150, 1000))
    assert parts == {oct_.start - BUCKET_S: 500, oct_.start: 500}
