"""Exact counter deltas across wraps, reboots, discontinuities and device nonsense. Pure functions, no I/O.

Rules (each has a row in tests/unit/test_counters.py). "The limit" of a counter is the most it can
grow over the interval: its capacity (configured, else the port speed) times the elapsed time with
slack (`max_plausible`); without a capacity, `MAX_BYTES_PER_S` (400 Gbit/s, more than any port a
commune is connected by) in its place; never more than `MAX_DELTA` (2**53: exact as a float in every
consumer, and a 1,000th of the store's 64-bit integers). The elapsed time is the larger of the poller's
wall-clock interval and the agent's own sysUpTime interval (by at most `MAX_CLOCK_STEP_S` more), so
that a step back of the poller's clock does not make real traffic look implausible.

* A 32-bit counter that goes back without a reboot wrapped once: `cur + 2**32 - prev`.
  A 64-bit counter that goes back without a reboot is a discontinuity: counted as 0, flagged `reset`.
* An "HC" column that an agent actually serves as a Counter32 (seen on firewalls and PoE switches) goes
  back at 2**32. gufo-snmp gives plain ints, not the SNMP type, so this is told from the values: an HC
  counter going back from below 2**32 to below 2**32, whose wrapped delta is within the limit while
  the limit is under 2**32 (so that only one wrap fits), wrapped. That column is then remembered in
  the baseline (`wrap32`) and treated as a 32-bit counter until it shows a value of 2**32 or more.
  Without a limit under 2**32 a wrap cannot be told from a discontinuity: `reset`, as for any HC counter.
* A 32-bit counter (or an HC column known to wrap at 2**32) whose limit is 2**32 or more may have
  wrapped any number of times: the single-wrap delta (the least the traffic can have been) is counted
  and flagged `unknown`, with an anomaly `counter_ambiguous`. Without a capacity the limit is always
  past 2**32 for a byte counter, so such a link's 32-bit byte counts are always flagged: configure its
  capacity (or let the port report ifSpeed) to count them as exact. Counters without a capacity entry
  (packets, errors, discards: not money) are counted with one wrap, unflagged.
* A change of source (HC column missing from a partial walk, then back): the 32-bit column is the low
  half of the same counter, so the delta is that of the low 32 bits, when the limit is under 2**32;
  counted and flagged `unknown` (ambiguous) otherwise; `reset` when the low halves cannot tell a
  plausible story (more than the limit) or across a reboot.
* A reboot (the agent's boot time moved later than the previous reading, or sysUpTime went back
  other than by its 32-bit wrap after 497 days) or a change of ifCounterDiscontinuityTime: the
  value from before is never counted again. If the counter is below its previous value it
  restarted at zero, so its whole value is traffic since the reboot; if it is at or above it (an
  agent restarted without resetting the kernel's counters, as net-snmp does on a server), only
  the increase counts. This never invents traffic. Flagged `reset`.
* Any delta over the limit is not traffic: counted as 0, flagged `clamp` when the limit came from a
  capacity and `unknown` when it did not (the bytes of the interval may be missing), with an anomaly
  `counter_implausible`. The previous value stays the baseline (held, as below) so that a passing spike
  loses nothing; if the next reading is implausible against it too, the counter did jump and its new
  value becomes the baseline.
* An HC value of 2**64-1 is some agents' "unavailable": set aside like a counter missing from the
  reading (anomaly `counter_unavailable`).
* A counter missing from a reading keeps its previous value as baseline, with how long it has been held;
  when it comes back its whole increase is counted over the longer interval (`Deltas.since`), flagged
  `gap` (exact bytes, timing inside unknown). A reboot drops such held values.
* An interval longer than `gap_factor` poll intervals is flagged `gap` (still counted: counters are
  exact across a gap, only the timing inside it is unknown).
* The poller's clock stepping back (a reading not later than the previous one) gives no deltas and
  keeps the previous reading as the baseline, re-timed to the current clock, so the bytes in between
  are counted by the next interval instead of being lost or waiting for the clock to catch up.

A counted delta never exceeds the traffic; it equals it whenever no flag other than `gap` is set
(tests/unit/test_counters.py checks it on random histories). Out of reach of any rule, since the values
look alike: an HC column wrapping at 2**32 more than once between two readings before any of its wraps
was seen, a reboot the agent shows neither by sysUpTime nor by ifCounterDiscontinuityTime, and the
poller's clock stepping forward by more than the agent's uptime (that looks like a reboot: `reset`).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from sitivmon.readings import Anomaly, Flag

WRAP32 = 2**32
UNAVAILABLE64 = 2**64 - 1  # some agents' "no value" in a Counter64
BOOT_SLACK_S = 5.0  # sysUpTime has 10 ms ticks; request latency and clock steps fit in this
MAX_BYTES_PER_S = 50_000_000_000  # 400 Gbit/s: the limit of a counter with no known capacity
MAX_DELTA = 2**53
MAX_CLOCK_STEP_S = 3600.0  # the agent's uptime may lengthen an interval by this much, no more


class RawCounter(NamedTuple):
    """One counter as read. A named tuple rather than a frozen dataclass: a dozen are made per link
    per poll, and a frozen dataclass's `__init__` (one `object.__setattr__` per field) cost twice as
    much as building a tuple."""

    value: int
    bits: int  # 32 or 64
    # Seconds this value had been held at its snapshot's time (the readings since lacked it), measured
    # on the agent's uptime where known so that a step of the poller's clock does not shorten it.
    held_s: float | None = None


_NO_COUNTERS: Mapping[str, RawCounter] = MappingProxyType({})


class FlatCounters(Mapping[str, RawCounter]):
    """An interface's counters as read, none held: names, values and widths as three tuples.

    What a poll reads, as the `Mapping` a snapshot holds: a dict of a dozen `RawCounter`s per link
    per poll was 13 objects for the garbage collector to track (and to promote, since a baseline
    lives a poll interval); this is one, and the layout tuples are shared (`layout`). `steady` and
    `to_json` read the tuples directly; anything else sees RawCounters (made when read). Never
    changed once made.
    """

    __slots__ = ("names", "numbers", "widths")

    def __init__(self, names: tuple[str, ...], numbers: tuple[int, ...], widths: tuple[int, ...]) -> None:
        self.names = names
        self.numbers = numbers
        self.widths = widths

    def __getitem__(self, name: str) -> RawCounter:
        i = _positions(self.names)[name]
        return RawCounter(self.numbers[i], self.widths[i])

    def __contains__(self, name: object) -> bool:
        return name in _positions(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"FlatCounters({dict(self)!r})"


_SHARED: dict[tuple[object, ...], tuple[object, ...]] = {}


def shared_layout(names: tuple[str, ...], widths: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The shared copies of a counter layout's names and widths (a handful per device), so that the
    links' snapshots compare them by identity and hold no tuples of their own."""
    if len(_SHARED) > 1024:
        _SHARED.clear()
    shared_names = _SHARED.setdefault(names, names)
    shared_widths = _SHARED.setdefault(widths, widths)
    return shared_names, shared_widths  # type: ignore[return-value]  # each key is its own value


class CounterSnapshot(NamedTuple):
    """One reading of an interface's counters, with what is needed to detect reboots.

    As a baseline it also carries what earlier readings taught: values held for counters the last
    readings lacked, and the HC columns known to wrap at 2**32 (`wrap32`).

    Immutable, `counters` included (nothing writes to a snapshot's mapping once it is made): a
    baseline is rendered later, at the flush (`LazyBaseline`). A named tuple rather than a frozen
    dataclass: one is made per link per poll, and the frozen `__init__` cost 1.5 µs of it.
    """

    at: float  # unix seconds when the response arrived
    uptime_ticks: int | None  # sysUpTime, hundredths of a second
    discontinuity_ticks: int | None  # ifCounterDiscontinuityTime
    counters: Mapping[str, RawCounter] = _NO_COUNTERS
    wrap32: frozenset[str] = frozenset()

    @property
    def boot_time(self) -> float | None:
        return None if self.uptime_ticks is None else self.at - self.uptime_ticks / 100.0

    def to_json(self) -> str:
        """The format of earlier versions, plus optional parts that those never wrote.

        Written for every link on every poll, so the usual snapshot (plain numbers, plain counter
        names) is formatted directly, byte for byte as `json.dumps(..., sort_keys=True)` would.
        """
        fast = _fast_json(self)
        if fast is not None:
            return fast
        doc: dict[str, object] = {
            "at": self.at,
            "up": self.uptime_ticks,
            "disc": self.discontinuity_ticks,
            "c": {k: [v.value, v.bits, *_opt(v.held_s)] for k, v in self.counters.items()},
        }
        if self.wrap32:
            doc["w32"] = sorted(self.wrap32)
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CounterSnapshot:
        """A persisted baseline, checked like any value from outside; ValueError/KeyError/TypeError."""
        d = json.loads(text)
        if not isinstance(d, dict) or not isinstance(d["c"], dict):
            raise ValueError("a counter snapshot is an object with an object of counters")
        counters: dict[str, RawCounter] = {}
        for name, item in d["c"].items():
            if not isinstance(item, list) or len(item) < 2:
                raise ValueError(f"counter {name}: {item!r} is no [value, bits]")
            value, bits = int(item[0]), int(item[1])
            if bits not in (32, 64) or not 0 <= value < 1 << bits:
                raise ValueError(f"counter {name}: {value} is no Counter{bits}")
            held = _finite(item[2]) if len(item) > 2 and item[2] is not None else None
            if held is not None and held < 0:
                raise ValueError(f"counter {name}: held for {held} s")
            counters[str(name)] = RawCounter(value, bits, held)
        return cls(
            at=_finite(d["at"]),
            uptime_ticks=None if d["up"] is None else int(d["up"]),
            discontinuity_ticks=None if d["disc"] is None else int(d["disc"]),
            counters=counters,
            wrap32=frozenset(str(n) for n in d.get("w32", ()) if str(n) in counters),
        )


def _json_num(value: object) -> str | None:
    """A plain int or finite float as json.dumps writes it; None for anything else."""
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return None


_PLAIN: set[str] = set()  # counter names already checked: a handful in practice, bounded anyway


def _plain_name(name: object) -> bool:
    """A name json.dumps writes as itself between quotes."""
    if name in _PLAIN:
        return True
    if type(name) is str and name.isascii() and name.isidentifier():
        if len(_PLAIN) < 1024:
            _PLAIN.add(name)
        return True
    return False


# Counter names as iterated -> the text around their values, sorted by name ('"a":[%d,%d]' each):
# one `%` formatting per snapshot instead of a string per counter. A handful of layouts in practice.
_LAYOUTS: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}


def _layout(names: tuple[str, ...]) -> tuple[tuple[str, ...], str] | None:
    """The sorted names and the `%` template of a snapshot's counters, or None for a name json.dumps
    would escape."""
    known = _LAYOUTS.get(names)
    if known is not None:
        return known
    if not all(_plain_name(n) for n in names):
        return None
    ordered = tuple(sorted(names))
    template = ",".join(f'"{n}":[%d,%d]' for n in ordered)  # plain names hold no "%"
    layout = (ordered, '{"at":%s,"c":{' + template + '},"disc":%s,"up":%s')
    if len(_LAYOUTS) < 256:
        _LAYOUTS[names] = layout
    return layout


def _fast_json(snap: CounterSnapshot) -> str | None:
    """`to_json` without the json module for the usual snapshot, or None to take the general path.

    Written for every link on every poll: the usual snapshot (no held value) is one `%` formatting of
    a template per counter layout; `%d` of an int is its repr, as json.dumps writes it."""
    at = _json_num(snap.at)
    if at is None:
        return None
    up = "null" if snap.uptime_ticks is None else _json_num(snap.uptime_ticks)
    disc = "null" if snap.discontinuity_ticks is None else _json_num(snap.discontinuity_ticks)
    if up is None or disc is None:
        return None
    counters = snap.counters
    layout = _layout(tuple(counters))
    if layout is None:
        return None
    args: list[object] = [at]
    if type(counters) is FlatCounters:  # nothing held: the values and widths by position
        where, numbers, widths = _positions(counters.names), counters.numbers, counters.widths
        for name in layout[0]:
            i = where[name]
            value, bits = numbers[i], widths[i]
            if type(value) is not int or type(bits) is not int:
                return _fast_json_each(snap, at, up, disc)
            args.append(value)
            args.append(bits)
        args.append(disc)
        args.append(up)
        return _with_wrap32(snap, layout[1] % tuple(args))
    for name in layout[0]:
        raw = counters[name]
        value, bits = raw.value, raw.bits
        if raw.held_s is not None or type(value) is not int or type(bits) is not int:
            return _fast_json_each(snap, at, up, disc)
        args.append(value)
        args.append(bits)
    args.append(disc)
    args.append(up)
    return _with_wrap32(snap, layout[1] % tuple(args))


def _fast_json_each(snap: CounterSnapshot, at: str, up: str, disc: str) -> str | None:
    """`_fast_json` formatting each counter on its own (a held value carries a third number)."""
    parts: list[str] = []
    for name in sorted(snap.counters):
        raw = snap.counters[name]
        if not _plain_name(name) or type(raw.value) is not int or type(raw.bits) is not int:
            return None
        if raw.held_s is None:
            parts.append(f'"{name}":[{int.__repr__(raw.value)},{int.__repr__(raw.bits)}]')
        else:
            held = _json_num(raw.held_s)
            if held is None:
                return None
            parts.append(f'"{name}":[{int.__repr__(raw.value)},{int.__repr__(raw.bits)},{held}]')
    return _with_wrap32(snap, f'{{"at":{at},"c":{{{",".join(parts)}}},"disc":{disc},"up":{up}')


def _with_wrap32(snap: CounterSnapshot, text: str) -> str | None:
    if snap.wrap32:
        names = sorted(snap.wrap32)
        if not all(_plain_name(n) for n in names):
            return None
        text += ',"w32":[' + ",".join(f'"{n}"' for n in names) + "]"
    return text + "}"


def _opt(held_s: float | None) -> list[float]:
    return [] if held_s is None else [held_s]


def _finite(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]  # TypeError/ValueError for what is no number
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is no time")
    return number


@dataclass(frozen=True, slots=True)
class Deltas:
    """Increase of every counter over [start, end]; `flags` explain anything not plainly measured.

    `flags` is the union; `counter_flags` gives each counter's own, so that a receive counter's trouble
    does not lower the transmit side's coverage. `since` names the counters whose increase started
    before `start` (held over readings that lacked them), with when it started.
    """

    start: float
    end: float
    values: dict[str, int]
    flags: frozenset[Flag]
    counter_flags: dict[str, frozenset[Flag]] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one reading: deltas (None without a usable baseline), the baseline to keep for
    the next reading (persist this one, not the raw reading), and the values set aside (subject: the
    counter's name)."""

    deltas: Deltas | None
    baseline: CounterSnapshot
    anomalies: tuple[Anomaly, ...] = ()


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


def _span(prev: CounterSnapshot, cur: CounterSnapshot, reboot: bool) -> float:
    """Seconds between the readings: the wall clock's, or the agent's uptime's when that is longer
    (the poller's clock stepped back), so that a clock step never makes real traffic implausible."""
    wall = cur.at - prev.at
    if reboot or prev.uptime_ticks is None or cur.uptime_ticks is None:
        return wall
    ticks = (cur.uptime_ticks - prev.uptime_ticks) % WRAP32  # the 497-day wrap was told from a reboot
    return max(wall, min(ticks / 100.0, wall + MAX_CLOCK_STEP_S))


@dataclass(frozen=True, slots=True)
class _One:
    delta: int
    flags: frozenset[Flag] = frozenset()
    reason: str | None = None  # anomaly
    wraps32: bool = False  # learned: the HC column wraps at 2**32


_NONE: frozenset[Flag] = frozenset()
_RESET = frozenset({Flag.RESET})
_UNKNOWN = frozenset({Flag.UNKNOWN})
_GAP = frozenset({Flag.GAP})
_NO_NAMES: frozenset[str] = frozenset()


def _one(before: RawCounter, now: RawCounter, *, reboot: bool, limit: int, strict: bool, known32: bool) -> _One:
    """One counter's increase, before bounding. `strict`: the counter carries money (it has a capacity
    entry), so an ambiguous 32-bit count is flagged."""
    ambiguous = strict and limit >= WRAP32

    def low(delta: int) -> _One:
        return _One(delta, _UNKNOWN, "counter_ambiguous") if ambiguous else _One(delta)

    if now.bits == 64 and now.value >= WRAP32:
        known32 = False  # no Counter32 holds that
    if now.bits != before.bits:
        if reboot:
            return _One(0, _RESET)
        delta = (now.value - before.value) % WRAP32  # the 32-bit column is the HC one's low half
        return _One(0, _RESET) if delta > limit else low(delta)
    if reboot:
        return _One(now.value if now.value < before.value else now.value - before.value, _RESET)
    narrow = now.bits == 32 or (known32 and before.value < WRAP32)
    if now.value >= before.value:
        delta = now.value - before.value
        return low(delta) if narrow else _One(delta)
    wrapped = now.value + WRAP32 - before.value
    if narrow:
        return low(wrapped)
    if before.value < WRAP32 and limit < WRAP32 and wrapped <= limit:
        return _One(wrapped, wraps32=True)  # an HC column served as a Counter32
    return _One(0, _RESET)


def normalise(
    prev: CounterSnapshot | None,
    cur: CounterSnapshot,
    *,
    interval_s: float,
    capacity_bytes_per_s: Mapping[str, int | None] | None = None,
    gap_factor: float = 2.5,
) -> Deltas | None:
    """Deltas since `prev`, or None when there is no baseline yet (the first reading only sets it)."""
    return step(
        prev, cur, interval_s=interval_s, capacity_bytes_per_s=capacity_bytes_per_s, gap_factor=gap_factor
    ).deltas


def step(
    prev: CounterSnapshot | None,
    cur: CounterSnapshot,
    *,
    interval_s: float,
    capacity_bytes_per_s: Mapping[str, int | None] | None = None,
    gap_factor: float = 2.5,
) -> Step:
    """Deltas since the baseline `prev`, and the baseline to keep.

    `capacity_bytes_per_s` names, per counter, the most it can grow per second (octet counters get
    the link capacity, None when unknown); a counter absent from it is bounded by `MAX_BYTES_PER_S`
    only and its 32-bit ambiguity is not flagged.
    """
    anomalies: list[Anomaly] = []
    present: dict[str, RawCounter] = {}
    for name, raw in cur.counters.items():
        if raw.value == UNAVAILABLE64 and raw.bits == 64:
            anomalies.append(Anomaly("counter_unavailable", name, "HC value 2**64-1: the agent's 'no value'"))
        else:
            present[name] = raw if raw.held_s is None else RawCounter(raw.value, raw.bits)
    if prev is None:
        return Step(None, CounterSnapshot(cur.at, cur.uptime_ticks, cur.discontinuity_ticks, present), tuple(anomalies))
    elapsed = cur.at - prev.at
    if not elapsed > 0:  # the clock stepped back (or stood still): keep the previous reading
        # Re-timed to the current clock: the next interval then starts now rather than waiting for the
        # clock to catch up; the agent's uptime (kept from the previous reading) still measures it.
        return Step(None, prev._replace(at=cur.at), tuple(anomalies))
    reboot = rebooted(prev, cur)
    span = _span(prev, cur, reboot)
    common = _GAP if elapsed > gap_factor * interval_s else _NONE
    caps = capacity_bytes_per_s or {}
    values: dict[str, int] = {}
    counter_flags: dict[str, frozenset[Flag]] = {}
    since: dict[str, float] = {}
    kept: dict[str, RawCounter] = {}
    wrap32 = set(prev.wrap32)
    earlier = prev.counters
    slack = span * 1.05 + 1.0  # max_plausible's, hoisted out of the loop: the fold runs for every link
    # The limit of a counter without a capacity (packets, errors...), the same for all of them.
    plain_limit = min(int(MAX_BYTES_PER_S * slack), MAX_DELTA)
    for name, now in present.items():
        kept[name] = now
        before = earlier.get(name)
        if before is None:
            values[name], counter_flags[name] = 0, _RESET | common
            wrap32.discard(name)
            continue
        flags = common
        own_span = span
        cap = caps.get(name)
        if before.held_s is not None:
            since[name] = prev.at - before.held_s
            own_span = span + before.held_s
            # = max_plausible(cap or MAX_BYTES_PER_S, own_span)
            limit = min(int((cap or MAX_BYTES_PER_S) * (own_span * 1.05 + 1.0)), MAX_DELTA)
            flags = flags | _GAP
        elif cap:
            limit = min(int(cap * slack), MAX_DELTA)
        else:
            limit = plain_limit
        if (
            before.value <= now.value
            and now.bits == before.bits
            and not reboot
            and (not wrap32 or name not in wrap32)
            and (now.bits == 64 or limit < WRAP32 or name not in caps)
        ):
            delta = now.value - before.value  # the common case, inline: the fold runs for every link
            if delta <= limit:
                values[name] = delta
                counter_flags[name] = flags
                continue
        one = _one(before, now, reboot=reboot, limit=limit, strict=name in caps, known32=name in wrap32)
        delta, reason = one.delta, one.reason
        flags |= one.flags
        if not 0 <= delta <= limit:
            delta, reason = 0, "counter_implausible"
            flags |= {Flag.CLAMP if cap else Flag.UNKNOWN}
            if before.held_s is None and not reboot:
                # A passing spike: the next reading is counted from the last good value. A second
                # implausible one in a row makes the new level the baseline (the counter did jump).
                kept[name] = before._replace(held_s=span)
        else:
            if one.wraps32:
                wrap32.add(name)
            if now.bits == 64 and now.value >= WRAP32:
                wrap32.discard(name)
        if reason is not None:
            anomalies.append(Anomaly(reason, name, _detail(reason, before, now, limit, own_span)))
        values[name], counter_flags[name] = delta, flags
    if not reboot:  # a value read before a reboot is never subtracted from
        for name, before in prev.counters.items():
            if name not in present:
                kept[name] = before._replace(held_s=(before.held_s or 0.0) + span)
    union = common.union(*counter_flags.values())
    return Step(
        Deltas(prev.at, cur.at, values, union, counter_flags, since),
        CounterSnapshot(
            cur.at,
            cur.uptime_ticks,
            cur.discontinuity_ticks,
            kept,
            frozenset(wrap32 & kept.keys()) if wrap32 else _NO_NAMES,
        ),
        tuple(anomalies),
    )


def steady(
    prev: CounterSnapshot,
    cur: CounterSnapshot,
    *,
    interval_s: float,
    capacity_bytes_per_s: Mapping[str, int | None] | None = None,
    gap_factor: float = 2.5,
) -> list[int] | None:
    """`step`'s deltas, in `cur.counters`' order, when it would find nothing unusual; None otherwise.

    Nothing unusual: the same counters in the same order with the same widths as the baseline, no
    value held or known to wrap at 2**32 (nor an HC 2**64-1), no reboot, no discontinuity, no
    uptime wrap, a later reading within `gap_factor` intervals, and every counter grown by no more
    than its limit without an ambiguous 32-bit byte counter. That is every link on almost every
    poll; `step` then gives exactly these values, no flag, no anomaly, no `since`, and `cur` itself
    as the baseline (without its held values and wrap32, which it must not have: None if it does).
    The fold calls this first and `step` when it answers None, building none of `step`'s dicts,
    `Deltas` and `Step` for the usual link (tests/unit/test_counters_steady.py compares the two on
    random histories).
    """
    earlier = prev.counters
    now_counters = cur.counters
    if prev.wrap32 or cur.wrap32:
        return None
    at, then = cur.at, prev.at
    elapsed = at - then
    if not (elapsed > 0 and not elapsed > gap_factor * interval_s):
        return None
    # `rebooted` and `_span`, for a reading that must not be a reboot.
    if (
        prev.discontinuity_ticks is not None
        and cur.discontinuity_ticks is not None
        and cur.discontinuity_ticks != prev.discontinuity_ticks
    ):
        return None
    span = elapsed
    up, prev_up = cur.uptime_ticks, prev.uptime_ticks
    if up is not None and prev_up is not None:
        if up < prev_up or at - up / 100.0 > then + BOOT_SLACK_S:
            return None  # a reboot, or the 497-day wrap: `step` tells them apart
        # max(elapsed, min(ticks, longest)) as `_span`, without two calls (the same value: min keeps
        # its first argument unless the second is less, max unless the second is greater).
        ticks, longest = (up - prev_up) % WRAP32 / 100.0, elapsed + MAX_CLOCK_STEP_S
        shortest = longest if longest < ticks else ticks
        span = shortest if shortest > elapsed else elapsed
    # Whole columns at once (C loops): the layout is the same, so position i is the same counter.
    values: Sequence[int]
    bits: Sequence[int]
    if type(now_counters) is FlatCounters and type(earlier) is FlatCounters:  # as polls make them
        names, bits, values = now_counters.names, now_counters.widths, now_counters.numbers
        if (names is not earlier.names and names != earlier.names) or not names:
            return None
        if bits is not earlier.widths and bits != earlier.widths:
            return None
        before_values = earlier.numbers
    else:
        names = tuple(now_counters)
        if names != tuple(earlier) or not names:
            return None
        values, bits, held = zip(*now_counters.values(), strict=False)  # RawCounters: three columns each
        before_values, before_bits, before_held = zip(*earlier.values(), strict=False)
        if bits != before_bits or held.count(None) != len(held) or before_held.count(None) != len(held):
            return None
    deltas = list(map(operator.sub, values, before_values))
    if min(deltas) < 0 or UNAVAILABLE64 in values:
        return None
    slack = span * 1.05 + 1.0
    plain_limit = min(int(MAX_BYTES_PER_S * slack), MAX_DELTA)
    if max(deltas) > plain_limit:
        return None
    if capacity_bytes_per_s:
        where = _POSITIONS.get(names) or _positions(names)
        for name, cap in capacity_bytes_per_s.items():
            i = where.get(name)
            if i is None:
                continue
            limit = min(int(cap * slack), MAX_DELTA) if cap else plain_limit
            if deltas[i] > limit or (bits[i] != 64 and limit >= WRAP32):
                return None  # implausible, or a 32-bit byte counter that may have wrapped more than once
    return deltas


_POSITIONS: dict[tuple[str, ...], dict[str, int]] = {}  # a handful of counter layouts in practice


def _positions(names: tuple[str, ...]) -> dict[str, int]:
    known = _POSITIONS.get(names)
    if known is None:
        known = {name: i for i, name in enumerate(names)}
        if len(_POSITIONS) < 256:
            _POSITIONS[names] = known
    return known


def _detail(reason: str, before: RawCounter, now: RawCounter, limit: int, span: float) -> str:
    if reason == "counter_ambiguous":
        return (
            f"a {now.bits if now.bits == 32 else 'wrapping HC'} counter may wrap more than once in {span:.0f} s "
            f"at up to {limit} bytes: counted as one wrap, flagged unknown"
        )
    return f"{before.value} -> {now.value} (Counter{now.bits}) is more than {limit} in {span:.0f} s: set aside"


def max_plausible(capacity_bytes_per_s: int, elapsed_s: float) -> int:
    """The most a counter may grow at `capacity` over `elapsed`, with 5 % and one second of slack
    for timestamp jitter (the response time is not the agent's sampling time)."""
    return int(capacity_bytes_per_s * (elapsed_s * 1.05 + 1.0))
