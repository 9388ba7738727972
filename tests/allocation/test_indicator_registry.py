"""Adding an indicator is one registry entry plus its aggregation function, nothing else.

The extra indicator lives in a local registry (`INDICATORS.plus`): from the stored buckets to the
usage document, the allocation file's check and the split, no other code knows it, and the built-in
registry still refuses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from sitivmon.allocation.config import AllocationConfigError, parse_allocation, parse_basis
from sitivmon.allocation.engine import (
    IndicatorRow,
    Measure,
    UsageDocument,
    allocate,
    load_usage_json,
    measure,
    month_bounds,
    parse_usage,
)
from sitivmon.readings import CounterInterval, PollBatch, Quantity, UsageKey
from sitivmon.usage.indicators import usage_document
from sitivmon.usage.periods import Month, month_range
from sitivmon.usage.recorder import Accumulator
from sitivmon.usage.registry import INDICATORS, AllocationRule, Figure, IndicatorSpec
from sitivmon.usage.scans import Group, series_sum, to_decimal
from sitivmon.usage.store import SqliteUsageStore

from .conftest import COMMUNES


# -- the whole addition: one aggregation function and one entry ---------------------------------------
def energy_wh(g: Mapping[Quantity, Group]) -> dict[str | None, Figure]:
    """Energy in watt-hours (the built-in `energy` is in kWh)."""
    en = g[Quantity.ENERGY_JOULES]
    return {None: Figure(to_decimal(Fraction(sum(series_sum(s) for s in en.series), 3600)), en.observed())}


ENTRY = IndicatorSpec("energy_wh", "Wh", (Quantity.ENERGY_JOULES,), (None,), energy_wh, AllocationRule())
LOCAL = INDICATORS.plus(ENTRY)
# ------------------------------------------------------------------------------------------------------


def outlets(m: Month, watts: Mapping[str, int]) -> Iterator[PollBatch]:
    """One outlet per commune drawing a constant power, polled every 5 minutes over the whole month."""
    last = float(m.start)
    t = m.start + 150.0
    while t < m.end + 300:
        yield PollBatch(
            "dc",
            t,
            300.0,
            counters=tuple(
                CounterInterval(UsageKey(c, f"pdu-{c}", Quantity.ENERGY_JOULES), last, t, round((t - last) * w))
                for c, w in watts.items()
            ),
        )
        last = t
        t += 300.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteUsageStore]:
    s = SqliteUsageStore(tmp_path / "usage.sqlite3")
    m = month_range("2026-10")
    acc = Accumulator(s.load_open_buckets())
    for batch in outlets(m, {"venissieux": 1000, "givors": 3000}):
        acc.apply(batch)
    closed, open_b, baselines, _ = acc.snapshot()
    s.write(closed, open_b, baselines)
    yield s
    s.close()


ALLOCATION = yaml.safe_dump(
    {
        "keys": {"equal": {c.id: "12.5%" for c in COMMUNES}},
        "projects": [
            {
                "name": "Salle serveurs",
                "budget": "1000.00",
                "basis": "usage:energy_wh",
                "fallback": "equal",
                "communes": ["venissieux", "givors"],
            }
        ],
    }
)


def test_an_indicator_added_in_one_entry_is_computed_and_allocatable(store: SqliteUsageStore) -> None:
    m = month_range("2026-10")
    doc = usage_document(store, COMMUNES, m, now=m.end + 1, registry=LOCAL)
    rows = {r["commune"]: r for r in doc["indicators"] if r["indicator"] == "energy_wh"}
    assert set(rows) == {c.id for c in COMMUNES}
    assert rows["venissieux"]["value"] == f"{1000 * 745}.000000"  # 1 kW over October's 745 hours
    assert rows["givors"]["value"] == f"{3000 * 745}.000000"
    assert (rows["venissieux"]["unit"], rows["venissieux"]["coverage"]) == ("Wh", "1.000000")
    assert rows["corbas"]["coverage"] == "0" and rows["corbas"]["value"] == "0.000000"

    # The other rows are what the built-in registry gives, in the same order, the new one after them.
    builtin = usage_document(store, COMMUNES, m, now=m.end + 1)
    assert [r for r in doc["indicators"] if r["indicator"] != "energy_wh"] == builtin["indicators"]
    assert not [r for r in builtin["indicators"] if r["indicator"] == "energy_wh"]
    assert all([r["indicator"] for r in doc["indicators"] if r["commune"] == c.id][-1] == "energy_wh" for c in COMMUNES)

    # Through JSON, as `sitivmon allocate` reads it.
    usage = parse_usage(load_usage_json(json.dumps(doc)), COMMUNES, month="2026-10", timezone="Europe/Paris")
    config = parse_allocation(ALLOCATION, COMMUNES, indicators=LOCAL)
    result = allocate(config, usage, COMMUNES, indicators=LOCAL)
    (outcome,) = result.projects
    assert (outcome.basis_used, outcome.fallback_used) == ("usage:energy_wh", False)
    assert {line.commune: line.amount_cents for line in result.lines} == {"venissieux": 25_000, "givors": 75_000}


def test_the_builtin_registry_does_not_know_it() -> None:
    with pytest.raises(AllocationConfigError) as exc:
        parse_allocation(ALLOCATION, COMMUNES)
    known = ", ".join(INDICATORS.bases())
    assert exc.value.errors == [f"projects[0].basis: unknown indicator 'energy_wh' (known: {known})"]
    assert known.startswith("traffic_volume, traffic_p95, storage, energy, ")  # as before the registry
    assert parse_basis("usage:energy_wh", LOCAL).indicator == "energy_wh"


def document(rows: list[IndicatorRow]) -> UsageDocument:
    start, end = month_bounds("2026-10", "Europe/Paris")
    return UsageDocument("2026-10", "Europe/Paris", start, end, tuple(rows))


def row(commune: str, direction: str | None, value: str | None, coverage: str) -> IndicatorRow:
    insee = {c.id: c.insee for c in COMMUNES}[commune]
    return IndicatorRow(
        commune, insee, "rate", direction, None if value is None else Decimal(value), "x", Decimal(coverage)
    )


def measure_of(value: str, coverage: str) -> Measure:
    return Measure(Decimal(value), Decimal(coverage))


def test_a_basis_without_direction_reads_the_rows_its_entry_names() -> None:
    """An entry's `AllocationRule.undirected`: several rows summed with the worst coverage, or one row."""
    summed = INDICATORS.plus(
        IndicatorSpec(
            "rate", "x", (Quantity.TRAFFIC_IN,), ("up", "down", "peak"), energy_wh,
            AllocationRule(directions=("up", "down", "peak"), undirected=("up", "down")),
        )
    )  # fmt: skip
    one = INDICATORS.plus(
        IndicatorSpec(
            "rate", "x", (Quantity.TRAFFIC_IN,), ("up", "down", "peak"), energy_wh,
            AllocationRule(directions=("up", "down", "peak"), undirected=("peak",)),
        )
    )  # fmt: skip
    usage = document(
        [row("givors", "up", "2.5", "0.9"), row("givors", "down", "1", "0.8"), row("givors", "peak", "7", "1")]
    )
    assert measure(usage, "givors", "rate", None, summed) == measure_of("3.5", "0.8")
    assert measure(usage, "givors", "rate", None, one) == measure_of("7", "1")
    assert measure(usage, "givors", "rate", "down", summed) == measure_of("1", "0.8")
    # Unknown to the registry: the row without a direction, which this document does not have.
    assert measure(usage, "givors", "rate", None) == measure_of("0", "0")
    # A summed row that is missing leaves no coverage; a row without a value keeps its own.
    partial = document([row("givors", "up", "2.5", "0.9"), row("givors", "peak", None, "0.5")])
    assert measure(partial, "givors", "rate", None, summed) == measure_of("2.5", "0")
    assert measure(partial, "givors", "rate", None, one) == measure_of("0", "0")
