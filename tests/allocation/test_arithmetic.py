"""Largest remainder: exact sums, bounded rounding, INSEE tie-break; property-based over random inputs."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitivmon.allocation.arithmetic import (
    Part,
    cents_to_euros,
    euros_to_cents,
    fraction_to_decimal,
    largest_remainder,
)

INSEE = ["69091", "69096", "69152", "42186", "69256", "69259", "69273", "42207"]


def test_three_equal_parts_give_the_extra_cents_to_the_lowest_insee_codes() -> None:
    parts = [Part("69259", Decimal(1)), Part("42186", Decimal(1)), Part("69091", Decimal(1))]
    splits = largest_remainder(100, parts)
    assert [s.amount_cents for s in splits] == [33, 34, 33]  # 42186 is the lowest code
    assert [s.rounding_adjustment_cents for s in splits] == [0, 1, 0]
    # The same parts in another order give the same cents to the same communes.
    again = {s.insee: s.amount_cents for s in largest_remainder(100, list(reversed(parts)))}
    assert again == {s.insee: s.amount_cents for s in splits}


def test_largest_remainder_wins_before_the_tie_break() -> None:
    splits = largest_remainder(10, [Part("11111", Decimal("0.14")), Part("99999", Decimal("0.86"))])
    # quotas 1.4 and 8.6: the bigger remainder (0.6) takes the cent though its code sorts last
    assert [s.amount_cents for s in splits] == [1, 9]


def test_zero_weight_gets_nothing_and_zero_budget_gives_zeros() -> None:
    splits = largest_remainder(1, [Part("1", Decimal(0)), Part("2", Decimal(0)), Part("3", Decimal(5))])
    assert [s.amount_cents for s in splits] == [0, 0, 1]
    assert [s.amount_cents for s in largest_remainder(0, [Part("1", Decimal(1))])] == [0]


@pytest.mark.parametrize(
    ("total", "parts", "message"),
    [
        (-1, [Part("1", Decimal(1))], "negative"),
        (10, [], "no parts"),
        (10, [Part("1", Decimal(0))], "sum to zero"),
        (10, [Part("1", Decimal(-1)), Part("2", Decimal(2))], "negative"),
        (10, [Part("1", Decimal(1)), Part("1", Decimal(1))], "distinct"),
    ],
)
def test_refuses_what_cannot_be_split(total: int, parts: list[Part], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        largest_remainder(total, parts)


def test_euro_text_conversions_are_exact() -> None:
    assert euros_to_cents(Decimal("12000.50")) == 1200050
    assert euros_to_cents(Decimal("0.1") + Decimal("0.2")) == 30
    with pytest.raises(ValueError, match="two decimals"):
        euros_to_cents(Decimal("1.005"))
    assert cents_to_euros(123456) == "1234.56"
    assert cents_to_euros(5, ",") == "0,05"
    assert cents_to_euros(-5) == "-0.05"
    assert fraction_to_decimal(Fraction(1, 3), 4) == Decimal("0.3333")
    assert fraction_to_decimal(Fraction(1, 8), 2) == Decimal("0.12")  # half-even
    assert fraction_to_decimal(Fraction(3, 8), 2) == Decimal("0.38")


weights = st.one_of(
    st.integers(min_value=0, max_value=10**15).map(Decimal),
    st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False),
)


@st.composite
def split_inputs(draw: st.DrawFn) -> tuple[int, list[Part]]:
    n = draw(st.integers(min_value=1, max_value=8))
    codes = draw(st.permutations(INSEE))[:n]
    ws = draw(st.lists(weights, min_size=n, max_size=n))
    if all(w == 0 for w in ws):
        ws[draw(st.integers(0, n - 1))] = Decimal(1)
    total = draw(st.integers(min_value=0, max_value=10**11))
    return total, [Part(c, w) for c, w in zip(codes, ws, strict=True)]


@settings(max_examples=2000, deadline=None)
@given(split_inputs())
def test_property_amounts_sum_to_budget_and_stay_within_a_cent(case: tuple[int, list[Part]]) -> None:
    total, parts = case
    splits = largest_remainder(total, parts)
    assert sum(s.amount_cents for s in splits) == total
    assert sum(s.share for s in splits) == 1
    left = total - sum(s.quota.numerator // s.quota.denominator for s in splits)
    assert sum(s.rounding_adjustment_cents for s in splits) == left < len(parts)
    for s in splits:
        assert abs(s.quota - s.amount_cents) < 1
        assert s.rounding_adjustment_cents in (0, 1)
    # Input order never changes who gets what.
    shuffled = list(parts)
    random.Random(total).shuffle(shuffled)
    assert {s.insee: s.amount_cents for s in largest_remainder(total, shuffled)} == {
        s.insee: s.amount_cents for s in splits
    }


@settings(max_examples=500, deadline=None)
@given(split_inputs())
def test_property_the_extra_cents_go_to_the_largest_remainders(case: tuple[int, list[Part]]) -> None:
    total, parts = case
    splits = largest_remainder(total, parts)
    got = [s for s in splits if s.rounding_adjustment_cents]
    not_got = [s for s in splits if not s.rounding_adjustment_cents]
    for a in got:
        for b in not_got:
            ra, rb = a.quota - int(a.quota), b.quota - int(b.quota)
            assert ra > rb or (ra == rb and a.insee < b.insee)


@pytest.mark.parametrize(
    ("euros", "cents"),
    [
        ("0.01", 1),
        ("9999999999999.99", 999_999_999_999_999),  # the largest budget, exact to the cent
        ("1234567890123.45", 123_456_789_012_345),
        ("100", 10_000),
        ("1E+2", 10_000),
    ],
)
def test_euros_to_cents_is_exact_up_to_the_largest_budget(euros: str, cents: int) -> None:
    assert euros_to_cents(Decimal(euros)) == cents


@pytest.mark.parametrize(
    ("euros", "message"),
    [
        ("10000000000000.00", "above the largest budget"),
        ("12345678901234567890123456789.01", "above the largest budget"),  # rounded to ...79000 cents before
        ("1E+999999999", "above the largest budget"),
        ("0.001", "more than two decimals"),
        ("0.0100000000000000000000000000000000000000001", "more than two decimals"),
    ],
)
def test_euros_to_cents_refuses_what_it_cannot_keep_exact(euros: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        euros_to_cents(Decimal(euros))


def test_exact_context_raises_instead_of_rounding() -> None:
    from sitivmon.allocation.arithmetic import EXACT_DIGITS, exact

    with exact():
        assert Decimal("0.5000000000000000000000000000001") + Decimal("0.5") != 1  # 28 digits said == 1
    with pytest.raises(ValueError, match="exactly"), exact():
        Decimal(1) / Decimal(3)
    with pytest.raises(ValueError, match="exactly"), exact():
        Decimal("1E-200") + Decimal(1)
    assert EXACT_DIGITS >= 60
