"""The incremental month-to-date refresh against the whole-month one, on a synthetic store (issue 15).

A store of `--links` links x 3 series (`profile_store.build`, `--weeks` weeks written up to `--now`) is
copied; then in one child process per mode:

- `whole`: `UsageLiveCollector(incremental=False)`: `--refreshes` refreshes, each after five minutes of
  writes (one poll per link closing its open bucket, the daemon's `compact_every`, written by a process
  of its own so that the peak RSS is the refresh's): the CPU of each.
- `incremental`: the same, the collector keeping its scans between refreshes (the first one is cold).

Each prints the CPU and the peak RSS of every refresh (VmHWM, reset before each), the RSS at the end,
and dumps the gauges of its last refresh; the parent checks that both dumps are identical.

Run: /work/main/.venv/bin/python bench/profile_refresh.py --links 20000 --weeks 5 [--db built.db]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from profile_store import COMMUNES, NOW, batch, bucket, build, vm_hwm_mib  # noqa: E402

from sitivmon.config.model import Commune  # noqa: E402
from sitivmon.usage.live import UsageLiveCollector  # noqa: E402
from sitivmon.usage.periods import BUCKET_S  # noqa: E402
from sitivmon.usage.recorder import Accumulator  # noqa: E402
from sitivmon.usage.store import COMPACT_EVERY, SqliteUsageStore  # noqa: E402


def vm_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(path: Path, links: int, now: int, mode: str, refreshes: int, dump: Path) -> None:
    clock = [float(now + 30)]
    communes = [Commune(id=f"c{i}", name=f"C{i}", insee=f"6900{i}") for i in range(COMMUNES)]
    col = UsageLiveCollector(
        lambda: SqliteUsageStore(path, read_only=True), communes, "Europe/Paris", refresh_s=300, clock=lambda: clock[0]
    )
    col.incremental = mode == "incremental"
    t = float(bucket(now) + 1)
    cpus: list[float] = []
    peaks: list[int] = []
    for i in range(refreshes):
        if i:  # five minutes of polls written by another process (its memory is not the refresh's)
            end = bucket(t) + BUCKET_S + 5.0
            subprocess.run([sys.executable, __file__, "--write", f"{t},{end}", "--links", str(links),
                            "--dir", str(path.parent)], check=True)  # fmt: skip
            t = end
            clock[0] = end + 25
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak of this refresh alone
        c0 = time.process_time()
        col.refresh()
        cpus.append(time.process_time() - c0)
        peaks.append(round(vm_hwm_mib()))
        read = getattr(col, "_scans", None)
        weeks = f"{read.read_weeks}, rescanned {read.rescanned}" if read is not None and col.incremental else "all"
        print(f"{mode} refresh {i}: {cpus[-1]:.2f} s CPU, peak RSS {peaks[-1]} MiB (weeks read: {weeks})", flush=True)
    samples = [(s.name, sorted(s.labels.items()), s.value) for f in col.collect() for s in f.samples]
    dump.write_text(json.dumps(sorted(samples), indent=0) + "\n")
    print(
        json.dumps(
            {
                "mode": mode,
                "cpu": [round(c, 3) for c in cpus],
                "peak_rss_mib": peaks,
                "rss_end_mib": round(vm_rss_mib()),
            }
        ),
        flush=True,
    )


def write(path: Path, links: int, t: float, end: float) -> None:
    """One poll per link from `t` to `end` (closing the open buckets), flushed as the recorder does."""
    with SqliteUsageStore(path, compact_every=COMPACT_EVERY) as st:
        acc = Accumulator(st.load_open_buckets())
        acc.apply(batch(links, t, end, 60.0))
        closed, open_b, baselines, _ = acc.snapshot()
        st.write(closed, open_b, baselines, now=end)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--links", type=int, default=20_000)
    ap.add_argument("--now", type=int, default=NOW)
    ap.add_argument("--weeks", type=int, default=5)
    ap.add_argument("--refreshes", type=int, default=3)
    ap.add_argument("--db", type=Path, help="built store to keep and reuse (copied for each mode)")
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--modes", default="whole,incremental")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--write", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write:
        t, end = map(float, args.write.split(","))
        write(args.dir / "usage.db", args.links, t, end)
        return 0
    if args.child:
        child(args.dir / "usage.db", args.links, args.now, args.child, args.refreshes, args.dir / f"{args.child}.json")
        return 0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        built = args.db or d / "built.db"
        if not built.exists():
            build(built, args.links, args.now, args.weeks)
        modes = args.modes.split(",")
        for mode in modes:
            shutil.copyfile(built, d / "usage.db")
            for suffix in ("-wal", "-shm"):
                (d / f"usage.db{suffix}").unlink(missing_ok=True)
            cmd = [sys.executable, __file__, "--links", str(args.links), "--now", str(args.now), "--dir", str(d)]
            subprocess.run([*cmd, "--refreshes", str(args.refreshes), "--child", mode], check=True)
        if len(modes) > 1:
            dumps = {m: (d / f"{m}.json").read_text() for m in modes}
            same = len(set(dumps.values())) == 1
            print(f"gauges of the last refresh identical across modes: {same}")
            return 0 if same else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
