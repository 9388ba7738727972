"""Exact joules: device counters with a Decimal scale, trapezoid integration with carried fractions."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from sitivmon.datacenter.energy import EnergyBaseline, from_counter, from_power
from sitivmon.readings import Flag

APC = Decimal(360000)  # tenths of kWh -> J


def test_device_counter_exact() -> None:
    first = from_counter(None, 1204, APC, 1000.0, 60)
    assert first.joules == 0 and first.start is None
    step = from_counter(first.baseline, 1207, APC, 1060.0, 60)
    assert step.joules == 3 * 360000 and step.start == 1000.0 and not step.flags


def test_device_counter_going_back_counts_nothing() -> None:
    prev = EnergyBaseline(1000.0, raw=5000)
    step = from_counter(prev, 12, APC, 1060.0, 60)
    assert step.joules == 0 and step.flags == {Flag.RESET}
    assert from_counter(step.baseline, 15, APC, 1120.0, 60).joules == 3 * 360000


def test_counter_gap_is_counted_and_flagged() -> None:
    step = from_counter(EnergyBaseline(0.0, raw=10), 20, APC, 3600.0, 60)
    assert step.joules == 10 * 360000 and step.flags == {Flag.GAP}


def test_trapezoid() -> None:
    a = from_power(None, Decimal(35), 1000.0, 60)
    b = from_power(a.baseline, Decimal(45), 1060.0, 60)
    assert b.joules == 2400 and b.baseline.carry == 0


def test_fractions_are_carried_not_lost() -> None:
    """1.5 W for 1 s is 1.5 J: counted 1, then 2 (1.5 + 0.5 carried): 3 J over 2 s."""
    a = from_power(None, Decimal("1.5"), 0.0, 1)
    b = from_power(a.baseline, Decimal("1.5"), 1.0, 1)
    c = from_power(b.baseline, Decimal("1.5"), 2.0, 1)
    assert (b.joules, c.joules) == (1, 2)
    assert c.baseline.carry == 0


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 600)), min_size=2, max_size=40))
def test_integration_total_is_exact(readings: list[tuple[int, int]]) -> None:
    """Whatever the steps, the whole joules counted equal the floor of the exact integral."""
    at = 0.0
    step = from_power(None, Decimal(readings[0][0]), at, 60)
    total, exact = 0, Decimal(0)
    prev_w = readings[0][0]
    for watts, dt in readings[1:]:
        at += dt
        step = from_power(step.baseline, Decimal(watts), at, 60)
        total += step.joules
        exact += Decimal(prev_w + watts) * dt / 2
        prev_w = watts
    assert total == int(exact)  # floor, the fraction is in the carry
    assert total + step.baseline.carry == exact


def test_baseline_survives_a_restart() -> None:
    a = from_power(None, Decimal("10.5"), 0.0, 60)
    b = from_power(a.baseline, Decimal("10.5"), 1.0, 60)
    restored = EnergyBaseline.from_json(b.baseline.to_json())
    assert restored == b.baseline
    assert from_power(restored, Decimal("10.5"), 2.0, 60).joules == 11  # 10.5 + 0.5 carried


# --- issue 10: the poller's clock stepping back, values no equipment can produce ---------------------------

STEPPED = [1000.0, 1060.0, 1058.0, 1118.0]  # the clock went back 62 s between the 2nd and 3rd polls (60 s apart)


def test_power_clock_step_back_neither_loses_nor_doubles() -> None:
    """Symptom 6: 100 W polled every 60 s, the clock stepping back between two polls: 3 intervals of
    6,000 J, the stepped one flagged gap (its length is the schedule's, not measured)."""
    step = from_power(None, Decimal(100), STEPPED[0], 60)
    got = []
    for at in STEPPED[1:]:
        step = from_power(step.baseline, Decimal(100), at, 60)
        got.append((step.joules, step.flags))
    assert got == [(6000, frozenset()), (6000, {Flag.GAP}), (6000, frozenset())]


def test_counter_clock_step_back_keeps_the_previous_reading() -> None:
    """Symptom 6: a device energy counter read at 1000, 1060, 1058, 1118, +0.1 kWh each time: all three
    increases counted, the fraction carried."""
    step = from_counter(None, 10, APC, STEPPED[0], 60)
    total = 0
    for i, at in enumerate(STEPPED[1:], start=1):
        step = from_counter(step.baseline, 10 + i, APC, at, 60)
        total += step.joules
    assert total == 3 * 360000 and step.baseline.raw == 13


def test_carry_survives_a_clock_step_back() -> None:
    a = from_power(None, Decimal("1.5"), 10.0, 1)
    b = from_power(a.baseline, Decimal("1.5"), 11.0, 1)  # 1 J counted, 0.5 carried
    c = from_power(b.baseline, Decimal("1.5"), 9.0, 1)  # stepped back: 1.5 + 0.5 = 2 J over the interval
    assert (b.joules, c.joules, c.baseline.carry) == (1, 2, 0)


def test_the_same_reading_twice_adds_nothing() -> None:
    prev = EnergyBaseline(5.0, watts=Decimal(9), carry=Decimal("0.5"))
    step = from_power(prev, Decimal(9), 5.0, 60)
    assert step.joules == 0 and step.start is None and step.baseline == prev


def test_power_no_equipment_draws_is_skipped() -> None:
    """A power reading past 10 MW (or no number) is not a reading: the next one integrates across it."""
    a = from_power(None, Decimal(100), 0.0, 60)
    for absurd in (Decimal(10**12), Decimal("NaN"), Decimal("Infinity")):
        b = from_power(a.baseline, absurd, 60.0, 60)
        assert b.joules == 0 and b.start is None and b.baseline == a.baseline
    c = from_power(a.baseline, Decimal(100), 120.0, 60)
    assert c.joules == 12000


def test_counter_jump_no_equipment_makes_is_set_aside() -> None:
    step = from_counter(EnergyBaseline(0.0, raw=10), 2**64 - 1, APC, 60.0, 60)
    assert step.joules == 0 and step.flags == {Flag.UNKNOWN} and step.baseline.raw == 2**64 - 1


@given(st.lists(st.tuples(st.integers(0, 5000), st.booleans(), st.integers(61, 3600)), min_size=2, max_size=40))
def test_clock_steps_back_never_lose_or_double_energy(readings: list[tuple[int, bool, int]]) -> None:
    """Polls every 60 s of real time; at some the clock steps back by at least a poll interval. The
    whole joules counted equal the floor of the exact integral over real time."""
    wall = 0.0
    step = from_power(None, Decimal(readings[0][0]), wall, 60)
    total, exact = 0, Decimal(0)
    prev_w = readings[0][0]
    for watts, back, amount in readings[1:]:
        wall += 60 - (amount if back else 0)
        step = from_power(step.baseline, Decimal(watts), wall, 60)
        total += step.joules
        exact += Decimal(prev_w + watts) * 60 / 2
        prev_w = watts
    assert total + step.baseline.carry == exact
