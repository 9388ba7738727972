"""CPU per link per poll of the per-link path, for one or more checkouts side by side (before/after).

    .venv/bin/python bench/profile_perlink.py [--roots . /tmp/before] [--targets 4 --links 500] [--rounds 7]

For each checkout, a subprocess builds `profile_fold.Rig` from that checkout's own bench (the real
Monitor, usage Accumulator and exposition on synthetic polls of `--interfaces` rows, every link an
interface) and times, with process CPU time, `--cycles` poll cycles of three stages:

  fold    `Monitor.on_poll` of every target (rows, resolution, `apply_row`: normalisation, baselines)
  apply   the usage recorder's `vet_batch` + `Accumulator.apply` of the cycle's batches
  render  one /metrics page (`exposition.render`)

The store flush and the month-to-date refresh are left out (see profile_fold.py for those): this is
the work that follows the number of links on every poll. Rounds alternate between the checkouts, so
load from other jobs on a shared machine falls on both alike; the table gives the median and the
minimum over the rounds, in µs per link per poll. `--cprofile` adds the top functions (own time) of
the fold and apply of each checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
STAGES = ("fold", "apply", "render")

# Run inside the checkout under test (its own sitivmon and profile_fold), printing one JSON line.
_CHILD = r"""
import argparse, cProfile, io, json, logging, pstats, sys, tempfile, time
from pathlib import Path
root = sys.argv[1]
sys.path[:0] = [root + "/bench", root]
logging.disable(logging.CRITICAL)
import profile_fold
from sitivmon.exposition import render
from sitivmon.usage.recorder import vet_batch
targets, interfaces, links, interval, cycles, want_profile = (
    int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1")
args = argparse.Namespace(targets=targets, interfaces=interfaces, links=links, interval=interval)
rig = profile_fold.Rig(args, Path(tempfile.mkdtemp(prefix="sitivmon-perlink-")) / "state")
cpu = dict.fromkeys(("fold", "apply", "render"), 0.0)
prof = {s: cProfile.Profile(time.process_time) for s in ("fold", "apply")} if want_profile else {}

def timed(stage, fn):
    p = prof.get(stage)
    t = time.process_time()
    if p: p.enable()
    fn()
    if p: p.disable()
    cpu[stage] += time.process_time() - t

def one(measure):
    rig.now += interval
    polls = rig.polls(rig.now)
    def fold():
        for target, poll in polls:
            rig.monitor.on_poll(target, poll)
    batches = []
    def apply():
        for b in rig.batches:
            b, _ = vet_batch(b)
            rig.acc.apply(b)
    if not measure:
        fold(); apply(); render(rig.monitor, rig.cache); rig.batches.clear(); return
    timed("fold", fold)
    timed("apply", apply)
    rig.batches.clear()
    timed("render", lambda: render(rig.monitor, rig.cache))

for _ in range(3):
    one(False)  # first readings, baselines, label caches
for _ in range(cycles):
    one(True)
n = cycles * targets * links
out = {"us": {k: v / n * 1e6 for k, v in cpu.items()}}
if prof:
    tops = {}
    for stage, p in prof.items():
        st = pstats.Stats(p, stream=io.StringIO())
        total = sum(v[2] for v in st.stats.values()) or 1.0
        rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:12]
        tops[stage] = [(f"{Path(f).name}:{line}({name})", v[1], round(v[2] / total, 3)) for (f, line, name), v in rows]
    out["top"] = tops
print(json.dumps(out))
"""


def run(root: Path, args: argparse.Namespace, profile: bool) -> dict[str, object]:
    argv = [sys.executable, "-c", _CHILD, str(root), str(args.targets), str(args.interfaces), str(args.links)]
    argv += [str(args.interval), str(args.cycles), "1" if profile else "0"]
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"profile_perlink: {root} failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--roots", nargs="+", type=Path, default=[BENCH.parent], help="checkouts to compare")
    p.add_argument("--targets", type=int, default=4)
    p.add_argument("--interfaces", type=int, default=500)
    p.add_argument("--links", type=int, default=500)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--cycles", type=int, default=12, help="timed poll cycles per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cprofile", action="store_true")
    args = p.parse_args(argv)
    if args.links > args.interfaces:
        print("profile_perlink: --links cannot exceed --interfaces", file=sys.stderr)
        return 2
    roots = [r.resolve() for r in args.roots]
    for r in roots:
        if not (r / "bench" / "profile_fold.py").is_file():
            print(f"profile_perlink: {r} has no bench/profile_fold.py", file=sys.stderr)
            return 2
    figures: dict[Path, list[dict[str, float]]] = {r: [] for r in roots}
    for i in range(args.rounds):
        for r in roots if i % 2 == 0 else list(reversed(roots)):
            us = run(r, args, False)["us"]
            assert isinstance(us, dict)
            figures[r].append(us)
    print(
        f"{args.targets} targets x {args.links} links ({args.interfaces + 2} rows each), "
        f"{args.rounds} rounds of {args.cycles} cycles; CPU µs per link per poll, median (min)"
    )
    print(f"{'checkout':40} " + " ".join(f"{s:>16}" for s in (*STAGES, "total")))
    for r in roots:
        rows = figures[r]
        cells = []
        for s in (*STAGES, "total"):
            vals = [sum(x.values()) if s == "total" else x[s] for x in rows]
            cells.append(f"{statistics.median(vals):8.2f} ({min(vals):5.2f})")
        print(f"{str(r)[-40:]:40} " + " ".join(f"{c:>16}" for c in cells))
    if args.cprofile:
        for r in roots:
            top = run(r, args, True)["top"]
            assert isinstance(top, dict)
            for stage, rows in top.items():
                print(f"  {r.name} cProfile {stage} (own-time share):")
                for fn, calls, share in rows:
                    print(f"    {share * 100:5.1f}%  {calls:>8}  {fn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
