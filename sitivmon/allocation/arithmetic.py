"""Exact splitting of an amount in cents by weights: largest remainder method, INSEE tie-break.

Quotas are computed as exact rationals (`Fraction`) from Decimal weights, never floats, so that the
communes' amounts always sum to the budget and the same inputs always give the same cents.
"""

from __future__ import annotations

import contextlib
import decimal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

EXACT_DIGITS = 100
"""Significant digits of every Decimal computed in allocation (`exact`); far above any real figure."""

MAX_BUDGET_CENTS = 10**15 - 1
_MAX_BUDGET = Decimal(MAX_BUDGET_CENTS).scaleb(-2)
"""Largest budget (9,999,999,999,999.99 EUR): cents stay exact in the spreadsheets finance opens
(IEEE doubles are exact to 2**53 ~ 9.0e15) and in Decimal's default 28 digits used by renderers."""


@contextlib.contextmanager
def exact() -> Iterator[None]:
    """Decimal arithmetic that refuses to round, instead of Python's silent 28-digit rounding.

    A share written with 35 digits, or shares that sum to 1 only once rounded to 28 digits, would
    otherwise pass as exact; here any rounding (or overflow) raises ValueError, which validation
    reports with the field's location.
    """
    with decimal.localcontext() as ctx:
        ctx.prec = EXACT_DIGITS
        ctx.traps[decimal.Inexact] = True
        ctx.traps[decimal.Rounded] = True
        try:
            yield
        except (decimal.Inexact, decimal.Rounded):
            raise ValueError(f"cannot be computed exactly: more than {EXACT_DIGITS} significant digits") from None


@dataclass(frozen=True, slots=True)
class Part:
    """One commune's claim on an amount: its tie-break code (INSEE) and its non-negative weight."""

    insee: str
    weight: Decimal


@dataclass(frozen=True, slots=True)
class Split:
    """The result for one part, with what is needed to explain it line by line.

    `quota` is the exact share of the amount in cents; `amount_cents` is its floor plus
    `rounding_adjustment_cents` (0 or 1), the cent given by the largest remainder method.
    """

    insee: str
    share: Fraction
    quota: Fraction
    amount_cents: int
    rounding_adjustment_cents: int


def largest_remainder(total_cents: int, parts: Sequence[Part]) -> list[Split]:
    """Split `total_cents` between `parts` in proportion to their weights; the results sum to the total.

    Each part gets the floor of its exact quota; the cents left over go one each to the parts with the
    largest remainders, ties broken by ascending INSEE code so that the result does not depend on the
    order of the input. The output keeps the input order.
    """
    if total_cents < 0:
        raise ValueError(f"amount must not be negative, got {total_cents} cents")
    if not parts:
        raise ValueError("nothing to split between: no parts")
    codes = [p.insee for p in parts]
    if len(set(codes)) != len(codes):
        raise ValueError("each part needs a distinct INSEE code for the tie-break")
    weights = [Fraction(p.weight) for p in parts]
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    total_weight = sum(weights, Fraction(0))
    if total_weight == 0:
        raise ValueError("weights sum to zero")
    shares = [w / total_weight for w in weights]
    quotas = [s * total_cents for s in shares]
    floors = [q.numerator // q.denominator for q in quotas]
    left = total_cents - sum(floors)
    order = sorted(range(len(parts)), key=lambda i: (-(quotas[i] - floors[i]), parts[i].insee))
    bonus = set(order[:left])
    return [
        Split(
            insee=parts[i].insee,
            share=shares[i],
            quota=quotas[i],
            amount_cents=floors[i] + (1 if i in bonus else 0),
            rounding_adjustment_cents=1 if i in bonus else 0,
        )
        for i in range(len(parts))
    ]


def euros_to_cents(value: Decimal) -> int:
    """Cents in a euro amount that has at most two decimals; more precision is refused, not rounded."""
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value}")
    if not -_MAX_BUDGET <= value <= _MAX_BUDGET:  # compared before any arithmetic: exact
        raise ValueError(f"amount {value} is above the largest budget, {cents_to_euros(MAX_BUDGET_CENTS)}")
    with exact():
        cents = value.scaleb(2)
        if cents != cents.to_integral_value():
            raise ValueError(f"amount {value} has more than two decimals")
        return int(cents)


def cents_to_euros(cents: int, decimal_sep: str = ".") -> str:
    """`123456` -> `1234.56` (or `1234,56`): exact text of an amount in cents, two decimals always."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    return f"{sign}{units}{decimal_sep}{rest:02d}"


def fraction_to_decimal(value: Fraction, places: int = 10) -> Decimal:
    """A rational shown with a fixed number of decimals (half-even) for reports; never used for sums."""
    scaled = value * 10**places
    q, r = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * r
    if twice > scaled.denominator or (twice == scaled.denominator and q % 2 == 1):
        q += 1
    return Decimal(q).scaleb(-places)
