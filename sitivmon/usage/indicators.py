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
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any, Protocol

from sitivmon.readings import Flag, Quantity, UsageKey

from .buckets import (
    COUNTERS,
    FLAG_BITS,
    MAX_POLL_INTERVAL_S,
    PRESENT,
    SCALE,
    Col,
    column_totals,
    poll_interval_ns,
)
from .periods import BUCKET_S, Month
from .port import SeriesMonth, UsageReader

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


UNTRUSTED = FLAG_BITS[Flag.RESET] | FLAG_BITS[Flag.CLAMP] | FLAG_BITS[Flag.UNKNOWN]
"""Flags saying a bucket's bytes may be missing or wrong: such a bucket counts 0 toward coverage."""
_GAP_FLAGS = (Flag.GAP, Flag.UNKNOWN, Flag.RESET, Flag.CLAMP)


def _reasons(f: int, r: int) -> tuple[str, ...]:
    """Why a bucket is a gap (empty when it is not): never written, flagged, or without samples."""
    if not f & PRESENT:
        return ("missing",)
    out = tuple(flag.value for flag in _GAP_FLAGS if f & FLAG_BITS[flag])
    if not out and r <= 0:
        return ("no_sample",)
    return out


def _at(col: Col, i: int) -> int:
    return col if isinstance(col, int) else col[i]


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


_NOT_PLAIN = re.compile(rb"[^\x00\x80]")  # written slots with a flag (unwritten ones go by runs)
_UNWRITTEN = re.compile(rb"\x00+")


def scan_series(sm: SeriesMonth) -> SeriesScan:
    covered = Fraction(0)
    pairs: Counter[tuple[int, int]] = Counter()
    flags: Counter[str] = Counter()
    runs: list[tuple[int, int, set[str]]] = []

    def add_gap(a: int, b: int, reasons: Iterable[str]) -> None:
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b, runs[-1][2].union(reasons))
        else:
            runs.append((a, b, set(reasons)))

    pos = 0
    for off in sorted(sm.segments):
        length, _v, r, e, f = sm.segments[off]
        if off > pos:
            add_gap(pos, off, ("missing",))
        if f == PRESENT and isinstance(r, int) and isinstance(e, int) and r > 0:  # the common case
            pairs[(r, e)] += length
        elif isinstance(f, int) and isinstance(r, int) and isinstance(e, int):
            reasons = _reasons(f, r)
            if reasons:
                add_gap(off, off + length, reasons)
            if f & PRESENT and not f & UNTRUSTED:
                pairs[(r, e)] += length
            for name, bit in FLAG_BITS.items():
                if f & bit:
                    flags[name.value] += length
        else:
            # flags fit in a byte; unwritten slots are all-zero, written ones carry PRESENT
            fbytes = bytes([f]) * length if isinstance(f, int) else bytes(f)
            ec = e if isinstance(e, int) else _const_where_nonzero(e)  # the expected each pair was keyed by
            if isinstance(r, int) and isinstance(e, int):
                pairs[(r, e)] += length - fbytes.count(0)
            else:
                _count_pairs(pairs, r, e, length)
            special: Iterable[int] = [m.start() for m in _NOT_PLAIN.finditer(fbytes)]
            if isinstance(r, int):
                if r <= 0:
                    special = [i for i in range(length) if fbytes[i]]
            elif r.count(0) > fbytes.count(0):  # some written slot has no sample
                special = sorted(set(special) | {i for i, x in enumerate(r) if x <= 0 and fbytes[i]})
            # An unwritten slot is only a "missing" gap: a run of them is one gap, not one per slot (a
            # week written for a few hours has ~2,000 of them, per series, at every refresh).
            unwritten = [(m.start(), m.end()) for m in _UNWRITTEN.finditer(fbytes)]
            events: Iterable[tuple[int, int]] = (
                sorted([*unwritten, *((i, -1) for i in special)]) if unwritten else ((i, -1) for i in special)
            )
            for i, run_end in events:
                if run_end >= 0:
                    add_gap(off + i, off + run_end, ("missing",))
                    continue
                fb = fbytes[i]
                rb = r if isinstance(r, int) else r[i]
                reasons = _reasons(fb, rb)
                if reasons:
                    add_gap(off + i, off + i + 1, reasons)
                if fb & PRESENT and fb & UNTRUSTED:  # counted above with the others: take it back
                    pairs[(rb, ec if ec is not None else _at(e, i))] -= 1
                if fb & ~PRESENT:
                    for name, bit in FLAG_BITS.items():
                        if fb & bit:
                            flags[name.value] += 1
        pos = off + length
    if pos < sm.n:
        add_gap(pos, sm.n, ("missing",))
    for (r, e), count in pairs.items():
        covered += count * _bucket_cov(r, e)
    return SeriesScan(covered, [(a, b, frozenset(s)) for a, b, s in runs], flags)


B_NS = BUCKET_S * 1_000_000_000


@dataclass(slots=True)
class Held:
    """Where a gauge series stands at a bucket boundary: the last readings' hold still running.

    `carry_ns` is how far the hold of the last bucket with readings runs past its end; `value` and
    `readings` are that bucket's sum and count (its mean level, which the hold carries forward).
    """

    carry_ns: int = 0
    value: int = 0
    readings: int = 0


@dataclass(slots=True)
class GaugeScan:
    """Observed time of a gauge series and its level integrated over it (see `scan_gauge`)."""

    covered_ns: int
    level_ns: dict[int, int]  # readings per bucket -> sum of (bucket value sum x covered ns)
    gaps: list[tuple[int, int, frozenset[str]]]
    up: int
    down: int
    held: Held

    def level_seconds(self) -> Fraction:
        """Integral of the level over the observed time, in stored scale x seconds."""
        return sum((Fraction(t, n * 1_000_000_000) for n, t in self.level_ns.items()), Fraction(0))


def scan_gauge(sm: SeriesMonth, held: Held | None = None) -> GaugeScan:
    """Observed time and level of a gauge series, holding each reading for its poll interval.

    A bucket's readings stand for `readings x interval` of observed time (`poll_interval_ns`). What
    passes the end of the bucket is carried into the next ones, at most one interval (the staleness
    limit: a reading says nothing about the level later than one poll after it, so extra readings,
    e.g. a confirming poll, never stretch the hold further). So a bucket is fully observed when its
    own readings, plus the hold of the previous ones, cover it: whatever the interval's phase against
    the buckets (90 s polls put 3 or 4 readings in a bucket, 600 s polls one in every other bucket),
    a month with no reading missed is observed in full, and each missed reading costs exactly one
    interval. A bucket's level is the mean of its readings, or the carried level when it has none.
    `held` seeds the carry from the buckets before the period (see `usage_document`).
    """
    h = Held(held.carry_ns, held.value, held.readings) if held is not None else Held()
    covered = 0
    level: dict[int, int] = {}
    runs: list[tuple[int, int, set[str]]] = []
    up = down = 0
    state_up = h.value >= h.readings  # link state: the carried bucket's readings all said up

    def gap(a: int, b: int, reason: str) -> None:
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b, runs[-1][2] | {reason})
        else:
            runs.append((a, b, {reason}))

    def drain(a: int, b: int, reason: str) -> None:
        """Buckets [a, b) without readings: the carried hold covers the first ones."""
        nonlocal covered, up, down
        i = a
        while i < b and h.carry_ns > 0:
            cov = min(B_NS, h.carry_ns)
            h.carry_ns -= cov
            covered += cov
            level[h.readings] = level.get(h.readings, 0) + cov * h.value
            if state_up:
                up += 1
            else:
                down += 1
            i += 1
        if i < b:
            gap(i, b, reason)

    pos = 0
    for off in sorted(sm.segments):
        length, v, r, e, f = sm.segments[off]
        if off > pos:
            drain(pos, off, "missing")
        if isinstance(v, int) and isinstance(r, int) and isinstance(e, int):
            n = r // 1000
            if n <= 0:
                drain(off, off + length, "no_sample" if isinstance(f, int) and f & PRESENT else "missing")
                pos = off + length
                continue
            hold = poll_interval_ns(e)
            fresh = n * hold
            state_up = v * 1000 >= r
            i = 0
            while i < length:
                if fresh >= B_NS or h.carry_ns == 0:
                    rest = length - i  # from here on every bucket is alike: closed form
                    cov = min(B_NS, fresh)
                    if fresh >= B_NS:
                        h.carry_ns = min(hold, h.carry_ns + rest * (fresh - B_NS))
                    else:
                        h.carry_ns = 0
                    covered += rest * cov
                    level[n] = level.get(n, 0) + rest * cov * v
                    i = length
                else:
                    total = h.carry_ns + fresh
                    cov = min(B_NS, total)
                    h.carry_ns = min(hold, total - cov)
                    covered += cov
                    level[n] = level.get(n, 0) + cov * v
                    i += 1
            h.value, h.readings = v, n
            if state_up:
                up += length
            else:
                down += length
            pos = off + length
            continue
        vs, rs, es, fs = list(_it(v, length)), list(_it(r, length)), list(_it(e, length)), list(_it(f, length))
        i = -1
        while i + 1 < length:
            i += 1
            vb, rb, eb, fb = vs[i], rs[i], es[i], fs[i]
            n = rb // 1000
            if n <= 0:
                # A run of buckets without readings (and the same reason) is drained at once, as one
                # call per bucket would: a week written for a few hours has ~2,000 of them per series.
                present = fb & PRESENT
                j = i + 1
                while j < length and rs[j] < 1000 and fs[j] & PRESENT == present:
                    j += 1
                drain(off + i, off + j, "no_sample" if present else "missing")
                i = j - 1
                continue
            hold = poll_interval_ns(eb)
            total = h.carry_ns + n * hold
            cov = total if total < B_NS else B_NS
            t = total - cov
            h.carry_ns = t if t < hold else hold
            covered += cov
            level[n] = level.get(n, 0) + cov * vb
            h.value, h.readings = vb, n
            state_up = vb * 1000 >= rb
            if state_up:
                up += 1
            else:
                down += 1
        pos = off + length
    if pos < sm.n:
        drain(pos, sm.n, "missing")
    return GaugeScan(covered, level, [(a, b, frozenset(x)) for a, b, x in runs], up, down, h)


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

    def __init__(
        self,
        series: list[SeriesMonth],
        month_start: int,
        n: int,
        gauge: bool = False,
        held: Mapping[UsageKey, Held] | None = None,
    ) -> None:
        self.series = series
        self.n = n
        self.month_start = month_start
        held = held or {}
        self.gauges = [scan_gauge(s, held.get(s.key)) for s in series] if gauge else []
        self.scans = (
            [SeriesScan(Fraction(g.covered_ns, B_NS), g.gaps, Counter()) for g in self.gauges]
            if gauge
            else [scan_series(s) for s in series]
        )
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


def compute_indicators(
    series: Mapping[UsageKey, SeriesMonth],
    communes: Sequence[str],
    start: int,
    n: int,
    held: Mapping[UsageKey, Held] | None = None,
) -> list[Indicator]:
    """All indicators for each commune in `communes`, over the n buckets from `start`.

    `held`: where each gauge series stood at `start` (`lead_in`), so that a reading taken just before
    the period covers its first buckets as it would inside the period.
    """
    groups: dict[tuple[str, Quantity], list[SeriesMonth]] = {}
    for key, sm in sorted(series.items(), key=lambda kv: (kv[0].commune, kv[0].subject)):
        groups.setdefault((key.commune, key.quantity), []).append(sm)
    out: list[Indicator] = []
    for commune in communes:
        g = {q: _Group(groups.get((commune, q), []), start, n, q not in COUNTERS, held) for q in Quantity}
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
        up, down = sum(x.up for x in links.gauges), sum(x.down for x in links.gauges)
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
        for gs in st.gauges:
            level_s = gs.level_seconds()
            byte_hours += level_s / 3600
            if gs.covered_ns:
                avg += level_s / Fraction(gs.covered_ns, 1_000_000_000)
        ind(
            "storage",
            None,
            int(_dec(avg, Decimal(1))),
            "bytes",
            st,
            {
                "byte_hours": str(_dec(byte_hours, Q3)),
                "rule": "mean over the observed time (each reading held one poll interval), summed over resources",
            },
        )

        en = g[Quantity.ENERGY_JOULES]
        joules = sum(series_sum(s) for s in en.series)
        ind("energy", None, _dec(Fraction(joules, J_PER_KWH)), "kWh", en, {"joules": joules})

        vc = g[Quantity.VCPUS]
        vs = sum((x.level_seconds() for x in vc.gauges), Fraction(0)) / SCALE[Quantity.VCPUS]
        ind("vcpu_hours", None, _dec(vs / 3600), "vcpu_hours", vc)

        mem = g[Quantity.MEMORY_BYTES]
        ms = sum((x.level_seconds() for x in mem.gauges), Fraction(0))
        ind("memory_gib_hours", None, _dec(ms / 3600 / GIB), "GiB_hours", mem)
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


LEAD_IN_BUCKETS = -(-MAX_POLL_INTERVAL_S // BUCKET_S) + 1
"""Buckets read before a period: the longest hold (one maximal poll interval) starts inside them."""


def lead_in(store: UsageReader, start: int) -> dict[UsageKey, Held]:
    """Where each gauge series stood at `start`: the hold of readings taken just before it.

    Without it, a month whose first reading came a second early (in the previous month) would
    start with a bucket observed for four minutes of five.
    """
    before = store.month_series(start - LEAD_IN_BUCKETS * BUCKET_S, start)
    return {k: scan_gauge(sm).held for k, sm in before.items() if k.quantity not in COUNTERS and sm.segments}


def usage_document(
    store: UsageReader,
    communes: Sequence[CommuneLike],
    month: Month,
    links: Iterable[UsageKey] = (),
    *,
    until: int | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The allocation engine's input for `month` (see docs/usage.md for every field).

    `links`: keys expected from the configuration (a configured link that never reported shows with
    coverage 0 instead of being absent). `until` limits the period (month to date), bucket aligned.
    `now` (default: the clock) decides whether the month is over: until its end in the month's
    timezone it is `provisional` and never `complete`, whatever the period covers.
    """
    provisional = (time.time() if now is None else now) < month.end
    end = month.end if until is None else max(month.start, min(month.end, until))
    n = (end - month.start) // BUCKET_S
    data = store.month_series(month.start, end, links) if n else {}
    known = {c.id for c in communes}
    inds = compute_indicators(
        data, [c.id for c in communes], month.start, n, lead_in(store, month.start) if n else None
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
