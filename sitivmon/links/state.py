"""Per-link runtime state: exposed totals, operational state, last counter snapshot.

The state outlives config reloads (keyed by link id), so a SIGHUP never resets counters. The exposed
totals only ever go up for the life of the process; durable accounting lives in the usage store.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import NamedTuple

from sitivmon.config.model import Link, Side
from sitivmon.links.interfaces import (
    SERIES,
    STATUS_UP,
    InterfaceRow,
    capacities,
    oriented_series,
    series_positions,
)
from sitivmon.normalize.counters import CounterSnapshot, Deltas, FlatCounters, steady, step
from sitivmon.readings import (
    Anomaly,
    Baseline,
    CounterInterval,
    Flag,
    GaugeReading,
    LinkState,
    LinkStateEvent,
    Quantity,
    StateSource,
    UsageKey,
    baseline_text,
    counter_interval,
    gauge_reading,
)


@dataclass(slots=True)
class LinkRuntime:
    link: Link
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERIES, 0))
    snapshot: CounterSnapshot | None = None
    if_index: int | None = None
    interface: str = ""
    alias: str = ""
    state: LinkState = LinkState.UNKNOWN
    admin_up: bool | None = None
    speed_bytes_per_s: int | None = None
    state_changes: int = 0
    last_change: float | None = None
    discontinuities: int = 0
    resolve_error: str | None = None
    discovered: bool = False  # announced by ifAlias rather than written in the config
    # Derived from (link, address) once rather than on every poll; rebuilt when either changes.
    derived: _Derived | None = None

    @property
    def capacity_bytes_per_s(self) -> int | None:
        return self.link.capacity or self.speed_bytes_per_s

    def set_state(self, new: LinkState, at: float, source: StateSource, target: str) -> LinkStateEvent | None:
        """Record a state; return an event whenever it differs from the last one known."""
        old = self.state
        if new == old:
            return None
        self.state = new
        if old is LinkState.UNKNOWN or new is LinkState.UNKNOWN:
            # Learning or losing sight of the state is not a change of the link itself, but consumers
            # (MQTT retained state) still need to hear about it.
            if self.last_change is None:
                self.last_change = at
        else:
            self.state_changes += 1
            self.last_change = at
        return LinkStateEvent(
            link=self.link.id,
            commune=self.link.commune,
            target=target,
            interface=self.interface,
            state=new,
            previous=old,
            since=at,
            source=source,
            admin_up=self.admin_up,
        )


@dataclass(frozen=True, slots=True)
class _Derived:
    """What every poll of a link reuses, derived once from its config (and target address): its
    origin and its usage keys (an interned key also hashes and compares faster in the recorder)."""

    link: Link
    address: str | None
    origin: str
    keys: tuple[tuple[str, str, UsageKey], ...]  # (series, raw counter, key) per byte direction
    up: UsageKey
    selector: tuple[int | None, str, str]  # the interface selector taken apart (`InterfaceIndex.resolve_parts`)


def _derived(rt: LinkRuntime, address: str | None) -> _Derived:
    """`rt.derived`, rebuilt when the link's config or its target's address changed (or when the
    address is not known here: `None` keeps the last one)."""
    d = rt.derived
    if d is not None and d.link is rt.link and (address is None or d.address == address):
        return d
    link = rt.link
    keys = tuple(
        (name, _OTHER_SIDE[raw] if link.side is Side.CORE else raw, UsageKey(link.commune, link.id, quantity))
        for name, raw, quantity in _USAGE
    )
    origin = link_origin(address, link) if address is not None else ""
    sel = link.interface
    selector = (sel.index, "index", "") if sel.index is not None else (None, sel.key, sel.wanted)
    up = UsageKey(link.commune, link.id, Quantity.LINK_UP)
    d = rt.derived = _Derived(link, address, origin, keys, up, selector)
    return d


def derived_of(rt: LinkRuntime, address: str) -> _Derived:
    """What every poll of the link reuses for this target address: its origin (`link_origin`), its
    interface selector taken apart for `InterfaceIndex.resolve_parts` (the selector's `key` and
    `wanted` are properties that search), its usage keys. Once per link config, not on every poll."""
    return _derived(rt, address)


class LinkBaseline(NamedTuple):
    """A link's baseline as a poll leaves it, rendered (`text`, `str`) only when it is persisted: the
    snapshot is immutable, and only the last baseline before a flush is written (`LazyBaseline`)."""

    origin: str
    if_index: int
    snapshot: CounterSnapshot

    def text(self) -> str:
        return encode_baseline(self.origin, self.if_index, self.snapshot)

    def __str__(self) -> str:
        return self.text()


class LinkPollOutcome(NamedTuple):
    """What one poll did to a link. A named tuple rather than a frozen dataclass: one is made per link
    per poll (with `tuple.__new__` on the usual poll)."""

    event: LinkStateEvent | None
    counters: tuple[CounterInterval, ...]
    gauges: tuple[GaugeReading, ...]
    baseline: LinkBaseline
    flags: frozenset[Flag]
    anomalies: tuple[Anomaly, ...] = ()


def link_origin(address: str, link: Link) -> str:
    """Where a link's counters come from: a snapshot taken elsewhere must never be subtracted from."""
    return f"{address}|{link.interface.describe()}"


def encode_baseline(origin: str, if_index: int, snap: CounterSnapshot) -> str:
    if type(if_index) is int and type(origin) is str:  # every link, every poll: no json.dumps, same text
        quoted, snapshot = encode_basestring_ascii(origin), encode_basestring_ascii(snap.to_json())
        return f'{{"origin":{quoted},"if_index":{int.__repr__(if_index)},"snapshot":{snapshot}}}'
    return json.dumps({"origin": origin, "if_index": if_index, "snapshot": snap.to_json()}, separators=(",", ":"))


def decode_baseline(text: Baseline) -> tuple[str, int | None, CounterSnapshot]:
    """(origin, ifIndex, snapshot) of a persisted baseline; ValueError/KeyError/TypeError when unreadable."""
    doc = json.loads(baseline_text(text))
    if not isinstance(doc, dict):
        raise ValueError("a baseline is an object")
    index = doc.get("if_index")
    return str(doc["origin"]), int(index) if index is not None else None, CounterSnapshot.from_json(doc["snapshot"])


def apply_row(
    rt: LinkRuntime,
    row: InterfaceRow,
    *,
    at: float,
    uptime_ticks: int | None,
    interval_s: float,
    target: str,
    origin: str = "",
) -> LinkPollOutcome:
    """Fold one poll's interface row into the link: state, exact deltas, totals, usage records."""
    if rt.if_index is not None and rt.if_index != row.index and rt.snapshot is not None:
        # The device renumbered: the old row's counters say nothing about the new one.
        rt.snapshot = None
    rt.if_index = row.index
    rt.interface = row.label
    rt.alias = row.alias
    rt.speed_bytes_per_s = row.speed_bytes_per_s
    rt.resolve_error = None
    rt.admin_up = None if row.admin_status is None else row.admin_status == STATUS_UP
    if row.oper_status is None:
        new_state = LinkState.UNKNOWN
    else:
        new_state = LinkState.UP if row.oper_status == STATUS_UP else LinkState.DOWN
    event = None if new_state is rt.state else rt.set_state(new_state, at, StateSource.POLL, target)

    snap = _new(CounterSnapshot, (at, uptime_ticks, row.discontinuity_ticks, row.counters, _NO_NAMES))
    caps = capacities(row, rt.link.capacity)
    prev = rt.snapshot
    derived = rt.derived
    if derived is None or derived.link is not rt.link:
        derived = _derived(rt, None)
    gauges: tuple[GaugeReading, ...] = ()
    if new_state is not LinkState.UNKNOWN:
        gauges = (gauge_reading(derived.up, at, 1.0 if new_state is LinkState.UP else 0.0),)
    plain = None if prev is None else steady(prev, snap, interval_s=interval_s, capacity_bytes_per_s=caps)
    if prev is not None and plain is not None:
        # The usual poll (`steady`): what `step` would give, without its dicts; `snap` is the baseline.
        rt.snapshot = snap
        counters_read = snap.counters
        names = counters_read.names if type(counters_read) is FlatCounters else tuple(counters_read)
        side = rt.link.side
        plan = _PLANS.get((names, side)) or _series_plan(names, side)
        # Per series, the sum of its raw counters' deltas (`series_positions`), and the totals, in C loops.
        plain.append(0)  # where a series lacking a term takes it from
        parts = plan.parts
        values: tuple[int, ...]
        if len(parts) == 1:
            values = parts[0](plain)
        elif len(parts) == 2:
            values = tuple(map(_add, parts[0](plain), parts[1](plain)))
        elif len(parts) == 3:  # packets: unicast + multicast + broadcast
            values = tuple(map(_add, map(_add, parts[0](plain), parts[1](plain)), parts[2](plain)))
        else:
            values = tuple(map(sum, zip(*[part(plain) for part in parts], strict=True)))
        totals = rt.totals
        totals.update(zip(plan.series, map(_add, plan.totals(totals), values), strict=True))
        start = prev.at
        keys = derived.keys
        counters: tuple[CounterInterval, ...]
        usage = plan.usage
        if len(usage) == 2:
            (k0, s0), (k1, s1) = usage
            counters = (
                counter_interval(keys[k0][2], start, at, values[s0], _NO_FLAGS),
                counter_interval(keys[k1][2], start, at, values[s1], _NO_FLAGS),
            )
        else:
            counters = tuple(counter_interval(keys[k][2], start, at, values[i], _NO_FLAGS) for k, i in usage)
        baseline = _new(LinkBaseline, (origin, row.index, snap))
        return _new(LinkPollOutcome, (event, counters, gauges, baseline, _NO_FLAGS, ()))
    outcome = step(prev, snap, interval_s=interval_s, capacity_bytes_per_s=caps)
    # The normaliser's baseline, not the raw reading: it keeps what the reading lacked or set aside,
    # and the previous reading when the clock stepped back.
    rt.snapshot = outcome.baseline
    deltas = outcome.deltas
    anomalies = tuple(Anomaly(a.reason, f"{rt.link.id} {a.subject}", a.detail) for a in outcome.anomalies)
    counters = ()
    flags: frozenset[Flag] = _NO_FLAGS
    if deltas is not None:
        flags = deltas.flags
        oriented = oriented_series(deltas.values, rt.link.side)
        totals = rt.totals
        for name, value in oriented.items():
            totals[name] += value
        if flags and not flags.isdisjoint(_DISCONTINUITY):
            rt.discontinuities += 1
        counters = _usage_counters(derived, deltas, oriented)
    return LinkPollOutcome(event, counters, gauges, LinkBaseline(origin, row.index, rt.snapshot), flags, anomalies)


_USAGE = (("receive_bytes", "in_octets", Quantity.TRAFFIC_IN), ("transmit_bytes", "out_octets", Quantity.TRAFFIC_OUT))
_OTHER_SIDE = {"in_octets": "out_octets", "out_octets": "in_octets"}


class _SeriesPlan(NamedTuple):
    """How the usual poll (`steady`) turns a counter layout's deltas into its link's series.

    `parts[j](deltas + [0])` gives, per series in `series` order, the j-th of its raw counters' deltas
    (0 past the last: the appended zero); their sum is the series' delta, as `series_positions`
    gives it. `totals` reads the series' totals. `usage`: per byte series with its raw counter in
    the layout, in `_USAGE` order, (its index in `_Derived.keys`, its index in `series`)."""

    series: tuple[str, ...]
    parts: tuple[Callable[[list[int]], tuple[int, ...]], ...]
    totals: Callable[[dict[str, int]], tuple[int, ...]]
    usage: tuple[tuple[int, int], ...]


_PLANS: dict[tuple[tuple[str, ...], Side], _SeriesPlan] = {}  # a handful of layouts in practice


def _series_plan(names: tuple[str, ...], side: Side) -> _SeriesPlan:
    positions = series_positions(names, side)
    series = tuple(name for name, _ in positions)
    pad = len(names)
    width = max(1, *(len(at) for _, at in positions))
    parts = tuple(
        operator.itemgetter(*(at[j] if j < len(at) else pad for _, at in positions)) for j in range(width)
    )
    raws = tuple(_OTHER_SIDE[raw] if side is Side.CORE else raw for _, raw, _ in _USAGE)
    usage = tuple((k, series.index(_USAGE[k][0])) for k, raw in enumerate(raws) if raw in names)
    plan = _SeriesPlan(series, parts, operator.itemgetter(*series), usage)
    if len(_PLANS) < 256:
        _PLANS[(names, side)] = plan
    return plan


_add = operator.add
_NO_FLAGS: frozenset[Flag] = frozenset()
_NO_NAMES: frozenset[str] = frozenset()
_new = tuple.__new__  # a named tuple without its Python-level `__new__` (once per link per poll)
_DISCONTINUITY = frozenset({Flag.RESET, Flag.CLAMP})


def _usage_counters(derived: _Derived, deltas: Deltas, series: dict[str, int]) -> tuple[CounterInterval, ...]:
    """One interval per byte series, with its own counter's flags and start. A counter the reading
    lacked has no interval (that time is unobserved); its bytes come with its return, over the
    longer interval."""
    out: list[CounterInterval] = []
    values, since, counter_flags = deltas.values, deltas.since, deltas.counter_flags
    for name, raw, key in derived.keys:
        if raw not in values:
            continue
        start = since.get(raw, deltas.start) if since else deltas.start
        flags = counter_flags.get(raw, deltas.flags)
        out.append(CounterInterval(key, start, deltas.end, series[name], flags))
    return tuple(out)
