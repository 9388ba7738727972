"""Monthly usage indicators per commune, computed from stored buckets (pure functions + one loader).

Every indicator carries its coverage (samples received / expected, capped at 1 per bucket, averaged
over every bucket of the period and every series that contributes) and its gaps (runs of buckets
that were never written, carry no sample, or are flagged gap/unknown), so that a figure used to split
money always says how much of it was observed.

Number formats (see docs/usage.md): integers stay integers (bytes, joules, bucket counts); anything
else is a `Decimal` quantised with ROUND_HALF_EVEN (coverage: ROUND_FLOOR, never overstated), and is
emitted in JSON as a decimal *string*, so that no JSON parser turns it into a binary float.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sitivmon.config.model import MAX_POLL_INTERVAL_S, Commune
from sitivmon.readings import Quantity, UsageKey

from .buckets import COUNTERS
from .periods import BUCKET_S, Month
from .port import SeriesMonth, UsageReader
from .registry import INDICATORS, DetailValue, IndicatorRegistry
from .scans import Gap, Group, scan_gauge
from .scans import Held as Held  # re-exported, as are the three below: the live gauges, benchmarks and tests
from .scans import nearest_rank_p95 as nearest_rank_p95
from .scans import scan_series as scan_series
from .scans import series_sum as series_sum


@dataclass(slots=True)
class Indicator:
    commune: str
    indicator: str
    direction: str | None
    value: int | Decimal | None
    unit: str
    coverage: Decimal
    gaps: list[Gap]
    series: int
    detail: dict[str, DetailValue] = field(default_factory=dict)


def compute_indicators(
    series: Mapping[UsageKey, SeriesMonth],
    communes: Sequence[str],
    start: int,
    n: int,
    held: Mapping[UsageKey, Held] | None = None,
    registry: IndicatorRegistry = INDICATORS,
) -> list[Indicator]:
    """Every indicator of `registry` for each commune in `communes`, over the n buckets from `start`.

    `held`: where each gauge series stood at `start` (`lead_in`), so that a reading taken just before
    the period covers its first buckets as it would inside the period. Each quantity's series are
    scanned once per commune, whatever the number of indicators built on them.
    """
    by_commune: dict[tuple[str, Quantity], list[SeriesMonth]] = {}
    for key, sm in sorted(series.items(), key=lambda kv: (kv[0].commune, kv[0].subject)):
        by_commune.setdefault((key.commune, key.quantity), []).append(sm)
    out: list[Indicator] = []
    for commune in communes:
        groups: dict[Quantity, Group] = {}

        def group(q: Quantity, commune: str = commune, groups: dict[Quantity, Group] = groups) -> Group:
            if q not in groups:
                groups[q] = Group(by_commune.get((commune, q), []), start, n, q not in COUNTERS, held)
            return groups[q]

        out.extend(_rows(commune, group, registry))
    return out


def compute_indicators_folded(
    pieces: Iterable[Mapping[UsageKey, SeriesMonth]],
    communes: Sequence[str],
    start: int,
    n: int,
    held: Mapping[UsageKey, Held] | None = None,
    registry: IndicatorRegistry = INDICATORS,
) -> list[Indicator]:
    """`compute_indicators` over series given in pieces (`UsageStorePort.month_series_batches`): each
    piece is scanned into its communes' folding groups (`Group.folding`) and can be dropped, so the
    buckets of one piece are held at a time, not the month's. Same rows, same figures, same gaps.

    The registry's aggregation functions must read a group through its methods and scans (the
    built-in ones do): a folded group's `series` carry no segments.
    """
    wanted = set(communes)
    quantities = registry.quantities()
    groups: dict[tuple[str, Quantity], Group] = {}
    for piece in pieces:
        _fold_piece(groups, piece, wanted, quantities, start, n, held)
        del piece  # before the next piece is read: one piece's buckets in memory, not two
    for g in groups.values():
        g.finish()
    return indicators_of_groups(groups, communes, start, n, held, registry)


def indicators_of_groups(
    groups: dict[tuple[str, Quantity], Group],
    communes: Sequence[str],
    start: int,
    n: int,
    held: Mapping[UsageKey, Held] | None = None,
    registry: IndicatorRegistry = INDICATORS,
) -> list[Indicator]:
    """Every indicator row of `registry` for each commune, from its groups by quantity made elsewhere
    (folded, or joined from weeks by the incremental refresh); a quantity without a group has none."""
    out: list[Indicator] = []
    for commune in communes:

        def group(q: Quantity, commune: str = commune) -> Group:
            g = groups.get((commune, q))
            if g is None:
                g = groups[(commune, q)] = Group([], start, n, q not in COUNTERS, held)
            return g

        out.extend(_rows(commune, group, registry))
    return out


def _fold_piece(
    groups: dict[tuple[str, Quantity], Group],
    piece: Mapping[UsageKey, SeriesMonth],
    wanted: set[str],
    quantities: frozenset[Quantity],
    start: int,
    n: int,
    held: Mapping[UsageKey, Held] | None,
) -> None:
    """Fold one piece into the communes' groups (a function: its references to the piece end with it)."""
    by: dict[tuple[str, Quantity], list[SeriesMonth]] = {}
    for key, sm in piece.items():
        if key.commune in wanted and key.quantity in quantities:
            by.setdefault((key.commune, key.quantity), []).append(sm)
    for (commune, q), sms in by.items():
        g = groups.get((commune, q))
        if g is None:
            g = groups[(commune, q)] = Group.folding(start, n, q not in COUNTERS)
        g.fold(sms, held)


def _rows(commune: str, group: Callable[[Quantity], Group], registry: IndicatorRegistry) -> Iterator[Indicator]:
    """Every indicator row of `registry` for one commune, from its group for each quantity."""
    for spec in registry:
        figures = spec.aggregate({q: group(q) for q in spec.quantities})
        if figures.keys() != set(spec.directions):
            raise ValueError(
                f"indicator {spec.name!r} gave rows {sorted(map(str, figures))},"
                f" not its directions {sorted(map(str, spec.directions))}"
            )
        for direction in spec.directions:
            fig = figures[direction]
            seen = fig.observed
            detail: dict[str, DetailValue] = dict(fig.detail)
            if seen.flags:
                detail.setdefault("flagged_buckets", seen.flags)
            yield Indicator(
                commune,
                spec.name,
                direction,
                fig.value,
                spec.unit,
                seen.coverage,
                seen.gaps,
                seen.series,
                detail,
            )


# -- the document ------------------------------------------------------------------------------------


def _json_num(v: int | Decimal | None) -> int | str | None:
    if v is None or isinstance(v, int):
        return v
    return str(v)


def indicator_dict(ind: Indicator, month: Month, insee: str) -> dict[str, Any]:
    return {
        "commune": ind.commune,
        "insee": insee,
        "indicator": ind.indicator,
        "direction": ind.direction,
        "value": _json_num(ind.value),
        "unit": ind.unit,
        "coverage": str(ind.coverage),
        "series": ind.series,
        "gaps": [
            {
                "subject": g.subject,
                "start": month.local_iso(g.start),
                "end": month.local_iso(g.end),
                "buckets": g.buckets,
                "reasons": list(g.reasons),
            }
            for g in ind.gaps
        ],
        "detail": ind.detail,
    }


LEAD_IN_BUCKETS = -(-MAX_POLL_INTERVAL_S // BUCKET_S) + 1
"""Buckets read before a period: the longest hold (one maximal poll interval) starts inside them."""


def lead_in(store: UsageReader, start: int) -> dict[UsageKey, Held]:
    """Where each gauge series stood at `start`: the hold of readings taken just before it.

    Without it, a month whose first reading came a second early (in the previous month) would
    start with a bucket observed for four minutes of five.
    """
    return lead_in_of(store.month_series(start - LEAD_IN_BUCKETS * BUCKET_S, start))


def lead_in_of(before: Mapping[UsageKey, SeriesMonth]) -> dict[UsageKey, Held]:
    """`lead_in` from series read over the `LEAD_IN_BUCKETS` before the period (all, or a piece of them)."""
    return {k: scan_gauge(sm).held for k, sm in before.items() if k.quantity not in COUNTERS and sm.segments}


def usage_document(
    store: UsageReader,
    communes: Sequence[Commune],
    month: Month,
    links: Iterable[UsageKey] = (),
    *,
    until: int | None = None,
    now: float | None = None,
    registry: IndicatorRegistry = INDICATORS,
) -> dict[str, Any]:
    """The allocation engine's input for `month` (see docs/usage.md for every field).

    `links`: keys expected from the configuration (a configured link that never reported shows with
    coverage 0 instead of being absent). `until` limits the period (month to date), bucket aligned.
    `now` (default: the clock) decides whether the month is over: until its end in the month's
    timezone it is `provisional` and never `complete`, whatever the period covers. `registry`: the
    indicators computed (the built-in ones unless told).
    """
    provisional = (time.time() if now is None else now) < month.end
    end = month.end if until is None else max(month.start, min(month.end, until))
    n = (end - month.start) // BUCKET_S
    data = store.month_series(month.start, end, links) if n else {}
    known = {c.id for c in communes}
    inds = compute_indicators(
        data, [c.id for c in communes], month.start, n, lead_in(store, month.start) if n else None, registry
    )
    insee = {c.id: c.insee for c in communes}
    return {
        "month": month.label,
        "timezone": month.timezone,
        "period": {
            "start": month.local_iso(month.start),
            "end": month.local_iso(end),
            "hours": (end - month.start) // 3600,
            "buckets": n,
            "complete": end == month.end and not provisional,
            "provisional": provisional,
        },
        "rules": {
            "numbers": "integers as JSON integers; other values as decimal strings (parse with Decimal)",
            "p95": "nearest rank ceil(0.95 n) over the 5-minute buckets that have data",
            "coverage": "samples received / expected, capped at 1 per bucket, rounded down",
        },
        "indicators": [indicator_dict(i, month, insee[i.commune]) for i in inds],
        "unattributed_series": sorted(
            {f"{k.commune}/{k.subject}/{k.quantity.value}" for k in data if k.commune not in known}
        ),
    }
