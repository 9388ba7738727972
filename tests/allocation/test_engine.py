"""Allocation from a usage document: bases, directions, fallbacks, and refusal of wrong documents."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sitivmon.allocation.config import AllocationConfig, parse_allocation
from sitivmon.allocation.engine import (
    UsageDocument,
    UsageDocumentError,
    allocate,
    load_usage_json,
    measure,
    parse_usage,
)

from .conftest import COMMUNES, USAGE_FILE, usage_data

INSEE = {c.id: c.insee for c in COMMUNES}


def config_of(projects: list[dict[str, Any]], keys: dict[str, Any] | None = None) -> AllocationConfig:
    keys = keys or {"equal": {c.id: "12.5%" for c in COMMUNES}}
    return parse_allocation(yaml.safe_dump({"keys": keys, "projects": projects}, allow_unicode=True), COMMUNES)


def usage_errors(data: Any, **kw: Any) -> list[str]:
    with pytest.raises(UsageDocumentError) as exc:
        parse_usage(data, COMMUNES, **kw)
    return exc.value.errors


def test_traffic_volume_without_direction_is_in_plus_out_with_the_worse_coverage(
    usage_doc: UsageDocument,
) -> None:
    grigny_in = usage_doc.row("grigny", "traffic_volume", "in")
    grigny_out = usage_doc.row("grigny", "traffic_volume", "out")
    assert grigny_in is not None and grigny_out is not None
    assert grigny_in.value is not None and grigny_out.value is not None
    m = measure(usage_doc, "grigny", "traffic_volume", None)
    assert m.value == grigny_in.value + grigny_out.value
    assert m.coverage == Decimal("0.9952")
    assert measure(usage_doc, "grigny", "traffic_volume", "in").value == grigny_in.value


def test_traffic_p95_without_direction_is_max(usage_doc: UsageDocument) -> None:
    row = usage_doc.row("corbas", "traffic_p95", "max")
    assert row is not None
    assert measure(usage_doc, "corbas", "traffic_p95", None).value == row.value


def test_usage_basis_splits_by_the_indicator(usage_doc: UsageDocument) -> None:
    config = config_of([{"name": "S", "budget": "5312.40", "basis": "usage:storage", "fallback": "equal"}])
    result = allocate(config, usage_doc, COMMUNES)
    assert result.balanced
    assert sum(line.amount_cents for line in result.lines) == 531240
    values = {c.id: measure(usage_doc, c.id, "storage", None).value for c in COMMUNES}
    total = sum(values.values())
    for line in result.lines:
        assert abs(line.amount_cents - Decimal(531240) * values[line.commune] / total) < 1
        assert line.basis == "usage:storage" and not line.fallback_used
    assert [line.insee for line in result.lines] == sorted(INSEE.values())


def test_fallback_when_a_commune_is_under_the_coverage_threshold(usage_doc: UsageDocument) -> None:
    config = config_of([{"name": "E", "budget": "2450.75", "basis": "usage:energy", "fallback": "equal"}])
    result = allocate(config, usage_doc, COMMUNES)
    outcome = result.projects[0]
    assert outcome.fallback_used and outcome.basis_used == "key:equal"
    assert outcome.fallback_reason == "coverage below 95.0 %: corbas 93.1 %"
    assert {line.amount_cents for line in result.lines} == {30634, 30635}
    assert all(line.fallback_used and line.basis == "key:equal" for line in result.lines)
    # A lower threshold accepts the same month.
    lenient = config_of(
        [
            {
                "name": "E",
                "budget": "2450.75",
                "basis": "usage:energy",
                "fallback": "equal",
                "min_coverage": 0.9,
            }
        ]
    )
    assert not allocate(lenient, usage_doc, COMMUNES).projects[0].fallback_used


def test_fallback_when_the_indicator_totals_zero_or_is_missing() -> None:
    data = usage_data()
    for row in data["indicators"]:
        if row["indicator"] == "vcpu_hours":
            row["value"] = 0
    data["indicators"] = [
        r for r in data["indicators"] if not (r["indicator"] == "memory_gib_hours" and r["commune"] == "givors")
    ]
    doc = parse_usage(data, COMMUNES)
    config = config_of(
        [
            {"name": "V", "budget": "10.00", "basis": "usage:vcpu_hours", "fallback": "equal"},
            {"name": "M", "budget": "10.00", "basis": "usage:memory_gib_hours", "fallback": "equal"},
        ]
    )
    v, m = allocate(config, doc, COMMUNES).projects
    assert v.fallback_reason == "usage:vcpu_hours totals zero over the project's communes"
    assert m.fallback_reason == "coverage below 95.0 %: givors no data"


def test_subset_key_project_renormalises_the_key(usage_doc: UsageDocument) -> None:
    keys = {"population": {"givors": "25%", "grigny": "25%", "corbas": "50%"}}
    config = config_of(
        [{"name": "R", "budget": "100.01", "basis": "key:population", "communes": ["givors", "corbas"]}], keys
    )
    lines = allocate(config, usage_doc, COMMUNES).lines
    assert {(line.commune, line.amount_cents) for line in lines} == {("givors", 3334), ("corbas", 6667)}


def test_other_month_is_refused() -> None:
    assert usage_errors(usage_data(), month="2026-11") == ["month: the file is for 2026-10, not 2026-11"]


def test_period_must_be_the_month_in_the_timezone() -> None:
    data = usage_data()
    data["period"]["end"] = "2026-11-01T00:00:00+02:00"  # an hour late: DST forgotten
    errs = usage_errors(data)
    assert errs == [
        "period.end: 2026-11-01T00:00:00+02:00 is not the end of 2026-10 in Europe/Paris (2026-11-01T00:00:00+01:00)"
    ]
    assert usage_errors(usage_data(), timezone="America/Cayenne") == [
        "timezone: the file uses Europe/Paris, the configuration America/Cayenne"
    ]


def test_missing_unknown_and_inconsistent_communes_are_refused() -> None:
    data = usage_data()
    data["indicators"] = [r for r in data["indicators"] if r["commune"] not in ("corbas", "grigny")]
    assert usage_errors(data) == ["indicators: no rows for commune(s) grigny, corbas"]
    data = usage_data()
    data["indicators"][0]["commune"] = "lyon"
    data["indicators"][1]["insee"] = "69123"
    data["indicators"][2]["value"] = -3
    data["indicators"][3]["coverage"] = Decimal("1.2")
    data["indicators"][4]["value"] = "lots"
    data["indicators"].append(copy.deepcopy(data["indicators"][5]))
    errs = usage_errors(data)
    assert errs[:5] == [
        "indicators[0].commune: unknown commune 'lyon'",
        "indicators[1].insee: '69123' is not the INSEE code of givors (69091)",
        "indicators[2].value: must not be negative, got -3",
        "indicators[3].coverage: must be between 0 and 1, got 1.2",
        "indicators[4].value: expected a number, got 'lots'",
    ]
    assert errs[5].startswith(f"indicators[{len(data['indicators']) - 1}]: same commune, indicator and direction")


def test_structure_errors() -> None:
    assert usage_errors([]) == ["(top level): expected a JSON object"]
    assert usage_errors({"month": "2026-13"}) == ["month: expected YYYY-MM, got '2026-13'"]
    assert usage_errors({"month": "2026-10", "timezone": "Mars/Olympus"}) == [
        "timezone: unknown timezone 'Mars/Olympus'"
    ]


# ---------------------------------------------------------------- property: any usage, any budgets


@st.composite
def allocation_case(draw: st.DrawFn) -> tuple[AllocationConfig, UsageDocument]:
    ids = [c.id for c in COMMUNES]
    bp = draw(st.lists(st.integers(0, 10_000), min_size=8, max_size=8).filter(lambda xs: sum(xs) > 0))
    total = sum(bp)
    # A key summing to exactly 100 %: basis points adjusted on the last commune with a share.
    pts = [x * 10_000 // total for x in bp]
    pts[max(range(8), key=lambda i: bp[i])] += 10_000 - sum(pts)
    key = {c: f"{Decimal(p) / 100}%" for c, p in zip(ids, pts, strict=True)}
    indicators = ["storage", "energy", "vcpu_hours", "traffic_volume", "traffic_p95"]
    projects = []
    for i in range(draw(st.integers(1, 4))):
        subset = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=8, unique=True))
        if sum(pts[ids.index(c)] for c in subset) == 0:
            subset = ids
        cents = draw(st.integers(0, 10**9))
        basis = draw(st.sampled_from(["key:k", *[f"usage:{ind}" for ind in indicators]]))
        p: dict[str, Any] = {"name": f"p{i}", "budget": f"{cents // 100}.{cents % 100:02d}", "basis": basis}
        p["communes"] = subset
        if basis.startswith("usage:"):
            p["fallback"] = "k"
        projects.append(p)
    config = parse_allocation(yaml.safe_dump({"keys": {"k": key}, "projects": projects}), COMMUNES)
    rows: list[dict[str, Any]] = []
    values = st.one_of(st.integers(0, 10**15), st.decimals(0, 10**9, places=3, allow_nan=False))
    coverages = st.sampled_from([Decimal(1), Decimal("0.99"), Decimal("0.5"), Decimal(0)])
    for c in COMMUNES:
        for ind, dirs in (
            ("storage", [None]),
            ("energy", [None]),
            ("vcpu_hours", [None]),
            ("traffic_volume", ["in", "out"]),
            ("traffic_p95", ["max"]),
        ):
            for d in dirs:
                rows.append(
                    {
                        "commune": c.id,
                        "insee": c.insee,
                        "indicator": ind,
                        "direction": d,
                        "value": draw(values),
                        "unit": "x",
                        "coverage": draw(coverages),
                        "gaps": [],
                    }
                )
    doc = {
        "month": "2026-03",
        "timezone": "Europe/Paris",
        "period": {"start": "2026-03-01T00:00:00+01:00", "end": "2026-04-01T00:00:00+02:00"},
        "indicators": rows,
    }
    return config, parse_usage(doc, COMMUNES)


@settings(max_examples=400, deadline=None)
@given(allocation_case())
def test_property_every_project_sums_to_its_budget(case: tuple[AllocationConfig, UsageDocument]) -> None:
    config, usage = case
    result = allocate(config, usage, COMMUNES)
    assert result.balanced
    for project, outcome in zip(config.projects, result.projects, strict=True):
        lines = [line for line in result.lines if line.project == project.name]
        assert sum(line.amount_cents for line in lines) == project.budget_cents == outcome.total_cents
        assert sorted(line.commune for line in lines) == sorted(project.communes)
        assert all(line.amount_cents >= 0 for line in lines)
        assert all(line.fallback_used == outcome.fallback_used for line in lines)
        if outcome.fallback_used:
            assert outcome.fallback_reason and outcome.basis_used == "key:k"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1E+999999999", "out of range"),  # Fraction(weight) would expand it into a billion-digit integer
        ("1000000000000000000000001", "out of range"),
        ("0.0000000000001", "out of range"),
        ("-1", "must not be negative"),
    ],
)
def test_usage_values_out_of_range_are_located(value: str, message: str) -> None:
    data = load_usage_json(USAGE_FILE.read_bytes())
    data["indicators"][3]["value"] = Decimal(value)
    errs = usage_errors(data)
    assert any(e.startswith("indicators[3].value: ") and message in e for e in errs), errs


@pytest.mark.parametrize("month", ["2026-10\n", "0000-01", "9999-12"])
def test_usage_document_month_is_one_spelling(month: str) -> None:
    data = load_usage_json(USAGE_FILE.read_bytes())
    data["month"] = month
    assert usage_errors(data)[0].startswith("month: ")
