"""`Accumulator.apply` takes a short way for an interval inside one bucket (the usual poll); its buckets,
closed buckets and watermarks must be exactly those of the general way (`split_delta` for every
interval), whatever the phase, rounding, flags, late or reversed intervals."""

from __future__ import annotations

import random

import pytest

from sitivmon.readings import CounterInterval, Flag, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.buckets import GAPLIKE, SCALE, expected_milli, flag_bits
from sitivmon.usage.periods import BUCKET_S, bucket_start, split_delta
from sitivmon.usage.recorder import Accumulator

KEYS = [UsageKey("c", f"l{i}", q) for i in range(3) for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT)]
UP = [UsageKey("c", f"l{i}", Quantity.LINK_UP) for i in range(3)]
T0 = 1_790_000_100.0  # bucket aligned
FLAGS = [
    frozenset(),
    frozenset(),
    frozenset({Flag.GAP}),
    frozenset({Flag.RESET}),
    frozenset({Flag.UNKNOWN, Flag.CLAMP}),
]


def reference_apply(acc: Accumulator, batch: PollBatch) -> None:
    """The general way, as `apply` was before its short way (every interval through `split_delta`)."""
    exp = expected_milli(batch.interval_s)
    for c in batch.counters:
        bits = flag_bits(c.flags)
        observed = not bits & GAPLIKE
        s_us, e_us = round(c.start * 1e6), round(c.end * 1e6)
        for start, part in split_delta(c.start, c.end, c.delta):
            b = acc._bucket(c.key, start, exp)
            b.value += part
            b.flags |= bits
            if observed:
                b.covered_us += min(e_us, (start + BUCKET_S) * 1_000_000) - max(s_us, start * 1_000_000)
        acc._advance(c.key, c.end)
    for g in batch.gauges:
        b = acc._bucket(g.key, bucket_start(g.at), exp)
        b.value += round(g.value * SCALE.get(g.key.quantity, 1))
        b.readings += 1
        acc._advance(g.key, g.at)
    acc.baselines.update(batch.baselines)
    acc.batches += 1


def batches(seed: int, shared: bool = False) -> list[PollBatch]:
    """`shared`: the intervals of most batches share their start and end, and the gauges their instant,
    as the daemon's polls make them (`apply` computes the bucket arithmetic once for such a run)."""
    rng = random.Random(seed)
    out: list[PollBatch] = []
    t = {k: T0 + rng.choice([0.0, 0.3, 299.9999996, 150.0]) for k in KEYS}
    for n in range(400):
        counters = []
        for k in KEYS:
            kind = rng.random()
            if kind < 0.7:
                width = rng.choice([10.0, 9.9999997, 0.0000004, 60.0, 1e-7, 290.0, 300.0])
            elif kind < 0.8:
                width = rng.choice([0.0, -5.0])  # a clock standing still or stepping back
            else:
                width = rng.uniform(0, 1500)  # a gap over several buckets
            start = t[k] if rng.random() < 0.9 else t[k] - rng.uniform(0, 900)  # now and then a late one
            end = start + width
            if shared and counters and rng.random() < 0.8:
                start, end = counters[-1].start, counters[-1].end  # the same floats, as one poll gives
            counters.append(CounterInterval(k, start, end, rng.randrange(0, 10**9), rng.choice(FLAGS)))
            t[k] = max(t[k], end)
        at = max(t.values())
        offsets = [rng.choice([0.0, 0.5, 400.0]) for _ in UP]
        if shared:
            offsets = [offsets[0]] * len(UP)
        gauges = [GaugeReading(k, at - off, rng.choice([0.0, 1.0])) for k, off in zip(UP, offsets, strict=True)]
        out.append(PollBatch("t", at, rng.choice([10.0, 60.0, 7.0]), tuple(counters), tuple(gauges), {"l0": str(n)}))
    return out


def state(acc: Accumulator) -> object:
    return (
        {k: dict(series) for k, series in acc.open.items()},
        dict(acc.closed),
        dict(acc._watermark),
        acc.baselines,
        acc.batches,
    )


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_short_way_is_the_general_way(seed: int, shared: bool) -> None:
    fast, slow = Accumulator(), Accumulator()
    for batch in batches(seed, shared):
        fast.apply(batch)
        reference_apply(slow, batch)
        assert state(fast) == state(slow)
    assert fast.closed  # the histories do close buckets (the comparison covers them)


def test_boundary_rounding_picks_the_bucket_split_delta_picks() -> None:
    """An end a fraction of a microsecond past a boundary rounds onto it: the interval is in the
    bucket before (as `split_delta` says), not in the one `bucket_start(end)` names."""
    key = KEYS[0]
    end = T0 + 300.0000004
    batch = PollBatch("t", end, 10.0, (CounterInterval(key, T0 + 290.0, end, 1000),))
    fast, slow = Accumulator(), Accumulator()
    fast.apply(batch)
    reference_apply(slow, batch)
    assert state(fast) == state(slow)
    assert list(fast.closed) == [(key, int(T0))]  # closed by its own end, which is on the boundary
