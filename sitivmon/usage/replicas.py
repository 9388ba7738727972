"""Merging a replica pair's buckets: per series and per 5-minute bucket, ONE replica's bucket (pure).

Why one and never the sum: both replicas of a pair (issue 13, docs/usage.md "Replica pairs on
PostgreSQL") poll the same devices and each records every byte it saw, so adding their buckets would
count the traffic twice. Each bucket of the merged series is therefore taken whole (value, samples
received and expected, flags) from the replica that observed it best:

1. a bucket written (flag PRESENT) beats one never written;
2. an observed bucket (no GAP/UNKNOWN flag) beats a gap bucket: a gap is carried only when no
   replica observed the bucket, and then it is one replica's gap bucket, never two added up;
3. then the larger share of the samples expected (`received / expected`, capped at 1: a gauge polled
   every 90 s lands 3 or 4 readings in a bucket by phase alone, and a bucket observed whole is whole);
4. ties (both observed the bucket whole, the usual case) keep the replica chosen for the previous
   bucket, starting each week chunk at the base replica: the one that wrote the most buckets of the
   week, the first in name order on a tie.

Exactness. Counters are split linearly over the buckets their poll interval spans
(`periods.split_delta`), at each replica's own poll phase. Summed over a run of buckets taken from
one replica, the shares add up to that replica's counter increase exactly (its boundary shares
telescope); where the merge switches from replica a to b at a bucket boundary t, the total differs
from the device's counter by `interp_a(t) - interp_b(t)`, the difference of the two replicas'
interpolations of the counter at t. Both interpolations lie between the counter's values at the ends
of the poll intervals straddling t, so one switch is off by at most the traffic within one poll
interval either side of t (rule 4 keeps switches few). tests/unit/test_replica_merge.py measures it
(60 s polls, replicas 34 s apart, 4 hours): 0 bytes under steady traffic; under bursts of up to 1 GB
in one second, up to 564 MB for one switch (1.5 % of the four hours).

`exact_runs` removes that error wherever it can be: a replica killed and restarted continues from its
committed baseline, so the interval spanning its outage carries every byte (flagged GAP, spread
linearly over the buckets it spans) and the base replica's total over any run of buckets taken from
the other replica is still exact. When the base replica's counter was continuous over the whole run
(every bucket of it written, each observed whole or flagged GAP, none RESET/CLAMP/UNKNOWN), the run's
values (counters only) are re-apportioned to sum to the base's total over the run, in proportion to
the other replica's values (integer largest remainder): the run keeps the shape the other replica
observed and the month keeps the base's exact total (measured: 0 bytes off in every burst scenario
where the killed replica came back). A base bucket observed only in part without a gap is where the
base started or stopped counting: the other replica's bytes there are not the base's to replace;
except the base's latest bucket (still open at the live edge: its count is exact up to its latest
poll), and slots after it are left as the other replica recorded them (bytes the base has not polled
yet), so that the month-to-date figure is exact as soon as the base has polled past the switch.
Runs are cut at the bounds of the read (the month's first and last bucket), so that a month's total
never borrows from its neighbour's. Elsewhere (the base died and did not come back, a replica was
added, a bucket still open) the switch error above remains.

Pure: columns in, columns and choices out; `sitivmon.usage.postgres` reads the rows and calls it.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sitivmon.readings import Flag

from .buckets import FLAG_BITS, GAPLIKE, SLOTS, Chunk, Col

PPM = 1_000_000
"""Coverage is compared in millionths of the samples expected."""

UNTRUSTED = FLAG_BITS[Flag.RESET] | FLAG_BITS[Flag.CLAMP] | FLAG_BITS[Flag.UNKNOWN]
"""A base bucket with one of these may not carry its counter's whole increase (`exact_runs`)."""

_GAP = FLAG_BITS[Flag.GAP]
_GAP_RANK = PPM + 1
_OBSERVED_RANK = 2 * (PPM + 1)

Columns = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]]
"""One replica's value, received_milli, expected_milli and flags over the same run of slots."""


def whole_samples(expected: int, counter: bool) -> int:
    """Samples (thousandths) that make a bucket whole. Counters count observed time, so a bucket
    observed end to end has exactly `expected`; gauges count readings, and a bucket holds either of
    the two whole numbers around `expected` by phase alone (3 or 4 at 90 s): the lower one is whole."""
    return expected if counter else max(expected // 1000, 1) * 1000


def rank(received: int, expected: int, flags: int, counter: bool = True) -> int:
    """How well one replica observed one bucket, as one integer (larger is better; rules 1-3 of the
    module doc): 0 never written; a gap bucket below every observed one; coverage within each."""
    if not flags:
        return 0
    whole = whole_samples(expected, counter)
    coverage = min(received * PPM // whole, PPM) if whole > 0 else 0
    return (_GAP_RANK if flags & GAPLIKE else _OBSERVED_RANK) + coverage


def choose(replicas: Sequence[Columns], first: int = 0, *, counter: bool = True) -> list[int]:
    """For each slot, the index (in `replicas`) of the replica whose bucket the merge takes.

    `replicas` in their stable order (by replica name); `first` is the replica preferred before the
    first slot. A tie keeps the replica of the previous slot; a slot better observed by another
    replica switches to the lowest-ordered of the best. The reference, slot by slot:
    `merge_chunks` computes the same choice on whole columns at once.
    """
    if not replicas:
        return []
    n = len(replicas[0][0])
    ranks = [[rank(x, y, z, counter) for x, y, z in zip(r, e, f, strict=True)] for _, r, e, f in replicas]
    out: list[int] = []
    cur = first
    for i in range(n):
        best = ranks[cur][i]
        pick = cur
        for j, rk in enumerate(ranks):
            if rk[i] > best:
                best, pick = rk[i], j
        out.append(pick)
        cur = pick
    return out


def take(replicas: Sequence[Columns], choice: Sequence[int]) -> tuple[list[int], list[int], list[int], list[int]]:
    """The merged columns: each slot's four values from the replica `choice` names (never a sum)."""
    cols: list[list[int]] = []
    for c in range(4):
        columns = [r[c] for r in replicas]
        cols.append([columns[j][i] for i, j in enumerate(choice)])
    return cols[0], cols[1], cols[2], cols[3]


def base_replica(replicas: Sequence[Columns]) -> int:
    """The replica that wrote the most slots; the first (in name order) on a tie."""
    written = [len(f) - list(f).count(0) for _, _, _, f in replicas]
    return max(range(len(replicas)), key=lambda j: (written[j], -j))


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights` (non-negative; all zero: evenly), integer largest
    remainder, ties to the earlier: the parts always sum to `total`, as `periods.split_delta`."""
    w = list(weights) if sum(weights) > 0 else [1] * len(weights)
    s = sum(w)
    parts = [total * x // s for x in w]
    rest = total - sum(parts)
    if rest:
        remainders = [total * x % s for x in w]
        order = sorted(range(len(w)), key=remainders.__getitem__, reverse=True)  # stable: ties stay in order
        for i in order[:rest]:
            parts[i] += 1
    return parts


def exact_runs(replicas: Sequence[Columns], choice: Sequence[int], base: int, cuts: Iterable[int] = ()) -> list[int]:
    """The merged value column of a counter series, each run of slots taken from a replica other than
    `base` re-apportioned to the base's total over the run where the base's counter was continuous
    there (module doc, "Exactness"). `cuts`: slots that start a new run (the bounds of the read)."""
    values = [replicas[j][0][i] for i, j in enumerate(choice)]
    bv, br, be, bf = replicas[base]
    cut = set(cuts)
    n = len(choice)
    last = max((k for k in range(n) if bf[k]), default=-1)
    i = 0
    while i < n:
        if choice[i] == base:
            i += 1
            continue
        j = i + 1
        while j < n and choice[j] != base and j not in cut:
            j += 1
        run = [k for k in range(i, min(j, last + 1)) if replicas[choice[k]][3][k]]
        if run and all(bf[k] and not bf[k] & UNTRUSTED and (bf[k] & _GAP or br[k] >= be[k] or k == last) for k in run):
            target = sum(bv[k] for k in run)
            if target >= 0 and all(values[k] >= 0 for k in run):
                for k, x in zip(run, apportion(target, [values[k] for k in run]), strict=True):
                    values[k] = x
        i = j
    return values


def switches(choice: Sequence[int], flags: Sequence[int] | None = None) -> int:
    """How many times the merge changes replica between written slots (each is a bucket boundary
    where the total may be off by the two replicas' interpolation difference, module doc)."""
    count = 0
    prev: int | None = None
    for i, j in enumerate(choice):
        if flags is not None and not flags[i]:
            continue
        if prev is not None and j != prev:
            count += 1
        prev = j
    return count


def _full(col: Col) -> Sequence[int]:
    return [col] * SLOTS if isinstance(col, int) else col


# -- the same merge on whole columns (what readers run) -------------------------------------------------------
#
# Slot by slot in Python, a week of a pair costs milliseconds (ranks, choice, columns), and a month
# read of 20,000 links holds 100,000 series-weeks, most of them gauges (link state). So the columns
# are turned into masks of 0/1 bytes with C-level operations (bytes.translate, map with operator
# functions, big-integer bit operations), and only the slots where the replica in use is not known
# to stay are ranked one by one: in a week both replicas observed whole, none.

_TO_BIT = bytes([0] + [1] * 255)
_GAPLIKE_BIT = bytes(1 if x & GAPLIKE else 0 for x in range(256))
_UNTRUSTED_BIT = bytes(1 if x & UNTRUSTED else 0 for x in range(256))
_GAP_BIT = bytes(1 if x & _GAP else 0 for x in range(256))


def _flag_bytes(f: Col, n: int) -> bytes | None:
    """The flags column as one byte per slot; None when a value does not fit (not written by this code)."""
    if isinstance(f, int):
        return bytes([f]) * n if 0 <= f <= 255 else None
    try:
        return bytes(f)
    except ValueError:
        return None


def _mask(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _unmask(m: int, n: int) -> bytes:
    return m.to_bytes(n, "big")


@dataclass(frozen=True, slots=True)
class _Masks:
    """One replica's week as 0/1 byte masks, as big integers (one byte per slot)."""

    written: int
    whole: int  # written, no GAP/UNKNOWN, samples at least whole_samples
    continuous: int  # written, no RESET/CLAMP/UNKNOWN, whole or GAP (exact_runs' base condition)
    untrusted: int  # RESET/CLAMP/UNKNOWN


def _masks(ch: Chunk, n: int, counter: bool) -> _Masks | None:
    """The masks of one replica's chunk, from its columns as decoded when they allow it: a column
    constant on the written slots (most received and expected columns) is not spread slot by slot
    (what is never written does not matter to any mask), so a week the merge returns untouched is
    spread once, by the reader, as for a daemon without a pair. None: flags beyond a byte."""
    f = ch.cols[3] if 3 not in ch.masked else ch.slice(0, n)[3]
    fb = _flag_bytes(f, n)
    if fb is None:
        return None
    written = _mask(fb.translate(_TO_BIT))
    r, e = ch.cols[1], ch.cols[2]
    if isinstance(r, int) and isinstance(e, int):
        enough = _mask(b"\x01" * n) if r >= whole_samples(e, counter) else 0
    else:
        _, r, e, _ = ch.slice(0, n)
        wholes: Iterable[int]
        if isinstance(e, int):
            wholes = itertools.repeat(whole_samples(e, counter))
        elif counter:
            wholes = e
        else:
            table = {x: whole_samples(x, counter) for x in set(e)}
            wholes = map(table.__getitem__, e)
        enough = _mask(bytes(map(operator.ge, _full(r), wholes)))
    gaplike = _mask(fb.translate(_GAPLIKE_BIT))
    untrusted = _mask(fb.translate(_UNTRUSTED_BIT))
    gap = _mask(fb.translate(_GAP_BIT))
    whole = written & enough & ~gaplike
    return _Masks(written, whole, written & ~untrusted & (enough | gap), untrusted)


_RANK_ONE_BY_ONE = 64
"""Slots ranked one at a time before ranking the whole week at once (a hole: a few; gauges whose
replicas see a different number of readings in many buckets: most)."""


def _at(col: Col, k: int) -> int:
    return col if isinstance(col, int) else col[k]


def _runs(choice: bytes) -> list[tuple[int, int, int]]:
    """(first slot, end slot, replica) of each run of equal choices (`bytes.find`: C-level scans)."""
    out: list[tuple[int, int, int]] = []
    n, i = len(choice), 0
    present = set(choice)
    while i < n:
        j = choice[i]
        ends = [k for k in (choice.find(x, i) for x in present if x != j) if k >= 0]
        k = min(ends) if ends else n
        out.append((i, k, j))
        i = k
    return out


def merge_chunks(chunks: Sequence[Chunk], *, counter: bool = False, cuts: Iterable[int] = ()) -> Chunk:
    """One week of one series from several replicas' chunks (in replica name order), merged by the
    module doc's rule (`choose`, then `exact_runs` for a counter, cut at `cuts`), on whole columns.
    A single chunk is returned as it is (a daemon without replicas), and so is the base's when it is
    best on every slot (the usual week of a pair)."""
    if len(chunks) == 1:
        return chunks[0]
    n = SLOTS
    masks = [_masks(ch, n, counter) for ch in chunks]
    if any(m is None for m in masks):  # flags beyond a byte: the reference, slot by slot
        full = [(_full(v), _full(r), _full(e), _full(f)) for v, r, e, f in (ch.slice(0, n) for ch in chunks)]
        base = base_replica(full)
        choice = choose(full, first=base, counter=counter)
        v, r, e, f = take(full, choice)
        if counter:
            v = exact_runs(full, choice, base, cuts)
        return Chunk([v, r, e, f])
    ms = [m for m in masks if m is not None]
    all_ones = _mask(b"\x01" * n)
    written = [m.written for m in ms]
    counts = [w.bit_count() for w in written]
    base = max(range(len(ms)), key=lambda j: (counts[j], -j))
    stay: list[bytes] = []  # where replica j, once in use, certainly stays: whole, or alone to have written
    for j, m in enumerate(ms):
        others = 0
        for k, w in enumerate(written):
            if k != j:
                others |= w
        stay.append(_unmask((m.whole | (all_ones & ~others)) & all_ones, n))
    if stay[base].find(0) < 0:
        return chunks[base]  # the base observed whole wherever anyone wrote: the usual week of a pair
    cols = [ch.slice(0, n) for ch in chunks]
    picks = bytearray([base]) * n
    ranks: list[list[int]] = []  # every slot's rank, once more than a few slots had to be ranked
    evaluated = 0
    cur, i = base, 0
    while i < n:
        k = stay[cur].find(0, i)
        if k < 0:
            picks[i:] = bytes([cur]) * (n - i)
            break
        picks[i:k] = bytes([cur]) * (k - i)
        if not ranks and evaluated < _RANK_ONE_BY_ONE:
            evaluated += 1
            best = rank(_at(cols[cur][1], k), _at(cols[cur][2], k), _at(cols[cur][3], k), counter)
            pick = cur
            for other, oc in enumerate(cols):
                rk = rank(_at(oc[1], k), _at(oc[2], k), _at(oc[3], k), counter)
                if rk > best:
                    best, pick = rk, other
            picks[k] = pick
            cur, i = pick, k + 1
            continue
        if not ranks:
            ranks = [
                [rank(x, y, z, counter) for x, y, z in zip(_full(rc), _full(ec), _full(fc), strict=True)]
                for _, rc, ec, fc in cols
            ]
        best, pick = ranks[cur][k], cur
        for other, row in enumerate(ranks):
            if row[k] > best:
                best, pick = row[k], other
        picks[k] = pick
        cur, i = pick, k + 1
    runs = _runs(bytes(picks))
    if len(runs) == 1 and (runs[0][2] == base or not counter):
        return chunks[runs[0][2]]
    merged: list[list[int]] = [[], [], [], []]
    for a, b, who in runs:
        for c in range(4):
            col = cols[who][c]
            merged[c].extend([col] * (b - a) if isinstance(col, int) else col[a:b])
    if counter:
        from_base = [(a, b, who == base) for a, b, who in runs]
        mb = ms[base]
        _exact(merged[0], merged[3], from_base, mb.written, mb.untrusted, mb.continuous, cols[base][0], set(cuts))
    return Chunk([merged[0], merged[1], merged[2], merged[3]])


def _exact(
    values: list[int],
    flags: list[int],
    runs: list[tuple[int, int, bool]],
    base_written: int,
    base_untrusted: int,
    base_continuous: int,
    base_values: Col,
    cuts: set[int],
) -> None:
    """`exact_runs` on whole columns, in place: each run of slots not taken from the base (`runs`:
    first slot, end, taken from the base), cut at `cuts` and ending at the base's last written slot,
    gets the base's total when the base's counter was continuous wherever the run was written."""
    n = len(values)
    written = bytes(flags).translate(_TO_BIT)
    last = _unmask(base_written, n).rfind(1)
    if last >= 0:  # the base's latest bucket: its count is exact up to its latest poll
        base_continuous |= (base_written & ~base_untrusted) & (1 << (8 * (n - 1 - last)))
    bad = _unmask(_mask(written) & ~base_continuous & _mask(b"\x01" * n), n)
    spans: list[tuple[int, int]] = []
    for a, b, is_base in runs:
        if is_base:
            continue
        if spans and spans[-1][1] == a:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    for a0, end in spans:
        b0 = min(end, last + 1)  # slots after the base's latest bucket: bytes it has not counted yet
        if b0 <= a0:
            continue
        points = [a0, *sorted(c for c in cuts if a0 < c < b0), b0]
        for a, b in itertools.pairwise(points):
            if bad.find(1, a, b) >= 0:
                continue
            slots = [k for k in range(a, b) if written[k]]
            if not slots:
                continue
            target = base_values * len(slots) if isinstance(base_values, int) else sum(base_values[k] for k in slots)
            weights = [values[k] for k in slots]
            if target < 0 or min(weights) < 0:
                continue
            for k, x in zip(slots, apportion(target, weights), strict=True):
                values[k] = x
