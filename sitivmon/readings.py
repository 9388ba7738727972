"""Records that flow from the poller to the usage store, the event publishers and the metrics.

These types are the contract between the polling core and everything built on it (usage accounting,
MQTT events, datacenter attribution). They are plain frozen data so that each consumer can be tested
without a poller, and so that nothing downstream depends on how SNMP was spoken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeAlias


class Flag(StrEnum):
    """Why an interval's figure is less than a plain measurement.

    The usage store keeps these per bucket so that an indicator can explain itself.
    """

    RESET = "reset"  # agent rebooted or counter discontinuity: the value before is not counted again
    CLAMP = "clamp"  # delta implied more than the link's capacity: counted as zero
    GAP = "gap"  # the interval spans time the daemon (or the agent) was not observed
    UNKNOWN = "unknown"  # no usable reading for the interval


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A value from a device that was set aside instead of being trusted.

    Whoever validates a device value (client, normaliser, profile handler) returns these rather than
    raising or logging: the monitor counts them per target and reason
    (`sitivmon_device_anomalies_total{target,reason}`) and logs each new (target, subject, reason) once.
    `reason` is a short snake_case word (it is a metric label: keep the set small and stable);
    `subject` names what it concerns (a link id, a column, a row); `detail` says why, for people.
    """

    reason: str
    subject: str
    detail: str


class Quantity(StrEnum):
    """What a usage series measures, with its unit fixed by the name (one row of `_SPECS` each)."""

    TRAFFIC_IN = "traffic_in"  # bytes received by the commune (counter)
    TRAFFIC_OUT = "traffic_out"  # bytes sent by the commune (counter)
    LINK_UP = "link_up"  # 1 when oper status is up, 0 when not (gauge)
    STORAGE_BYTES = "storage_bytes"  # used bytes (gauge)
    ENERGY_JOULES = "energy_joules"  # energy (counter)
    VCPUS = "vcpus"  # allocated vCPUs (gauge)
    MEMORY_BYTES = "memory_bytes"  # allocated memory (gauge)

    @property
    def unit(self) -> str:
        return _SPECS[self].unit

    @property
    def counter(self) -> bool:
        """Arrives as `CounterInterval`s (increases, summed per bucket), else as `GaugeReading`s (levels)."""
        return _SPECS[self].counter

    @property
    def scale(self) -> int:
        """Readings are kept as integers times this (1000: milli-vCPUs, since a VM may have half a vCPU)."""
        return _SPECS[self].scale


@dataclass(frozen=True, slots=True)
class _QuantitySpec:
    unit: str
    counter: bool
    scale: int = 1


_SPECS = {
    Quantity.TRAFFIC_IN: _QuantitySpec("bytes", counter=True),
    Quantity.TRAFFIC_OUT: _QuantitySpec("bytes", counter=True),
    Quantity.LINK_UP: _QuantitySpec("ratio", counter=False),
    Quantity.STORAGE_BYTES: _QuantitySpec("bytes", counter=False),
    Quantity.ENERGY_JOULES: _QuantitySpec("joules", counter=True),
    Quantity.VCPUS: _QuantitySpec("vcpus", counter=False, scale=1000),
    Quantity.MEMORY_BYTES: _QuantitySpec("bytes", counter=False),
}


@dataclass(frozen=True, slots=True)
class UsageKey:
    """Identifies one usage series: who, what subject (a link id or a resource id), which quantity.

    Its hash is computed once, at construction: a key is hashed for every dict look-up of the usage
    recorder, the store and the refresh (several per link per poll), and the generated `__hash__`
    built a tuple and called `Quantity`'s Python-level enum `__hash__` each time (1.5 % of the daemon
    at 2,000 links, issue 15). Equality is the generated one, on the three fields; the cached hash is
    the same value `hash((commune, subject, quantity))` the generated `__hash__` returned."""

    commune: str
    subject: str
    quantity: Quantity
    _hash: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.commune, self.subject, self.quantity)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[UsageKey], tuple[str, str, Quantity]]:
        """Pickled (copied) by its fields: string hashes differ between processes, so the cached hash
        is computed again where the key is rebuilt, never carried over."""
        return (UsageKey, (self.commune, self.subject, self.quantity))


@dataclass(frozen=True, slots=True)
class CounterInterval:
    """An exact increase of a counter between two polls, already normalised (wraps, resets, clamps)."""

    key: UsageKey
    start: float  # unix seconds of the previous reading
    end: float  # unix seconds of this reading
    delta: int
    flags: frozenset[Flag] = frozenset()


@dataclass(frozen=True, slots=True)
class GaugeReading:
    """A level observed at one instant (used bytes, vCPUs, link up as 0/1)."""

    key: UsageKey
    at: float
    value: float


class LazyBaseline(Protocol):
    """A baseline whose text is rendered when it is written, not when it is made.

    A link's baseline changes on every poll, but only the last one before a flush is written (one in
    three at 10 s polls and 30 s flushes): rendering each was 3 % of the daemon's CPU at 500 links per
    target. An implementation is immutable (it is rendered later, possibly on another thread) and its
    `text()` is the same on every call; `str()` of it is that text.
    """

    def text(self) -> str: ...


Baseline: TypeAlias = str | LazyBaseline
"""A baseline as a poll hands it on: its text, or what renders it (`baseline_text`)."""


def baseline_text(baseline: Baseline) -> str:
    """The text to persist: stores and their port only ever receive str."""
    return baseline if isinstance(baseline, str) else baseline.text()


_new_object = object.__new__
# The slots' own setters: a frozen dataclass's `__init__` goes through `object.__setattr__` (a global
# look-up and a call) for each field, which made these two records a tenth of the per-link fold.
_Setter = Callable[[object, object], None]
_INTERVAL_SETTERS: tuple[_Setter, ...] = tuple(
    CounterInterval.__dict__[name].__set__ for name in ("key", "start", "end", "delta", "flags")
)
_GAUGE_SETTERS: tuple[_Setter, ...] = tuple(GaugeReading.__dict__[name].__set__ for name in ("key", "at", "value"))


def counter_interval(key: UsageKey, start: float, end: float, delta: int, flags: frozenset[Flag]) -> CounterInterval:
    """`CounterInterval(key, start, end, delta, flags)`, the same object, made at half the cost (two per
    link per poll): the class has no `__post_init__` to skip."""
    interval = _new_object(CounterInterval)
    set_key, set_start, set_end, set_delta, set_flags = _INTERVAL_SETTERS
    set_key(interval, key)
    set_start(interval, start)
    set_end(interval, end)
    set_delta(interval, delta)
    set_flags(interval, flags)
    return interval


def gauge_reading(key: UsageKey, at: float, value: float) -> GaugeReading:
    """`GaugeReading(key, at, value)`, the same object, made as `counter_interval` is (one per link per poll)."""
    reading = _new_object(GaugeReading)
    set_key, set_at, set_value = _GAUGE_SETTERS
    set_key(reading, key)
    set_at(reading, at)
    set_value(reading, value)
    return reading


@dataclass(frozen=True, slots=True)
class PollBatch:
    """Everything one poll of one target contributes to usage accounting.

    `baselines` are opaque serialised counter states (by subject) that must be persisted in the same
    transaction as the counters they produced, so that a restart neither loses nor double counts.
    Each is its text or a `LazyBaseline` rendering it: whoever persists them calls `baseline_text`
    (the usage recorder does when it takes a flush's snapshot, so only the last of each is rendered).
    """

    target: str
    at: float
    interval_s: float
    counters: tuple[CounterInterval, ...] = ()
    gauges: tuple[GaugeReading, ...] = ()
    baselines: dict[str, Baseline] = field(default_factory=dict)


class LinkState(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


class StateSource(StrEnum):
    POLL = "poll"
    TRAP = "trap"


@dataclass(frozen=True, slots=True)
class LinkStateEvent:
    """A change of a link's operational state, as seen from a poll or a trap."""

    link: str
    commune: str
    target: str
    interface: str
    state: LinkState
    previous: LinkState
    since: float
    source: StateSource
    admin_up: bool | None = None
