"""Exact integer joules from an energy counter or from power readings. Pure functions, no I/O.

* Device counter (APC's rPDUOutletMeteredStatusEnergy counts tenths of kWh): the increase times the
  profile's Decimal scale (360000 J per 0.1 kWh) is exact. A counter that goes back (PDU reset or
  replaced) counts 0 and is flagged `reset`: nothing is invented.
* Power only: the trapezoid of the two readings over the elapsed time. Whole joules are counted and
  the fraction is carried to the next interval in the baseline, so rounding never loses or invents
  energy over time.
* An interval longer than `GAP_FACTOR` poll intervals (daemon stopped, device unreachable) is still
  counted, the trapezoid being the best estimate there is, and flagged `gap` so reports can say so.
* The poller's clock stepping back (a reading earlier than the previous one): a device counter keeps
  its previous reading as the baseline, re-timed to the current clock, so the next interval counts the
  whole increase (exact). Power has no such memory: the time between the two readings is taken to be
  the poll interval (the poller schedules on a monotonic clock), the trapezoid over it counted and
  flagged `gap`, so that energy is neither lost nor counted twice.
* What no equipment of a commune can draw (`MAX_WATTS`, 10 MW: more than the whole datacenter) is not
  a reading: a counter jump past it counts 0, flagged `unknown`, and becomes the baseline; such a power
  reading (or one that is no number) is skipped, the next one integrating across it.

The baseline is serialised into the usage store with the interval it produced, so a daemon restart
neither loses nor double counts energy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from sitivmon.readings import Flag

GAP_FACTOR = 3.0
MAX_WATTS = Decimal(10_000_000)


@dataclass(frozen=True, slots=True)
class EnergyBaseline:
    at: float
    raw: int | None = None  # device counter value, raw units
    watts: Decimal | None = None  # power at `at`, when integrating
    carry: Decimal = Decimal(0)  # fraction of a joule measured but not yet counted

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.at,
                "raw": self.raw,
                "w": None if self.watts is None else str(self.watts),
                "carry": str(self.carry),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> EnergyBaseline:
        d = json.loads(text)
        return cls(
            at=float(d["at"]),
            raw=None if d.get("raw") is None else int(d["raw"]),
            watts=None if d.get("w") is None else Decimal(d["w"]),
            carry=Decimal(d.get("carry", "0")),
        )


@dataclass(frozen=True, slots=True)
class EnergyStep:
    joules: int
    flags: frozenset[Flag]
    baseline: EnergyBaseline
    start: float | None  # None: first reading, no interval yet


def _whole(amount: Decimal) -> tuple[int, Decimal]:
    whole = amount.to_integral_value(rounding=ROUND_FLOOR)
    return int(whole), amount - whole


def _gap(prev: EnergyBaseline, at: float, interval_s: float) -> frozenset[Flag]:
    return frozenset({Flag.GAP}) if interval_s > 0 and at - prev.at > GAP_FACTOR * interval_s else frozenset()


def from_counter(prev: EnergyBaseline | None, raw: int, scale: Decimal, at: float, interval_s: float) -> EnergyStep:
    """An energy counter reading; `scale` turns raw units into joules."""
    if prev is None or prev.raw is None:
        return EnergyStep(0, frozenset(), EnergyBaseline(at, raw=raw), None)
    if at <= prev.at:  # the clock stepped back: the increase is counted by the next interval
        return EnergyStep(0, frozenset(), EnergyBaseline(at, raw=prev.raw, carry=prev.carry), None)
    if raw < prev.raw:
        return EnergyStep(0, frozenset({Flag.RESET}), EnergyBaseline(at, raw=raw, carry=prev.carry), prev.at)
    amount = (raw - prev.raw) * scale
    if amount > MAX_WATTS * (Decimal(repr(at - prev.at)) * Decimal("1.05") + 1):
        return EnergyStep(0, frozenset({Flag.UNKNOWN}), EnergyBaseline(at, raw=raw, carry=prev.carry), prev.at)
    joules, carry = _whole(amount + prev.carry)
    return EnergyStep(joules, _gap(prev, at, interval_s), EnergyBaseline(at, raw=raw, carry=carry), prev.at)


def from_power(prev: EnergyBaseline | None, watts: Decimal, at: float, interval_s: float) -> EnergyStep:
    """A power reading: integrate the trapezoid since the previous one. Negative power counts as 0."""
    if not watts.is_finite() or watts > MAX_WATTS:
        if prev is None:
            return EnergyStep(0, frozenset(), EnergyBaseline(at), None)
        return EnergyStep(0, frozenset(), prev, None)  # not a reading: the next one integrates across it
    watts = max(watts, Decimal(0))
    if prev is None or prev.watts is None:
        return EnergyStep(
            0, frozenset(), EnergyBaseline(at, watts=watts, carry=prev.carry if prev else Decimal(0)), None
        )
    if at == prev.at:  # the same reading again: nothing elapsed
        return EnergyStep(0, frozenset(), prev, None)
    if at < prev.at:  # the clock stepped back: the interval lasted a poll interval, as scheduled
        if interval_s <= 0:
            return EnergyStep(0, frozenset(), EnergyBaseline(at, watts=watts, carry=prev.carry), None)
        joules, carry = _whole((prev.watts + watts) * Decimal(repr(interval_s)) / 2 + prev.carry)
        return EnergyStep(joules, frozenset({Flag.GAP}), EnergyBaseline(at, watts=watts, carry=carry), at - interval_s)
    elapsed = Decimal(repr(at)) - Decimal(repr(prev.at))
    joules, carry = _whole((prev.watts + watts) * elapsed / 2 + prev.carry)
    return EnergyStep(joules, _gap(prev, at, interval_s), EnergyBaseline(at, watts=watts, carry=carry), prev.at)
