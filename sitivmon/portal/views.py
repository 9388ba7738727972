"""Page models from report documents: pure functions, tested as tables, no HTTP and no templates.

A commune's view is built from its own rows only (its allocation lines, its indicators, the projects'
structured outcome): no free text written for finance is ever shown to a commune, so nothing of another
commune can reach its pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sitivmon.portal import fmt
from sitivmon.portal.charts import Series, bar_chart
from sitivmon.portal.labels import t
from sitivmon.usage.registry import INDICATORS


@dataclass(frozen=True, slots=True)
class CommuneRef:
    id: str
    name: str
    insee: str


def basis_words(basis: str, lang: str) -> str:
    """`key:population` -> `clé « population »`; `usage:traffic_volume:in` -> `usage « Volume de trafic (entrant) »`."""
    kind, _, rest = basis.partition(":")
    if kind == "key":
        return t(lang, "basis_key", key=rest)
    indicator, _, direction = rest.partition(":")
    name = t(lang, indicator)
    if direction:
        name = f"{name} ({t(lang, direction)})"
    return t(lang, "basis_usage", indicator=name)


def indicator_words(indicator: str, direction: str | None, lang: str) -> str:
    name = t(lang, indicator)
    return f"{name} ({t(lang, direction)})" if direction else name


def indicator_value(row: Mapping[str, Any], lang: str) -> str:
    if row.get("value") is None:
        return t(lang, "nodata")
    if row.get("unit") == "ratio":
        return fmt.percent(row["value"], lang, 2)
    return fmt.scaled(row["value"], str(row.get("unit", "")), lang)


def _coverage_of(indicators: Sequence[Mapping[str, Any]], commune: str, basis: str) -> Decimal | None:
    """The commune's coverage for a usage basis, as the allocation engine reads it: the rows the indicator
    registry names for the basis, the worst of them when there are several."""
    kind, _, rest = basis.partition(":")
    if kind != "usage":
        return None
    indicator, _, direction = rest.partition(":")
    wanted = INDICATORS.basis_rows(indicator, direction or None)
    found = [
        Decimal(r["coverage"]) for r in indicators
        if r["commune"] == commune and r["indicator"] == indicator and (r.get("direction") or None) in wanted
    ]  # fmt: skip
    if len(found) < len(wanted):
        return Decimal(0)
    return min(found)


def explain(line: Mapping[str, Any], project: Mapping[str, Any], indicators: Sequence[Mapping[str, Any]],
            lang: str) -> str:
    """One commune's amount for one project, in words, from structured data of that commune only."""
    share = fmt.percent(line["share"], lang, 2)
    budget = fmt.money(int(project["budget_cents"]), lang)
    used = str(line["basis"])
    if not line.get("fallback_used"):
        if used.startswith("key:"):
            return t(lang, "explain_key", basis=basis_words(used, lang), share=share, budget=budget)
        unit = next((r.get("unit", "") for r in indicators if used.split(":")[1] == r["indicator"]), "")
        value = fmt.scaled(line["basis_value"], str(unit), lang)
        return t(lang, "explain_usage", basis=basis_words(used, lang), value=value, share=share)
    planned = str(project["basis"])
    cause = project.get("fallback_cause")
    if cause == "coverage" and project.get("min_coverage") is not None:
        own = _coverage_of(indicators, str(line["commune"]), planned)
        why = t(lang, "why_coverage", threshold=fmt.percent(project["min_coverage"], lang, 0),
                coverage=fmt.percent(own if own is not None else 0, lang, 1))
    elif cause == "zero_total":
        why = t(lang, "why_zero")
    else:
        why = t(lang, "why_other")
    return t(lang, "explain_fallback", planned=basis_words(planned, lang), why=why,
             used=basis_words(used, lang), share=share)


@dataclass(slots=True)
class Matrix:
    """Projects × communes with row totals (each the project's budget) and column totals."""

    communes: list[CommuneRef]
    rows: list[dict[str, Any]] = field(default_factory=list)
    column_totals: dict[str, int] = field(default_factory=dict)
    grand_total: int = 0


def allocation_matrix(report: Mapping[str, Any], communes: Sequence[CommuneRef]) -> Matrix:
    order = sorted(communes, key=lambda c: c.insee)
    matrix = Matrix(order, column_totals={c.id: 0 for c in order})
    projects = {p["project"]: p for p in report.get("projects", [])}
    by_project: dict[str, dict[str, int]] = {}
    for line in report.get("allocations", []):
        cells = by_project.setdefault(line["project"], {})
        cells[line["commune"]] = cells.get(line["commune"], 0) + int(line["amount_cents"])
    for name, cells in by_project.items():
        p = projects.get(name, {})
        total = sum(cells.values())
        matrix.rows.append({"project": name, "cells": cells, "total": total, "budget": p.get("budget_cents", total),
                            "basis": p.get("basis", ""), "basis_used": p.get("basis_used", ""),
                            "fallback_used": bool(p.get("fallback_used"))})
        for commune, cents in cells.items():
            matrix.column_totals[commune] = matrix.column_totals.get(commune, 0) + cents
        matrix.grand_total += total
    return matrix


def project_basis_words(project: Mapping[str, Any], lang: str, *, used: bool = False) -> str:
    """A project's basis in words; a mixed project lists its parts with their weights."""
    if project.get("parts"):
        return " + ".join(
            fmt.percent(part["weight"], lang, 0) + " " + basis_words(str(part["basis_used" if used else "basis"]), lang)
            for part in project["parts"]
        )
    return basis_words(str(project["basis_used" if used else "basis"]), lang)


def explain_line(line: Mapping[str, Any], project: Mapping[str, Any], indicators: Sequence[Mapping[str, Any]],
                 lang: str) -> str:
    """A commune's amount in words; for a mixed project, one sentence per part with its amount."""
    if not line.get("parts"):
        return explain(line, project, indicators, lang)
    outcomes = {p["part"]: p for p in project.get("parts", [])}
    sentences = []
    for part in line["parts"]:
        outcome = outcomes.get(part["part"], {})
        part_project = {
            "basis": outcome.get("basis", part["basis"]), "budget_cents": outcome.get("budget_cents", 0),
            "fallback_cause": outcome.get("fallback_cause"), "min_coverage": outcome.get("min_coverage"),
        }
        part_line = {**part, "commune": line["commune"]}
        head = t(lang, "part", part=part["part"] + 1, weight=fmt.percent(part["weight"], lang, 0))
        amount = fmt.money(int(part["amount_cents"]), lang)
        sentences.append(f"{head} — {amount} : {explain(part_line, part_project, indicators, lang)}")
    return " ".join(sentences)


def commune_lines(report: Mapping[str, Any], commune: str, lang: str) -> list[dict[str, Any]]:
    """What the commune pays per project, each amount explained."""
    projects = {p["project"]: p for p in report.get("projects", [])}
    indicators = [r for r in report.get("indicators", []) if r["commune"] == commune]
    out = []
    for line in report.get("allocations", []):
        if line["commune"] != commune:
            continue
        project = projects.get(line["project"], {"basis": line["basis"], "budget_cents": 0})
        out.append({"project": line["project"], "amount_cents": int(line["amount_cents"]),
                    "basis": project_basis_words(project, lang), "share": line["share"],
                    "explanation": explain_line(line, project, indicators, lang)})
    return out


HISTORY_CHARTS: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    ("traffic_volume", ("in", "out")),
    ("traffic_p95", ("in", "out")),
    ("storage", (None,)),
    ("energy", (None,)),
    ("vcpu_hours", (None,)),
    ("memory_gib_hours", (None,)),
)


def history_charts(months: Sequence[str], usage_by_month: Mapping[str, Sequence[Mapping[str, Any]]], commune: str,
                   lang: str) -> list[dict[str, Any]]:
    """One chart per indicator over `months`, each with the text alternative (the same figures as a table)."""
    charts = []
    labels = [fmt.short_month(m, lang) for m in months]
    for indicator, directions in HISTORY_CHARTS:
        series: list[Series] = []
        texts: list[list[str]] = []
        for direction in directions:
            values: list[Decimal | None] = []
            shown: list[str] = []
            for month in months:
                row = next((r for r in usage_by_month.get(month, ()) if r["commune"] == commune
                            and r["indicator"] == indicator and (r.get("direction") or None) == direction), None)
                if row is None or row.get("value") is None:
                    values.append(None)
                    shown.append(t(lang, "nodata"))
                else:
                    values.append(Decimal(row["value"]))
                    shown.append(indicator_value(row, lang))
            series.append(Series(t(lang, direction) if direction else t(lang, indicator), values))
            texts.append(shown)
        title = t(lang, indicator)
        charts.append({"id": f"chart-{indicator}", "title": title, "categories": labels,
                       "series": [s.name for s in series], "texts": texts,
                       "svg": bar_chart(title, labels, series, texts, chart_id=f"chart-{indicator}")})
    return charts


def previous_months(month: str, count: int) -> list[str]:
    """`count` months ending with `month`, oldest first."""
    year, mon = (int(x) for x in month.split("-"))
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{mon:02d}")
        year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
    return out[::-1]


def shift_month(month: str, step: int) -> str:
    year, mon = (int(x) for x in month.split("-"))
    index = year * 12 + (mon - 1) + step
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


OVERVIEW_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("traffic_volume", "in"),
    ("traffic_volume", "out"),
    ("traffic_p95", "max"),
    ("availability", None),
    ("storage", None),
    ("energy", None),
    ("vcpu_hours", None),
    ("memory_gib_hours", None),
)


def indicator_pivot(indicators: Sequence[Mapping[str, Any]], communes: Sequence[CommuneRef], lang: str,
                    threshold: Decimal = Decimal("0.95")) -> dict[str, Any]:
    """Communes × main indicators, each cell the figure and its coverage: one screen instead of 88 rows."""
    present = [(i, d) for i, d in OVERVIEW_COLUMNS
               if any(r["indicator"] == i and (r.get("direction") or None) == d for r in indicators)]
    rows = []
    for c in sorted(communes, key=lambda c: c.insee):
        cells: list[dict[str, Any]] = []
        for indicator, direction in present:
            row = next((r for r in indicators if r["commune"] == c.id and r["indicator"] == indicator
                        and (r.get("direction") or None) == direction), None)
            if row is None:
                cells.append({"shown": t(lang, "nodata"), "coverage": None, "low": True})
            else:
                coverage = Decimal(row["coverage"])
                cells.append({"shown": indicator_value(row, lang), "coverage": coverage, "low": coverage < threshold})
        rows.append({"commune": c, "cells": cells})
    return {"columns": [indicator_words(i, d, lang) for i, d in present], "rows": rows}


def _why_finance(basis: str, cause: str | None, min_coverage: Any, indicators: Sequence[Mapping[str, Any]],
                 communes: Sequence[CommuneRef], lang: str) -> str:
    if cause == "zero_total":
        return t(lang, "why_zero")
    if cause == "coverage" and min_coverage is not None:
        threshold = Decimal(str(min_coverage))
        poor = []
        for c in sorted(communes, key=lambda c: c.insee):
            own = _coverage_of(indicators, c.id, basis)
            if own is not None and own < threshold:
                poor.append(f"{c.name} {fmt.percent(own, lang, 1)}" if own > 0 else f"{c.name} {t(lang, 'nodata')}")
        return t(lang, "why_coverage_all", threshold=fmt.percent(threshold, lang, 0), communes=", ".join(poor))
    return t(lang, "why_other")


def finance_reason(project: Mapping[str, Any], indicators: Sequence[Mapping[str, Any]],
                   communes: Sequence[CommuneRef], lang: str) -> str:
    """Why a project (or each of its parts) fell back, in the reader's language, for finance (who sees all)."""
    if not project.get("fallback_used"):
        return ""
    if project.get("parts"):
        return " ; ".join(
            t(lang, "part_short", part=part["part"] + 1) + " : "
            + _why_finance(str(part["basis"]), part.get("fallback_cause"), part.get("min_coverage"), indicators,
                           communes, lang)
            for part in project["parts"] if part.get("fallback_used")
        )
    return _why_finance(str(project["basis"]), project.get("fallback_cause"), project.get("min_coverage"),
                        indicators, communes, lang)
