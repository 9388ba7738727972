"""Micro-benchmark of the walk guard alone (no agent, no root): CPU per varbind of absorb_batch and of
the prototypes in bench/proto.py, on gufo-shaped batches of an ifXTable column (25 per response), and
a check that they return the same rows, stop reasons and end-of-walk decisions on odd batches.

    .venv/bin/python bench/guard_micro.py [--rows 500] [--max-repetitions 25]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from proto import absorb_batch_fast  # noqa: E402

from sitivmon.snmp.client import WalkResult  # noqa: E402
from sitivmon.snmp.walkguard import absorb_batch  # noqa: E402

PREFIX = "1.3.6.1.2.1.31.1.1.1.6"


def batches(rows: int, per: int) -> list[list[tuple[str, object] | None]]:
    out: list[list[tuple[str, object] | None]] = []
    items: list[tuple[str, object] | None] = [(f"{PREFIX}.{i}", 123456789 + i) for i in range(1, rows + 1)]
    for k in range(0, rows, per):
        out.append(items[k : k + per])
    out[-1] = [*out[-1], None]
    return out


def walk(fn, bs, cap: int = 10**6, last=None):  # type: ignore[no-untyped-def]
    """Rows, stop reason and the `last` after every response, as the walker sees them."""
    result = WalkResult()
    lasts = []
    for b in bs:
        last, done = fn(PREFIX, b, result, last, cap)
        lasts.append((last, done))
        if done:
            break
    return result.rows, result.stopped, lasts


def same(a, b) -> bool:  # type: ignore[no-untyped-def]
    return a == b


def odd_cases() -> list[list[list[tuple[str, object] | None]]]:
    p = PREFIX
    return [
        [[(f"{p}.1", 1), (f"{p}.3", 3), (f"{p}.2", 2)]],  # non-increasing inside a batch
        [[(f"{p}.1", 1), (f"{p}.2", 2)], [(f"{p}.2", 2), (f"{p}.5", 5)]],  # repeated across batches
        [[(f"{p}.1", 1), ("1.3.6.1.2.1.31.1.1.1.7.1", 9)]],  # leaves the column
        [[(f"{p}.1.4.192.0.2.1", 1), (f"{p}.1.4.192.0.2.2", 2)], [(f"{p}.1.4.192.0.2.3", 3), None]],  # multi-part
        [[(f"{p}.1", 1), (f"{p}.2", 2)], [(f"{p}.3.1", 3), (f"{p}.4", 4)]],  # mixed index lengths
        [[(f"{p}.9", 1), (f"{p}.10", 2), (f"{p}.100", 3)]],  # numeric, not string, order
        [[(f"{p}.5", 5), ("1.3.6.1.2.1.31.1.1.1.5.7", 7), (f"{p}.9", 9)]],  # outsider in the middle
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--max-repetitions", type=int, default=25)
    ap.add_argument("--loops", type=int, default=400)
    args = ap.parse_args()
    bs = batches(args.rows, args.max_repetitions)
    fns = {"current": absorb_batch, "fast": absorb_batch_fast}
    ref = walk(absorb_batch, bs)
    for name, fn in fns.items():
        assert same(walk(fn, bs), ref), name
        for case in odd_cases():
            assert same(walk(fn, case), walk(absorb_batch, case)), (name, case)
        for cap in (1, 24, 25, 26, 499):
            assert same(walk(fn, bs, cap), walk(absorb_batch, bs, cap)), (name, cap)
        for start in (
            (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 7),
            (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 7),
            (1, 3, 6, 1, 2, 1, 31),
            (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 5, 99),
            (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6),
        ):
            assert same(walk(fn, bs, last=start), walk(absorb_batch, bs, last=start)), (name, start)
    print("equivalence: same rows, stop reasons and `last` on", len(odd_cases()), "odd cases, 5 caps, 5 starts")
    base = None
    for name, fn in fns.items():
        best = float("inf")
        for _ in range(5):
            t = time.process_time()
            for _ in range(args.loops):
                walk(fn, bs)
            best = min(best, time.process_time() - t)
        us = best / (args.loops * args.rows) * 1e6
        base = base or us
        print(f"{name:<8} {us:6.3f} µs/varbind  ({(1 - us / base) * 100:5.1f}% less than current)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
