"""Synthetic pollers and small helpers for the usage tests (real store, real SQLite, no mocks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sitivmon.readings import CounterInterval, Flag, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.port import UsageStorePort
from sitivmon.usage.recorder import SPAN_BUCKETS, Accumulator
from tests.support.agents import COMMUNES


@dataclass(frozen=True)
class Commune:
    id: str
    name: str
    insee: str


def communes() -> list[Commune]:
    """The eight communes (the same as ../shared/communes.csv, which tests/unit/test_config.py checks)."""
    return [Commune(i, n, s) for i, n, s in COMMUNES]


def link_keys(commune: str, link: str) -> list[UsageKey]:
    return [UsageKey(commune, link, q) for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT, Quantity.LINK_UP)]


def poll_link(
    commune: str,
    link: str,
    t0: float,
    t1: float,
    interval: float,
    cin: Callable[[float], int],
    cout: Callable[[float], int] = lambda t: 0,
    *,
    up: Callable[[float], bool] = lambda t: True,
    down: Sequence[tuple[float, float]] = (),
    flags: Callable[[float], frozenset[Flag]] = lambda t: frozenset(),
) -> Iterator[PollBatch]:
    """A poller for one link: readings at t0 + k*interval, none inside `down` windows.

    The first reading only sets the baseline; an interval longer than 1.5 polls is flagged GAP, like
    the real normaliser does after a downtime.
    """
    kin = UsageKey(commune, link, Quantity.TRAFFIC_IN)
    kout = UsageKey(commune, link, Quantity.TRAFFIC_OUT)
    kup = UsageKey(commune, link, Quantity.LINK_UP)
    last = t0
    k = 1
    while True:
        t = t0 + k * interval
        k += 1
        if t > t1:
            return
        if any(a <= t < b for a, b in down):
            continue
        fl = set(flags(t))
        if t - last > 1.5 * interval:
            fl.add(Flag.GAP)
        ff = frozenset(fl)
        yield PollBatch(
            target=f"t-{link}",
            at=t,
            interval_s=interval,
            counters=(
                CounterInterval(kin, last, t, cin(t) - cin(last), ff),
                CounterInterval(kout, last, t, cout(t) - cout(last), ff),
            ),
            gauges=(GaugeReading(kup, t, 1.0 if up(t) else 0.0),),
            baselines={link: f"{t}:{cin(t)}:{cout(t)}"},
        )
        last = t


def record(store: UsageStorePort, batches: Iterator[PollBatch] | Sequence[PollBatch]) -> Accumulator:
    """Apply batches and flush once, as the recorder does (long gaps as spans)."""
    acc = Accumulator(store.load_open_buckets(), span_buckets=SPAN_BUCKETS)
    for b in batches:
        acc.apply(b)
    closed, open_b, baselines, _ = acc.snapshot()
    store.write(closed, open_b, baselines, spans=acc.take_spans(closed))
    return acc


def pick(doc: dict[str, Any], commune: str, indicator: str, direction: str | None = None) -> dict[str, Any]:
    found = [
        i
        for i in doc["indicators"]
        if i["commune"] == commune and i["indicator"] == indicator and i["direction"] == direction
    ]
    assert len(found) == 1, (commune, indicator, direction, found)
    return found[0]
