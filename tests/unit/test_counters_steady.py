"""The fold's fast paths give what the general ones give (issue 15): `steady` against `step` on random
histories, a row's whole-row counter read against the cell-by-cell one on messy cells, `FlatCounters`
against the dict it stands for, and a baseline rendered at the flush against the one rendered at once.
"""

from __future__ import annotations

import random
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from sitivmon.links.interfaces import _Columns
from sitivmon.links.state import LinkBaseline, encode_baseline
from sitivmon.normalize.counters import (
    UNAVAILABLE64,
    WRAP32,
    CounterSnapshot,
    FlatCounters,
    RawCounter,
    shared_layout,
    steady,
    step,
)
from sitivmon.readings import (
    CounterInterval,
    Flag,
    GaugeReading,
    PollBatch,
    Quantity,
    UsageKey,
    baseline_text,
    counter_interval,
    gauge_reading,
)
from sitivmon.usage.recorder import Accumulator

NAMES = ("in_octets", "out_octets", "in_ucast", "out_ucast", "in_errors", "in_mcast", "in_bcast")
CAPS_NAMES = ("in_octets", "out_octets")


def flat(counters: dict[str, RawCounter]) -> FlatCounters:
    names, widths = shared_layout(tuple(counters), tuple(c.bits for c in counters.values()))
    return FlatCounters(names, tuple(c.value for c in counters.values()), widths)


def random_pair(rng: random.Random) -> tuple[CounterSnapshot, CounterSnapshot, float, dict[str, int | None]]:
    """A baseline and a reading, mostly plain (so that the fast path is taken), sometimes anything."""
    messy = rng.random() < 0.5  # else only what a usual poll brings (small increases, nothing else)
    names = list(NAMES)
    if messy and rng.random() < 0.1:
        rng.shuffle(names)
    bits = {n: rng.choice([64, 64, 64, 32]) for n in names}
    before: dict[str, RawCounter] = {}
    for n in names:
        top = WRAP32 if bits[n] == 32 else 2**64
        value = rng.choice([rng.randrange(0, top), rng.randrange(0, 2**20), top - 1 - rng.randrange(0, 10**6)])
        if not messy:
            value = min(value, top - 10**8)
        held = rng.choice([None] * 12 + [30.0]) if messy else None
        before[n] = RawCounter(value, bits[n], held)
    now: dict[str, RawCounter] = {}
    for n, b in before.items():
        roll = rng.random() if messy else 0.0
        width = b.bits if not messy or rng.random() > 0.02 else 96 - b.bits
        if roll < 0.85:
            value = b.value + rng.choice([0, rng.randrange(0, 10**6), rng.randrange(0, 10**10 if messy else 10**7)])
        elif roll < 0.9:
            value = rng.randrange(0, b.value + 1)  # back: a wrap or a reset
        elif roll < 0.93:
            value = UNAVAILABLE64
        else:
            value = b.value + rng.choice([2**33, 2**53, 2**60])
        value %= 2**width if value != UNAVAILABLE64 else 2**64
        now[n] = RawCounter(value, width)
    if messy and rng.random() < 0.03:
        now.pop(rng.choice(names))
    if messy and rng.random() < 0.03:
        now["extra"] = RawCounter(5, 64)
    at0 = 1_764_000_000.0
    up0 = rng.choice([None, 50_000_000, WRAP32 - 3000])
    disc0 = rng.choice([None, 0, 0, 7])
    at1 = at0 + rng.choice([60.0, 60.0, 59.5, 61.0] + ([200.0, 0.0, -30.0, 3700.0] if messy else []))
    if up0 is None:
        up1 = rng.choice([None, 1000])
    elif messy:
        up1 = rng.choice([up0 + int((at1 - at0) * 100), (up0 + int((at1 - at0) * 100)) % WRAP32, 500, up0 + 999_999])
    else:
        up1 = up0 + int((at1 - at0) * 100)
    disc1 = disc0 if not messy or rng.random() < 0.95 else rng.choice([None, 0, 9])
    wrap32 = frozenset({rng.choice(names)}) if messy and rng.random() < 0.05 else frozenset()
    prev_counters: Any = before if rng.random() < 0.3 or any(c.held_s for c in before.values()) else flat(before)
    cur_counters: Any = now if rng.random() < 0.3 else flat(now)
    prev = CounterSnapshot(at0, up0, disc0, prev_counters, wrap32)
    cur = CounterSnapshot(at1, up1, disc1, cur_counters)
    cap = rng.choice([None, 0, 125_000_000, 1_250_000_000, 10**11])
    caps = dict.fromkeys(CAPS_NAMES, cap) if rng.random() < 0.9 else {}
    return prev, cur, rng.choice([60.0, 60.0, 10.0]), caps


def test_steady_is_step_on_random_histories() -> None:
    rng = random.Random(20261201)
    fast = slow = 0
    for _ in range(20_000):
        prev, cur, interval, caps = random_pair(rng)
        general = step(prev, cur, interval_s=interval, capacity_bytes_per_s=caps)
        deltas = steady(prev, cur, interval_s=interval, capacity_bytes_per_s=caps)
        if deltas is None:
            slow += 1
            continue
        fast += 1
        assert general.deltas is not None
        assert list(general.deltas.values.items()) == list(zip(cur.counters, deltas, strict=True))
        assert general.deltas.flags == frozenset() and set(general.deltas.counter_flags.values()) == {frozenset()}
        assert general.deltas.since == {} and general.anomalies == ()
        assert (general.deltas.start, general.deltas.end) == (prev.at, cur.at)
        assert general.baseline == cur and list(general.baseline.counters) == list(cur.counters)
        assert general.baseline.to_json() == cur.to_json()
    assert fast > 4_000 and slow > 4_000, (fast, slow)  # both ways are exercised


def test_steady_refuses_what_step_flags() -> None:
    base = CounterSnapshot(1000.0, 100_000, 0, flat({"in_octets": RawCounter(10, 64), "in_errors": RawCounter(5, 32)}))
    caps = {"in_octets": 125_000_000}

    def reading(at: float, up: int | None, disc: int | None, octets: int, errors: int = 6) -> CounterSnapshot:
        return CounterSnapshot(
            at, up, disc, flat({"in_octets": RawCounter(octets, 64), "in_errors": RawCounter(errors, 32)})
        )

    assert steady(base, reading(1060.0, 106_000, 0, 20), interval_s=60, capacity_bytes_per_s=caps) == [10, 1]
    for cur in (
        reading(1060.0, 5_000, 0, 20),  # rebooted
        reading(1060.0, 106_000, 1, 20),  # discontinuity
        reading(1000.0, 106_000, 0, 20),  # the clock stood still
        reading(1200.0, 120_000, 0, 20),  # a gap
        reading(1060.0, 106_000, 0, 5),  # went back
        reading(1060.0, 106_000, 0, 20, 4),  # the 32-bit one went back: a wrap
        reading(1060.0, 106_000, 0, 10 + 2**40),  # more than the capacity allows
        reading(1060.0, 106_000, 0, UNAVAILABLE64),
    ):
        assert steady(base, cur, interval_s=60, capacity_bytes_per_s=caps) is None, cur  # `step` decides


def test_flat_counters_are_the_mapping_they_stand_for() -> None:
    counters = {"in_octets": RawCounter(7, 64), "in_nucast": RawCounter(3, 32)}
    f = flat(counters)
    assert f == counters and counters == f and dict(f) == counters and list(f.items()) == list(counters.items())
    assert f["in_nucast"] == RawCounter(3, 32) and "in_octets" in f and "out_octets" not in f and len(f) == 2
    assert f.get("nope") is None
    with pytest.raises(KeyError):
        f["nope"]
    snap = CounterSnapshot(1.5, 12, None, f)
    assert snap.to_json() == CounterSnapshot(1.5, 12, None, counters).to_json()
    assert CounterSnapshot.from_json(snap.to_json()) == snap


CELLS: list[Any] = [0, 1, 2**32 - 1, 2**32, 2**64 - 1, 2**64, -1, None, None, b"12", 12.0, True, "7"]


@pytest.mark.parametrize("seed", range(5))
def test_row_counters_read_whole_are_those_read_cell_by_cell(seed: int) -> None:
    rng = random.Random(seed)
    columns = [
        "ifHCInOctets", "ifInOctets", "ifHCOutOctets", "ifOutOctets", "ifHCInUcastPkts", "ifInUcastPkts",
        "ifInErrors", "ifOutDiscards", "ifHCInMulticastPkts", "ifHCInBroadcastPkts", "ifInNUcastPkts",
        "ifOutNUcastPkts", "ifHCOutMulticastPkts",
    ]  # fmt: skip
    for _ in range(300):
        tables: dict[str, dict[str, Any]] = {}
        for column in columns:
            if rng.random() < 0.2:
                continue  # not walked
            plain = rng.random() < 0.7
            tables[column] = {
                str(i): rng.randrange(0, 2**32) if plain and rng.random() < 0.9 else rng.choice(CELLS)
                for i in range(1, 5)
                if rng.random() < 0.95
            }
        cols = _Columns(tables)
        for idx in ("1", "2", "3", "4", "5"):
            whole, by_cell = cols.row(idx).counters, cols._counters(idx)
            assert list(whole.items()) == list(by_cell.items()), (tables, idx)
            assert all(type(c.value) is int for c in whole.values())


def test_baselines_are_rendered_when_the_flush_takes_them() -> None:
    snap = CounterSnapshot(1_764_000_000.5, 4242, None, flat({"in_octets": RawCounter(9, 64)}))
    lazy = LinkBaseline("192.0.2.1|name=ge-1", 3, snap)
    text = encode_baseline("192.0.2.1|name=ge-1", 3, snap)
    assert lazy.text() == text == str(lazy) == f"{lazy}" == baseline_text(lazy) and baseline_text(text) == text
    acc = Accumulator()
    acc.apply(PollBatch("a", 1.0, 10.0, baselines={"l1": lazy, "l2": "as given"}))
    _closed, _open, baselines, _batches = acc.snapshot()
    assert baselines == {"l1": text, "l2": "as given"} and all(type(v) is str for v in baselines.values())
    acc.restore({}, baselines, 1)
    assert acc.snapshot()[2] == baselines


def test_records_made_without_init_are_the_records() -> None:
    key = UsageKey("givors", "n1", Quantity.TRAFFIC_IN)
    made = counter_interval(key, 1.0, 2.0, 5, frozenset({Flag.GAP}))
    built = CounterInterval(key, 1.0, 2.0, 5, frozenset({Flag.GAP}))
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert replace(made, delta=0) == CounterInterval(key, 1.0, 2.0, 0, frozenset({Flag.GAP}))
    with pytest.raises(FrozenInstanceError):
        made.delta = 1  # type: ignore[misc]
    up = UsageKey("givors", "n1", Quantity.LINK_UP)
    assert gauge_reading(up, 3.0, 1.0) == GaugeReading(up, 3.0, 1.0)
    assert repr(gauge_reading(up, 3.0, 0.0)) == repr(GaugeReading(up, 3.0, 0.0))
