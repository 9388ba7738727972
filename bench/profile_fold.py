"""Where sitivmon's CPU per link goes, in process and without the network: the per-poll fold and what
follows it, at "every interface a link" density.

Synthetic polls (the `interfaces` profile's 27 columns for `--interfaces` rows plus lo and mgmt0, HC
counters advancing every poll) of `--targets` targets with `--links` links each go through the real
code, on a virtual clock of `--interval` seconds per cycle:

  fold     `Monitor.on_poll` (rows, resolve, `apply_row` -> `counters.step`, baselines)
  apply    the usage recorder's fold of the batches (`Accumulator.apply`)
  flush    `Accumulator.snapshot` + `SqliteUsageStore.write` every `flush_interval_s` of virtual time
  live     the month-to-date refresh (`UsageLiveCollector.refresh`) every `live_refresh_s`
  render   one /metrics body (`exposition.render`) per cycle

Each stage is timed with process CPU time and reported in µs per link per poll (flush and live
amortised over the polls between them). Then a cProfile of every stage (own time, top functions), and
the long restart gap: one poll after `--gap-hours` of downtime for every link (CPU, peak Python
allocation by tracemalloc).

No root needed.  .venv/bin/python bench/profile_fold.py [--targets 4 --interfaces 500 --links 500]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

RESULTS = BENCH / "results"
STAGES = ("fold", "apply", "flush", "live", "render")


def make_config(targets: int, links: int, state_dir: Path, interval: float) -> Any:
    from sitivmon.app.config import SitivmonConfig

    return SitivmonConfig.model_validate(
        {
            "state_dir": str(state_dir),
            "poll": {"interval": f"{interval:g}s", "timeout": "5s", "retries": 1},
            "credentials": {"bench": {"version": "2c", "community": "public"}},
            "communes": [{"id": "bench", "name": "Bench", "insee": "69123"}],
            "targets": [
                {"name": f"agent{t}", "address": f"10.99.{t // 250}.{t % 250 + 1}:161", "credentials": "bench"}
                for t in range(targets)
            ],
            "links": [
                {"id": f"agent{t}-b{k}", "commune": "bench", "target": f"agent{t}", "interface": {"name": f"b{k}"}}
                for t in range(targets)
                for k in range(links)
            ],
        }
    )


class Agent:
    """One synthetic agent: snmpd-like rows (b0.., lo, mgmt0), 64-bit counters advancing every poll."""

    def __init__(self, interfaces: int, seed: int) -> None:
        self.names = [f"b{k}" for k in range(interfaces)] + ["lo", "mgmt0"]
        self.n = len(self.names)
        self.seed = seed
        self.polls = 0
        self.boot = 1_000.0

    def tables(self, at: float) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        self.polls += 1
        p = self.polls
        idx = [str(i + 1) for i in range(self.n)]
        t: dict[str, dict[str, Any]] = {}
        t["ifDescr"] = {i: nm.encode() for i, nm in zip(idx, self.names, strict=True)}
        t["ifName"] = {i: nm.encode() for i, nm in zip(idx, self.names, strict=True)}
        t["ifAlias"] = dict.fromkeys(idx, b"")
        for col, v in (("ifSpeed", 10_000_000), ("ifHighSpeed", 10_000), ("ifAdminStatus", 1), ("ifOperStatus", 1)):
            t[col] = dict.fromkeys(idx, v)
        t["ifLastChange"] = dict.fromkeys(idx, 100)
        t["ifCounterDiscontinuityTime"] = dict.fromkeys(idx, 0)
        for j, col in enumerate(
            (
                "ifInOctets",
                "ifInUcastPkts",
                "ifInNUcastPkts",
                "ifInDiscards",
                "ifInErrors",
                "ifOutOctets",
                "ifOutUcastPkts",
                "ifOutNUcastPkts",
                "ifOutDiscards",
                "ifOutErrors",
            )
        ):
            t[col] = {i: (k * 7919 + p * (j + 1) * 1_000 + self.seed) % 2**32 for k, i in enumerate(idx)}
        for j, col in enumerate(
            (
                "ifHCInOctets",
                "ifHCInUcastPkts",
                "ifHCInMulticastPkts",
                "ifHCInBroadcastPkts",
                "ifHCOutOctets",
                "ifHCOutUcastPkts",
                "ifHCOutMulticastPkts",
                "ifHCOutBroadcastPkts",
            )
        ):
            t[col] = {i: k * 104_729 + p * (j + 1) * 1_000_000 + self.seed for k, i in enumerate(idx)}
        return t, {"sysUpTime": int((at - self.boot) * 100)}


class Rig:
    """The real components, wired as the daemon wires them, on a virtual clock."""

    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        from sitivmon.exposition import LabelCache
        from sitivmon.monitor import Monitor
        from sitivmon.usage.backends import usage_reader_factory
        from sitivmon.usage.config import UsageSettings
        from sitivmon.usage.live import UsageLiveCollector
        from sitivmon.usage.recorder import SPAN_BUCKETS, Accumulator
        from sitivmon.usage.service import link_keys
        from sitivmon.usage.store import SqliteUsageStore

        self.args = args
        self.config = make_config(args.targets, args.links, state_dir, args.interval)
        self.settings = UsageSettings()
        self.store = SqliteUsageStore(state_dir / "usage.sqlite3")
        self.acc = Accumulator(self.store.load_open_buckets(), span_buckets=SPAN_BUCKETS)  # as the recorder
        self.batches: list[Any] = []

        class Sink:
            def submit(sink, batch: Any) -> None:  # the recorder's submit: an append
                self.batches.append(batch)

        self.monitor = Monitor(self.config, usage_sinks=[Sink()])
        self.cache = LabelCache()
        self.now = float(int(time.time() // 300 * 300) - 6 * 3600)  # mid-month-ish, bucket aligned
        self.live = UsageLiveCollector(
            usage_reader_factory(self.settings, state_dir), self.config.communes, self.config.timezone,
            link_keys(self.config.links),
            refresh_s=self.settings.live_refresh_s, clock=lambda: self.now,
        )  # fmt: skip
        self.agents = [Agent(args.interfaces, t) for t in range(args.targets)]
        self.next_flush = self.now + self.settings.flush_interval_s
        self.next_live = self.now
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.calls = dict.fromkeys(STAGES, 0)
        self.flush_wall: list[float] = []
        self.profiles: dict[str, cProfile.Profile] | None = None

    def timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        prof = self.profiles[stage] if self.profiles else None
        t = time.process_time()
        if prof:
            prof.enable()
        try:
            return fn()
        finally:
            if prof:
                prof.disable()
            self.cpu[stage] += time.process_time() - t
            self.calls[stage] += 1

    def polls(self, at: float) -> list[tuple[Any, Any]]:
        from sitivmon.engine.poll import TargetPoll

        out = []
        for target, agent in zip(self.config.targets, self.agents, strict=True):
            tables, scalars = agent.tables(at)
            vb = sum(len(c) for c in tables.values()) + 1
            out.append((target, TargetPoll(target.name, at, 0.5, tables, scalars, varbinds=vb, requests=vb // 25)))
        return out

    def cycle(self) -> None:
        """One poll of every target, the recorder's fold, and whatever flush/refresh falls due."""
        self.now += self.args.interval
        for target, poll in self.polls(self.now):  # building the tables is the bench's, not timed
            self.timed("fold", lambda t=target, p=poll: self.monitor.on_poll(t, p))
        batches, self.batches = self.batches, []

        def apply() -> None:
            for b in batches:
                self.acc.apply(b)

        self.timed("apply", apply)
        if self.now >= self.next_flush:
            self.next_flush += self.settings.flush_interval_s
            t = time.perf_counter()
            self.timed("flush", self.flush)
            self.flush_wall.append(time.perf_counter() - t)
        if self.now >= self.next_live:
            self.next_live += self.settings.live_refresh_s
            self.timed("live", self.live.refresh)
        self.timed("render", self.render)

    def flush(self) -> None:
        closed, open_b, baselines, _ = self.acc.snapshot()
        spans = self.acc.take_spans(closed)
        self.store.write(closed, open_b, baselines, now=self.now, spans=spans)

    def render(self) -> None:
        from sitivmon.exposition import render

        render(self.monitor, self.cache)

    def reset(self) -> None:
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.calls = dict.fromkeys(STAGES, 0)
        self.flush_wall = []


def per_link_poll(rig: Rig, cycles: int) -> dict[str, float]:
    link_polls = cycles * rig.args.targets * rig.args.links
    us = {k: v / link_polls * 1e6 for k, v in rig.cpu.items()}
    us["total"] = sum(us.values())
    return us


def top(prof: cProfile.Profile, n: int = 12) -> list[dict[str, Any]]:
    """Own time per function (cProfile inflates small Python calls: read as shares, not absolutes)."""
    st = pstats.Stats(prof, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values()) or 1.0  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:n]  # type: ignore[attr-defined]
    return [
        {"function": f"{Path(fn).name}:{line}({name})", "calls": v[1], "share": round(v[2] / total, 4)}
        for (fn, line, name), v in rows
    ]


def gap_case(args: argparse.Namespace, tmp: Path, *, trace: bool = True) -> dict[str, Any]:
    """One poll after a long downtime for every link: the recorder's apply + flush, CPU and memory.

    `trace`: peak Python allocation by tracemalloc, which also slows the CPU figure several-fold (it
    records every allocation); without it, the CPU alone (`--gap-only` measures both, in turn)."""
    gargs = argparse.Namespace(**{**vars(args), "targets": max(1, args.gap_links // args.interfaces)})
    gargs.links = min(args.interfaces, args.gap_links)
    rig = Rig(gargs, tmp / "gap")
    rig.cycle()
    rig.cycle()
    rig.flush()
    rig.now += args.gap_hours * 3600 - args.interval  # the daemon was down
    rig.next_flush = rig.next_live = float("inf")
    for target, poll in rig.polls(rig.now + args.interval):
        rig.monitor.on_poll(target, poll)
    batches, rig.batches = rig.batches, []
    if trace:
        tracemalloc.start()
    t = time.process_time()
    for b in batches:
        rig.acc.apply(b)
    rig.flush()
    cpu = time.process_time() - t
    out = {"links": gargs.targets * gargs.links, "gap_hours": args.gap_hours, "traced": trace, "cpu_s": round(cpu, 3)}
    if trace:
        out["peak_alloc_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return out


def print_gap(gap: dict[str, Any]) -> None:
    what = f"peak Python allocation {gap['peak_alloc_mb']} MB (traced)" if gap["traced"] else "untraced"
    print(f"long gap: {gap['links']} links after {gap['gap_hours']:g} h: apply+flush {gap['cpu_s']} CPU-s, {what}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=4)
    p.add_argument("--interfaces", type=int, default=500)
    p.add_argument("--links", type=int, default=500)
    p.add_argument("--interval", type=float, default=10.0, help="virtual seconds per poll cycle")
    p.add_argument("--cycles", type=int, default=60, help="timed cycles per round (default 60: 10 virtual min)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gap-hours", type=float, default=48.0)
    p.add_argument("--gap-links", type=int, default=1000)
    p.add_argument("--no-cprofile", action="store_true")
    p.add_argument("--no-gap", action="store_true")
    p.add_argument("--gap-only", action="store_true", help="only the long gap: CPU untraced, then traced")
    args = p.parse_args(argv)
    if args.gap_only:
        with tempfile.TemporaryDirectory(prefix="sitivmon-gap-") as tmp:
            gaps = [gap_case(args, Path(tmp) / "plain", trace=False), gap_case(args, Path(tmp) / "traced")]
        for g in gaps:
            print_gap(g)
        return 0
    if args.links > args.interfaces:
        print("profile_fold: --links cannot exceed --interfaces", file=sys.stderr)
        return 2
    rounds = []
    flush_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sitivmon-fold-") as tmp:
        rig = Rig(args, Path(tmp) / "state")
        for _ in range(3):  # warm-up: baselines, series ids, label cache
            rig.cycle()
        for _ in range(args.rounds):
            rig.reset()
            for _ in range(args.cycles):
                rig.cycle()
            rounds.append(per_link_poll(rig, args.cycles))
            flush_ms += [w * 1e3 for w in rig.flush_wall]
        us = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        tops: dict[str, Any] = {}
        if not args.no_cprofile:
            rig.reset()
            rig.profiles = {s: cProfile.Profile(time.process_time) for s in STAGES}
            for _ in range(max(31, args.cycles // 2)):
                rig.cycle()
            tops = {s: top(pr) for s, pr in rig.profiles.items()}
        gap = None if args.no_gap else gap_case(args, Path(tmp))
    links = args.targets * args.links
    print(
        f"{args.targets} targets x {args.links} links ({links} links), {args.interfaces + 2} rows each, "
        f"interval {args.interval:g}s virtual; medians over {args.rounds} rounds of {args.cycles} cycles"
    )
    print("CPU µs per link per poll: " + "  ".join(f"{k} {v:.2f}" for k, v in us.items()))
    if flush_ms:
        print(f"flush wall ms: median {statistics.median(flush_ms):.1f}  max {max(flush_ms):.1f}  (n={len(flush_ms)})")
    for stage, rows in tops.items():
        print(f"  cProfile {stage} (own-time share):")
        for row in rows[:10]:
            print(f"    {row['share'] * 100:5.1f}%  {row['calls']:>8}  {row['function']}")
    if gap:
        print_gap(gap)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile_fold-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {"params": vars(args), "us_per_link_poll": us, "flush_ms": flush_ms, "top": tops, "gap": gap}, indent=2
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
