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

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any, Protocol

from sitivmon.readings import Flag, Quantity, UsageKey

from .buckets import FLAG_BITS, PRESENT, SCALE, Col, column_totals
from .periods import BUCKET_S, Month
from .store import SeriesMonth, UsageStore

Q6 = Decimal("0.000001")
Q3 = Decimal("0.001")
GIB = 1 << 30
J_PER_KWH = 3_600_000
BUCKETS_PER_HOUR = 3600 // BUCKET_S  # 12


class CommuneLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def insee(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Gap:
    subject: str
    start: int  # unix seconds, bucket aligned
    end: int
    reasons: tuple[str, ...]  # missing | no_sample | gap | unknown

    @property
    def buckets(self) -> int:
        return (self.end - self.start) // BUCKET_S


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
    detail: dict[str, Any] = field(default_factory=dict)


# -- per-series scans ---------------------------------------------------------------------------------


def _it(col: Col, n: int) -> Iterable[int]:
    return itertools.repeat(col, n) if isinstance(col, int) else col


def _bucket_cov(r: int, e: int) -> Fraction:
    if r <= 0:
        return Fraction(0)
    if e <= 0 or r >= e:
        return Fraction(1)
    return Fraction(r, e)


@dataclass(slots=True)
class SeriesScan:
    """Coverage numerator (in buckets), gap runs (bucket offsets) and flag counts of one series."""

    covered: Fraction
    gaps: list[tuple[int, int, frozenset[str]]]
    flags: Counter[str]


def _reason(f: int, r: int) -> str | None:
    if not f & PRESENT:
        return "missing"
    if f & FLAG_BITS_GAP:
        return "gap"
    if f & FLAG_BITS_UNKNOWN:
        return "unknown"
    if r <= 0:
        return "no_sample"
    return None


FLAG_BITS_GAP = FLAG_BITS[Flag.GAP]
FLAG_BITS_UNKNOWN = FLAG_BITS[Flag.UNKNOWN]


def _const_where_nonzero(col: Col) -> int | None:
    """The column's value when every slot is either that value or 0 (unwritten), else None."""
    if isinstance(col, int):
        return col
    m = max(col)
    return m if col.count(m) + col.count(0) == len(col) else None


def _count_pairs(pairs: Counter[tuple[int, int]], r: Col, e: Col, length: int) -> None:
    """Add (received, expected) -> buckets; C-level counts in the usual cases (an unwritten slot has
    received 0 and counts for nothing, whatever its expected)."""
    ec = _const_where_nonzero(e)
    if ec is None:
        pairs.update(zip(_it(r, length), _it(e, length), strict=True))
        return
    rc = _const_where_nonzero(r)
    if rc is not None:
        pairs[(rc, ec)] += length if isinstance(r, int) else r.count(rc)
        return
    for rv, count in Counter(r).items() if not isinstance(r, int) else ():
        pairs[(rv, ec)] += count


_NOT_PLAIN = re.compile(rb"[^\x80]")


def scan_series(sm: SeriesMonth) -> SeriesScan:
    covered = Fraction(0)
    pairs: Counter[tuple[int, int]] = Counter()
    flags: Counter[str] = Counter()
    runs: list[tuple[int, int, set[str]]] = []

    def add_gap(a: int, b: int, reason: str) -> None:
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b, runs[-1][2] | {reason})
        else:
            runs.append((a, b, {reason}))

    pos = 0
    for off in sorted(sm.segments):
        length, _v, r, e, f = sm.segments[off]
        if off > pos:
            add_gap(pos, off, "missing")
        if f == PRESENT and isinstance(r, int) and isinstance(e, int) and r > 0:  # the common case
            pairs[(r, e)] += length
        elif isinstance(f, int) and isinstance(r, int) and isinstance(e, int):
            reason = _reason(f, r)
            if reason is not None:
                add_gap(off, off + length, reason)
            if f & PRESENT:
                pairs[(r, e)] += length
            for name, bit in FLAG_BITS.items():
                if f & bit:
                    flags[name.value] += length
        else:
            # flags fit in a byte; unwritten slots are all-zero, written ones carry PRESENT
            fbytes = bytes([f]) * length if isinstance(f, int) else bytes(f)
            if isinstance(r, int) and isinstance(e, int):
                pairs[(r, e)] += length - fbytes.count(0)
            else:
                _count_pairs(pairs, r, e, length)
            special: Iterable[int] = [m.start() for m in _NOT_PLAIN.finditer(fbytes)]
            if isinstance(r, int):
                if r <= 0:
                    special = range(length)
            elif r.count(0) > fbytes.count(0):  # some written slot has no sample
                special = sorted(set(special) | {i for i, x in enumerate(r) if x <= 0})
            for i in special:
                fb = fbytes[i]
                rb = r if isinstance(r, int) else r[i]
                reason = _reason(fb, rb)
                if reason is not None:
                    add_gap(off + i, off + i + 1, reason)
                if fb & ~PRESENT:
                    for name, bit in FLAG_BITS.items():
                        if fb & bit:
                            flags[name.value] += 1
        pos = off + length
    if pos < sm.n:
        add_gap(pos, sm.n, "missing")
    for (r, e), count in pairs.items():
        covered += count * _bucket_cov(r, e)
    return SeriesScan(covered, [(a, b, frozenset(s)) for a, b, s in runs], flags)


def series_sum(sm: SeriesMonth) -> int:
    return sum(v * length if isinstance(v, int) else sum(v) for length, v, _r, _e, _f in sm.segments.values())


def _per_bucket_totals(series: Sequence[SeriesMonth], n: int) -> tuple[list[int], bytearray]:
    """Sum of the series' values per bucket, and whether any of them has data in that bucket."""
    totals = [0] * n
    present = bytearray(n)
    by_off: dict[int, list[tuple[int, Col, Col]]] = {}
    for sm in series:
        for off, (length, v, _r, _e, f) in sm.segments.items():
            by_off.setdefault(off, []).append((length, v, f))
    for off, segs in by_off.items():
        length = segs[0][0]
        totals[off : off + length] = column_totals([v for _, v, _ in segs], length)
        if any(isinstance(f, int) and f & PRESENT for _, _, f in segs):
            present[off : off + length] = b"\x01" * length
        else:
            mask = bytearray(length)
            for _, _, f in segs:
                for i, fb in enumerate(_it(f, length)):
                    if fb & PRESENT:
                        mask[i] = 1
            present[off : off + length] = mask
    return totals, present


def nearest_rank_p95(values: Sequence[int]) -> tuple[int, int]:
    """(value, rank) at the nearest rank ceil(0.95 n) (1-based) of the sorted values; (0, 0) if empty."""
    n = len(values)
    if n == 0:
        return 0, 0
    rank = (95 * n + 99) // 100
    return sorted(values)[rank - 1], rank


# -- assembling indicators ----------------------------------------------------------------------------


class _Group:
    """The series of one commune for one quantity, with their scans."""

    def __init__(self, series: list[SeriesMonth], month_start: int, n: int) -> None:
        self.series = series
        self.n = n
        self.month_start = month_start
        self.scans = [scan_series(s) for s in series]
        self._coverage: Decimal | None = None
        self._gaps: list[Gap] | None = None

    def coverage(self) -> Decimal:
        if self._coverage is None:
            self._coverage = self._compute_coverage()
        return self._coverage

    def gaps(self) -> list[Gap]:
        if self._gaps is None:
            self._gaps = self._compute_gaps()
        return list(self._gaps)

    def _compute_coverage(self) -> Decimal:
        if not self.series or not self.n:
            return Decimal(0)
        frac = sum((s.covered for s in self.scans), Fraction(0)) / (len(self.series) * self.n)
        return (Decimal(frac.numerator) / Decimal(frac.denominator)).quantize(Q6, ROUND_FLOOR)

    def _compute_gaps(self) -> list[Gap]:
        out = []
        for sm, sc in zip(self.series, self.scans, strict=True):
            for a, b, reasons in sc.gaps:
                out.append(
                    Gap(
                        sm.key.subject,
                        self.month_start + a * BUCKET_S,
                        self.month_start + b * BUCKET_S,
                        tuple(sorted(reasons)),
                    )
                )
        return out

    def flags(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for sc in self.scans:
            total.update(sc.flags)
        return dict(sorted(total.items()))


def _merge_gaps(gaps: list[Gap]) -> list[Gap]:
    """One entry per (subject, span) when two directions of a link miss the same buckets."""
    merged: dict[tuple[str, int, int], set[str]] = {}
    for g in gaps:
        merged.setdefault((g.subject, g.start, g.end), set()).update(g.reasons)
    return [Gap(s, a, b, tuple(sorted(r))) for (s, a, b), r in sorted(merged.items())]


def _dec(fr: Fraction, q: Decimal = Q6) -> Decimal:
    return (Decimal(fr.numerator) / Decimal(fr.denominator)).quantize(q, ROUND_HALF_EVEN)


def _gauge_means(sm: SeriesMonth) -> tuple[Fraction, int]:
    """(sum over known buckets of the bucket's mean reading, known buckets) in stored scale."""
    by_readings: dict[int, int] = {}
    known = 0
    for length, v, r, _e, f in sm.segments.values():
        if isinstance(r, int) and isinstance(f, int):
            if f & PRESENT and r >= 1000:
                by_readings[r] = by_readings.get(r, 0) + (v * length if isinstance(v, int) else sum(v))
                known += length
            continue
        for vb, rb, fb in zip(_it(v, length), _it(r, length), _it(f, length), strict=True):
            if fb & PRESENT and rb >= 1000:
                by_readings[rb] = by_readings.get(rb, 0) + vb
                known += 1
    total = sum((Fraction(s * 1000, r) for r, s in by_readings.items()), Fraction(0))
    return total, known


def _availability(series: Sequence[SeriesMonth]) -> tuple[int, int]:
    """(up buckets, down buckets): a bucket is up when every link-state reading in it said up."""
    up = down = 0
    for sm in series:
        for length, v, r, _e, f in sm.segments.values():
            if isinstance(v, int) and isinstance(r, int) and isinstance(f, int):
                if f & PRESENT and r > 0:
                    if v * 1000 >= r:
                        up += length
                    else:
                        down += length
                continue
            for vb, rb, fb in zip(_it(v, length), _it(r, length), _it(f, length), strict=True):
                if fb & PRESENT and rb > 0:
                    if vb * 1000 >= rb:
                        up += 1
                    else:
                        down += 1
    return up, down


def compute_indicators(
    series: Mapping[UsageKey, SeriesMonth], communes: Sequence[str], start: int, n: int
) -> list[Indicator]:
    """All indicators for each commune in `communes`, over the n buckets from `start`."""
    groups: dict[tuple[str, Quantity], list[SeriesMonth]] = {}
    for key, sm in sorted(series.items(), key=lambda kv: (kv[0].commune, kv[0].subject)):
        groups.setdefault((key.commune, key.quantity), []).append(sm)
    out: list[Indicator] = []
    for commune in communes:
        g = {q: _Group(groups.get((commune, q), []), start, n) for q in Quantity}
        tin, tout = g[Quantity.TRAFFIC_IN], g[Quantity.TRAFFIC_OUT]

        def ind(
            name: str,
            direction: str | None,
            value: int | Decimal | None,
            unit: str,
            grp: _Group,
            detail: dict[str, Any] | None = None,
            gaps: list[Gap] | None = None,
            coverage: Decimal | None = None,
            nseries: int | None = None,
            c: str = commune,
        ) -> None:
            d = dict(detail or {})
            fl = grp.flags()
            if fl:
                d.setdefault("flagged_buckets", fl)
            out.append(
                Indicator(
                    c,
                    name,
                    direction,
                    value,
                    unit,
                    grp.coverage() if coverage is None else coverage,
                    grp.gaps() if gaps is None else gaps,
                    len(grp.series) if nseries is None else nseries,
                    d,
                )
            )

        # commune total per bucket (sum of its links): volumes, and p95 over buckets with data
        tot_in, pres_in = _per_bucket_totals(tin.series, n)
        tot_out, pres_out = _per_bucket_totals(tout.series, n)
        for direction, grp, tot in (("in", tin, tot_in), ("out", tout, tot_out)):
            ind("traffic_volume", direction, sum(tot), "bytes", grp)

        p95: dict[str, tuple[int, int, int]] = {}
        for direction, tot, pres in (("in", tot_in, pres_in), ("out", tot_out, pres_out)):
            sample = list(itertools.compress(tot, pres))
            v, rank = nearest_rank_p95(sample)
            p95[direction] = (v, rank, len(sample))
        agg_pres = bytes(a | b for a, b in zip(pres_in, pres_out, strict=True))
        agg_sample = list(itertools.compress(map(int.__add__, tot_in, tot_out), agg_pres))
        v, rank = nearest_rank_p95(agg_sample)
        p95["aggregate"] = (v, rank, len(agg_sample))
        p95["max"] = max(p95["in"], p95["out"])
        both_cov = min(tin.coverage(), tout.coverage()) if (tin.series or tout.series) else Decimal(0)
        for direction in ("max", "in", "out", "aggregate"):
            v, rank, samples = p95[direction]
            pgrp = {"in": tin, "out": tout}.get(direction)
            detail: dict[str, Any] = {
                "bucket_bytes": v,
                "bucket_seconds": BUCKET_S,
                "rank": rank,
                "samples": samples,
                "rank_rule": "nearest rank ceil(0.95 n)",
            }
            if direction == "max":
                detail["from"] = "in" if p95["in"] >= p95["out"] else "out"
            if pgrp is None:
                ind(
                    "traffic_p95",
                    direction,
                    (Decimal(v) / BUCKET_S).quantize(Q3, ROUND_HALF_EVEN),
                    "bytes_per_second",
                    tin,
                    detail,
                    gaps=_merge_gaps(tin.gaps() + tout.gaps()),
                    coverage=both_cov,
                    nseries=len(tin.series) + len(tout.series),
                )
            else:
                ind(
                    "traffic_p95",
                    direction,
                    (Decimal(v) / BUCKET_S).quantize(Q3, ROUND_HALF_EVEN),
                    "bytes_per_second",
                    pgrp,
                    detail,
                )

        links = g[Quantity.LINK_UP]
        up, down = _availability(links.series)
        known = up + down
        ind(
            "availability",
            None,
            _dec(Fraction(up, known)) if known else None,
            "ratio",
            links,
            {
                "up_buckets": up,
                "down_buckets": down,
                "unknown_buckets": len(links.series) * n - known,
                "rule": "a bucket is up when every link-state reading in it was up",
            },
        )

        st = g[Quantity.STORAGE_BYTES]
        avg = Fraction(0)
        byte_hours = Fraction(0)
        for sm in st.series:
            total, kb = _gauge_means(sm)
            byte_hours += total / BUCKETS_PER_HOUR
            if kb:
                avg += total / kb
        ind(
            "storage",
            None,
            int(_dec(avg, Decimal(1))),
            "bytes",
            st,
            {
                "byte_hours": str(_dec(byte_hours, Q3)),
                "rule": "mean over buckets with readings, summed over resources",
            },
        )

        en = g[Quantity.ENERGY_JOULES]
        joules = sum(series_sum(s) for s in en.series)
        ind("energy", None, _dec(Fraction(joules, J_PER_KWH)), "kWh", en, {"joules": joules})

        vc = g[Quantity.VCPUS]
        vh = sum((_gauge_means(s)[0] for s in vc.series), Fraction(0)) / SCALE[Quantity.VCPUS]
        ind("vcpu_hours", None, _dec(vh / BUCKETS_PER_HOUR), "vcpu_hours", vc)

        mem = g[Quantity.MEMORY_BYTES]
        mh = sum((_gauge_means(s)[0] for s in mem.series), Fraction(0))
        ind("memory_gib_hours", None, _dec(mh / BUCKETS_PER_HOUR / GIB), "GiB_hours", mem)
    return out


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


def usage_document(
    store: UsageStore,
    communes: Sequence[CommuneLike],
    month: Month,
    links: Iterable[UsageKey] = (),
    *,
    until: int | None = None,
) -> dict[str, Any]:
    """The allocation engine's input for `month` (see docs/usage.md for every field).

    `links`: keys expected from the configuration (a configured link that never reported shows with
    coverage 0 instead of being absent). `until` limits the period (month to date), bucket aligned.
    """
    end = month.end if until is None else max(month.start, min(month.end, until))
    n = (end - month.start) // BUCKET_S
    data = store.month_series(month.start, end, links) if n else {}
    known = {c.id for c in communes}
    inds = compute_indicators(data, [c.id for c in communes], month.start, n)
    insee = {c.id: c.insee for c in communes}
    return {
        "month": month.label,
        "timezone": month.timezone,
        "period": {
            "start": month.local_iso(month.start),
            "end": month.local_iso(end),
            "hours": (end - month.start) // 3600,
            "buckets": n,
            "complete": end == month.end,
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
