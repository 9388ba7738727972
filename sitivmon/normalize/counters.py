"""Exact counter deltas across wraps, reboots and discontinuities. Pure functions, no I/O.

Rules (each has a row in tests/unit/test_counters.py):

* A 32-bit counter that goes back without a reboot wrapped once: `cur + 2**32 - prev`.
  A 64-bit counter that goes back without a reboot is a discontinuity: counted as 0, flagged `reset`.
* A reboot (the agent's boot time moved later than the previous reading, or sysUpTime went back
  other than by its 32-bit wrap after 497 days) or a change of ifCounterDiscontinuityTime: the
  value from before is never counted again. If the counter is below its previous value it
  restarted at zero, so its whole value is traffic since the reboot; if it is at or above it (an
  agent restarted without resetting the kernel's counters, as net-snmp does on a server), only
  the increase counts. This never invents traffic. Flagged `reset`.
* A delta implying more than the link's capacity over the elapsed time is not traffic: counted as 0,
  flagged `clamp`.
* A change of source (HC counter appearing or disappearing) restarts the baseline: 0, `reset`.
* An interval longer than `gap_factor` poll intervals is flagged `gap` (still counted: counters are
  exact across a gap, only the timing inside it is unknown).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from sitivmon.readings import Flag

WRAP32 = 2**32
BOOT_SLACK_S = 5.0  # sysUpTime has 10 ms ticks; request latency and clock steps fit in this


@dataclass(frozen=True, slots=True)
class RawCounter:
    value: int
    bits: int  # 32 or 64


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """One reading of an interface's counters, with what is needed to detect reboots."""

    at: float  # unix seconds when the response arrived
    uptime_ticks: int | None  # sysUpTime, hundredths of a second
    discontinuity_ticks: int | None  # ifCounterDiscontinuityTime
    counters: Mapping[str, RawCounter] = field(default_factory=dict)

    @property
    def boot_time(self) -> float | None:
        return None if self.uptime_ticks is None else self.at - self.uptime_ticks / 100.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.at,
                "up": self.uptime_ticks,
                "disc": self.discontinuity_ticks,
                "c": {k: [v.value, v.bits] for k, v in self.counters.items()},
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CounterSnapshot:
        d = json.loads(text)
        return cls(
            at=float(d["at"]),
            uptime_ticks=d["up"],
            discontinuity_ticks=d["disc"],
            counters={k: RawCounter(int(v[0]), int(v[1])) for k, v in d["c"].items()},
        )


@dataclass(frozen=True, slots=True)
class Deltas:
    """Increase of every counter over [start, end]; `flags` explain anything not plainly measured."""

    start: float
    end: float
    values: dict[str, int]
    flags: frozenset[Flag]


def rebooted(prev: CounterSnapshot, cur: CounterSnapshot) -> bool:
    """The agent (or the interface's counters) restarted between the two readings."""
    if (
        prev.discontinuity_ticks is not None
        and cur.discontinuity_ticks is not None
        and cur.discontinuity_ticks != prev.discontinuity_ticks
    ):
        return True
    prev_boot, cur_boot = prev.boot_time, cur.boot_time
    if prev_boot is None or cur_boot is None or prev.uptime_ticks is None or cur.uptime_ticks is None:
        return False
    if cur.uptime_ticks < prev.uptime_ticks:
        return not _uptime_wrapped(prev, cur)
    return cur_boot > prev.at + BOOT_SLACK_S


def _uptime_wrapped(prev: CounterSnapshot, cur: CounterSnapshot) -> bool:
    """sysUpTime is a 32-bit TimeTicks: after 497 days of uptime it goes back to 0 without any reboot.
    It wrapped when the previous uptime plus the elapsed time crosses 2**32 and lands on the current
    uptime (within the slack); a reboot lands on an uptime unrelated to the elapsed time."""
    assert prev.uptime_ticks is not None and cur.uptime_ticks is not None
    expected = prev.uptime_ticks + (cur.at - prev.at) * 100
    return expected >= WRAP32 and abs(expected - WRAP32 - cur.uptime_ticks) <= BOOT_SLACK_S * 100


def counter_delta(prev: RawCounter, cur: RawCounter, reboot: bool) -> tuple[int, Flag | None]:
    """Increase of one counter between two readings of the same source."""
    if cur.bits != prev.bits:
        return 0, Flag.RESET
    if reboot:
        if cur.value < prev.value:
            return cur.value, Flag.RESET
        return cur.value - prev.value, Flag.RESET
    if cur.value >= prev.value:
        return cur.value - prev.value, None
    if cur.bits == 32:
        return cur.value + WRAP32 - prev.value, None
    return 0, Flag.RESET


def normalise(
    prev: CounterSnapshot | None,
    cur: CounterSnapshot,
    *,
    interval_s: float,
    capacity_bytes_per_s: Mapping[str, int | None] | None = None,
    gap_factor: float = 2.5,
) -> Deltas | None:
    """Deltas since `prev`, or None when there is no baseline yet (the first reading only sets it).

    `capacity_bytes_per_s` names, per counter, the most it can grow per second (octet counters get
    the link capacity); a counter absent from it is not clamped.
    """
    if prev is None:
        return None
    elapsed = cur.at - prev.at
    if elapsed <= 0:
        return None
    reboot = rebooted(prev, cur)
    flags: set[Flag] = set()
    if elapsed > gap_factor * interval_s:
        flags.add(Flag.GAP)
    values: dict[str, int] = {}
    caps = capacity_bytes_per_s or {}
    for name, now in cur.counters.items():
        before = prev.counters.get(name)
        if before is None:
            values[name] = 0
            flags.add(Flag.RESET)
            continue
        delta, flag = counter_delta(before, now, reboot)
        if flag is not None:
            flags.add(flag)
        cap = caps.get(name)
        if cap and delta > max_plausible(cap, elapsed):
            delta = 0
            flags.add(Flag.CLAMP)
        values[name] = delta
    return Deltas(prev.at, cur.at, values, frozenset(flags))


def max_plausible(capacity_bytes_per_s: int, elapsed_s: float) -> int:
    """The most a counter may grow at `capacity` over `elapsed`, with 5 % and one second of slack
    for timestamp jitter (the response time is not the agent's sampling time)."""
    return int(capacity_bytes_per_s * (elapsed_s * 1.05 + 1.0))
