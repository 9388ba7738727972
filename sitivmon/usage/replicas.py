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
   bucket, starting each week chunk at the first replica in name order.

Why rule 4: counters are split linearly over the buckets their poll interval spans
(`periods.split_delta`), at each replica's own poll phase. Summed over a run of buckets taken from
one replica, the shares add up to that replica's counter increase exactly (its boundary shares
telescope); where the merge switches from replica a to b at a bucket boundary t, the total differs
from the device's counter by `interp_a(t) - interp_b(t)`, the difference of the two replicas'
interpolations of the counter at t. Both interpolations lie between the counter's values at the ends
of the poll intervals straddling t, so one switch is off by at most the traffic of those two
intervals (a few bytes of rounding under steady traffic: tests/unit/test_replica_merge.py measures
it). Fewer switches, fewer such errors: a replica keeps the series until it observes a bucket worse
than the other. The chain restarts at each week chunk (the stored unit) so that a bucket's merged
value does not depend on where a read begins.

Pure: columns in, columns and choices out; `sitivmon.usage.postgres` reads the rows and calls it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .buckets import GAPLIKE, PRESENT, SLOTS, Chunk, Col

PPM = 1_000_000
"""Coverage is compared in millionths of the samples expected."""

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


def merge_chunks(chunks: Sequence[Chunk]) -> Chunk:
    """One week of one series from several replicas' chunks (in replica name order), merged by the
    module doc's rule. A single chunk is returned as it is (a daemon without replicas)."""
    if len(chunks) == 1:
        return chunks[0]
    cols = [ch.slice(0, SLOTS) for ch in chunks]
    if _dominates(cols[0], cols[1:]):
        return chunks[0]
    full: list[Columns] = [(_full(v), _full(r), _full(e), _full(f)) for v, r, e, f in cols]
    v, r, e, f = take(full, choose(full))
    return Chunk([v, r, e, f])
