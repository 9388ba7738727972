"""Mixed bases ("part fixe, part variable") and annual budgets: exact to the cent, explained, validated."""

from __future__ import annotations

import io
from decimal import Decimal
from fractions import Fraction
from typing import Any

import openpyxl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitivmon.allocation.config import AllocationConfigError, parse_allocation
from sitivmon.allocation.engine import UsageDocument, allocate, measure
from sitivmon.allocation.formats import render
from sitivmon.allocation.report import build_report, scope_report

from .conftest import COMMUNES

POPULATION = {"givors": "9.03%", "grigny": "4.50%", "pierre-benite": "4.71%", "rive-de-gier": "6.91%",
              "vaulx-en-velin": "23.39%", "venissieux": "30.34%", "corbas": "5.08%", "saint-chamond": "16.04%"}
KEYS = {"population": POPULATION, "equal": {c.id: "12.5%" for c in COMMUNES}}


def config_of(*projects: dict[str, Any]) -> Any:
    return parse_allocation(yaml.safe_dump({"keys": KEYS, "projects": list(projects)}, allow_unicode=True), COMMUNES)


def errors_of(*projects: dict[str, Any]) -> list[str]:
    with pytest.raises(AllocationConfigError) as exc:
        config_of(*projects)
    return exc.value.errors


MIXED = {"name": "Fibre", "budget": "10000.00", "fallback": "population",
         "parts": [{"share": "40%", "basis": "key:population"}, {"share": "60%", "basis": "usage:traffic_volume"}]}


def test_mixed_project_is_split_into_parts_then_communes(usage_doc: UsageDocument) -> None:
    result = allocate(config_of(MIXED), usage_doc, COMMUNES)
    project = result.projects[0]
    assert [p.budget_cents for p in project.parts] == [400_000, 600_000]
    assert not project.fallback_used and project.basis == "40 % key:population + 60 % usage:traffic_volume"
    assert sum(line.amount_cents for line in result.lines) == 1_000_000
    venissieux = next(line for line in result.lines if line.commune == "venissieux")
    key_part, usage_part = venissieux.parts
    assert key_part.amount_cents + usage_part.amount_cents == venissieux.amount_cents
    # each part is exactly its basis applied to its own budget
    assert abs(key_part.amount_cents - 400_000 * Decimal("0.3034")) < 1
    volumes = {c.id: measure(usage_doc, c.id, "traffic_volume", None).value for c in COMMUNES}
    exact = Fraction(600_000) * Fraction(volumes["venissieux"]) / Fraction(sum(volumes.values()))
    assert abs(usage_part.amount_cents - exact) < 1
    for part in (0, 1):  # every part adds up to its own budget over the communes
        assert sum(line.parts[part].amount_cents for line in result.lines) == project.parts[part].budget_cents


def test_a_mixed_part_falls_back_alone(usage_doc: UsageDocument) -> None:
    energy = {**MIXED, "parts": [{"share": "30%", "basis": "key:equal"},
                                 {"share": "70%", "basis": "usage:energy", "fallback": "population"}]}
    project = allocate(config_of(energy), usage_doc, COMMUNES).projects[0]  # corbas's energy coverage is 93.1 %
    assert [p.fallback_used for p in project.parts] == [False, True]
    assert project.parts[1].fallback_cause == "coverage" and project.parts[1].basis_used == "key:population"
    assert project.fallback_used and project.fallback_reason is not None
    assert project.fallback_reason.startswith("part 2 (usage:energy): coverage below 95.0 %")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    budget=st.integers(0, 10**12),
    weights=st.lists(st.integers(1, 10_000), min_size=2, max_size=5),
)
def test_mixed_parts_add_up_to_the_budget_to_the_cent(usage_doc: UsageDocument, budget: int,
                                                       weights: list[int]) -> None:
    total = sum(weights)
    # shares with enough decimals to sum to exactly 100 %: the last part takes the rest
    shares = [Decimal(w * 10**6 // total) / 10**6 for w in weights[:-1]]
    shares.append(Decimal(1) - sum(shares))
    if shares[-1] <= 0:
        return
    bases = ["key:population", "usage:traffic_volume", "key:equal", "usage:storage", "usage:vcpu_hours"]
    project = {"name": "P", "budget": str(Decimal(budget) / 100), "fallback": "equal",
               "parts": [{"share": str(s), "basis": bases[k % len(bases)]} for k, s in enumerate(shares)]}
    result = allocate(config_of(project), usage_doc, COMMUNES)
    assert sum(p.budget_cents for p in result.projects[0].parts) == budget
    assert sum(line.amount_cents for line in result.lines) == budget
    for line in result.lines:
        assert line.amount_cents == sum(p.amount_cents for p in line.parts) >= 0


@pytest.mark.parametrize(
    ("annual", "first", "last"),
    [("1200.00", 10_000, 10_000), ("1000.05", 8_334, 8_333), ("0.11", 1, 0), ("0.00", 0, 0)],
)
def test_annual_budget_months_add_up_to_the_cent(annual: str, first: int, last: int) -> None:
    project = config_of({"name": "A", "annual_budget": annual, "basis": "key:equal"}).projects[0]
    months = [project.budget_for(f"2026-{m:02d}") for m in range(1, 13)]
    assert sum(months) == round(Decimal(annual) * 100)
    assert months[0] == first and months[11] == last
    assert months == sorted(months, reverse=True)  # the remainder cents go to the first months, one each
    assert project.year_to_date_cents("2026-12") == sum(months)
    assert project.year_to_date_cents("2026-03") == sum(months[:3])


def test_annual_budget_in_the_report(usage_doc: UsageDocument) -> None:
    config = config_of({"name": "Support", "annual_budget": "1000.05", "basis": "key:equal"})
    result = allocate(config, usage_doc, COMMUNES)  # October: the 10th month, past the 9 extra cents
    assert result.projects[0].budget_cents == 8_333
    assert sum(line.amount_cents for line in result.lines) == 8_333
    report = build_report(usage_doc, result, config_sha256=None, allocation_sha256="0" * 64)
    row = report["projects"][0]
    assert row["annual_budget_cents"] == 100_005
    assert row["year_to_date_budget_cents"] == 9 * 8_334 + 8_333


@pytest.mark.parametrize(
    ("project", "error"),
    [
        ({**MIXED, "parts": [{"share": "40%", "basis": "key:population"},
                             {"share": "59%", "basis": "usage:traffic_volume"}]},
         "projects[0].parts: shares sum to 99 %, not exactly 100 %"),
        ({**MIXED, "parts": [{"share": "100%", "basis": "key:population"}]},
         "projects[0].parts: give at least two parts (or a single basis)"),
        ({**MIXED, "basis": "key:equal"}, "projects[0]: give exactly one of basis or parts"),
        ({"name": "N", "budget": "1"}, "projects[0]: give exactly one of basis or parts"),
        ({"name": "B", "budget": "1", "annual_budget": "12", "basis": "key:equal"},
         "projects[0]: give exactly one of budget (monthly) or annual_budget"),
        ({**MIXED, "fallback": None}, "projects[0].parts[1].fallback: a usage basis needs a fallback key"),
        ({**MIXED, "parts": [{"share": "0%", "basis": "key:population"},
                             {"share": "100%", "basis": "usage:traffic_volume"}]},
         "projects[0].parts[0].share: must be more than 0 %"),
        ({**MIXED, "parts": [{"share": "50%", "basis": "key:nope"}, {"share": "50%", "basis": "key:equal"}]},
         "projects[0].parts[0].basis: unknown key 'nope'"),
    ],
)
def test_check_locates_bad_parts_and_budgets(project: dict[str, Any], error: str) -> None:
    project = {k: v for k, v in project.items() if v is not None}
    assert any(e.startswith(error) for e in errors_of(project)), errors_of(project)


def test_parts_in_every_format_and_scoped_for_a_commune(usage_doc: UsageDocument) -> None:
    result = allocate(config_of(MIXED), usage_doc, COMMUNES)
    report = build_report(usage_doc, result, config_sha256=None, allocation_sha256="0" * 64)
    csv = render(report, "csv", section="parts").decode().splitlines()
    assert csv[0].startswith("project,part,commune,insee,weight,basis")
    assert len(csv) == 1 + 2 * len(COMMUNES)
    book = openpyxl.load_workbook(io.BytesIO(render(report, "xlsx")))
    assert "Parts" in book.sheetnames and book["Parts"].max_row == 1 + 2 * len(COMMUNES)
    scoped = scope_report(report, "givors")
    assert [r["commune"] for r in scoped["allocations"]] == ["givors"]
    assert len(scoped["allocations"][0]["parts"]) == 2
    assert set(scoped["projects"][0]["parts"][0]) == {"part", "weight", "budget_cents", "basis", "basis_used",
                                                      "fallback_used", "fallback_cause", "min_coverage"}


def test_single_basis_reports_are_unchanged_in_shape(usage_doc: UsageDocument) -> None:
    result = allocate(config_of({"name": "S", "budget": "10", "basis": "key:equal"}), usage_doc, COMMUNES)
    report = build_report(usage_doc, result, config_sha256=None, allocation_sha256="0" * 64)
    assert "parts" not in report["allocations"][0] and set(report["projects"][0]) == {
        "project", "budget_cents", "basis", "basis_used", "fallback_used", "fallback_reason"}
    assert "Parts" not in openpyxl.load_workbook(io.BytesIO(render(report, "xlsx"))).sheetnames
