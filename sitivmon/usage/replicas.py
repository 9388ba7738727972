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
base started or stopped counting: the other replica's bytes there are not the base's to replace.
Runs are cut at the bounds of the read (the month's first and last bucket), so that a month's total
never borrows from its neighbour's. Elsewhere (the base died and did not come back, a replica was
added, a bucket still open) the switch error above remains.

Pure: columns in, columns and choices out; `sitivmon.usage.postgres` reads the rows and calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sitivmon.readings import Flag

from .buckets import FLAG_BITS, GAPLIKE, PRESENT, SLOTS, Chunk, Col

PPM = 1_000_000
"""Coverage is compared in millionths of the samples expected."""

UNTRUSTED = FLAG_BITS[Flag.RESET] | FLAG_BITS[Flag.CLAMP] | FLAG_BITS[Flag.UNKNOWN]
"""A base bucket with one of these may not carry its counter's whole increase (`exact_runs`)."""

_GAP = FLAG_BITS[Flag.GAP]
_GAP_RANK = PPM + 1
_OBSERVED_RANK = 2 * (PPM + 1)

Columns = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]]
"""One replica's value, received_milli, expected_milli and flags over the same run of slots."""


def rank(received: int, expected: int, flags: int) -> int:
    """How well one replica observed one bucket, as one integer (larger is better; rules 1-3 of the
    module doc): 0 never written; a gap bucket below every observed one; coverage within each."""
    if not flags:
        return 0
    coverage = min(received * PPM // expected, PPM) if expected > 0 else 0
    return (_GAP_RANK if flags & GAPLIKE else _OBSERVED_RANK) + coverage


def choose(replicas: Sequence[Columns], first: int = 0) -> list[int]:
    """For each slot, the index (in `replicas`) of the replica whose bucket the merge takes.

    `replicas` in their stable order (by replica name); `first` is the replica preferred before the
    first slot. A tie keeps the replica of the previous slot; a slot better observed by another
    replica switches to the lowest-ordered of the best.
    """
    if not replicas:
        return []
    n = len(replicas[0][0])
    ranks = [list(map(rank, r, e, f)) for _, r, e, f in replicas]
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
    order = sorted(range(len(w)), key=lambda i: (-(total * w[i] % s), i))
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
    i = 0
    while i < n:
        if choice[i] == base:
            i += 1
            continue
        j = i + 1
        while j < n and choice[j] != base and j not in cut:
            j += 1
        run = [k for k in range(i, j) if replicas[choice[k]][3][k]]
        if run and all(bf[k] and not bf[k] & UNTRUSTED and (bf[k] & _GAP or br[k] >= be[k]) for k in run):
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


def _dominates(cols: tuple[Col, Col, Col, Col], others: Sequence[tuple[Col, Col, Col, Col]]) -> bool:
    """Cheap test that the first replica's chunk is best on every slot (the common case: it observed
    the whole week, or every slot any replica wrote): then the merge is that chunk, unchanged."""
    _, r, e, f = cols
    if isinstance(f, int):
        if f & GAPLIKE or not f & PRESENT:
            return False
    else:
        if any(x & GAPLIKE for x in f):
            return False
        written = bytes(1 if x else 0 for x in f)
        for o in others:
            of = o[3]
            if isinstance(of, int):
                if of and written.count(0):
                    return False
            elif any(x and not w for x, w in zip(of, written, strict=True)):
                return False
    if isinstance(r, int) and isinstance(e, int):
        return r >= e
    flags = _full(f)
    return all(x >= y for x, y, z in zip(_full(r), _full(e), flags, strict=True) if z)


def merge_chunks(chunks: Sequence[Chunk], *, counter: bool = False, cuts: Iterable[int] = ()) -> Chunk:
    """One week of one series from several replicas' chunks (in replica name order), merged by the
    module doc's rule; `counter`: the series is a counter (its runs are made exact, `exact_runs`, cut
    at `cuts`). A single chunk is returned as it is (a daemon without replicas), and so is the first
    when it is best on every slot (the usual week of a pair)."""
    if len(chunks) == 1:
        return chunks[0]
    cols = [ch.slice(0, SLOTS) for ch in chunks]
    if _dominates(cols[0], cols[1:]):
        return chunks[0]
    full: list[Columns] = [(_full(v), _full(r), _full(e), _full(f)) for v, r, e, f in cols]
    base = base_replica(full)
    choice = choose(full, first=base)
    v, r, e, f = take(full, choice)
    if counter:
        v = exact_runs(full, choice, base, cuts)
    return Chunk([v, r, e, f])
