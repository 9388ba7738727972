"""The usage indicators, one entry each: the only place that says what an indicator is.

An entry (`IndicatorSpec`) ties together the indicator's name, the quantities it is computed from,
its unit, the rows it gives each commune (its directions), the function that aggregates the stored
buckets into those rows, and how allocation may split money by it (`AllocationRule`), or why it may
not (`NotABasis`). `compute_indicators` loops over a registry, the allocation file's bases are
checked against it and the engine reads its rows through it; so adding an indicator is one entry in
`INDICATORS` plus its aggregation function (a new measured quantity also takes its `Quantity` member
and row in `sitivmon.readings`, and whatever feeds it).

The registry is a value: `INDICATORS.plus(spec)` makes another one, which `usage_document`,
`compute_indicators`, `parse_allocation` and `allocate` accept in place of the built-in one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from sitivmon.readings import Quantity

from .periods import BUCKET_S
from .scans import Q3, Group, Observed, merge_gaps, nearest_rank_p95, to_decimal

GIB = 1 << 30
J_PER_KWH = 3_600_000

DetailValue = int | str | Mapping[str, int]
"""What an indicator's `detail` holds: counts, exact figures as decimal strings, flag counts."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One row an aggregation function gives a commune: its value, what observed it, and how it was had.

    `value` is an integer for bytes, joules and counts, an exact `Decimal` otherwise, None when
    nothing at all was observed (see docs/usage.md for the number formats).
    """

    value: int | Decimal | None
    observed: Observed
    detail: Mapping[str, DetailValue] = field(default_factory=dict)


Aggregate = Callable[[Mapping[Quantity, Group]], Mapping[str | None, Figure]]
"""From one commune's series (a `Group` per quantity the entry names, each over the whole period)
to its rows, one per direction the entry names (None: the indicator has no direction)."""


@dataclass(frozen=True, slots=True)
class AllocationRule:
    """How allocation splits a budget by the indicator (basis `usage:<name>[:<direction>]`).

    A commune's weight is the value of the row the basis reads, its coverage that row's coverage; a
    missing row, or a row without a value, weighs 0 with no coverage (so the part falls back to its
    key). Without a direction a basis reads the rows of `undirected`: one row, or several whose values
    are summed and whose coverage is the worst of them (a missing one counting as none).
    """

    directions: tuple[str, ...] = ()  # the directions a basis may name, in the order errors list them
    undirected: tuple[str | None, ...] = (None,)


@dataclass(frozen=True, slots=True)
class NotABasis:
    """An indicator that cannot split money, and the reason `sitivmon check` gives for refusing it."""

    reason: str


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """One indicator: see the module doc. `directions` are its rows per commune, in document order."""

    name: str
    unit: str
    quantities: tuple[Quantity, ...]
    directions: tuple[str | None, ...]
    aggregate: Aggregate
    allocation: AllocationRule | NotABasis


class IndicatorRegistry:
    """An ordered, checked set of indicators (the order is the usage document's row order)."""

    __slots__ = ("_specs",)

    def __init__(self, specs: Iterable[IndicatorSpec]) -> None:
        self._specs: dict[str, IndicatorSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"indicator {spec.name!r} is registered twice")
            _check(spec)
            self._specs[spec.name] = spec

    def __iter__(self) -> Iterator[IndicatorSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str) -> IndicatorSpec | None:
        return self._specs.get(name)

    def plus(self, *specs: IndicatorSpec) -> IndicatorRegistry:
        """This registry and `specs` after it (a name already registered is refused)."""
        return IndicatorRegistry([*self, *specs])

    def quantities(self) -> frozenset[Quantity]:
        """Every quantity some indicator is computed from."""
        return frozenset(q for spec in self for q in spec.quantities)

    def bases(self) -> list[str]:
        """The indicators allocation may split by, in registry order."""
        return [spec.name for spec in self if isinstance(spec.allocation, AllocationRule)]

    def basis_rows(self, indicator: str, direction: str | None) -> tuple[str | None, ...]:
        """The directions of the rows a basis `usage:<indicator>[:<direction>]` reads (see `AllocationRule`);
        an indicator this registry does not know reads its row as named."""
        if direction is not None:
            return (direction,)
        spec = self._specs.get(indicator)
        if spec is None or not isinstance(spec.allocation, AllocationRule):
            return (None,)
        return spec.allocation.undirected


def _check(spec: IndicatorSpec) -> None:
    """Refuse an entry whose allocation rule names rows the indicator does not give."""
    if not spec.directions or len(set(spec.directions)) != len(spec.directions):
        raise ValueError(f"indicator {spec.name!r}: directions must be distinct and not empty")
    if not spec.quantities:
        raise ValueError(f"indicator {spec.name!r}: name the quantities it is computed from")
    rule = spec.allocation
    if isinstance(rule, AllocationRule):
        unknown = [d for d in (*rule.directions, *rule.undirected) if d not in spec.directions]
        if unknown:
            raise ValueError(f"indicator {spec.name!r}: allocation reads rows it does not give: {unknown}")
        if not rule.undirected:
            raise ValueError(f"indicator {spec.name!r}: allocation without a direction must read a row")


# -- the aggregation functions of the built-in indicators ----------------------------------------------


def traffic_volume(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """Bytes in and out over the period: the sum of every bucket of the commune's links."""
    tin, tout = g[Quantity.TRAFFIC_IN], g[Quantity.TRAFFIC_OUT]
    return {
        "in": Figure(sum(tin.bucket_totals()[0]), tin.observed()),
        "out": Figure(sum(tout.bucket_totals()[0]), tout.observed()),
    }


def traffic_p95(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """95th percentile rate of the commune's total per bucket (its links summed), over the buckets
    with data: in, out, the larger of the two (`max`), and of in + out (`aggregate`)."""
    tin, tout = g[Quantity.TRAFFIC_IN], g[Quantity.TRAFFIC_OUT]
    tot_in, pres_in = tin.bucket_totals()
    tot_out, pres_out = tout.bucket_totals()
    p95: dict[str, tuple[int, int, int]] = {}
    for direction, tot, pres in (("in", tot_in, pres_in), ("out", tot_out, pres_out)):
        sample = list(itertools.compress(tot, pres))
        v, rank = nearest_rank_p95(sample)
        p95[direction] = (v, rank, len(sample))
    agg_pres = bytes(a | b for a, b in zip(pres_in, pres_out, strict=True))
    agg_sample = list(itertools.compress(map(int.__add__, tot_in, tot_out), agg_pres))
    v, rank = nearest_rank_p95(agg_sample)
    p95["aggregate"] = (v, rank, len(agg_sample))
    p95["max"] = max(p95["in"], p95["out"])
    both_cov = min(tin.coverage(), tout.coverage()) if (tin.series or tout.series) else Decimal(0)
    # Both directions: the worse coverage, the gaps of either; the flags shown are those of `in`.
    both = Observed(both_cov, merge_gaps(tin.gaps() + tout.gaps()), len(tin.series) + len(tout.series), tin.flags())
    out: dict[str | None, Figure] = {}
    for direction in ("max", "in", "out", "aggregate"):
        v, rank, samples = p95[direction]
        detail: dict[str, DetailValue] = {
            "bucket_bytes": v,
            "bucket_seconds": BUCKET_S,
            "rank": rank,
            "samples": samples,
            "rank_rule": "nearest rank ceil(0.95 n)",
        }
        if direction == "max":
            detail["from"] = "in" if p95["in"] >= p95["out"] else "out"
        grp = {"in": tin, "out": tout}.get(direction)
        value = (Decimal(v) / BUCKET_S).quantize(Q3, ROUND_HALF_EVEN)
        out[direction] = Figure(value, both if grp is None else grp.observed(), detail)
    return out


def availability(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """Share of the observed buckets in which every link-state reading said up."""
    links = g[Quantity.LINK_UP]
    up, down = sum(x.up for x in links.gauges), sum(x.down for x in links.gauges)
    known = up + down
    detail: dict[str, DetailValue] = {
        "up_buckets": up,
        "down_buckets": down,
        "unknown_buckets": len(links.series) * links.n - known,
        "rule": "a bucket is up when every link-state reading in it was up",
    }
    return {None: Figure(to_decimal(Fraction(up, known)) if known else None, links.observed(), detail)}


def storage(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """Mean used bytes over the observed time of each resource, summed over the commune's resources."""
    st = g[Quantity.STORAGE_BYTES]
    avg = Fraction(0)
    byte_hours = Fraction(0)
    for gs in st.gauges:
        level_s = gs.level_seconds()
        byte_hours += level_s / 3600
        if gs.covered_ns:
            avg += level_s / Fraction(gs.covered_ns, 1_000_000_000)
    detail: dict[str, DetailValue] = {
        "byte_hours": str(to_decimal(byte_hours, Q3)),
        "rule": "mean over the observed time (each reading held one poll interval), summed over resources",
    }
    return {None: Figure(int(to_decimal(avg, Decimal(1))), st.observed(), detail)}


def energy(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """Energy attributed to the commune over the period, in kWh (the joules in the detail)."""
    en = g[Quantity.ENERGY_JOULES]
    joules = sum(en.bucket_totals()[0])  # the series' sums, also when the group was folded (Group.folding)
    return {None: Figure(to_decimal(Fraction(joules, J_PER_KWH)), en.observed(), {"joules": joules})}


def vcpu_hours(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """Allocated vCPUs integrated over the observed time."""
    vc = g[Quantity.VCPUS]
    vs = sum((x.level_seconds() for x in vc.gauges), Fraction(0)) / Quantity.VCPUS.scale
    return {None: Figure(to_decimal(vs / 3600), vc.observed())}


def memory_gib_hours(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """Allocated memory integrated over the observed time, in GiB hours."""
    mem = g[Quantity.MEMORY_BYTES]
    ms = sum((x.level_seconds() for x in mem.gauges), Fraction(0))
    return {None: Figure(to_decimal(ms / 3600 / GIB), mem.observed())}


_TRAFFIC = (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT)

INDICATORS = IndicatorRegistry(
    [
        IndicatorSpec(
            "traffic_volume", "bytes", _TRAFFIC, ("in", "out"), traffic_volume,
            AllocationRule(directions=("in", "out"), undirected=("in", "out")),
        ),
        IndicatorSpec(
            "traffic_p95", "bytes_per_second", _TRAFFIC, ("max", "in", "out", "aggregate"), traffic_p95,
            AllocationRule(directions=("in", "out", "max", "aggregate"), undirected=("max",)),
        ),
        IndicatorSpec(
            "availability", "ratio", (Quantity.LINK_UP,), (None,), availability,
            NotABasis("availability is a ratio, not a consumption: it cannot split a budget"),
        ),
        IndicatorSpec("storage", "bytes", (Quantity.STORAGE_BYTES,), (None,), storage, AllocationRule()),
        IndicatorSpec("energy", "kWh", (Quantity.ENERGY_JOULES,), (None,), energy, AllocationRule()),
        IndicatorSpec("vcpu_hours", "vcpu_hours", (Quantity.VCPUS,), (None,), vcpu_hours, AllocationRule()),
        IndicatorSpec(
            "memory_gib_hours", "GiB_hours", (Quantity.MEMORY_BYTES,), (None,), memory_gib_hours, AllocationRule()
        ),
    ]
)  # fmt: skip
"""The built-in indicators, in the order of the usage document's rows."""
