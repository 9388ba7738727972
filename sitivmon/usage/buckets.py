"""Five-minute buckets in memory and their compact on-disk encoding (pure: no I/O).

A bucket holds, for one series (commune, subject, quantity) and one 5-minute slot:

- `value`: for counters the integer share of every interval that overlaps the slot (bytes, joules);
  for gauges the sum of the readings that landed in it, in the quantity's integer scale (see `SCALE`),
  so that the mean level is `value / readings`.
- `expected_milli`: samples expected, in thousandths (300 s / poll interval * 1000).
- `received_milli`: samples received, in thousandths. Counters count observed time rather than poll
  instants: an interval contributes the share of the slot it covers times the samples expected, so a
  slot fully covered by polls at any phase or jitter has received == expected. Intervals flagged GAP
  or UNKNOWN (time the daemon or the agent was not observed) contribute their bytes but no samples.
  Gauges count readings (1000 each); the indicators turn them into observed time by holding each
  reading for its poll interval (`poll_interval_ns`), since counting readings against
  `300 / interval` cannot work when the interval does not divide five minutes.
- `flags`: bit set of reset/clamp/gap/unknown, plus PRESENT (the slot has been written at all).

Closed buckets are stored per series and week (epoch-aligned: Thursday 00:00 UTC) as one row whose
blob holds four columns of 2,016 slots; a column that is constant over the week (flags, samples,
often the link state) takes 9 bytes, values take 1, 2, 4 or 8 bytes each as the week needs. This
keeps a link-month at tens of kilobytes and lets the monthly computation read five rows per series
instead of 8,928 (one row per bucket is ~15x larger and ~40x slower, see bench/usage_bench.py). The
price is that closing a bucket rewrites its series' week row (~10 kB), once per series per 5 min.
"""

from __future__ import annotations

import functools
import math
import re
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from sitivmon.config.model import MAX_POLL_INTERVAL_S
from sitivmon.readings import Flag, Quantity, UsageKey

from .periods import BUCKET_S

CHUNK_S = 7 * 86_400
SLOTS = CHUNK_S // BUCKET_S  # 2016
BUCKET_US = BUCKET_S * 1_000_000

FLAG_BITS: dict[Flag, int] = {Flag.RESET: 1, Flag.CLAMP: 2, Flag.GAP: 4, Flag.UNKNOWN: 8}
PRESENT = 0x80
GAPLIKE = FLAG_BITS[Flag.GAP] | FLAG_BITS[Flag.UNKNOWN]

COUNTERS = frozenset(q for q in Quantity if q.counter)

SCALE: dict[Quantity, int] = {q: q.scale for q in Quantity if q.scale != 1}
"""Gauge readings are stored as integers times this factor (`Quantity.scale`: milli-vCPUs); 1 is left out."""


def flag_bits(flags: frozenset[Flag]) -> int:
    bits = 0
    for f in flags:
        bits |= FLAG_BITS[f]
    return bits


def flag_names(bits: int) -> list[str]:
    return [f.value for f, b in FLAG_BITS.items() if bits & b]


def expected_milli(interval_s: float) -> int:
    """Samples expected per bucket, in thousandths, for a poll interval (0 when the interval is unknown)."""
    return round(BUCKET_S * 1000 / interval_s) if interval_s > 0 else 0


@functools.lru_cache(maxsize=256)
def poll_interval_ns(expected: int) -> int:
    """The poll interval (ns) that produced `expected` samples per bucket; a bucket when unknown.

    `expected_milli` rounds `300000 / interval`, so each stored value stands for a small range of
    intervals; holding readings for the range's midpoint would drift (90 s is stored as 3333, i.e.
    90.009 s) and, summed over a month, either invent or lose observed time. Configured intervals are
    short decimals (`90s`, `250ms`, `7m`, `1h`), so the interval recovered is the one with the fewest
    significant digits in the range (whole minutes first), closest to the midpoint on a tie: exact for
    every whole second up to 552 s, tenth of a second up to 175.8 s, millisecond up to 17.4 s, every
    whole minute up to the hour and round values (2000 s); the configuration refuses the others
    (`check_recordable_interval`).
    """
    if expected <= 0:
        return BUCKET_S * 1_000_000_000
    total = Fraction(BUCKET_S * 1000)
    lo, hi = total / (expected + Fraction(1, 2)), total / (expected - Fraction(1, 2))  # round() is half-even
    mid = total / expected
    steps: list[Fraction] = [Fraction(60)] if hi >= 60 else []  # whole minutes (`33m`) first
    step = Fraction(1)  # then the largest power of ten not above hi: one significant digit, two...
    while step * 10 <= hi:
        step *= 10
    while step > hi:
        step /= 10
    steps += [step / 10**k for k in range(15)]
    for step in steps:
        k_lo, k_hi = math.ceil(lo / step), math.floor(hi / step)
        if k_lo <= k_hi:
            best = min((k * step for k in range(k_lo, k_hi + 1)), key=lambda x: (abs(x - mid), x))
            return round(best * 1_000_000_000)
    return round(mid * 1_000_000_000)


def check_recordable_interval(interval_s: float) -> float:
    """Refuse a poll interval that `poll_interval_ns` cannot recover from the stored samples count.

    Above 552 s several whole seconds give the same `expected_milli` (553 s and 554 s both give
    542), and a reading held a few seconds too short leaves every bucket a little unobserved, too long
    hides missed readings. Whole minutes, round values and every whole second up to 552 s are recorded
    exactly; for the others the error names the nearest ones that are.
    """
    if interval_s > MAX_POLL_INTERVAL_S:
        raise ValueError(f"a poll interval must be at most {MAX_POLL_INTERVAL_S}s (1h), got {interval_s:g}s")
    want = round(interval_s * 1_000_000_000)
    e = expected_milli(interval_s)
    if e > 0 and poll_interval_ns(e) == want:
        return interval_s
    near = sorted({poll_interval_ns(x) for x in (e - 1, e, e + 1) if x > 0}, key=lambda ns: abs(ns - want))
    hint = " or ".join(f"{ns / 1e9:g}s" for ns in sorted(near[:2]))
    raise ValueError(
        f"a poll interval of {interval_s:g}s cannot be recorded exactly by usage accounting"
        f" (samples per 5 minutes are kept to 3 decimals): use e.g. {hint}"
    )


def received_milli(covered_us: int, readings: int, expected: int) -> int:
    """Samples received by a bucket (`Bucket.received_milli`) from its accumulators: readings count
    1000 each, observed time its share of the samples expected. For readers of stored open buckets,
    without making a `Bucket` of each row."""
    counted = readings * 1000
    if covered_us and expected:
        counted += round(covered_us * expected / BUCKET_US)
    return counted


@dataclass(slots=True)
class Bucket:
    """An accumulating bucket. `covered_us` is kept exact while the bucket is open (see module doc)."""

    value: int = 0
    covered_us: int = 0  # counters: microseconds of the slot observed by non-gap intervals
    readings: int = 0  # gauges: readings that landed in the slot
    expected_milli: int = 0
    flags: int = PRESENT

    @property
    def received_milli(self) -> int:
        return received_milli(self.covered_us, self.readings, self.expected_milli)

    def merge(self, other: Bucket) -> None:
        self.value += other.value
        self.covered_us += other.covered_us
        self.readings += other.readings
        self.expected_milli = max(self.expected_milli, other.expected_milli)
        self.flags |= other.flags


Run = tuple[int, int, int]
"""(first bucket start, number of buckets, part added to each): `periods.split_runs`' runs."""


@dataclass(slots=True)
class Span:
    """A long unobserved interval (GAP or UNKNOWN) of one series, kept whole instead of as buckets.

    Why: a restart after two days down spreads every counter's first interval over 576 buckets, one
    `Bucket` each per series, gigabytes at 20,000 links (issue 15). The buckets fully inside such an
    interval all receive the same thing but their share of bytes (no observed time, the same flags
    and expected samples), and their shares are `split_delta`'s exact parts in at most two runs
    (`periods.split_runs`). The store merges a span into its week chunks run by run
    (`Chunk.add_run`), so what is stored is what the buckets would have written, bucket for bucket.
    """

    key: UsageKey
    runs: tuple[Run, ...]  # whole buckets, in order, contiguous
    expected_milli: int
    flags: int  # flag bits, PRESENT included

    @property
    def start(self) -> int:
        return self.runs[0][0]

    @property
    def end(self) -> int:
        b, n, _ = self.runs[-1]
        return b + n * BUCKET_S

    def value(self) -> int:
        return sum(n * p for _, n, p in self.runs)

    def weeks(self) -> dict[int, list[tuple[int, int, int]]]:
        """Its runs cut at week (chunk) boundaries: {week: [(first slot, end slot, part)]}."""
        out: dict[int, list[tuple[int, int, int]]] = {}
        for b, n, part in self.runs:
            a, end = b, b + n * BUCKET_S
            while a < end:
                week = a // CHUNK_S
                stop = min(end, (week + 1) * CHUNK_S)
                out.setdefault(week, []).append(((a % CHUNK_S) // BUCKET_S, (stop - week * CHUNK_S) // BUCKET_S, part))
                a = stop
        return out


Col = int | Sequence[int]
"""A column over a run of slots: an int when constant, else one int per slot."""

_WIDTHS = (("B", 0xFF), ("H", 0xFFFF), ("I", 0xFFFF_FFFF), ("Q", 0xFFFF_FFFF_FFFF_FFFF))
_BIG = sys.byteorder == "big"
assert array("I").itemsize == 4 and array("H").itemsize == 2 and array("Q").itemsize == 8


_UNSIGNED = frozenset("BHILQ")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # the constant encodings are signed 64-bit; wider goes to arrays


def _enc(vals: list[int], written: bytes | None = None) -> bytes:
    """'=' constant; '~' constant on written slots and 0 elsewhere (partial weeks); else an array."""
    first = vals[0]
    if vals.count(first) == len(vals) and _INT64_MIN <= first <= _INT64_MAX:
        return b"=" + first.to_bytes(8, "little", signed=True)
    fast = None if _BIG else _enc_unsigned(vals, written)
    if fast is not None:
        return fast
    hi = None
    if written is not None:
        c = hi = max(vals)
        n = written.count(1)
        # Counts first (C-level, and they fail at once for a varying column), then the positions.
        if (
            c <= _INT64_MAX
            and vals.count(c) == n
            and (c == 0 or vals.count(0) == len(vals) - n)
            and bytes(map(bool, vals)) == written
        ):
            return b"~" + c.to_bytes(8, "little", signed=True)
    lo = min(vals)
    if hi is None:
        hi = max(vals)
    tc = "q"
    if lo >= 0:
        tc = next(t for t, lim in _WIDTHS if hi <= lim)
    a = array(tc, vals)
    if _BIG:
        a.byteswap()
    return tc.encode() + a.tobytes()


_ZERO_LANE_TABLES = [bytes([0, k]) + bytes(254) for k in range(256)]  # 0 -> 0, 1 -> k (translate)


def _enc_unsigned(vals: list[int], written: bytes | None) -> bytes | None:
    """`_enc` of a varying column of unsigned 64-bit values, with C-level byte operations on its
    little-endian image instead of six passes of Python comparisons (min, max, counts, `bool` of
    each slot, the array): a closing flush encodes a twelfth of every series' week (three columns
    of 2,016 slots each), which was most of its CPU at 2,000 links (issue 15). The same bytes as
    `_enc`'s general way (tests/usage/test_chunk_merge.py); None (a value below 0 or past 64 bits,
    a big-endian host): the general way."""
    try:
        image = array("Q", vals)
    except OverflowError:
        return None
    return _enc_array(image, written)


def _enc_array(a: array[int], written: bytes | None) -> bytes:
    """`_enc` of an unsigned array's values, varying (not all equal), on a little-endian host, from
    the array's own bytes: `_enc_unsigned` gives it their 64-bit image, compaction the columns as
    decoded (no list, no 64-bit copy: it re-encodes a twelfth of the weeks at each flush)."""
    size, raw, n = a.itemsize, a.tobytes(), len(a)
    if written is not None:
        at = written.find(1)
        if at >= 0:
            c = a[at]  # the constant on the written slots, if the column is masked
            if c <= _INT64_MAX and len(written) == n and written.count(0) + written.count(1) == n:
                expect = bytearray(size * n)
                for k, byte in enumerate(c.to_bytes(size, "little")):
                    if byte:
                        expect[k::size] = written.translate(_ZERO_LANE_TABLES[byte])
                if raw == expect:
                    return b"~" + c.to_bytes(8, "little", signed=True)
    zero = bytes(n)
    w = size
    while w > 1 and all(raw[k::size] == zero for k in range(w // 2, w)):
        w //= 2
    if w < size:
        out = bytearray(w * n)
        for k in range(w):
            out[k::w] = raw[k::size]
        raw = bytes(out)
    return {1: b"B", 2: b"H", 4: b"I", 8: b"Q"}[w] + raw


_CONST = ord("=")
_MASKED = ord("~")
_ITEMSIZE = {ord(t): array(t).itemsize for t in "BHIQq"}
_unpack_q = struct.Struct("<q").unpack_from


def _dec(blob: bytes, pos: int) -> tuple[Col, int, bool]:
    """(column, next position, masked): a masked column is its constant, spread by Chunk.decode."""
    tc = blob[pos]
    if tc in (_CONST, _MASKED):
        return _unpack_q(blob, pos + 1)[0], pos + 9, tc == _MASKED
    a = array(chr(tc))
    end = pos + 1 + SLOTS * _ITEMSIZE[tc]
    a.frombytes(blob[pos + 1 : end])
    if _BIG:
        a.byteswap()
    return a, end, False


_FORMAT = 1
# Item type of a fresh column written slot by slot: received and expected fit 32 bits in practice,
# flags a byte; values (bytes) need 64. A value past its array's size turns the column into a list.
_SLOT_TYPE = ("Q", "I", "I", "B")
_SLOT_MAX = (2**64 - 1, 2**32 - 1, 2**32 - 1, 255)
_UNWRITTEN_RUNS = re.compile(rb"\x00+")  # runs of unwritten slots in a flags column's bytes
_TO_BIT = bytes([0] + [1] * 255)  # bytes.translate table: a written slot's flags byte -> 1, unwritten -> 0


def _spread(c: int, typecode: str, written: bytes) -> array[int]:
    """`c` on the written slots (flags byte not 0), 0 on the others, as an array of `typecode`
    (`c` must fit it): one translate per non-zero byte of `c` into its lane of the array's bytes.
    Why: finding the unwritten runs with a regular expression scans slot by slot in the regex
    engine, ~20 us a column over a week (the refresh spreads two or three columns of every series'
    current week; compaction as many)."""
    size = array(typecode).itemsize
    k = len(written.rstrip(b"\x00"))
    if written.find(0, 0, k) < 0:  # written up to k, then not (the current week up to now)
        out = array(typecode, [c]) * k
        out.frombytes(bytes(size * (len(written) - k)))
        return out
    bits = written.translate(_TO_BIT)
    raw = bytearray(size * len(bits))
    for k, byte in enumerate(c.to_bytes(size, sys.byteorder)):
        if byte:
            raw[k::size] = bits.translate(_ZERO_LANE_TABLES[byte])
    out = array(typecode)
    out.frombytes(raw)
    return out


def _written_bits(flags: list[int]) -> bytes:
    """1 per written slot (flags not 0), 0 elsewhere; by bytes.translate, each slot once per chunk write."""
    try:
        return bytes(flags).translate(_TO_BIT)
    except ValueError:  # flags beyond a byte (not written by this code): the general way
        return bytes(1 if f else 0 for f in flags)


class Chunk:
    """One series over one chunk (week): columns value, received_milli, expected_milli, flags."""

    __slots__ = ("cols", "masked")

    def __init__(self, cols: list[Col] | None = None, masked: Sequence[int] = ()) -> None:
        self.cols: list[Col] = cols if cols is not None else [0, 0, 0, 0]
        self.masked = set(masked)  # columns holding their constant for written slots only (lazy)

    def _written(self, a: int = 0, b: int = SLOTS) -> bytes:
        f = self.cols[3]
        return bytes([f]) * (b - a) if isinstance(f, int) else bytes(f[a:b])

    @classmethod
    def decode(cls, blob: bytes) -> Chunk:
        if blob[0] != _FORMAT:
            raise ValueError(f"unknown bucket chunk format {blob[0]}")
        cols: list[Col] = []
        masked: list[int] = []
        pos = 1
        for i in range(4):
            col, pos, is_masked = _dec(blob, pos)
            cols.append(col)
            if is_masked:
                masked.append(i)
        return cls(cols, masked)

    def encode(self) -> bytes:
        f = self.cols[3]
        if isinstance(f, array) and f.typecode == "B" and 3 not in self.masked:
            written = f.tobytes().translate(_TO_BIT)  # `_written_bits` of its list
        else:
            written = _written_bits(self._list(3))
        return bytes([_FORMAT]) + b"".join([self._enc_col(i, written) for i in range(3)]) + self._enc_col(3, None)

    def _enc_col(self, i: int, written: bytes | None) -> bytes:
        """`_enc(self._list(i), written)`, the same bytes, without the list for a column that is an
        unsigned array (as decoded, merged in place): compaction re-encodes a twelfth of the weeks at
        each flush, and turning each array into a list of ints and back into an array was about half of
        that encode (py-spy, issue 15)."""
        c = self.cols[i]
        if _BIG or i in self.masked or not isinstance(c, array) or c.typecode not in _UNSIGNED:
            return _enc(self._list(i), written)
        first = as_constant(c)
        if isinstance(first, int):
            return _enc([first], written) if first <= _INT64_MAX else _enc(self._list(i), written)
        return _enc_array(c, written)

    def _list(self, i: int) -> list[int]:
        c = self.cols[i]
        if i in self.masked:
            assert isinstance(c, int)
            lst = list(map(c.__mul__, self._written().translate(_TO_BIT)))
            self.masked.discard(i)
        elif isinstance(c, int):
            lst = [c] * SLOTS
        elif isinstance(c, list):
            lst = c
        else:
            lst = list(c)
        self.cols[i] = lst
        return lst

    def merge(self, slot: int, value: int, received_milli: int, expected: int, flags: int) -> None:
        """Add a bucket into `slot` (additive, so a correction to a closed bucket counts once).

        A decoded column stays an array and is written in place (the month-to-date refresh overlays
        every series' open buckets on its week: turning four columns of 2,016 slots into lists each
        time was most of the read); it becomes a list only when the value outgrows the array.
        """
        # Unrolled column by column (no generator, zip or tuples): the refresh merges every series'
        # open and pending buckets into its week this way, tens of thousands of calls at 2,000 links.
        col = self._slot_col
        v = col(0)
        x = v[slot] + value
        try:
            v[slot] = x
        except OverflowError:  # past the array's item size: the array is left as it was
            self._list(0)[slot] = x
        r = col(1)
        x = r[slot] + received_milli
        try:
            r[slot] = x
        except OverflowError:
            self._list(1)[slot] = x
        e = col(2)
        x = e[slot]
        if expected > x:
            x = expected
        try:
            e[slot] = x
        except OverflowError:
            self._list(2)[slot] = x
        f = col(3)
        x = f[slot] | flags | PRESENT
        try:
            f[slot] = x
        except OverflowError:
            self._list(3)[slot] = x

    def merge_all(self, items: Sequence[tuple[int, int, int, int, int]]) -> None:
        """`merge` of each (slot, value, received_milli, expected, flags) in order, the same values.

        Why: a week's pending and open buckets are merged into its chunk by every read of the
        current week (the refresh: several per series) and by every compaction; the columns are
        looked up once for all of them. A value past its array's item size takes `merge`'s way."""
        if not items:
            return  # (no column spread or made an array, as no `merge` at all)
        col = self._slot_col
        v, r, e, f = col(0), col(1), col(2), col(3)
        for slot, value, received_milli, expected, flags in items:
            x0 = v[slot] + value
            x1 = r[slot] + received_milli
            x2 = e[slot]
            if expected > x2:
                x2 = expected
            x3 = f[slot] | flags | PRESENT
            try:
                v[slot] = x0
                r[slot] = x1
                e[slot] = x2
                f[slot] = x3
            except OverflowError:  # column by column as `merge` (a value set again is the same value)
                for i, x in enumerate((x0, x1, x2, x3)):
                    c = self.cols[i]
                    assert not isinstance(c, int)
                    try:
                        c[slot] = x  # type: ignore[index]
                    except OverflowError:  # past the array's item size: the array is left as it was
                        self._list(i)[slot] = x
                v, r, e, f = col(0), col(1), col(2), col(3)

    def add_run(self, a: int, b: int, value: int, received_milli: int, expected: int, flags: int) -> None:
        """`merge` of the same bucket into every slot of [a, b), column by column (a span's run).

        Same values as `merge` slot by slot; a column that outgrows its array becomes a list."""
        for i, x in enumerate((value, received_milli, expected, flags | PRESENT)):
            if i < 2 and x == 0:
                continue  # adding nothing
            col = self._slot_col(i)
            seg = col[a:b]
            if i < 2:
                new = list(map(x.__add__, seg))
            elif i == 2:
                new = [y if y > x else x for y in seg]
            else:
                new = list(map(x.__or__, seg))
            if isinstance(col, array):
                try:
                    col[a:b] = array(col.typecode, new)
                    continue
                except OverflowError:  # past the array's item size: the array is left as it was
                    pass
            self._list(i)[a:b] = new

    def _slot_col(self, i: int) -> list[int] | array[int]:
        c = self.cols[i]
        if i in self.masked and isinstance(c, int) and 0 <= c <= _SLOT_MAX[i]:
            # A column constant on the written slots, spread as a compact array too: the refresh
            # overlays an open bucket on every series' week, and lists of 2,016 ints for received and
            # expected were most of its peak memory (issue 15)
            # The constant everywhere, then 0 on the runs of unwritten slots (a written prefix, an
            # unwritten end): C-level copies; a multiplication per slot was about 40 % of the refresh's
            # CPU (profile_store.py, 1,000 links).
            written = self._written()
            if c and len(written) == SLOTS:  # (flags a byte a slot: always, but for a foreign blob)
                arr = self.cols[i] = _spread(c, _SLOT_TYPE[i], written)
            else:
                arr = self.cols[i] = array(_SLOT_TYPE[i], [c]) * SLOTS
                if c:
                    for run in _UNWRITTEN_RUNS.finditer(written):
                        arr[run.start() : run.end()] = array(_SLOT_TYPE[i], [0]) * (run.end() - run.start())
            self.masked.discard(i)
            return arr
        if i not in self.masked:
            if isinstance(c, array):
                return c
            if isinstance(c, int) and 0 <= c <= _SLOT_MAX[i]:
                # A fresh column as a compact array (a list of 2,016 slots is 16 KiB per column; the
                # refresh overlays open buckets on a fresh chunk for every series of the current week)
                arr = self.cols[i] = array(_SLOT_TYPE[i], [c]) * SLOTS
                return arr
        return self._list(i)

    def merged_slice(
        self, a: int, b: int, items: Sequence[tuple[int, int, int, int, int]]
    ) -> tuple[Col, Col, Col, Col] | None:
        """`merge_all(items)` then `slice(a, b)`: the same columns (values and item types), but the
        chunk is left as it is and only [a, b) is built; None when anything is unusual (the whole
        week, an item outside [a, b), a constant or a value outside its column's array type, flags
        not one byte a slot): then take `merge_all` and `slice`, the general way, on this chunk.

        Why: every month-to-date refresh overlays the pending and open buckets of every series on
        its current week, and `merge_all` spreads each column over the whole week (2,016 slots,
        masked ones by runs) before `slice` copies the part asked for, often a few hundred slots;
        that was the largest part of the refresh's store read (issue 15)."""
        if not items:
            return self.slice(a, b)  # what merge_all of nothing leaves (the chunk is unchanged)
        if not 0 <= a < b <= SLOTS or (a == 0 and b == SLOTS) or 3 in self.masked:
            return None
        n = b - a
        fc = self.cols[3]
        if isinstance(fc, int):
            if not 0 <= fc <= 255:
                return None
            written = bytes([fc]) * n
        elif isinstance(fc, array) and fc.typecode == "B":
            written = fc[a:b].tobytes()
        else:
            return None
        cols: list[array[int]] = []
        for i, c in enumerate(self.cols):
            if isinstance(c, array) and i not in self.masked:
                cols.append(c[a:b])
                continue
            if not isinstance(c, int) or not 0 <= c <= _SLOT_MAX[i]:
                return None  # `_slot_col` makes it a list
            if c and i in self.masked:  # as `_slot_col` spreads it, over [a, b) only
                cols.append(_spread(c, _SLOT_TYPE[i], written))
            else:
                cols.append(array(_SLOT_TYPE[i], [c]) * n)
        v, r, e, f = cols
        for slot, value, rec, expected, flags in items:
            s = slot - a
            if not 0 <= s < n:
                return None
            x2 = e[s]
            if expected > x2:
                x2 = expected
            try:
                v[s] += value
                r[s] += rec
                e[s] = x2
                f[s] |= flags | PRESENT
            except OverflowError:  # `merge_all` makes the column a list
                return None
        # Each cut collapsed to an int when constant, as `slice` does (arrays compared as bytes,
        # after the first and last slots: most columns that vary differ there)
        return as_constant(v), as_constant(r), as_constant(e), as_constant(f)

    def slice(self, a: int, b: int) -> tuple[Col, Col, Col, Col]:
        """Columns over slots [a, b); a column constant over the slice becomes an int again.

        A masked column (constant on the written slots) over a part of the week with unwritten slots
        is spread over that part only, leaving the chunk as it is: the refresh slices every series'
        current week up to now and its lead-in before the month's start, and spreading whole weeks
        (2,016 slots a column) for that was most of its read (issue 15). The whole week is spread
        for real, as before (replicas slice a chunk more than once)."""
        spread: bytes | None = None  # the written bits over [a, b), when a masked column must be spread
        if self.masked:
            written = self._written(a, b)
            if written.count(0):
                if a == 0 and b == SLOTS:
                    for i in list(self.masked):  # spread the constants for real
                        self._list(i)
                else:
                    spread = written.translate(_TO_BIT)
        c0, c1, c2, c3 = self.cols
        if a == 0 and b == SLOTS and not self.masked:
            return c0, c1, c2, c3
        out: list[Col] = []
        for i, c in enumerate(self.cols):
            if spread is not None and i in self.masked:
                assert isinstance(c, int)
                if 0 <= c <= _SLOT_MAX[i]:  # as the merged read spreads it (`merged_slice`): an array
                    c = as_constant(_spread(c, _SLOT_TYPE[i], written))
                else:
                    c = as_constant(list(map(c.__mul__, spread)))
            elif i not in self.masked and not isinstance(c, int):  # masked here: every slot written
                c = as_constant(c[a:b])
            out.append(c)
        return out[0], out[1], out[2], out[3]


def as_constant(c: Sequence[int]) -> Col:
    """`c[0]` when every item of `c` (not empty) equals it, else `c`: a read gives a column constant
    over its slice as an int. An array is compared as bytes after its ends (most columns that vary
    differ there; its count() would compare slot by slot as objects)."""
    if isinstance(c, array):
        return c[0] if c[0] == c[-1] and c.tobytes() == c[:1].tobytes() * len(c) else c
    return c[0] if c.count(c[0]) == len(c) else c


def col_sum(col: Col, n: int) -> int:
    return col * n if isinstance(col, int) else sum(col)


def in_lanes(a: array[int], lane: int) -> bytearray:
    """The little-endian bytes of unsigned `a`, each item in `lane` bytes (at least its itemsize),
    the high ones zero: each byte plane copied into its place in C instead of an int object per item.
    Little-endian hosts only (the callers check `_BIG`)."""
    w = a.itemsize
    raw = a.tobytes()
    buf = bytearray(lane * len(a))
    for k in range(w):
        buf[k::lane] = raw[k::w]
    return buf


def column_totals(cols: Sequence[Col], length: int) -> list[int]:
    """Element-wise sum of columns (ints are constants), exact.

    Summing a thousand links bucket by bucket in Python costs ~50 ns per value; instead each column
    is laid out as one big integer with fixed-width lanes and the big integers are added, which
    CPython does in C. Lanes are 64-bit when every value fits in 32 bits (fewer than 2**32 columns
    cannot carry), else 96-bit. Signed columns or big-endian hosts take the plain path.
    """
    const = sum(c for c in cols if isinstance(c, int))
    arrays = [c for c in cols if not isinstance(c, int)]
    if not arrays:
        return [const] * length
    if _BIG or any(not isinstance(a, array) or a.typecode not in "BHIQ" for a in arrays) or len(arrays) < 4:
        summed = list(map(sum, zip(*arrays, strict=True))) if len(arrays) > 1 else list(arrays[0])
        return [x + const for x in summed] if const else summed
    lane = 8 if all(a.itemsize <= 4 for a in arrays if isinstance(a, array)) else 12
    total = 0
    for a in arrays:
        assert isinstance(a, array)
        total += int.from_bytes(in_lanes(a, lane), "little")
    out = total.to_bytes(lane * length, "little")
    if lane == 8:
        values = array("Q", out).tolist()
    else:
        lo = bytearray(8 * length)
        for k in range(8):
            lo[k::8] = out[k::lane]
        values = array("Q", bytes(lo)).tolist()
        hi = bytearray(4 * length)
        for k in range(4):
            hi[k::4] = out[8 + k :: lane]
        if hi.count(0) != len(hi):
            values = [v + (h << 64) for v, h in zip(values, array("I", bytes(hi)), strict=True)]
    return [x + const for x in values] if const else values
