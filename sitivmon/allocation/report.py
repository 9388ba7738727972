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
from sitivmon.allocation.engine import AllocationResult, UsageDocument

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
    allocations = [
        {
            "project": line.project,
            "commune": line.commune,
            "insee": line.insee,
            "basis": line.basis,
            "basis_value": dec_text(line.basis_value),
            "share": share_text(line.share),
            "amount_cents": line.amount_cents,
            "rounding_adjustment_cents": line.rounding_adjustment_cents,
            "fallback_used": line.fallback_used,
        }
        for line in result.lines
    ]
    projects = [
        {
            "project": p.project,
            "budget_cents": p.budget_cents,
            "basis": p.basis,
            "basis_used": p.basis_used,
            "fallback_used": p.fallback_used,
            "fallback_reason": p.fallback_reason,
        }
        for p in result.projects
    ]
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


def scope_report(report: dict[str, Any], commune: str) -> dict[str, Any]:
    """The report as a commune-scoped reader may see it: only that commune's indicator and allocation rows."""
    out = dict(report)
    out["indicators"] = [r for r in report["indicators"] if r["commune"] == commune]
    out["allocations"] = [r for r in report["allocations"] if r["commune"] == commune]
    if "changes" in report:
        changes = dict(report["changes"])
        changes["allocations"] = [r for r in changes.get("allocations", []) if r["commune"] == commune]
        changes["indicators"] = [r for r in changes.get("indicators", []) if r["commune"] == commune]
        out["changes"] = changes
    return out
