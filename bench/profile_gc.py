"""The collector's activity on the daemon's per-cycle work, with and without freezing the warm state.

    .venv/bin/python bench/profile_gc.py [--policy start|settle] [--cycles 60] [--targets 4 --links 500]

In process, on a virtual clock: `profile_fold.Rig` (the real Monitor, usage Accumulator with flushes
every 30 s and the month-to-date refresh every 300 s, one /metrics render per cycle), plus what the
walks leave alive while the polls are folded: the agents are walked at once, each ~`interfaces` x 29
varbinds as one (oid, value) tuple each in 25-varbind response lists. `gc_policy()` is applied first,
as `aio.run` does; `--policy settle` then calls `aio.gc_settle()` after the warm-up cycles, as the
daemon does after its first polls. Prints, per generation, collections per (virtual) minute, CPU
time per collection (process time, from gc.callbacks) and its share of the run's CPU, the objects
left in reach of full collections, and the RSS every `--every` cycles.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", choices=["start", "settle"], default="settle")
    p.add_argument("--targets", type=int, default=4)
    p.add_argument("--interfaces", type=int, default=500)
    p.add_argument("--links", type=int, default=500)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--cycles", type=int, default=60)
    p.add_argument("--every", type=int, default=30, help="RSS sample every this many cycles")
    args = p.parse_args(argv)
    logging.disable(logging.CRITICAL)
    from sitivmon.aio import gc_policy, gc_settle

    gc_policy()
    import profile_fold

    rig = profile_fold.Rig(args, Path(tempfile.mkdtemp(prefix="sitivmon-gc-")) / "state")
    rows = args.interfaces * 29 // 25

    def cycle() -> None:
        held = [
            [[(b"\x2b\x06\x01\x02\x01\x1f\x01\x01\x01\x06" + bytes([r % 256]), i * 1000) for i in range(25)]
             for r in range(rows)]
            for _ in range(args.targets)
        ]  # fmt: skip
        rig.cycle()
        del held

    for _ in range(6):
        cycle()
    if args.policy == "settle":
        gc_settle()
    stats = {g: [0, 0.0] for g in range(3)}
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            s = stats[info["generation"]]
            s[0] += 1
            s[1] += time.process_time() - started[0]

    gc.callbacks.append(callback)
    samples = [rss_mib()]
    cpu0 = time.process_time()
    for i in range(args.cycles):
        cycle()
        if (i + 1) % args.every == 0:
            samples.append(rss_mib())
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(callback)
    minutes = args.cycles * args.interval / 60
    print(
        f"policy {args.policy}: {args.targets} x {args.links} links, {args.cycles} cycles ({minutes:.0f} virtual min), "
        f"CPU {cpu:.1f} s; in reach of full collections {len(gc.get_objects())}, frozen {gc.get_freeze_count()}"
    )
    for g, (n, secs) in stats.items():
        each = secs * 1e3 / n if n else 0.0
        print(f"  gen{g}: {n / minutes:6.2f}/min  {each:7.2f} ms each  {secs / cpu * 100:5.2f} % of the CPU")
    print("  RSS MiB every", args.every, "cycles:", " ".join(f"{x:.0f}" for x in samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
