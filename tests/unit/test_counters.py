"""Counter normalisation, one row per rule of sitivmon/normalize/counters.py."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitivmon.normalize.counters import (
    BOOT_SLACK_S,
    MAX_DELTA,
    WRAP32,
    CounterSnapshot,
    RawCounter,
    Step,
    max_plausible,
    normalise,
    rebooted,
    step,
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
    listed: bool = False  # the counter has a capacity entry (None: unknown), as octet counters do


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
        "source change 32 -> HC: the low halves (a counter without capacity entry: one wrap at most)",
        snap(T0, UP0, 1000, 32),
        snap(*after(60), 5 * WRAP32 + 5000, 64),
        4000,
    ),
    Row(
        "source change HC -> 32: the low halves",
        snap(T0, UP0, 7 * WRAP32 + 1000, 64),
        snap(*after(60), 5000, 32),
        4000,
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


U, G, C = Flag.UNKNOWN, Flag.GAP, Flag.CLAMP
MBIT100 = 12_500_000  # bytes/s
GBIT1 = 125_000_000
GBIT10 = 1_250_000_000
ISSUE_10_ROWS = [
    # symptom 1: bound every delta, also without a capacity
    Row(
        "no capacity: a 64-bit jump past 400 Gbit/s is set aside, unknown",
        snap(T0, UP0, 1000),
        snap(*after(60), 2**63),
        0,
        frozenset({U}),
        listed=True,
    ),
    Row(
        "no capacity: 300 Gbit/s is still counted",
        snap(T0, UP0, 1000),
        snap(*after(60), 1000 + 300 * 10**9 // 8 * 60),
        300 * 10**9 // 8 * 60,
        listed=True,
    ),
    Row(
        "counter without capacity entry is bounded too",
        snap(T0, UP0, 1000),
        snap(*after(60), 2**64 - 2),
        0,
        frozenset({U}),
    ),
    Row(
        "reboot with an absurd value: set aside",
        snap(T0, UP0, 50_000),
        snap(T0 + 60, 3000, 2**62),
        0,
        frozenset({R, U}),
        listed=True,
    ),
    Row(
        "no delta above 2**53 whatever the capacity",
        snap(T0, UP0, 0),
        snap(*after(60), 2**54),
        0,
        frozenset({C}),
        capacity=10**15,
    ),
    # symptom 3: HC columns served as Counter32
    Row(
        "HC served as Counter32 wraps at 2**32: the wrap is counted",
        snap(T0, UP0, WRAP32 - 50_000_000),
        snap(*after(10), 50_000_000),
        100_000_000,
        capacity=MBIT100,
        interval=10,
    ),
    Row(
        "HC going back from below 2**32 by more than the link can carry: a reset",
        snap(T0, UP0, 10_000),
        snap(*after(10), 9_000),
        0,
        frozenset({R}),
        capacity=MBIT100,
        interval=10,
    ),
    Row(
        "HC going back, limit past 2**32 (wrap or reset cannot be told): a reset",
        snap(T0, UP0, WRAP32 - 50_000_000),
        snap(*after(60), 50_000_000),
        0,
        frozenset({R}),
        capacity=GBIT1,
    ),
    Row(
        "HC going back without a capacity: a reset",
        snap(T0, UP0, WRAP32 - 50_000_000),
        snap(*after(10), 50_000_000),
        0,
        frozenset({R}),
        listed=True,
        interval=10,
    ),
    # symptom 4: HC column missing for one poll, the 32-bit one is its low half
    Row(
        "HC -> 32 on a 100 Mbit link: the low halves are the exact delta",
        snap(T0, UP0, 5 * WRAP32 + 1000),
        snap(*after(60), 1000 + 600_000_000, 32),
        600_000_000,
        capacity=MBIT100,
    ),
    Row(
        "32 -> HC on a 100 Mbit link, across the low half's wrap",
        snap(T0, UP0, WRAP32 - 100, 32),
        snap(*after(60), 5 * WRAP32 + 500),
        600,
        capacity=MBIT100,
    ),
    Row(
        "HC -> 32 on a 10 Gbit link: the least it can be, unknown",
        snap(T0, UP0, 5 * WRAP32 + 1000),
        snap(*after(60), 3000, 32),
        2000,
        frozenset({U}),
        capacity=GBIT10,
    ),
    Row(
        "source change whose low halves are implausible: a reset",
        snap(T0, UP0, 5 * WRAP32 + 1000),
        snap(*after(60), 1000 + 2_000_000_000, 32),
        0,
        frozenset({R}),
        capacity=MBIT100,
    ),
    Row(
        "source change across a reboot: a reset",
        snap(T0, UP0, 5 * WRAP32 + 1000),
        snap(T0 + 60, 3000, 2000, 32),
        0,
        frozenset({R}),
        capacity=MBIT100,
    ),
    # symptom 5: ambiguous 32-bit deltas
    Row(
        "32-bit on a 10 Gbit link: +100 may be 17 wraps more, unknown",
        snap(T0, UP0, 1000, 32),
        snap(*after(60), 1100, 32),
        100,
        frozenset({U}),
        capacity=GBIT10,
    ),
    Row(
        "32-bit wrap on a 10 Gbit link: one wrap counted, unknown",
        snap(T0, UP0, WRAP32 - 100, 32),
        snap(*after(60), 50, 32),
        150,
        frozenset({U}),
        capacity=GBIT10,
    ),
    Row(
        "32-bit byte counter without a capacity: unknown",
        snap(T0, UP0, 1000, 32),
        snap(*after(60), 1100, 32),
        100,
        frozenset({U}),
        listed=True,
    ),
    Row(
        "32-bit on a 100 Mbit link over 60 s: exact",
        snap(T0, UP0, WRAP32 - 100, 32),
        snap(*after(60), 50, 32),
        150,
        capacity=MBIT100,
    ),
    Row(
        "32-bit on a 100 Mbit link over an hour's gap: unknown",
        snap(T0, UP0, 1000, 32),
        snap(*after(3600), 1100, 32),
        100,
        frozenset({U, G}),
        capacity=MBIT100,
    ),
    # symptom 6: the poller's clock
    Row(
        "clock stepped back 60 s: the agent's uptime says 120 s passed, 1.5 GB on 100 Mbit is plausible",
        snap(T0, UP0, 0),
        snap(T0 + 60, UP0 + 12_000, 1_500_000_000),
        1_500_000_000,
        capacity=MBIT100,
    ),
]
ROWS += ISSUE_10_ROWS


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_normalise(row: Row) -> None:
    caps = {"in_octets": row.capacity} if row.capacity or row.listed else None
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
        delta = result.values.get("in_octets", 0)  # absent: 2**64-1 is "unavailable", the value is held
        assert 0 <= delta <= MAX_DELTA
        if capacity and "in_octets" not in result.since:
            assert delta <= max_plausible(capacity, elapsed)
        if not hc and event == "run" and delta > WRAP32:
            pytest.fail("a 32-bit counter cannot grow by more than 2**32 in one interval")
        total += delta
        prev = cur
    assert total >= 0


# --- issue 10: sequences of readings, through the baseline the normaliser keeps ----------------------------


def fold(
    readings: list[CounterSnapshot], capacity: int | None = None, interval: float = 60.0
) -> tuple[list[Step], int]:
    """Every reading through `step`, each against the baseline the previous step kept (as links/state
    does); the steps and the in_octets counted."""
    base: CounterSnapshot | None = None
    steps: list[Step] = []
    for cur in readings:
        out = step(base, cur, interval_s=interval, capacity_bytes_per_s={"in_octets": capacity})
        base = CounterSnapshot.from_json(out.baseline.to_json())  # what a restart would load
        steps.append(out)
    return steps, sum(s.deltas.values.get("in_octets", 0) for s in steps if s.deltas is not None)


def test_hc_column_served_as_counter32_counts_every_wrap() -> None:
    """Symptom 3: 10 MB/s for 80 s through a 'HC' column that wraps at 2**32 (a Venus firewall, a Metel
    PoE switch): 800 MB, not 700 MB and a reset."""
    start = WRAP32 - 350_000_000
    readings = [snap(*after(10 * i), (start + 10_000_000 * 10 * i) % WRAP32) for i in range(9)]
    steps, counted = fold(readings, capacity=MBIT100, interval=10)
    assert counted == 800_000_000
    assert all(s.deltas.flags == frozenset() for s in steps[1:] if s.deltas is not None)
    assert steps[-1].baseline.wrap32 == {"in_octets"}  # remembered, and persisted


def test_learned_wrap32_is_used_and_unlearned() -> None:
    """Once known to wrap at 2**32, the HC column is a 32-bit counter (ambiguity included, here over a
    long gap); a value of 2**32 or more proves it is not."""
    learned = step(
        snap(T0, UP0, WRAP32 - 100),
        snap(*after(10), 100),
        interval_s=10,
        capacity_bytes_per_s={"in_octets": MBIT100},
    ).baseline
    assert learned.wrap32 == {"in_octets"}
    gap = step(learned, snap(*after(3610), 500), interval_s=10, capacity_bytes_per_s={"in_octets": MBIT100})
    assert gap.deltas is not None and gap.deltas.flags == {Flag.UNKNOWN, Flag.GAP}
    assert [a.reason for a in gap.anomalies] == ["counter_ambiguous"]
    near = learned._replace(counters={"in_octets": RawCounter(WRAP32 - 1000, 64)})
    big = step(near, snap(*after(20), WRAP32 + 5), interval_s=10, capacity_bytes_per_s={"in_octets": MBIT100})
    assert big.deltas is not None and big.deltas.values == {"in_octets": 1005}
    assert big.baseline.wrap32 == frozenset()
    garbage = step(learned, snap(*after(20), 2**62), interval_s=10, capacity_bytes_per_s={"in_octets": MBIT100})
    assert garbage.baseline.wrap32 == {"in_octets"}  # an implausible value teaches nothing


def test_jump_held_once_then_becomes_the_baseline() -> None:
    """A spike is held over once; a second implausible reading in a row means the counter did jump."""
    caps = {"in_octets": MBIT100}
    first = step(snap(T0, UP0, 1000), snap(*after(60), 2**40), interval_s=60, capacity_bytes_per_s=caps)
    assert first.baseline.counters["in_octets"] == RawCounter(1000, 64, 60.0)
    second = step(first.baseline, snap(*after(120), 2**40 + 10), interval_s=60, capacity_bytes_per_s=caps)
    assert second.deltas is not None and second.deltas.values == {"in_octets": 0}
    assert second.deltas.flags == {Flag.CLAMP, Flag.GAP}
    assert second.baseline.counters["in_octets"] == RawCounter(2**40 + 10, 64)
    third = step(second.baseline, snap(*after(180), 2**40 + 5000), interval_s=60, capacity_bytes_per_s=caps)
    assert third.deltas is not None and third.deltas.values == {"in_octets": 4990} and not third.deltas.flags


def test_hc_missing_for_one_poll_counts_across_both_source_changes() -> None:
    """Symptom 4: a partial walk serves ifInOctets for one poll: 2,000,000 bytes, all counted."""
    base = 9 * WRAP32 + WRAP32 - 700_000  # the low half wraps during the 32-bit poll
    readings = [
        snap(T0, UP0, base),
        snap(*after(60), (base + 1_000_000) % WRAP32, 32),
        snap(*after(120), base + 2_000_000),
    ]
    steps, counted = fold(readings, capacity=MBIT100)
    assert counted == 2_000_000
    assert [s.deltas.flags for s in steps[1:] if s.deltas is not None] == [frozenset(), frozenset()]


def test_unavailable_hc_value_is_held_not_counted() -> None:
    """Symptom 1: no capacity, ifSpeed 0, an HC 2**64-1 ('unavailable'), twice: nothing absurd is counted,
    nothing is lost when the value returns (counted with the gap flag over both intervals)."""
    readings = [snap(T0, UP0, 1000), snap(*after(60), MAX64), snap(*after(120), MAX64), snap(*after(180), 31_000)]
    steps, counted = fold(readings, capacity=None)
    assert counted == 30_000
    assert [a.reason for a in steps[1].anomalies] == ["counter_unavailable"]
    missing = steps[1].deltas
    assert missing is not None and "in_octets" not in missing.values
    back = steps[3].deltas
    assert back is not None and back.values == {"in_octets": 30_000} and back.flags == {Flag.GAP}
    assert back.since == {"in_octets": T0}


def test_implausible_value_is_set_aside_with_an_anomaly() -> None:
    out = step(snap(T0, UP0, 1000), snap(*after(60), 2**63), interval_s=60, capacity_bytes_per_s={"in_octets": None})
    assert out.deltas is not None and out.deltas.values == {"in_octets": 0} and out.deltas.flags == {Flag.UNKNOWN}
    assert [(a.reason, a.subject) for a in out.anomalies] == [("counter_implausible", "in_octets")]


@pytest.mark.parametrize("uptime", [True, False])
def test_clock_stepping_back_keeps_the_previous_reading(uptime: bool) -> None:
    """Symptom 6: readings at t = 1000, 1060, 1058, 1118 of +1 MB each: 3 MB, not 2 MB."""
    times = [1000.0, 1060.0, 1058.0, 1118.0]
    readings = [
        CounterSnapshot(t, UP0 + 6000 * i if uptime else None, None, {"in_octets": RawCounter(10**6 * i, 64)})
        for i, t in enumerate(times)
    ]
    steps, counted = fold(readings, capacity=MBIT100)
    assert counted == 3 * 10**6
    assert steps[2].deltas is None
    last = steps[3].deltas
    assert last is not None and last.flags == frozenset() and (last.start, last.end) == (1058.0, 1118.0)


def test_counters_of_one_link_keep_their_own_flags() -> None:
    out = normalise(
        snap(T0, UP0, 1000, 32, out_octets=(1000, 64)),
        snap(*after(60), 1100, 32, out_octets=(2000, 64)),
        interval_s=60,
        capacity_bytes_per_s={"in_octets": GBIT10, "out_octets": GBIT10},
    )
    assert out is not None and out.counter_flags == {"in_octets": {Flag.UNKNOWN}, "out_octets": frozenset()}


def test_previous_version_baselines_still_load() -> None:
    """A baseline persisted by the version before issue 10 (no held values, no wrap32)."""
    old = '{"at":1764320000.5,"c":{"in_octets":[123,64],"out_octets":[4294967295,32]},"disc":null,"up":360000}'
    loaded = CounterSnapshot.from_json(old)
    assert loaded == CounterSnapshot(
        1764320000.5, 360000, None, {"in_octets": RawCounter(123, 64), "out_octets": RawCounter(WRAP32 - 1, 32)}
    )
    assert loaded.to_json() == old  # and is written the same way while nothing new is in it


@pytest.mark.parametrize(
    "text",
    [
        '{"at":NaN,"c":{},"disc":null,"up":null}',
        '{"at":1.0,"c":{"in_octets":[-1,64]},"disc":null,"up":null}',
        '{"at":1.0,"c":{"in_octets":[4294967296,32]},"disc":null,"up":null}',
        '{"at":1.0,"c":{"in_octets":[1,16]},"disc":null,"up":null}',
        '{"at":1.0,"c":{"in_octets":[1,64,-5]},"disc":null,"up":null}',
        '{"at":1.0,"c":[],"disc":null,"up":null}',
        '{"at":1.0,"c":{"in_octets":7},"disc":null,"up":null}',
        '{"at":1.0,"c":{"in_octets":[7]},"disc":null,"up":null}',
        '{"at":1.0,"c":{},"disc":null,"up":"x"}',
        "[1, 2]",
    ],
)
def test_unreadable_baselines_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        CounterSnapshot.from_json(text)


def test_held_and_learned_state_round_trips() -> None:
    s = CounterSnapshot(T0, UP0, 3, {"in_octets": RawCounter(5, 64, 120.5), "out_octets": RawCounter(9, 64)})
    s = CounterSnapshot(s.at, s.uptime_ticks, s.discontinuity_ticks, s.counters, frozenset({"out_octets"}))
    assert CounterSnapshot.from_json(s.to_json()) == s


# --- the property: never more than the traffic, exactly the traffic when unflagged ------------------------

_EVENTS = ["run", "run", "run", "reboot", "missing", "unavailable", "garbage", "hc_missing", "clock_back", "clock_fwd"]
_poll = st.tuples(
    st.floats(min_value=1.0, max_value=400.0),  # real seconds since the previous poll
    st.floats(min_value=0.0, max_value=1.0),  # share of the link's capacity used
    st.sampled_from(_EVENTS),
    st.floats(min_value=0.0, max_value=200.0),  # clock step, seconds
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["hc", "c32", "hc_as_32"]),
    st.sampled_from([None, MBIT100, GBIT1, GBIT10]),
    st.sampled_from([10.0, 60.0, 300.0]),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.lists(_poll, min_size=1, max_size=30),
)
def test_counted_never_exceeds_traffic_and_equals_it_when_unflagged(
    kind: str, capacity: int | None, interval: float, start: int, polls: list[tuple[float, float, str, float]]
) -> None:
    """Random traffic within the link's capacity, counter wraps, partial walks, HC columns that are
    Counter32s, 'unavailable' values, absurd values, reboots (that the agent shows) and steps of the
    poller's clock."""
    rate = capacity or 10**9
    true_value = start if kind == "hc" else start % WRAP32
    real, offset, boot, disc = T0, 0.0, T0 - 3600.0, 0
    polls = [*polls, (60.0, 0.5, "run", 0.0)]  # a plain last poll, so nothing is still held at the end

    def reading(event: str) -> CounterSnapshot:
        up = round((real - boot) * 100) % WRAP32
        if event == "missing" or (event == "unavailable" and kind == "c32"):
            counters = {}
        elif event == "unavailable":
            counters = {"in_octets": RawCounter(MAX64, 64)}
        elif event == "garbage" and kind != "c32":  # far from anything the link can carry
            counters = {
                "in_octets": RawCounter((true_value % (WRAP32 if kind == "hc_as_32" else 2**64) + 2**62) % 2**64, 64)
            }
        elif kind == "c32" or event == "hc_missing":
            counters = {"in_octets": RawCounter(true_value % WRAP32, 32)}
        elif kind == "hc_as_32":
            counters = {"in_octets": RawCounter(true_value % WRAP32, 64)}
        else:
            counters = {"in_octets": RawCounter(true_value % 2**64, 64)}
        return CounterSnapshot(real + offset, up, disc, counters)

    readings = [reading("run")]
    traffic = unseen = 0
    wall = real
    for seconds, share, event, clock in polls:
        # Out of reach: the clock stepping forward by more than the agent's uptime moves its boot time
        # after the previous reading, which is what a reboot looks like (there is no monotonic clock).
        forward = min(clock, max(0.0, real - boot - BOOT_SLACK_S - 1))
        real += seconds
        increment = int(rate * seconds * share)
        if kind == "hc_as_32":
            # Out of reach: a column typed HC that wraps at 2**32 more than once between two readings of
            # it before any wrap of it was seen. Its values look like a plain 64-bit increase.
            increment = min(increment, WRAP32 - 1 - unseen)
        traffic += increment
        if event == "reboot":  # the agent shows it: sysUpTime restarts, the discontinuity time moves
            boot, disc = real - seconds * share / 2, disc + 1
            true_value = increment
        else:
            true_value += increment
        offset += -clock if event == "clock_back" else forward if event == "clock_fwd" else 0.0
        readings.append(reading(event))
        # A reading not later than the previous one is not read (the clock stepped back) either.
        unseen = unseen + increment if event in ("missing", "unavailable", "garbage") or real + offset <= wall else 0
        wall = real + offset
    steps, counted = fold(readings, capacity=capacity, interval=interval)
    assert 0 <= counted <= traffic
    flags = frozenset().union(*(s.deltas.flags for s in steps if s.deltas is not None))
    if flags <= {Flag.GAP}:
        assert counted == traffic


def test_known_counter32_column_after_an_absurd_baseline_is_a_reset_not_a_negative_delta() -> None:
    """Found by the property: an HC column known to wrap at 2**32 whose baseline became an absurd value
    (two in a row), then a sane one: a reset, never a negative count."""
    base = CounterSnapshot(T0, UP0, None, {"in_octets": RawCounter(2**62 + 5, 64)}, frozenset({"in_octets"}))
    out = step(base, snap(*after(60), 1000), interval_s=60, capacity_bytes_per_s={"in_octets": MBIT100})
    assert out.deltas is not None and out.deltas.values == {"in_octets": 0} and out.deltas.flags == {Flag.RESET}


# The baseline is formatted for every link on every poll without the json module; it must stay the
# very text json.dumps(..., sort_keys=True) writes (earlier versions read it, and tests compare it).
_JSON_CASES = [
    CounterSnapshot(T0, UP0, None, {"in_octets": RawCounter(5, 64), "out_octets": RawCounter(WRAP32 - 1, 32)}),
    CounterSnapshot(T0 + 0.1, None, 17, {"b": RawCounter(1, 64, 12.5), "a": RawCounter(0, 32, 0.0)}),
    CounterSnapshot(1e16, 2**31, 0, {"x": RawCounter(2**64 - 2, 64)}, frozenset({"x"})),
    CounterSnapshot(T0, UP0, None, {}),
    CounterSnapshot(T0, UP0, None, {'we"ird\u00e9': RawCounter(1, 64)}),  # general path
    CounterSnapshot(int(T0), True, None, {"a": RawCounter(1, 64)}),  # not plain numbers: general path
    CounterSnapshot(float("inf"), None, None, {"a": RawCounter(1, 64, float("nan"))}),
]


@pytest.mark.parametrize("snapshot", _JSON_CASES)
def test_snapshot_json_text_is_json_dumps(snapshot: CounterSnapshot) -> None:
    doc = {
        "at": snapshot.at,
        "up": snapshot.uptime_ticks,
        "disc": snapshot.discontinuity_ticks,
        "c": {k: [v.value, v.bits, *([] if v.held_s is None else [v.held_s])] for k, v in snapshot.counters.items()},
    }
    if snapshot.wrap32:
        doc["w32"] = sorted(snapshot.wrap32)
    assert snapshot.to_json() == json.dumps(doc, separators=(",", ":"), sort_keys=True)
