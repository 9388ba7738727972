"""From a month's usage document and the allocation config to amounts per project and commune.

Pure: no file, no clock. The usage document is validated here (month, period, communes) because an
allocation computed on the wrong month or on a partial commune list must never reach finance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from sitivmon.allocation.arithmetic import Part, Split, exact, largest_remainder
from sitivmon.allocation.config import (
    AllocationConfig,
    BasisPart,
    Project,
    percent_text,
)
from sitivmon.config.model import Commune
from sitivmon.usage.periods import month_range, parse_month
from sitivmon.usage.registry import INDICATORS, IndicatorRegistry

MONTH_RE = re.compile(r"\A\d{4}-(0[1-9]|1[0-2])\Z")
"""Shape of a month label, anchored at both ends (`$` would accept a final newline); a label entering
from outside goes through `sitivmon.usage.periods.parse_month`, which also bounds the year."""


MAX_USAGE_VALUE = 10**24
"""Largest figure a usage document may carry (a month of 10 Gbit/s is ~3.4e15 bytes): weights become
exact fractions, so an absurd exponent must be refused here rather than expanded."""
USAGE_DECIMALS = 12


class UsageDocumentError(ValueError):
    """A usage document that cannot be allocated from, with every located reason."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = list(errors)
        super().__init__("\n".join(f"{source}: {e}" for e in self.errors))


@dataclass(frozen=True, slots=True)
class IndicatorRow:
    commune: str
    insee: str
    indicator: str
    direction: str | None
    value: Decimal | None
    unit: str
    coverage: Decimal
    gaps: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class UsageDocument:
    month: str
    timezone: str
    period_start: datetime
    period_end: datetime
    rows: tuple[IndicatorRow, ...]

    def row(self, commune: str, indicator: str, direction: str | None) -> IndicatorRow | None:
        for r in self.rows:
            if r.commune == commune and r.indicator == indicator and r.direction == direction:
                return r
        return None


def month_bounds(month: str, timezone: str) -> tuple[datetime, datetime]:
    """First instant of the month and of the next one, as local aware datetimes (usage store's calendar)."""
    span = month_range(month, timezone)
    tz = ZoneInfo(timezone)
    return datetime.fromtimestamp(span.start, tz), datetime.fromtimestamp(span.end, tz)


def load_usage_json(text: str | bytes) -> Any:
    """Parse a usage document keeping every non-integer number as Decimal (never float)."""
    return json.loads(text, parse_float=Decimal)


def communes_from_usage(data: Any, source: str = "usage") -> list[Commune]:
    """The communes named in a usage document (for `allocate` without a root config).

    An INSEE code is the tie-break of every split and the commune's identity for finance: two communes
    sharing one is refused here, with the rows that say so, rather than deep in the arithmetic.
    """
    seen: dict[str, Commune] = {}
    owner: dict[str, tuple[str, int]] = {}
    reported: set[tuple[str, str]] = set()
    errors: list[str] = []
    rows = data.get("indicators") if isinstance(data, Mapping) else None
    for i, r in enumerate(rows if isinstance(rows, list) else []):
        if isinstance(r, Mapping) and isinstance(r.get("commune"), str) and isinstance(r.get("insee"), str):
            commune, insee = r["commune"], r["insee"]
            first = owner.setdefault(insee, (commune, i))
            if first[0] != commune:
                if (insee, commune) not in reported:  # once per commune, not once per row
                    reported.add((insee, commune))
                    errors.append(
                        f"indicators[{i}].insee: {insee!r} of {commune} is already the INSEE code of"
                        f" {first[0]} (indicators[{first[1]}])"
                    )
                continue
            if commune in seen:
                continue
            try:
                seen[commune] = Commune(id=commune, name=commune, insee=insee)
            except ValidationError:
                errors.append(f"indicators[{i}]: {commune!r} with INSEE {insee!r} is not a commune id and INSEE code")
    if errors:
        raise UsageDocumentError(source, errors)
    return list(seen.values())


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return d


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 date-time, got {value!r}")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return dt


def parse_usage(
    data: Any,
    communes: Sequence[Commune],
    *,
    month: str | None = None,
    timezone: str | None = None,
    source: str = "usage",
) -> UsageDocument:
    """Validate a usage document (as parsed by `load_usage_json`) for allocation; raise with all reasons.

    `month` and `timezone`, when given, are what the caller expects: a document of another month, or
    whose period is not that month in that timezone, is refused rather than allocated.
    """
    if not isinstance(data, Mapping):
        raise UsageDocumentError(source, ["(top level): expected a JSON object"])
    errors: list[str] = []
    doc_month = data.get("month")
    if not isinstance(doc_month, str) or not MONTH_RE.match(doc_month):
        raise UsageDocumentError(source, [f"month: expected YYYY-MM, got {doc_month!r}"])
    try:
        parse_month(doc_month)  # the year's range
    except ValueError as exc:
        raise UsageDocumentError(source, [f"month: {exc}"]) from None
    if month is not None and doc_month != month:
        raise UsageDocumentError(source, [f"month: the file is for {doc_month}, not {month}"])
    tzname = data.get("timezone")
    if not isinstance(tzname, str):
        raise UsageDocumentError(source, [f"timezone: expected a name like Europe/Paris, got {tzname!r}"])
    try:
        start, end = month_bounds(doc_month, tzname)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageDocumentError(source, [f"timezone: unknown timezone {tzname!r}"]) from None
    if timezone is not None and tzname != timezone:
        errors.append(f"timezone: the file uses {tzname}, the configuration {timezone}")
    period = data.get("period")
    if not isinstance(period, Mapping):
        errors.append("period: expected an object with start and end")
    else:
        for name, expected in (("start", start), ("end", end)):
            try:
                got = _instant(period.get(name))
            except ValueError as exc:
                errors.append(f"period.{name}: {exc}")
                continue
            if got != expected:
                errors.append(
                    f"period.{name}: {period.get(name)} is not the {name} of {doc_month} in {tzname} "
                    f"({expected.isoformat()})"
                )

    known = {c.id: c for c in communes}
    raw_rows = data.get("indicators")
    rows: list[IndicatorRow] = []
    if not isinstance(raw_rows, list):
        errors.append("indicators: expected a list")
        raw_rows = []
    seen: dict[tuple[str, str, str | None], int] = {}
    for i, r in enumerate(raw_rows):
        where = f"indicators[{i}]"
        if not isinstance(r, Mapping):
            errors.append(f"{where}: expected an object")
            continue
        commune, insee, indicator, direction = (
            r.get("commune"),
            r.get("insee"),
            r.get("indicator"),
            r.get("direction"),
        )
        if commune not in known:
            errors.append(f"{where}.commune: unknown commune {commune!r}")
            continue
        assert isinstance(commune, str)
        if insee != known[commune].insee:
            errors.append(f"{where}.insee: {insee!r} is not the INSEE code of {commune} ({known[commune].insee})")
        if not isinstance(indicator, str) or not (direction is None or isinstance(direction, str)):
            errors.append(f"{where}: indicator must be a string and direction a string or null")
            continue
        ident = (commune, indicator, direction)
        if ident in seen:
            errors.append(f"{where}: same commune, indicator and direction as indicators[{seen[ident]}]")
            continue
        seen[ident] = i
        try:
            value = None if r.get("value") is None else _decimal(r.get("value"))  # null: no data at all
            if value is not None and value < 0:
                raise ValueError(f"must not be negative, got {value}")
            if value is not None and (value > MAX_USAGE_VALUE or value.as_tuple().exponent < -USAGE_DECIMALS):  # type: ignore[operator]
                raise ValueError(f"{value} is out of range: at most {MAX_USAGE_VALUE:,} with {USAGE_DECIMALS} decimals")
        except ValueError as exc:
            errors.append(f"{where}.value: {exc}")
            continue
        try:
            coverage = _decimal(r.get("coverage"))
            if not (0 <= coverage <= 1):
                raise ValueError(f"must be between 0 and 1, got {coverage}")
        except ValueError as exc:
            errors.append(f"{where}.coverage: {exc}")
            continue
        gaps = r.get("gaps") or []
        if not isinstance(gaps, list) or not all(isinstance(g, Mapping) for g in gaps):
            errors.append(f"{where}.gaps: expected a list of {{start, end}} objects")
            continue
        unit = r.get("unit")
        rows.append(
            IndicatorRow(
                commune=commune,
                insee=known[commune].insee,
                indicator=indicator,
                direction=direction,
                value=value,
                unit=unit if isinstance(unit, str) else "",
                coverage=coverage,
                gaps=tuple(gaps),
            )
        )
    present = {r.commune for r in rows} | {c for c, _, _ in seen}
    missing = [c for c in known if c not in present]
    if missing:
        errors.append(f"indicators: no rows for commune(s) {', '.join(missing)}")
    if errors:
        raise UsageDocumentError(source, errors)
    return UsageDocument(month=doc_month, timezone=tzname, period_start=start, period_end=end, rows=tuple(rows))


# ---------------------------------------------------------------- allocation


@dataclass(frozen=True, slots=True)
class Measure:
    """A commune's figure for a usage basis; `coverage` is 0 when the document has no row for it."""

    value: Decimal
    coverage: Decimal


@dataclass(frozen=True, slots=True)
class PartLine:
    """A commune's amount for one part of a mixed project (its share is of that part's budget)."""

    part: int
    basis: str  # the basis applied (the fallback key when the part fell back)
    weight: Decimal
    basis_value: Decimal
    share: Fraction
    amount_cents: int
    rounding_adjustment_cents: int
    fallback_used: bool


@dataclass(frozen=True, slots=True)
class AllocationLine:
    project: str
    commune: str
    insee: str
    basis: str
    basis_value: Decimal
    share: Fraction
    amount_cents: int
    rounding_adjustment_cents: int
    fallback_used: bool
    parts: tuple[PartLine, ...] = ()  # set for a mixed project: the amount is the sum of its parts


FallbackCause = Literal["coverage", "zero_total"]


@dataclass(frozen=True, slots=True)
class PartOutcome:
    """How one part of a mixed project was split, and why it fell back if it did."""

    part: int
    weight: Decimal
    budget_cents: int
    basis: str
    basis_used: str
    fallback_used: bool
    fallback_cause: FallbackCause | None
    fallback_reason: str | None
    min_coverage: Decimal


@dataclass(frozen=True, slots=True)
class ProjectOutcome:
    project: str
    budget_cents: int
    basis: str
    basis_used: str
    fallback_used: bool
    fallback_reason: str | None
    total_cents: int
    # Structured: why it fell back (so a reader can be told without the text naming other communes).
    fallback_cause: FallbackCause | None = None
    min_coverage: Decimal | None = None
    parts: tuple[PartOutcome, ...] = ()  # set for a mixed project
    annual_budget_cents: int | None = None
    year_to_date_budget_cents: int | None = None

    @property
    def balanced(self) -> bool:
        return self.total_cents == self.budget_cents


@dataclass(frozen=True, slots=True)
class AllocationResult:
    month: str
    lines: tuple[AllocationLine, ...]
    projects: tuple[ProjectOutcome, ...] = field(default=())

    @property
    def balanced(self) -> bool:
        return all(p.balanced for p in self.projects)


def measure(
    usage: UsageDocument,
    commune: str,
    indicator: str,
    direction: str | None,
    indicators: IndicatorRegistry = INDICATORS,
) -> Measure:
    """A commune's value for `usage:<indicator>[:<direction>]`, read as the indicator's registry entry says
    (`AllocationRule`): e.g. without a direction `traffic_volume` is in plus out, covered as well as
    the worse of the two, and `traffic_p95` is the `max` row. A missing row counts as no coverage.
    """
    rows = indicators.basis_rows(indicator, direction)
    if len(rows) > 1:
        parts = [usage.row(commune, indicator, d) for d in rows]
        with exact():  # bounded at parse (MAX_USAGE_VALUE): a sum of rows never rounds
            value = sum((p.value for p in parts if p is not None and p.value is not None), Decimal(0))
        coverage = min((p.coverage if p is not None else Decimal(0)) for p in parts)
        return Measure(value=value, coverage=coverage)
    row = usage.row(commune, indicator, rows[0])
    if row is None or row.value is None:
        return Measure(value=Decimal(0), coverage=Decimal(0))
    return Measure(value=row.value, coverage=row.coverage)


def _pct(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.1'))} %"


def _split(
    budget_cents: int,
    communes: Sequence[str],
    weights: Mapping[str, Decimal],
    known: Mapping[str, Commune],
) -> list[tuple[str, Split]]:
    order = sorted(communes, key=lambda c: known[c].insee)
    splits = largest_remainder(budget_cents, [Part(known[c].insee, weights[c]) for c in order])
    return list(zip(order, splits, strict=True))


@dataclass(frozen=True, slots=True)
class _PartResult:
    outcome: PartOutcome
    weights: Mapping[str, Decimal]
    splits: list[tuple[str, Split]]


def _allocate_part(
    index: int, part: BasisPart, budget_cents: int, project: Project, config: AllocationConfig,
    usage: UsageDocument, known: Mapping[str, Commune], indicators: IndicatorRegistry,
) -> _PartResult:
    """One basis over one budget: a key as is, or a usage indicator unless it must fall back."""
    basis = str(part.basis)
    reason: str | None = None
    cause: FallbackCause | None = None
    if part.basis.kind == "key":
        assert part.basis.key is not None
        shares = config.keys[part.basis.key].shares
        weights = {c: shares[c] for c in project.communes}
        used = basis
    else:
        assert part.basis.indicator is not None and part.fallback is not None
        measures = {
            c: measure(usage, c, part.basis.indicator, part.basis.direction, indicators) for c in project.communes
        }
        poor = [c for c, m in measures.items() if m.coverage < part.min_coverage]
        total_is_zero = not any(m.value for m in measures.values())  # values are >= 0
        if poor:
            detail = ", ".join(
                f"{c} {_pct(measures[c].coverage)}" if measures[c].coverage > 0 else f"{c} no data"
                for c in sorted(poor, key=lambda c: known[c].insee)
            )
            reason, cause = f"coverage below {_pct(part.min_coverage)}: {detail}", "coverage"
        elif total_is_zero:
            reason, cause = f"{basis} totals zero over the project's communes", "zero_total"
        if reason is None:
            weights = {c: m.value for c, m in measures.items()}
            used = basis
        else:
            shares = config.keys[part.fallback].shares
            weights = {c: shares[c] for c in project.communes}
            used = f"key:{part.fallback}"
    outcome = PartOutcome(
        part=index, weight=part.weight, budget_cents=budget_cents, basis=basis, basis_used=used,
        fallback_used=reason is not None, fallback_cause=cause, fallback_reason=reason,
        min_coverage=part.min_coverage,
    )
    return _PartResult(outcome, weights, _split(budget_cents, project.communes, weights, known))


def allocate(
    config: AllocationConfig,
    usage: UsageDocument,
    communes: Sequence[Commune],
    *,
    indicators: IndicatorRegistry = INDICATORS,
) -> AllocationResult:
    """Split every project's budget for the month; each project's lines sum exactly to its budget.

    A usage basis falls back to its key when a paying commune's coverage is under the threshold (or it
    has no figure at all), or when the indicator totals zero; the outcome says which and why. A mixed
    project's budget is first split into its parts to the cent (largest remainder, ties to the earlier
    part), each part by its own basis; a commune's amount is the sum of its parts. `indicators` says
    how a usage basis reads the document (the built-in registry unless told).
    """
    known = {c.id: c for c in communes}
    lines: list[AllocationLine] = []
    outcomes: list[ProjectOutcome] = []
    for project in config.projects:
        budget = project.budget_for(usage.month)
        parts = project.basis_parts
        if len(parts) == 1:
            part_budgets = [budget]
        else:
            part_budgets = [
                s.amount_cents for s in largest_remainder(budget, [Part(f"{k:04d}", p.weight) for k, p in
                                                                   enumerate(parts)])
            ]
        results = [
            _allocate_part(k, part, part_budgets[k], project, config, usage, known, indicators)
            for k, part in enumerate(parts)
        ]
        project_lines = _project_lines(project, budget, results, known)
        lines.extend(project_lines)
        first = results[0].outcome
        fell_back = [r.outcome for r in results if r.outcome.fallback_used]
        outcomes.append(
            ProjectOutcome(
                project=project.name,
                budget_cents=budget,
                basis=project.basis_text,
                basis_used=first.basis_used if len(results) == 1 else " + ".join(
                    f"{percent_text(r.outcome.weight)} {r.outcome.basis_used}" for r in results),
                fallback_used=bool(fell_back),
                fallback_reason="; ".join(
                    (f"part {o.part + 1} ({o.basis}): " if len(results) > 1 else "") + (o.fallback_reason or "")
                    for o in fell_back
                ) or None,
                total_cents=sum(line.amount_cents for line in project_lines),
                fallback_cause=fell_back[0].fallback_cause if fell_back else None,
                min_coverage=first.min_coverage if len(results) == 1 and project.basis.kind == "usage" else None,
                parts=tuple(r.outcome for r in results) if len(results) > 1 else (),
                annual_budget_cents=project.annual_budget_cents,
                year_to_date_budget_cents=(
                    project.year_to_date_cents(usage.month) if project.annual_budget_cents is not None else None
                ),
            )
        )
    return AllocationResult(month=usage.month, lines=tuple(lines), projects=tuple(outcomes))


def _project_lines(
    project: Project, budget: int, results: Sequence[_PartResult], known: Mapping[str, Commune]
) -> list[AllocationLine]:
    if len(results) == 1:
        only = results[0]
        return [
            AllocationLine(
                project=project.name, commune=c, insee=sp.insee, basis=only.outcome.basis_used,
                basis_value=only.weights[c], share=sp.share, amount_cents=sp.amount_cents,
                rounding_adjustment_cents=sp.rounding_adjustment_cents, fallback_used=only.outcome.fallback_used,
            )
            for c, sp in only.splits
        ]
    by_commune: dict[str, list[PartLine]] = {}
    for r in results:
        for c, sp in r.splits:
            by_commune.setdefault(c, []).append(
                PartLine(
                    part=r.outcome.part, basis=r.outcome.basis_used, weight=r.outcome.weight,
                    basis_value=r.weights[c], share=sp.share, amount_cents=sp.amount_cents,
                    rounding_adjustment_cents=sp.rounding_adjustment_cents, fallback_used=r.outcome.fallback_used,
                )
            )
    out = []
    for c in sorted(by_commune, key=lambda c: known[c].insee):
        parts = tuple(by_commune[c])
        amount = sum(p.amount_cents for p in parts)
        share = Fraction(amount, budget) if budget else Fraction(0)
        out.append(
            AllocationLine(
                project=project.name, commune=c, insee=known[c].insee, basis="mixed",
                basis_value=Decimal(amount), share=share, amount_cents=amount,
                rounding_adjustment_cents=sum(p.rounding_adjustment_cents for p in parts),
                fallback_used=any(p.fallback_used for p in parts), parts=parts,
            )
        )
    return out
