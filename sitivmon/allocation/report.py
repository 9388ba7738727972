"""The month's report as one JSON-native document: header, indicators, allocations, projects, controls.

Every export format is rendered from this document, and a closed month is stored as it, so a frozen
revision renders to the same bytes years later whatever the code computes by then.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from sitivmon import __version__
from sitivmon.allocation.arithmetic import fraction_to_decimal
from sitivmon.allocation.config import parse_basis
from sitivmon.allocation.engine import (
    AllocationLine,
    AllocationResult,
    IndicatorRow,
    ProjectOutcome,
    UsageDocument,
    measure,
)

SHARE_PLACES = 10
Status = Literal["provisional", "final"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dec_text(value: Decimal) -> str:
    """Plain decimal text (no exponent): `1E+3` -> `1000`, `0.50` stays `0.50`."""
    return f"{value:f}"


def share_text(value: Fraction) -> str:
    return dec_text(fraction_to_decimal(value, SHARE_PLACES))


def _utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """Gaps and other pass-through values made JSON-native (Decimal as text, never float)."""
    if isinstance(value, Decimal):
        return dec_text(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def period_header(usage: UsageDocument) -> dict[str, Any]:
    return {
        "month": usage.month,
        "timezone": usage.timezone,
        "period": {
            "start": usage.period_start.isoformat(),
            "end": usage.period_end.isoformat(),
            "start_utc": _utc(usage.period_start),
            "end_utc": _utc(usage.period_end),
        },
    }


def indicator_rows(usage: UsageDocument) -> list[dict[str, Any]]:
    """The usage figures per commune with coverage and gaps, in INSEE order, values as exact text."""
    return [
        {
            "commune": r.commune,
            "insee": r.insee,
            "indicator": r.indicator,
            "direction": r.direction,
            "value": None if r.value is None else dec_text(r.value),
            "unit": r.unit,
            "coverage": dec_text(r.coverage),
            "gaps": _plain(list(r.gaps)),
        }
        for r in sorted(usage.rows, key=lambda r: (r.insee, r.indicator, r.direction or ""))
    ]


def build_report(
    usage: UsageDocument,
    result: AllocationResult,
    *,
    config_sha256: str | None,
    allocation_sha256: str,
    usage_sha256: str | None = None,
    status: Status = "provisional",
    revision: int = 0,
    version: str = __version__,
) -> dict[str, Any]:
    """Assemble the report document. `revision` is 0 while the month is provisional."""
    header: dict[str, Any] = {
        **period_header(usage),
        "sitivmon_version": version,
        "config_sha256": config_sha256,
        "allocation_sha256": allocation_sha256,
        "status": status,
        "revision": revision,
    }
    if usage_sha256 is not None:
        header["usage_sha256"] = usage_sha256
    indicators = indicator_rows(usage)
    allocations = [_allocation_row(line) for line in result.lines]
    projects = [_project_row(p) for p in result.projects]
    controls = [
        {
            "project": p.project,
            "budget_cents": p.budget_cents,
            "sum_cents": p.total_cents,
            "difference_cents": p.total_cents - p.budget_cents,
            "ok": p.balanced,
        }
        for p in result.projects
    ]
    return {
        "header": header,
        "indicators": indicators,
        "allocations": allocations,
        "projects": projects,
        "controls": controls,
    }


def _allocation_row(line: AllocationLine) -> dict[str, Any]:
    row: dict[str, Any] = {
        "project": line.project,
        "commune": line.commune,
        "insee": line.insee,
        "basis": line.basis,
        "basis_value": dec_text(line.basis_value) if not line.parts else share_text(line.share),
        "share": share_text(line.share),
        "amount_cents": line.amount_cents,
        "rounding_adjustment_cents": line.rounding_adjustment_cents,
        "fallback_used": line.fallback_used,
    }
    if line.parts:  # mixed project: the amount is the sum of these, each the commune's share of one part
        row["parts"] = [
            {
                "part": p.part,
                "weight": dec_text(p.weight),
                "basis": p.basis,
                "basis_value": dec_text(p.basis_value),
                "share": share_text(p.share),
                "amount_cents": p.amount_cents,
                "rounding_adjustment_cents": p.rounding_adjustment_cents,
                "fallback_used": p.fallback_used,
            }
            for p in line.parts
        ]
    return row


def _project_row(p: ProjectOutcome) -> dict[str, Any]:
    """Only the fields that carry something are added to the base row, so that months closed by an
    earlier version compare equal when no figure moved."""
    row: dict[str, Any] = {
        "project": p.project,
        "budget_cents": p.budget_cents,
        "basis": p.basis,
        "basis_used": p.basis_used,
        "fallback_used": p.fallback_used,
        "fallback_reason": p.fallback_reason,
    }
    if p.fallback_used and p.fallback_cause is not None:
        row["fallback_cause"] = p.fallback_cause
        if p.min_coverage is not None:
            row["min_coverage"] = dec_text(p.min_coverage)
    if p.parts:
        row["parts"] = [
            {
                "part": o.part,
                "weight": dec_text(o.weight),
                "budget_cents": o.budget_cents,
                "basis": o.basis,
                "basis_used": o.basis_used,
                "fallback_used": o.fallback_used,
                "fallback_cause": o.fallback_cause,
                "fallback_reason": o.fallback_reason,
                "min_coverage": dec_text(o.min_coverage),
            }
            for o in p.parts
        ]
    if p.annual_budget_cents is not None:
        row["annual_budget_cents"] = p.annual_budget_cents
        row["year_to_date_budget_cents"] = p.year_to_date_budget_cents
    return row


# Header fields that say which revision a report is, or where it came from, rather than what it says.
REVISION_FIELDS = ("status", "revision", "closed_at")
PROVENANCE_FIELDS = ("sitivmon_version", "config_sha256", "allocation_sha256", "usage_sha256")


def substance(report: dict[str, Any]) -> dict[str, Any]:
    """What a revision is about: the period and the figures.

    Provenance (hashes, version) is left out so that editing an unrelated part of the configuration, or
    upgrading sitivmon, does not make a closed month look changed when no figure moved.
    """
    skip = REVISION_FIELDS + PROVENANCE_FIELDS
    header = {k: v for k, v in report["header"].items() if k not in skip}
    body = {k: v for k, v in report.items() if k not in ("header", "changes")}
    return {"header": header, **body}


def own_coverage(indicators: list[dict[str, Any]], commune: str, basis: str) -> Decimal | None:
    """The commune's coverage of a usage basis, as the engine measures it (None for a key basis)."""
    try:
        parsed = parse_basis(basis)
    except ValueError:
        return None
    if parsed.kind != "usage" or parsed.indicator is None:
        return None
    rows = tuple(
        IndicatorRow(
            commune=commune,
            insee=str(r["insee"]),
            indicator=str(r["indicator"]),
            direction=r["direction"],
            value=None if r["value"] is None else Decimal(str(r["value"])),
            unit=str(r["unit"]),
            coverage=Decimal(str(r["coverage"])),
        )
        for r in indicators
        if r["commune"] == commune
    )
    epoch = datetime.fromtimestamp(0, UTC)
    usage = UsageDocument(month="", timezone="UTC", period_start=epoch, period_end=epoch, rows=rows)
    return measure(usage, commune, parsed.indicator, parsed.direction).coverage


def scoped_fallback_reason(
    project: dict[str, Any], commune: str, indicators: list[dict[str, Any]] | None
) -> str | None:
    """Why a project fell back, told to one commune from structured fields only.

    The engine's own reason names every commune under the threshold with its coverage; a commune must
    not read that about its neighbours, so the text is rebuilt here from the project's basis, the basis
    actually applied and the reader's own coverage, never copied or edited.
    """
    if not project.get("fallback_used"):
        return None
    basis, used = str(project["basis"]), str(project["basis_used"])
    text = (
        f"{basis} did not qualify this month (a paying commune's coverage under the project's threshold, "
        f"or a zero total), so {used} applies to every paying commune"
    )
    coverage = None if indicators is None else own_coverage(indicators, commune, basis)
    if coverage is not None:
        text += f"; {commune}: coverage {(coverage * 100).quantize(Decimal('0.1'))} %"
    return text


def _scope_project(
    project: dict[str, Any], commune: str, indicators: list[dict[str, Any]] | None
) -> dict[str, Any]:
    out = {
        "project": project["project"],
        "budget_cents": project["budget_cents"],
        "basis": project["basis"],
        "basis_used": project["basis_used"],
        "fallback_used": project["fallback_used"],
        "fallback_reason": scoped_fallback_reason(project, commune, indicators),
    }
    # Structured fields name no commune: copied field by field (never the parts' free-text reasons).
    for name in ("fallback_cause", "min_coverage", "annual_budget_cents", "year_to_date_budget_cents"):
        if name in project:
            out[name] = project[name]
    if "parts" in project:
        out["parts"] = [
            {k: part[k] for k in ("part", "weight", "budget_cents", "basis", "basis_used", "fallback_used",
                                   "fallback_cause", "min_coverage")}
            for part in project["parts"]
        ]
    return out


def scope_report(report: dict[str, Any], commune: str) -> dict[str, Any]:
    """The report as a commune-scoped reader may see it: nothing about another commune, in any field.

    Built by whitelisting rather than by filtering out: rows are the commune's own; projects and controls
    are those the commune pays into (a project's name may itself name a commune); each project's fallback
    reason is rebuilt for the commune (`scoped_fallback_reason`); a revision's changes keep only the
    commune's rows and projects, and their project states are scoped the same way.
    """
    indicators = [dict(r) for r in report["indicators"] if r["commune"] == commune]
    allocations = [dict(r) for r in report["allocations"] if r["commune"] == commune]
    paid = {r["project"] for r in allocations}
    changes_in = report.get("changes")
    changes_allocations: list[dict[str, Any]] = []
    if isinstance(changes_in, dict):
        changes_allocations = [dict(r) for r in changes_in.get("allocations", []) if r["commune"] == commune]
        paid |= {r["project"] for r in changes_allocations}
    out: dict[str, Any] = {
        "header": dict(report["header"]),
        "indicators": indicators,
        "allocations": allocations,
        "projects": [_scope_project(p, commune, indicators) for p in report["projects"] if p["project"] in paid],
        "controls": [dict(c) for c in report["controls"] if c["project"] in paid],
    }
    if isinstance(changes_in, dict):
        out["changes"] = {
            "previous_revision": changes_in.get("previous_revision"),
            "previous_sha256": changes_in.get("previous_sha256"),
            "header": dict(changes_in.get("header", {})),
            "allocations": changes_allocations,
            "indicators": [dict(r) for r in changes_in.get("indicators", []) if r["commune"] == commune],
            "projects": [
                {
                    "project": c["project"],
                    # the previous revision's coverage is not at hand: its reason goes without the figure
                    "before": None if c.get("before") is None else _scope_project(c["before"], commune, None),
                    "after": None if c.get("after") is None else _scope_project(c["after"], commune, indicators),
                }
                for c in changes_in.get("projects", [])
                if c["project"] in paid
            ],
        }
    return out
