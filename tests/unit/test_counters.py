"""Counter normalisation, one row per rule of sitivmon/normalize/counters.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitivmon.normalize.counters import (
    WRAP32,
    CounterSnapshot,
    RawCounter,
    max_plausible,
    normalise,
    rebooted,
)
from sitivmon.readings import Flag

T0 = 1_764_320_000.0  # a poll time (unix seconds)
UP0 = 360_000  # the agent has been up an hour at T0 (hundredths)
MAX64 = 2**64 - 1


def snap(
    at: float, up: int | None, value: int | None, bits: int = 64, disc: int | None = None, **others: tuple[int, int]
) -> CounterSnapshot:
    counters = {} if value is None else {"in_octets": RawCounter(value, bits)}
    counters |= {name: RawCounter(v, b) for name, (v, b) in others.items()}
    return CounterSnapshot(at, up, disc, counters)


@dataclass(frozen=True)
class Row:
    name: str
    prev: CounterSnapshot | None
    cur: CounterSnapshot
    delta: int | None  # None: no deltas at all (first reading)
    flags: frozenset[Flag] = frozenset()
    capacity: int | None = None
    interval: float = 60.0


def after(seconds: float, up_ticks: int | None = None) -> tuple[float, int]:
    """Time and uptime `seconds` after T0 with no reboot."""
    return T0 + seconds, UP0 + int(seconds * 100) if up_ticks is None else up_ticks


R = Flag.RESET
ROWS = [
    Row("first reading only sets the baseline", None, snap(T0, UP0, 1000), None),
    Row("plain increase", snap(T0, UP0, 1000), snap(*after(60), 5000), 4000),
    Row("no change", snap(T0, UP0, 1000), snap(*after(60), 1000), 0),
    Row("32-bit wrap counted once", snap(T0, UP0, WRAP32 - 100, 32), snap(*after(60), 50, 32), 150),
    Row("32-bit wrap to zero", snap(T0, UP0, WRAP32 - 1, 32), snap(*after(60), 0, 32), 1),
    Row("32-bit at max, no change", snap(T0, UP0, WRAP32 - 1, 32), snap(*after(60), WRAP32 - 1, 32), 0),
    Row(
        "64-bit going back is a discontinuity, not a wrap",
        snap(T0, UP0, 10_000),
        snap(*after(60), 9_000),
        0,
        frozenset({R}),
    ),
    Row(
        "64-bit near max going back is still no wrap", snap(T0, UP0, MAX64 - 10), snap(*after(60), 5), 0, frozenset({R})
    ),
    Row(
        "reboot (uptime back), counter below previous: all of it is new",
        snap(T0, UP0, 50_000),
        snap(T0 + 60, 3000, 7_000),
        7_000,
        frozenset({R}),
    ),
    Row(
        "reboot (uptime back), 32-bit counter below previous: no wrap invented",
        snap(T0, UP0, WRAP32 - 100, 32),
        snap(T0 + 60, 3000, 20, 32),
        20,
        frozenset({R}),
    ),
    Row(
        "reboot (uptime back), counter above previous: only the increase",
        snap(T0, UP0, 50_000),
        snap(T0 + 60, 3000, 80_000),
        30_000,
        frozenset({R}),
    ),
    Row(
        "reboot seen by boot time though uptime is larger (long gap)",
        snap(T0, UP0, 50_000),
        snap(T0 + 7200, UP0 + 100, 1_000),
        1_000,
        frozenset({R, Flag.GAP}),
    ),
    Row(
        "reboot seen by boot time, counter above previous",
        snap(T0, UP0, 50_000),
        snap(T0 + 7200, UP0 + 100, 90_000),
        40_000,
        frozenset({R, Flag.GAP}),
    ),
    Row("boot time jitter within slack is no reboot", snap(T0, UP0, 1000), snap(T0 + 60, UP0 + 6000 - 400, 2000), 1000),
    Row(
        "ifCounterDiscontinuityTime change, counter below",
        snap(T0, UP0, 50_000, disc=100),
        snap(*after(60), 2_000, disc=UP0 + 3000),
        2_000,
        frozenset({R}),
    ),
    Row(
        "ifCounterDiscontinuityTime change, counter above",
        snap(T0, UP0, 50_000, disc=100),
        snap(*after(60), 60_000, disc=UP0 + 3000),
        10_000,
        frozenset({R}),
    ),
    Row(
        "ifCounterDiscontinuityTime unchanged",
        snap(T0, UP0, 50_000, disc=100),
        snap(*after(60), 60_000, disc=100),
        10_000,
    ),
    Row(
        "ifCounterDiscontinuityTime appearing is not a discontinuity",
        snap(T0, UP0, 50_000),
        snap(*after(60), 60_000, disc=100),
        10_000,
    ),
    Row("clamp over capacity", snap(T0, UP0, 0), snap(*after(10), 2_000), 0, frozenset({Flag.CLAMP}), capacity=125),
    Row(
        "at the plausible maximum is counted",
        snap(T0, UP0, 0),
        snap(*after(10), max_plausible(125, 10.0)),
        max_plausible(125, 10.0),
        capacity=125,
    ),
    Row(
        "32-bit wrap beyond capacity is clamped",
        snap(T0, UP0, 1000, 32),
        snap(*after(60), 10, 32),
        0,
        frozenset({Flag.CLAMP}),
        capacity=1_000,
    ),
    Row(
        "source change 32 -> HC restarts the baseline",
        snap(T0, UP0, 1000, 32),
        snap(*after(60), 5000, 64),
        0,
        frozenset({R}),
    ),
    Row(
        "source change HC -> 32 restarts the baseline",
        snap(T0, UP0, 1000, 64),
        snap(*after(60), 5000, 32),
        0,
        frozenset({R}),
    ),
    Row(
        "counter appearing counts 0",
        snap(T0, UP0, None, out_octets=(5, 64)),
        snap(*after(60), 900, out_octets=(10, 64)),
        0,
        frozenset({R}),
    ),
    Row(
        "gap flag when the interval is much longer, still counted",
        snap(T0, UP0, 1000),
        snap(*after(300), 9000),
        8000,
        frozenset({Flag.GAP}),
    ),
    Row("no gap at 2.5 intervals", snap(T0, UP0, 1000), snap(*after(150), 9000), 8000),
    Row(
        "no uptime: no reboot detection, 32-bit wrap still handled",
        snap(T0, None, WRAP32 - 10, 32),
        snap(T0 + 60, None, 10, 32),
        20,
    ),
    Row(
        "sysUpTime wrapping after 497 days is not a reboot",
        snap(T0, WRAP32 - 1000, WRAP32 - 100, 32),
        snap(T0 + 60, 5000, 50, 32),
        150,
    ),
    Row(
        "reboot right after the sysUpTime wrap point is still a reboot",
        snap(T0, WRAP32 - 1000, 50_000),
        snap(T0 + 60, 100, 7_000),
        7_000,
        frozenset({R}),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_normalise(row: Row) -> None:
    caps = {"in_octets": row.capacity} if row.capacity else None
    result = normalise(row.prev, row.cur, interval_s=row.interval, capacity_bytes_per_s=caps)
    if row.delta is None:
        assert result is None
        return
    assert result is not None
    assert result.values["in_octets"] == row.delta
    assert result.flags == row.flags
    assert (result.start, result.end) == (row.prev.at if row.prev else None, row.cur.at)


def test_time_not_moving_gives_nothing() -> None:
    assert normalise(snap(T0, UP0, 1), snap(T0, UP0, 5), interval_s=60) is None
    assert normalise(snap(T0, UP0, 1), snap(T0 - 1, UP0, 5), interval_s=60) is None


def test_clamp_only_applies_to_counters_with_a_capacity() -> None:
    prev = snap(T0, UP0, 0, in_ucast=(0, 64))
    cur = snap(*after(1), 10**9, in_ucast=(10**9, 64))
    result = normalise(prev, cur, interval_s=60, capacity_bytes_per_s={"in_octets": 1000, "out_octets": None})
    assert result is not None
    assert result.values == {"in_octets": 0, "in_ucast": 10**9}
    assert result.flags == {Flag.CLAMP}


def test_counter_disappearing_is_not_reported() -> None:
    prev = snap(T0, UP0, 10, out_octets=(10, 64))
    cur = snap(*after(60), 20)
    result = normalise(prev, cur, interval_s=60)
    assert result is not None and result.values == {"in_octets": 10}


def test_rebooted_needs_both_uptimes() -> None:
    assert not rebooted(snap(T0, None, 1), snap(T0 + 60, 5, 1))
    assert not rebooted(snap(T0, UP0, 1), snap(T0 + 60, None, 1))


def test_snapshot_json_round_trip() -> None:
    s = snap(T0 + 0.123, UP0, MAX64, disc=17, out_octets=(WRAP32 - 1, 32))
    assert CounterSnapshot.from_json(s.to_json()) == s
    none = snap(T0, None, None)
    assert CounterSnapshot.from_json(none.to_json()) == none


# --- totals only go up, whatever the agent does ----------------------------------------------------------

_step = st.tuples(
    st.floats(min_value=0.5, max_value=400.0),  # seconds since the previous poll
    st.sampled_from(["run", "reboot", "disc"]),
    st.integers(min_value=0, max_value=2**64 - 1),  # new 64-bit value
    st.integers(min_value=0, max_value=2**32 - 1),  # new 32-bit value
    st.booleans(),  # HC served this time
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, min_size=1, max_size=25), st.sampled_from([None, 125, 1_250_000_000]))
def test_totals_only_go_up(steps: list[tuple[float, str, int, int, bool]], capacity: int | None) -> None:
    at, up, disc = T0, UP0, 0
    prev: CounterSnapshot | None = snap(at, up, 0)
    total = 0
    for elapsed, event, v64, v32, hc in steps:
        at += elapsed
        if event == "reboot":
            up = int(elapsed * 50)
        else:
            up += int(elapsed * 100)
        if event == "disc":
            disc = up
        cur = snap(at, up % WRAP32, v64 if hc else v32, 64 if hc else 32, disc=disc)
        result = normalise(prev, cur, interval_s=60, capacity_bytes_per_s={"in_octets": capacity})
        assert result is not None
        delta = result.values["in_octets"]
        assert delta >= 0
        if capacity:
            assert delta <= max_plausible(capacity, elapsed)
        if not hc and event == "run" and delta > WRAP32:
            pytest.fail("a 32-bit counter cannot grow by more than 2**32 in one interval")
        total += delta
        prev = cur
    assert total >= 0
