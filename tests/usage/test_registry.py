"""The indicator registry: its entries are what the usage document gives, and it refuses bad entries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from sitivmon.readings import CounterInterval, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.buckets import COUNTERS, SCALE
from sitivmon.usage.indicators import compute_indicators, usage_document
from sitivmon.usage.periods import Month, month_range
from sitivmon.usage.registry import (
    INDICATORS,
    AllocationRule,
    Figure,
    IndicatorRegistry,
    IndicatorSpec,
    NotABasis,
)
from sitivmon.usage.scans import Group
from sitivmon.usage.store import SqliteUsageStore

from .support import communes, link_keys, poll_link, record

V = "venissieux"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteUsageStore]:
    s = SqliteUsageStore(tmp_path / "usage.sqlite3")
    yield s
    s.close()


LEVELS = {Quantity.VCPUS: 2.0, Quantity.MEMORY_BYTES: float(4 << 30), Quantity.STORAGE_BYTES: 9.0}


def vm_and_pdu(m: Month) -> Iterator[PollBatch]:
    """A VM and an outlet of Vénissieux polled every 5 minutes over the month and a little after."""
    last = float(m.start)
    t = m.start + 150.0
    while t < m.end + 300:
        yield PollBatch(
            "dc",
            t,
            300.0,
            counters=(CounterInterval(UsageKey(V, "pdu-1", Quantity.ENERGY_JOULES), last, t, round(t - last) * 1000),),
            gauges=tuple(GaugeReading(UsageKey(V, "vm-1", q), t, v) for q, v in LEVELS.items()),
        )
        last = t
        t += 300.0


def test_the_document_gives_each_commune_the_registry_rows_in_order(store: SqliteUsageStore) -> None:
    m = month_range("2026-01")
    record(store, poll_link(V, "l1", m.start - 283, m.end + 300, 300, lambda t: int(t * 10)))
    record(store, vm_and_pdu(m))
    doc = usage_document(store, communes(), m, link_keys(V, "l1"), now=m.end + 1)
    expected = [(spec.name, d, spec.unit) for spec in INDICATORS for d in spec.directions]
    assert ("traffic_p95", "aggregate", "bytes_per_second") in expected and ("energy", None, "kWh") in expected
    for c in communes():
        rows = [(r["indicator"], r["direction"], r["unit"]) for r in doc["indicators"] if r["commune"] == c.id]
        assert rows == expected, c.id
    # The data is there: every indicator of Vénissieux was observed in full.
    assert {r["coverage"] for r in doc["indicators"] if r["commune"] == V} == {"1.000000"}


def test_the_builtin_registry_is_what_allocation_and_the_store_know() -> None:
    """Read through the registry, allocation sees what it always saw (no list of names pinned here: a new
    built-in indicator is its entry, and this test needs no edit for it)."""
    assert INDICATORS.bases() == [s.name for s in INDICATORS if isinstance(s.allocation, AllocationRule)]
    assert "traffic_volume" in INDICATORS.bases() and "availability" not in INDICATORS.bases()
    availability = INDICATORS.get("availability")
    assert availability is not None and isinstance(availability.allocation, NotABasis)
    assert INDICATORS.basis_rows("traffic_volume", None) == ("in", "out")
    assert INDICATORS.basis_rows("traffic_p95", None) == ("max",)
    assert INDICATORS.basis_rows("traffic_p95", "in") == ("in",)
    assert INDICATORS.basis_rows("storage", None) == (None,)
    assert INDICATORS.basis_rows("not-registered", None) == (None,)
    # Every recorded quantity feeds some indicator: none is stored for nothing.
    assert INDICATORS.quantities() == frozenset(Quantity)


def test_quantities_carry_how_they_are_stored() -> None:
    """The table in `sitivmon.readings` is what the buckets read (the values before the registry)."""
    assert {Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT, Quantity.ENERGY_JOULES} == COUNTERS
    assert {Quantity.VCPUS: 1000} == SCALE
    assert {q: q.unit for q in Quantity} == {
        Quantity.TRAFFIC_IN: "bytes",
        Quantity.TRAFFIC_OUT: "bytes",
        Quantity.LINK_UP: "ratio",
        Quantity.STORAGE_BYTES: "bytes",
        Quantity.ENERGY_JOULES: "joules",
        Quantity.VCPUS: "vcpus",
        Quantity.MEMORY_BYTES: "bytes",
    }


def _nothing(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    grp = g[Quantity.VCPUS]
    return {None: Figure(0, grp.observed())}


def spec(name: str, **kw: object) -> IndicatorSpec:
    fields: dict[str, object] = {
        "name": name,
        "unit": "x",
        "quantities": (Quantity.VCPUS,),
        "directions": (None,),
        "aggregate": _nothing,
        "allocation": AllocationRule(),
    }
    fields.update(kw)
    return IndicatorSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (spec("storage"), "indicator 'storage' is registered twice"),
        (spec("a", directions=()), "directions must be distinct and not empty"),
        (spec("a", directions=("in", "in")), "directions must be distinct and not empty"),
        (spec("a", quantities=()), "name the quantities it is computed from"),
        (spec("a", allocation=AllocationRule(directions=("in",))), "allocation reads rows it does not give: ['in']"),
        (
            spec("a", directions=("in", "out"), allocation=AllocationRule(directions=("in", "out"))),
            "allocation reads rows it does not give: [None]",  # without a direction it would read a row never given
        ),
        (spec("a", allocation=AllocationRule(undirected=())), "allocation without a direction must read a row"),
    ],
)
def test_a_bad_entry_is_refused(entry: IndicatorSpec, message: str) -> None:
    with pytest.raises(ValueError, match=r"^indicator ") as exc:
        INDICATORS.plus(entry)
    assert message in str(exc.value)


def test_plus_leaves_the_builtin_registry_as_it_was() -> None:
    local = INDICATORS.plus(spec("extra"))
    assert "extra" in local and "extra" not in INDICATORS
    assert len(local) == len(INDICATORS) + 1
    assert [s.name for s in local][:-1] == [s.name for s in INDICATORS]
    assert isinstance(local, IndicatorRegistry)


def test_an_aggregation_giving_other_rows_than_its_directions_is_refused() -> None:
    m = month_range("2026-01")
    n = (m.end - m.start) // 300
    for directions in (("in", "out"), (None, "extra")):
        wrong = IndicatorRegistry([spec("wrong", directions=directions, allocation=NotABasis("no"))])
        with pytest.raises(ValueError, match=r"indicator 'wrong' gave rows \['None'\], not its directions"):
            compute_indicators({}, [V], m.start, n, registry=wrong)
