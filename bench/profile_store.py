"""Profile the usage store at one machine's capacity, in process, without agents (issue 15).

Two measurements on a synthetic store of `--links` links (three series each: traffic in/out, link
state), written every five minutes from the start of the week up to `--now` (default 2026-11-30
20:00 UTC, the hour of the capacity run that peaked at 2.5 GiB):

- `flush`: the recorder's `Accumulator` holding every series' open bucket (and all baselines), then
  one poll per link that closes them: the time of `Accumulator.snapshot` + `store.write`, twice (the
  closing flush, then an ordinary one where nothing closed), with `--profile` a cProfile top.
- `refresh`: one month-to-date refresh (`UsageLiveCollector.refresh`, timezone Europe/Paris): wall
  time and the peak RSS of the process (each measurement runs in a child process of its own, so
  `ru_maxrss` is that refresh's).

Run: /work/main/.venv/bin/python bench/profile_store.py --links 20000 [--dir /tmp/x] [--what flush,refresh]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sitivmon.config.model import Commune
from sitivmon.readings import CounterInterval, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, PRESENT, SLOTS, Chunk
from sitivmon.usage.live import UsageLiveCollector
from sitivmon.usage.periods import BUCKET_S
from sitivmon.usage.recorder import Accumulator
from sitivmon.usage.store import COMPACT_EVERY, SqliteUsageStore

NOW = 1_796_068_800  # 2026-11-30 20:00 UTC
COMMUNES = 8


def keys_of(links: int) -> list[tuple[str, UsageKey, UsageKey, UsageKey]]:
    out = []
    for i in range(links):
        c, s = f"c{i % COMMUNES}", f"link-{i:05d}"
        out.append(
            (
                s,
                UsageKey(c, s, Quantity.TRAFFIC_IN),
                UsageKey(c, s, Quantity.TRAFFIC_OUT),
                UsageKey(c, s, Quantity.LINK_UP),
            )
        )
    return out


def build(path: Path, links: int, now: int, weeks: int = 1) -> None:
    """Closed buckets from the week's start to the bucket before `now` (one chunk per series), and
    one open bucket per series at `now`'s bucket, and a baseline per link. `weeks` > 1: as many
    weeks before, every slot written (a store late in the month)."""
    rng = random.Random(5)
    week = now // CHUNK_S
    series = [(kin, kout, kup) for _s, kin, kout, kup in keys_of(links)]
    with SqliteUsageStore(path) as st:
        for day in range(week - weeks + 1, week + 1):
            upto = (now - week * CHUNK_S) // BUCKET_S if day == week else SLOTS  # slots written
            st.import_chunks(week_chunks(rng, series, day, [1] * upto + [0] * (SLOTS - upto)))
        acc = Accumulator()
        acc.apply(batch(links, bucket(now) - 30, bucket(now) + 1, 60.0))
        closed, open_b, baselines, _ = acc.snapshot()
        st.write(closed, open_b, baselines, now=now)


def write_history(
    path: Path, series: Sequence[tuple[UsageKey, UsageKey, UsageKey]], start: int, now: int, interval_s: float = 60.0
) -> int:
    """Every series' closed five-minute buckets from `start` to the bucket before `now`, as a daemon
    polling them since `start` leaves its store (one chunk per series and week), without its open
    buckets and baselines: a daemon started on it begins its own, as after a restart with no
    baseline. `series`: (traffic in, traffic out, link up) of each link; `interval_s`: their poll
    interval, which sets each bucket's received and expected counts. Returns the weeks written.

    The month-to-date refresh of a daemon that has run for days reads the current week's buckets
    of every series at each refresh: a daemon started on an empty store never pays that
    (poll_bench's `--history`)."""
    rng = random.Random(5)
    first, week = start // CHUNK_S, now // CHUNK_S
    with SqliteUsageStore(path) as st:
        for w in range(first, week + 1):
            lo = max(0, (start - w * CHUNK_S) // BUCKET_S)
            hi = (now - w * CHUNK_S) // BUCKET_S if w == week else SLOTS
            written = [0] * lo + [1] * (hi - lo) + [0] * (SLOTS - hi)
            st.import_chunks(week_chunks(rng, series, w, written, readings=round(BUCKET_S / interval_s)))
    return week - first + 1


def week_chunks(
    rng: random.Random,
    series: Sequence[tuple[UsageKey, UsageKey, UsageKey]],
    week: int,
    written: list[int],
    readings: int = 5,
) -> list[tuple[UsageKey, int, Chunk]]:
    """One chunk per series for the written slots: random traffic, links up, `readings` polls a bucket."""
    flags = array("B", [PRESENT if w else 0 for w in written])
    rec = array("I", [readings * 1000 if w else 0 for w in written])
    items = []
    for kin, kout, kup in series:
        for k in (kin, kout):
            vals = array("Q", [rng.randrange(10**6, 10**9) if w else 0 for w in written])
            items.append((k, week, Chunk([vals, array("I", rec), array("I", rec), array("B", flags)])))
        items.append(
            (
                kup,
                week,
                Chunk([array("Q", [readings * w for w in written]), array("I", rec), array("I", rec), flags[:]]),
            )
        )
    return items


def bucket(t: float) -> int:
    return int(t) // BUCKET_S * BUCKET_S


def batch(links: int, start: float, end: float, interval: float) -> PollBatch:
    counters = []
    gauges = []
    baselines = {}
    for s, kin, kout, kup in keys_of(links):
        counters.append(CounterInterval(kin, start, end, 12345))
        counters.append(CounterInterval(kout, start, end, 54321))
        gauges.append(GaugeReading(kup, end, 1.0))
        baselines[s] = f'{{"in":[1,2,3],"out":[4,5,6],"t":{end:f}}}'
    return PollBatch("t", end, interval, tuple(counters), tuple(gauges), baselines)


def measure_flush(path: Path, links: int, now: int, profile: bool, compact_every: int, closes: int) -> None:
    with SqliteUsageStore(path, compact_every=compact_every) as st:
        acc = Accumulator(st.load_open_buckets())
        t = float(bucket(now) + 1)
        totals = {"ordinary": [], "closing": []}
        # per bucket: a poll inside the open bucket (nothing closes), then one past its end (all close)
        for i in range(closes):
            b0 = bucket(t)
            for label, end in (("ordinary", t + 60), ("closing", b0 + BUCKET_S + 5.0)):
                acc.apply(batch(links, t, end, 60.0))
                t = end
                prof = cProfile.Profile() if profile and label == "closing" and i == 0 else None
                started = time.perf_counter()
                if prof:
                    prof.enable()
                closed, open_b, baselines, _ = acc.snapshot()
                st.write(closed, open_b, baselines, now=end)
                if prof:
                    prof.disable()
                took = time.perf_counter() - started
                totals[label].append(took)
                print(
                    f"flush {label}: {took:.2f} s ({len(closed)} closed buckets, {len(open_b)} open,"
                    f" {len(baselines)} baselines)",
                    flush=True,
                )
                if prof:
                    pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        for label, xs in totals.items():
            print(f"{label}: {len(xs)} flushes, max {max(xs):.2f} s, total {sum(xs):.2f} s")
        print(f"flush: peak RSS {vm_hwm_mib():.0f} MiB (the accumulator of every link's open buckets, and a flush)")


def vm_hwm_mib() -> float:
    """Peak RSS of this process (VmHWM: reset by exec, unlike ru_maxrss which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_refresh(path: Path, now: int, dump: Path | None = None) -> None:
    rss0 = vm_hwm_mib()
    communes = [Commune(id=f"c{i}", name=f"C{i}", insee=f"6900{i}") for i in range(COMMUNES)]
    col = UsageLiveCollector(
        lambda: SqliteUsageStore(path, read_only=True), communes, "Europe/Paris", refresh_s=300, clock=lambda: now + 30
    )
    started = time.perf_counter()
    cpu0 = time.process_time()
    col.refresh()
    took, cpu = time.perf_counter() - started, time.process_time() - cpu0
    rss1 = vm_hwm_mib()
    samples = [(s.name, sorted(s.labels.items()), s.value) for f in col.collect() for s in f.samples]
    print(
        f"refresh: {took:.2f} s wall, {cpu:.2f} s CPU, peak RSS {rss1:.0f} MiB (before {rss0:.0f} MiB),"
        f" {len(samples)} samples",
        flush=True,
    )
    if dump:  # the gauges, to compare two versions of the code on the same store
        dump.write_text(json.dumps(sorted(samples), indent=0) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--links", type=int, default=20_000)
    ap.add_argument("--now", type=int, default=NOW)
    ap.add_argument("--weeks", type=int, default=1, help="weeks written up to --now (1: the current one)")
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--db", type=Path, help="built store to keep and reuse (copied for each measurement)")
    ap.add_argument("--what", default="flush,refresh")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--dump", type=Path, help="refresh: write the gauges' samples there (JSON) to compare versions")
    ap.add_argument("--compact-every", type=int, default=COMPACT_EVERY, help="SqliteUsageStore(compact_every=)")
    ap.add_argument("--closes", type=int, default=1, help="bucket closes measured (each after an ordinary flush)")
    ap.add_argument("--child", choices=["flush", "refresh"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        path = args.dir / "usage.db"
        if args.child == "flush":
            measure_flush(path, args.links, args.now, args.profile, args.compact_every, args.closes)
        else:
            measure_refresh(path, args.now, args.dump)
        return 0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        built = args.db or d / "built.db"
        if not built.exists():
            started = time.perf_counter()
            build(built, args.links, args.now, args.weeks)
            print(
                f"built {args.links} links x 3 series x {args.weeks} weeks in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        base = [sys.executable, __file__, "--links", str(args.links), "--now", str(args.now), "--dir", str(d)]
        for what in args.what.split(","):
            shutil.copyfile(built, d / "usage.db")  # each measurement on the store as built
            extra = ["--compact-every", str(args.compact_every), "--closes", str(args.closes)]
            if args.dump:
                extra += ["--dump", str(args.dump)]
            subprocess.run([*base, "--child", what, *extra, *(["--profile"] if args.profile else [])], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
