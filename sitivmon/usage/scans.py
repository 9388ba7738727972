"""Scans of stored buckets: what each series observed, the measurements every indicator is built from.

A counter series is scanned for its coverage (samples received / expected, capped at 1 per bucket),
its gap runs and its flags; a gauge series for its observed time and level, each reading held for
its poll interval. `Group` gathers the series of one commune for one quantity with their scans, so
that an aggregation function (see `registry`) reads coverage, gaps and levels without redoing them.

Pure: the store is only a source of `SeriesMonth`s here.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from sitivmon.readings import Flag, UsageKey

from .buckets import (
    FLAG_BITS,
    PRESENT,
    Col,
    column_totals,
    poll_interval_ns,
)
from .periods import BUCKET_S
from .port import SeriesMonth

Q6 = Decimal("0.000001")
Q3 = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class Gap:
    subject: str
    start: int  # unix seconds, bucket aligned
    end: int
    reasons: tuple[str, ...]  # missing | no_sample | gap | unknown

    @property
    def buckets(self) -> int:
        return (self.end - self.start) // BUCKET_S


# -- per-series scans ---------------------------------------------------------------------------------


def _it(col: Col, n: int) -> Iterable[int]:
    return itertools.repeat(col, n) if isinstance(col, int) else col


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
    if isinstance(col, array) and col and col.tobytes() == col[:1].tobytes() * len(col):
        return int(col[0])  # constant, told in C (count() compares slot by slot as Python objects)
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
    return SeriesScan(_covered(pairs), [(a, b, frozenset(s)) for a, b, s in runs], flags)


def _covered(pairs: Counter[tuple[int, int]]) -> Fraction:
    """The buckets covered: each (received, expected) pair's count times its share of a bucket
    (none without samples, whole when all expected came or nothing was expected, else received /
    expected), exactly, with one
    Fraction per expected count instead of an addition of Fractions per pair (received varies from
    bucket to bucket with the polls' jitter: each distinct pair was a gcd; the refresh scans every
    series' newest buckets at each refresh)."""
    whole = 0
    parts: dict[int, int] = {}
    for (r, e), count in pairs.items():
        if r <= 0:
            continue
        if e <= 0 or r >= e:
            whole += count
        else:
            parts[e] = parts.get(e, 0) + count * r
    if not parts:
        return Fraction(whole)
    covered = Fraction(whole)
    for e, num in parts.items():
        covered += Fraction(num, e)
    return covered


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
    ends_up: bool = True
    """The link state the scan ends in: what a scan of the buckets that follow starts from (`scan_gauge`'s
    `up_state`), so that a period scanned in parts (the incremental month-to-date refresh) gives what
    one scan gives."""

    def level_seconds(self) -> Fraction:
        """Integral of the level over the observed time, in stored scale x seconds."""
        return sum((Fraction(t, n * 1_000_000_000) for n, t in self.level_ns.items()), Fraction(0))


def scan_gauge(sm: SeriesMonth, held: Held | None = None, up_state: bool | None = None) -> GaugeScan:
    """Observed time and level of a gauge series, holding each reading for its poll interval.

    A bucket's readings stand for `readings x interval` of observed time (`poll_interval_ns`). What
    passes the end of the bucket is carried into the next ones, at most one interval (the staleness
    limit: a reading says nothing about the level later than one poll after it, so extra readings,
    e.g. a confirming poll, never stretch the hold further). So a bucket is fully observed when its
    own readings, plus the hold of the previous ones, cover it: whatever the interval's phase against
    the buckets (90 s polls put 3 or 4 readings in a bucket, 600 s polls one in every other bucket),
    a month with no reading missed is observed in full, and each missed reading costs exactly one
    interval. A bucket's level is the mean of its readings, or the carried level when it has none.
    `held` seeds the carry from the buckets before the period (see `usage_document`), `up_state` the
    link state (default: the held bucket's readings all said up): a scan of the buckets before gives
    both (`held`, `ends_up`) when a period is scanned in parts.
    """
    h = Held(held.carry_ns, held.value, held.readings) if held is not None else Held()
    covered = 0
    level: dict[int, int] = {}
    runs: list[tuple[int, int, set[str]]] = []
    up = down = 0
    # link state: the carried bucket's readings all said up, unless the scan before says where it stood
    state_up = h.value >= h.readings if up_state is None else up_state

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

    def alike(off: int, length: int, v: int, r: int, e: int, f: Col) -> None:
        """`length` buckets from `off` with the same value, samples and expected: a bucket at a time
        while the carry changes, then the rest at once (from there on every bucket is alike)."""
        nonlocal covered, up, down, state_up
        n = r // 1000
        if n <= 0:
            drain(off, off + length, "no_sample" if isinstance(f, int) and f & PRESENT else "missing")
            return
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

    pos = 0
    for off in sorted(sm.segments):
        length, v, r, e, f = sm.segments[off]
        if off > pos:
            drain(pos, off, "missing")
        if isinstance(v, int) and isinstance(r, int) and isinstance(e, int):
            alike(off, length, v, r, e, f)
        else:
            # Buckets by runs of equal columns, each run in closed form: a link's state or a
            # resource's size is the same bucket after bucket, and a week holds 2,016 of them (one
            # by one, this was half of the month-to-date refresh's CPU at 20,000 links, issue 15).
            i = off
            for (vb, rb, eb, fb), run in itertools.groupby(
                zip(_it(v, length), _it(r, length), _it(e, length), _it(f, length), strict=True)
            ):
                k = len(list(run))
                alike(i, k, vb, rb, eb, fb)
                i += k
        pos = off + length
    if pos < sm.n:
        drain(pos, sm.n, "missing")
    return GaugeScan(covered, level, [(a, b, frozenset(x)) for a, b, x in runs], up, down, h, state_up)


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
            present[off : off + length] = _present_mask([f for _, _, f in segs], length)
    return totals, present


_PRESENT_BIT = bytes(1 if b & PRESENT else 0 for b in range(256))  # bytes.translate: flags byte -> 0/1


def _present_mask(flags: Sequence[Col], length: int) -> bytes:
    """1 where any of the flags columns has PRESENT, else 0. Flags columns are bytes a slot (an array
    "B", or a list spread from a masked chunk column): each is translated and the masks ORed as big
    integers, in C; slot by slot in Python this was ~10 % of a month-to-date refresh on a store with
    a week written (bench/README.md, issue 15). A column that is not bytes takes the slot-by-slot way."""
    acc = 0
    for f in flags:
        if isinstance(f, int):
            continue  # without PRESENT (the caller's check)
        raw: bytes | None = None
        if isinstance(f, array):
            raw = f.tobytes() if f.typecode == "B" else None  # (bytes() of another array is its memory)
        else:
            with contextlib.suppress(TypeError, ValueError):  # a value over 255, or not an int
                raw = bytes(f)
        if raw is None:
            raw = bytes(1 if fb & PRESENT else 0 for fb in _it(f, length))
            acc |= int.from_bytes(raw, "big")
        else:
            acc |= int.from_bytes(raw.translate(_PRESENT_BIT), "big")
    return acc.to_bytes(length, "big")


per_bucket_totals = _per_bucket_totals
"""Public name: the incremental month-to-date refresh sums each week's buckets apart (`live.MonthScans`)."""


def nearest_rank_p95(values: Sequence[int]) -> tuple[int, int]:
    """(value, rank) at the nearest rank ceil(0.95 n) (1-based) of the sorted values; (0, 0) if empty."""
    n = len(values)
    if n == 0:
        return 0, 0
    rank = (95 * n + 99) // 100
    return sorted(values)[rank - 1], rank


@dataclass(frozen=True, slots=True)
class Observed:
    """How much of the period an indicator row rests on: what the document says beside its value."""

    coverage: Decimal
    gaps: list[Gap]
    series: int
    flags: dict[str, int]  # flagged buckets by flag; shown as `flagged_buckets` when not empty


class Group:
    """The series of one commune for one quantity, with their scans (computed once, read by every
    indicator built on the quantity)."""

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
        self.gauge = gauge
        self._coverage: Decimal | None = None
        self._gaps: list[Gap] | None = None
        self._totals: tuple[list[int], bytearray] | None = None

    @classmethod
    def folding(cls, month_start: int, n: int, gauge: bool = False) -> Group:
        """An empty group to `fold` series into, piece by piece, then `finish`.

        Why: a group built from every series of a commune holds their buckets (tens of kilobytes per
        series and month); the month-to-date gauges of 20,000 links held them all at once (issue 15).
        A folded group keeps per series only its scans and its key: `series` holds the series without
        their segments, and `bucket_totals` is summed as the pieces come. Every figure an aggregation
        function reads from the group's methods and scans is the one the whole group gives.
        """
        group = cls([], month_start, n, gauge)
        group._totals = ([0] * n, bytearray(n))
        return group

    def fold(self, series: Sequence[SeriesMonth], held: Mapping[UsageKey, Held] | None = None) -> None:
        """Scan `series` and add them into this folding group; the caller may drop them afterwards."""
        assert self._totals is not None, "fold into a group made by Group.folding"
        held = held or {}
        gauges = [scan_gauge(s, held.get(s.key)) for s in series] if self.gauge else []
        self.gauges.extend(gauges)
        self.scans.extend(
            [SeriesScan(Fraction(g.covered_ns, B_NS), g.gaps, Counter()) for g in gauges]
            if self.gauge
            else [scan_series(s) for s in series]
        )
        self.series.extend(SeriesMonth(s.key, s.start, s.n) for s in series)
        totals, present = self._totals
        add, add_present = _per_bucket_totals(series, self.n)
        both = int.from_bytes(present, "big") | int.from_bytes(add_present, "big")
        self._totals = (list(map(int.__add__, totals, add)), bytearray(both.to_bytes(self.n, "big")))

    @classmethod
    def assembled(
        cls,
        month_start: int,
        n: int,
        gauge: bool,
        series: list[SeriesMonth],
        scans: list[SeriesScan],
        gauges: list[GaugeScan],
        totals: tuple[list[int], bytearray],
    ) -> Group:
        """A group from scans made elsewhere (the incremental month-to-date refresh joins its weeks'
        scans): `series` without segments, by subject, their scans and the month's bucket totals, as a
        folded group holds them after `finish`."""
        group = cls([], month_start, n, gauge)
        group.series, group.scans, group.gauges, group._totals = series, scans, gauges, totals
        return group

    def finish(self) -> None:
        """Put the folded series in the order a group built at once has them (by subject), so that
        gaps come in the same order."""
        order = sorted(range(len(self.series)), key=lambda i: self.series[i].key.subject)
        self.series = [self.series[i] for i in order]
        self.scans = [self.scans[i] for i in order]
        if self.gauge:
            self.gauges = [self.gauges[i] for i in order]
        self._coverage = self._gaps = None

    def coverage(self) -> Decimal:
        if self._coverage is None:
            self._coverage = self._compute_coverage()
        return self._coverage

    def gaps(self) -> list[Gap]:
        if self._gaps is None:
            self._gaps = self._compute_gaps()
        return list(self._gaps)

    def observed(self) -> Observed:
        """The group's coverage, gaps, series count and flags, as a row built on it alone reports them."""
        return Observed(self.coverage(), self.gaps(), len(self.series), self.flags())

    def bucket_totals(self) -> tuple[list[int], bytearray]:
        """Sum of the series' values per bucket, and whether any of them has data in that bucket.

        Kept: the volume and the 95th percentile of traffic both read it, and it is the costliest step
        for a commune of many links.
        """
        if self._totals is None:
            self._totals = _per_bucket_totals(self.series, self.n)
        return self._totals

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


def merge_gaps(gaps: list[Gap]) -> list[Gap]:
    """One entry per (subject, span) when two directions of a link miss the same buckets."""
    merged: dict[tuple[str, int, int], set[str]] = {}
    for g in gaps:
        merged.setdefault((g.subject, g.start, g.end), set()).update(g.reasons)
    return [Gap(s, a, b, tuple(sorted(r))) for (s, a, b), r in sorted(merged.items())]


def to_decimal(fr: Fraction, q: Decimal = Q6) -> Decimal:
    """An exact fraction as a decimal quantised to `q`, half to even (see the module doc of `indicators`)."""
    return (Decimal(fr.numerator) / Decimal(fr.denominator)).quantize(q, ROUND_HALF_EVEN)
