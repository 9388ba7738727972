"""Pure pieces of the portal, as tables: French and English figures, basis words, explanations, charts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sitivmon.portal import fmt
from sitivmon.portal.charts import Series, bar_chart
from sitivmon.portal.views import (
    CommuneRef,
    allocation_matrix,
    basis_words,
    explain,
    previous_months,
    shift_month,
)

NB = "\u00a0"


@pytest.mark.parametrize(
    ("cents", "fr", "en"),
    [
        (0, f"0,00{NB}€", "€0.00"),
        (5, f"0,05{NB}€", "€0.05"),
        (123456, f"1{NB}234,56{NB}€", "€1,234.56"),
        (100000000, f"1{NB}000{NB}000,00{NB}€", "€1,000,000.00"),
        (-1999, f"-19,99{NB}€", "-€19.99"),
        (10**20 + 1, f"1{NB}000{NB}000{NB}000{NB}000{NB}000{NB}000,01{NB}€", "€1,000,000,000,000,000,000.01"),
    ],
)
def test_money_is_exact_in_both_languages(cents: int, fr: str, en: str) -> None:
    assert fmt.money(cents, "fr") == fr
    assert fmt.money(cents, "en") == en


@pytest.mark.parametrize(
    ("value", "unit", "fr"),
    [
        ("36920000000000", "bytes", f"36,92{NB}To"),
        ("999", "bytes", f"999{NB}o"),
        ("1170000000", "bit/s", f"1,17{NB}Gbit/s"),
        ("21580", "vcpu_hours", f"21{NB}580{NB}vCPU·h"),
        ("53.5", "GiB_hours", f"53,50{NB}Gio·h"),
        ("422.4", "kWh", f"422{NB}kWh"),
    ],
)
def test_scaled_quantities(value: str, unit: str, fr: str) -> None:
    assert fmt.scaled(value, unit, "fr") == fr


def test_percent_month_names_and_dates() -> None:
    assert fmt.percent("0.9123", "fr") == f"91,2{NB}%"
    assert fmt.percent("0.9123", "en") == "91.2%"
    assert fmt.month_name("2026-10", "fr") == "octobre 2026"
    assert fmt.short_month("2026-02", "fr") == "févr. 26"
    assert fmt.when("2026-10-31T23:30:00Z", "Europe/Paris", "fr") == "01/11/2026 00:30"  # CET after the DST end


@pytest.mark.parametrize(
    ("basis", "fr"),
    [
        ("key:population", "clé « population »"),
        ("usage:traffic_volume:in", "usage « Volume de trafic (entrant) »"),
        ("usage:storage", "usage « Stockage »"),
    ],
)
def test_basis_words(basis: str, fr: str) -> None:
    assert basis_words(basis, "fr") == fr


def line(**over: Any) -> dict[str, Any]:
    base = {"project": "p", "commune": "givors", "basis": "key:population", "basis_value": "0.25",
            "share": "0.25", "amount_cents": 2500, "fallback_used": False}
    return {**base, **over}


def test_explanations_from_structured_data_only() -> None:
    project = {"project": "p", "basis": "usage:traffic_volume", "budget_cents": 10000, "fallback_used": True,
               "fallback_cause": "coverage", "min_coverage": "0.95",
               "fallback_reason": "coverage below 95.0 %: givors 91.0 %, corbas no data"}
    indicators = [
        {"commune": "givors", "indicator": "traffic_volume", "direction": "in", "coverage": "0.91", "unit": "bytes"},
        {"commune": "givors", "indicator": "traffic_volume", "direction": "out", "coverage": "0.97", "unit": "bytes"},
    ]
    text = explain(line(fallback_used=True), project, indicators, "fr")
    assert text == (
        "La base prévue (usage « Volume de trafic ») n'a pas pu servir : la couverture des mesures est sous le "
        f"seuil de 95{NB}% (la vôtre : 91,0{NB}%). Repli sur la clé « population » : part de 25,00{NB}%."
    )
    assert "corbas" not in text  # the finance text naming other communes is never used
    plain = explain(line(), {"basis": "key:population", "budget_cents": 10000}, [], "fr")
    assert plain == f"Répartition selon la clé « population » : part de 25,00{NB}% du budget de 100,00{NB}€."


def test_matrix_totals_add_up() -> None:
    communes = [CommuneRef("a", "A", "2"), CommuneRef("b", "B", "1")]
    report = {"projects": [{"project": "x", "budget_cents": 301, "basis": "key:k", "basis_used": "key:k"}],
              "allocations": [{"project": "x", "commune": "a", "amount_cents": 150},
                              {"project": "x", "commune": "b", "amount_cents": 151}]}
    m = allocation_matrix(report, communes)
    assert [c.id for c in m.communes] == ["b", "a"]  # INSEE order
    assert m.rows[0]["total"] == 301 == m.grand_total == sum(m.column_totals.values())


def test_months_arithmetic() -> None:
    assert previous_months("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
    assert shift_month("2026-12", 1) == "2027-01" and shift_month("2026-01", -1) == "2025-12"


def test_chart_escapes_and_describes() -> None:
    svg = bar_chart("<b>x</b>", ["oct. 26"], [Series("in & out", [Decimal(5)])], [["5 o"]], chart_id="c")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "in &amp; out: oct. 26 5 o" in svg
    assert 'role="img"' in svg and 'aria-labelledby="c-title c-desc"' in svg
