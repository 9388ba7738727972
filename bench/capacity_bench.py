"""Both densities of issue 15, with their verdicts: every interface a link, and one machine's capacity.

  every-interface  `poll_bench.py --links = --interfaces --mode together` (usage recording on, as
                   shipped) against the exporter: goal <= 0.5x its CPU per varbind. `--base DIR` adds
                   the daemon of another checkout (e.g. `git worktree add /tmp/perf-base <commit>`) to
                   the same run, so before and after are measured in one window.
  capacity         `--agents` snmpd agents (default 200) x `--links-per-agent` links (default 100, so
                   20,000 links) polled every `--interval` (60 s) by the real daemon, usage recording
                   and month-to-date gauges on, /metrics scraped once per interval. Goals: CPU within
                   one core on average, RSS <= 1 GiB, no poll started later than 10 % of its interval.
                   Reports CPU, RSS, poll start lag percentiles (from `sitivmon_poll_start_lag_seconds`),
                   skipped polls, /metrics scrape times and flush durations (when the daemon exposes
                   `sitivmon_usage_flush_seconds`).
  memory           RSS of the daemon at `--memory-links` (1k, 5k, 20k) after `--memory-cycles` polls;
                   the least-squares slope is the memory per link.

Agents for capacity and memory: ONE namespace with `--links-per-agent` veth interfaces and real
net-snmp snmpd, each agent on its own address of a /24 on the management veth (198.18.251.0/24,
outside the /30s that `netns.lab()` hands out), ten agent addresses per snmpd process. Every agent
therefore shows the same interfaces (plus lo and mgmt0): the load on the daemon is that of as many
distinct devices; 200 namespaces with 100 veth pairs each would also take 200 of the host's 250 lab
subnets, which concurrent test runs need. Why ten per process: an idle snmpd reloads its interface
table several times a second, one netlink dump per interface (strace), so 200 processes on 200
addresses x 100 interfaces took about 1.6 % of a core each, more than the machine's two cores, and
starting them timed out (measured 2026-12-01: 20 processes for 200 agents idle at 0.39 cores).

Run as root:  .venv/bin/python bench/capacity_bench.py [--density all|every-interface|capacity|memory]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import poll_bench  # noqa: E402
from poll_bench import COMMUNITY, RESULTS, Agent, http_get, samples, wait_snmp  # noqa: E402

MGMT_NET = "198.18.251"
GIB = 2**30


@contextlib.contextmanager
def shared_agents(count: int, interfaces: int, net: str = MGMT_NET, per_process: int = 10) -> Iterator[list[Agent]]:
    """`count` snmpd in one namespace of `interfaces` veth interfaces, each on its own address of
    `net`.0/24 (another /24 lets a second bench, e.g. pair_bench.py, run beside this one)."""
    from sitivmon.agents.netns import lab, run
    from sitivmon.agents.snmpd import Snmpd, SnmpdSpec

    if count > 250:
        raise ValueError("at most 250 agents on the management /24")
    with contextlib.ExitStack() as stack:
        made = stack.enter_context(lab())
        made.add_bulk(interfaces)
        run("ip", "addr", "add", f"{net}.1/24", "dev", made.mgmt_host_if)
        batch = "".join(f"addr add {net}.{k + 2}/24 dev mgmt0\n" for k in range(count))
        subprocess.run(["ip", "-n", made.agent_ns, "-batch", "-"], input=batch, text=True, check=True)
        out = []
        addrs = [f"{net}.{k + 2}" for k in range(count)]
        for g in range(0, count, per_process):
            group = addrs[g : g + per_process]
            spec = SnmpdSpec(
                port=161, address=group[0], also_on=tuple(group[1:]), communities=(COMMUNITY,),
                netns=made.agent_ns, start_timeout_s=120.0,
            )  # fmt: skip
            agent = stack.enter_context(Snmpd(spec))
            out += [Agent(f"agent{g + i}", addr, agent.proc.pid) for i, addr in enumerate(group)]
        for a in out:
            wait_snmp(a.addr)
        yield out


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]
    return rss, hwm


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of an unlabelled histogram, by upper bound."""
    out: dict[float, float] = {}
    for lab, v in samples(text, f"{name}_bucket"):
        m = re.search(r'le="([^"]+)"', lab)
        if m:
            out[float(m.group(1))] = out.get(float(m.group(1)), 0.0) + v
    return out


def hist_delta(a: dict[float, float], b: dict[float, float]) -> dict[float, float]:
    return {le: b[le] - a.get(le, 0.0) for le in sorted(b)}


def quantile_bound(cum: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile q (a histogram cannot say more)."""
    total = cum.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for le, count in sorted(cum.items()):
        if count >= q * total:
            return le
    return float("inf")


def count_above(cum: dict[float, float], bound: float) -> tuple[float, float]:
    """(observations surely above `bound`, observations perhaps above it) from cumulative buckets."""
    total = cum.get(float("inf"), 0.0)
    below_or_at = [c for le, c in cum.items() if le <= bound]
    at_most = max(below_or_at) if below_or_at else 0.0  # surely <= bound
    above_bounds = [le for le in cum if le > bound]
    surely = total - cum[min(above_bounds)] if above_bounds and min(above_bounds) != float("inf") else 0.0
    return surely, total - at_most


def run_daemon_window(
    ags: list[Agent],
    links_per_agent: int,
    interval: float,
    cycles: int,
    workdir: Path,
    name: str,
    *,
    base: Path | None = None,
    timezone: str | None = None,
    history: str = "month",
) -> dict[str, Any]:
    """Start the real daemon on these agents, wait one cycle after ready, measure `cycles` intervals.

    `timezone`: the daemon's (default: the config's); a zone where the month started long ago makes
    the month-to-date refresh cover many days whatever the date (issue 15: its peak). `history`:
    `month` starts the daemon on its links' usage since a week before the month's start
    (`poll_bench.write_history`), as a daemon that has run for weeks; `none` on an empty store."""
    config = poll_bench.sitivmon_config(ags, links_per_agent, interval, 25, workdir / f"state-{name}")
    config["links"] = [
        {"id": f"{a.name}-b{k}", "commune": f"c{i % 8}", "target": a.name, "interface": {"name": f"b{k}"}}
        for i, a in enumerate(ags)
        for k in range(links_per_agent)
    ]
    config["communes"] = [{"id": f"c{i}", "name": f"Commune {i}", "insee": f"6900{i}"} for i in range(8)]
    if timezone:
        config["timezone"] = timezone
    if history == "month":
        poll_bench.write_history(config, timezone or "Europe/Paris")
    env_root = base
    sv = poll_bench.Sitivmon("sitivmon", workdir, config, None, None, root=env_root, tag=name)
    try:
        t_start = time.monotonic()
        sv.wait_ready(timeout=3 * interval + 120)
        ready_s = time.monotonic() - t_start
        time.sleep(interval)  # warm-up cycle: every target polled, clients set up
        rss_before = rss_bytes(sv.proc.pid)[0]
        t = time.monotonic()
        text0 = http_get(sv.url("/metrics"), timeout=600)  # the first month-to-date refresh runs in it
        first_scrape_s = time.monotonic() - t
        rss_after_first = rss_bytes(sv.proc.pid)[0]
        t0 = time.monotonic()
        cpu0 = sum(sv.cpu())
        rss: list[int] = []
        scrape_s: list[float] = []
        next_scrape = t0 + interval
        end = t0 + cycles * interval
        text1 = text0
        while True:
            now = time.monotonic()
            if now >= next_scrape:
                t = time.monotonic()
                text1 = http_get(sv.url("/metrics"), timeout=600)
                scrape_s.append(time.monotonic() - t)
                next_scrape += interval
                if next_scrape > end + 1:
                    break
            rss.append(rss_bytes(sv.proc.pid)[0])
            time.sleep(min(5.0, max(0.05, next_scrape - time.monotonic())))
        window = time.monotonic() - t0
        cpu = sum(sv.cpu()) - cpu0
        _, hwm = rss_bytes(sv.proc.pid)
        lag_name, flush_name = "sitivmon_poll_start_lag_seconds", "sitivmon_usage_flush_seconds"
        lag = hist_delta(histogram(text0, lag_name), histogram(text1, lag_name))
        flush = hist_delta(histogram(text0, flush_name), histogram(text1, flush_name))
        skipped = sum(v for _, v in samples(text1, "sitivmon_polls_skipped_total")) - sum(
            v for _, v in samples(text0, "sitivmon_polls_skipped_total")
        )
        varbinds = sum(v for _, v in samples(text1, "sitivmon_target_varbinds_total")) - sum(
            v for _, v in samples(text0, "sitivmon_target_varbinds_total")
        )
        up = sum(v for _, v in samples(text1, "sitivmon_link_up"))
        errors = sum(v for _, v in samples(text1, "sitivmon_poll_errors_total")) - sum(
            v for _, v in samples(text0, "sitivmon_poll_errors_total")
        )
        durations = [v for _, v in samples(text1, "sitivmon_target_poll_duration_seconds")]
        refreshes, refresh_cpu, rescanned = (
            sum(v for _, v in samples(text1, name)) - sum(v for _, v in samples(text0, name))
            for name in (
                "sitivmon_usage_month_to_date_refreshes_total",
                "sitivmon_usage_month_to_date_refresh_cpu_seconds_total",
                "sitivmon_usage_month_to_date_rescanned_series_total",  # 0 from a daemon without it
            )
        )
        surely, perhaps = count_above(lag, interval * 0.1) if lag else (0.0, 0.0)
        return {
            "name": name,
            "code": str(base or BENCH.parent),
            "agents": len(ags),
            "links": len(ags) * links_per_agent,
            "interval_s": interval,
            "cycles": cycles,
            "window_s": round(window, 1),
            "ready_s": round(ready_s, 1),
            "rss_before_first_scrape_mib": round(rss_before / 2**20, 1),
            "rss_after_first_scrape_mib": round(rss_after_first / 2**20, 1),
            "first_scrape_s": round(first_scrape_s, 2),
            "cpu_s": round(cpu, 2),
            "cores": round(cpu / window, 4),
            "rss_mean_mib": round(statistics.fmean(rss) / 2**20, 1) if rss else None,
            "rss_max_mib": round(max(rss) / 2**20, 1) if rss else None,
            "rss_end_mib": round(rss[-1] / 2**20, 1) if rss else None,
            "hwm_mib": round(hwm / 2**20, 1),
            "polls": lag.get(float("inf"), 0.0),
            "lag_p50_le": quantile_bound(lag, 0.5),
            "lag_p90_le": quantile_bound(lag, 0.9),
            "lag_p99_le": quantile_bound(lag, 0.99),
            "lag_max_le": quantile_bound(lag, 1.0),
            "late_surely": surely,
            "late_perhaps": perhaps,
            "skipped": skipped,
            "poll_errors": errors,
            "varbinds": varbinds,
            "links_up_end": up,
            "poll_duration_p50_s": round(statistics.median(durations), 3) if durations else None,
            "poll_duration_max_s": round(max(durations), 3) if durations else None,
            "scrape_s": [round(s, 3) for s in scrape_s],
            "flush_hist": flush,
            "flush_count": flush.get(float("inf"), 0.0),
            "flush_p50_le": quantile_bound(flush, 0.5),
            "flush_max_le": quantile_bound(flush, 1.0),
            "refreshes": refreshes,  # month-to-date refreshes in the window, and their CPU (the daemon's metrics)
            "refresh_cpu_s": round(refresh_cpu, 2),
            "rescanned": rescanned,  # series the refreshes in the window scanned from the week's start
        }
    finally:
        sv.stop()


def print_capacity(r: dict[str, Any]) -> list[str]:
    goal_lag = r["interval_s"] * 0.1
    print(
        f"capacity [{r['name']}]: {r['agents']} agents x {r['links'] // r['agents']} links = {r['links']} links, "
        f"every {r['interval_s']:g}s, {r['cycles']} cycles ({r['window_s']}s), code {r['code']}"
    )
    print(f"  CPU {r['cpu_s']} s = {r['cores']:.3f} cores on average; varbinds {r['varbinds']:.0f}")
    print(
        f"  first /metrics scrape (first month-to-date refresh) {r['first_scrape_s']} s; RSS "
        f"{r['rss_before_first_scrape_mib']} MiB before it, {r['rss_after_first_scrape_mib']} MiB after"
    )
    print(
        f"  RSS mean {r['rss_mean_mib']} MiB, max {r['rss_max_mib']} MiB, high-water {r['hwm_mib']} MiB; "
        f"links up at the end {r['links_up_end']:.0f}"
    )
    print(
        f"  poll start lag over {r['polls']:.0f} polls: p50 <= {r['lag_p50_le']} s, p90 <= {r['lag_p90_le']} s, "
        f"p99 <= {r['lag_p99_le']} s, max <= {r['lag_max_le']} s; late > {goal_lag:g} s: {r['late_surely']:.0f} "
        f"surely, {r['late_perhaps']:.0f} perhaps (histogram buckets); skipped {r['skipped']:.0f}; "
        f"poll errors {r['poll_errors']:.0f}"
    )
    print(f"  poll durations at the end: p50 {r['poll_duration_p50_s']} s, max {r['poll_duration_max_s']} s")
    sc = r["scrape_s"]
    if sc:
        print(f"  /metrics scrapes: {len(sc)}, median {statistics.median(sc):.3f} s, max {max(sc):.3f} s")
    if r["flush_count"]:
        print(f"  flushes: {r['flush_count']:.0f}, p50 <= {r['flush_p50_le']} s, max <= {r['flush_max_le']} s")
    else:
        print("  flushes: the daemon exposes no sitivmon_usage_flush_seconds (flush durations not measured)")
    if r.get("refreshes"):
        share = 100 * r["refresh_cpu_s"] / r["cpu_s"] if r["cpu_s"] else 0.0
        print(
            f"  month-to-date refreshes in the window: {r['refreshes']:.0f}, {r['refresh_cpu_s']} CPU-s "
            f"({share:.1f}% of the daemon's), series scanned from the week's start: {r.get('rescanned', 0):.0f}"
        )
    verdicts = [
        f"capacity CPU {r['cores']:.3f} cores (goal <= 1): {'MET' if r['cores'] <= 1 else 'NOT MET'}",
        f"capacity RSS max {r['rss_max_mib']} MiB (goal <= 1024): "
        + ("MET" if r["rss_max_mib"] is not None and r["rss_max_mib"] <= 1024 else "NOT MET"),
        f"capacity poll lag (goal: none > {goal_lag:g} s): "
        + (
            "MET"
            if r["late_perhaps"] == 0 and r["skipped"] == 0
            else ("NOT MET" if r["late_surely"] or r["skipped"] else "UNDECIDED (bucket straddles the goal)")
        ),
    ]
    for v in verdicts:
        print("  " + v)
    return verdicts


def memory_slope(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--density", choices=("all", "every-interface", "capacity", "memory", "capacity+memory"), default="all"
    )
    p.add_argument("--base", type=Path, default=None, help="another checkout's daemon, measured in the same runs")
    # every interface a link
    p.add_argument("--ei-agents", type=int, default=4)
    p.add_argument("--ei-interfaces", type=int, default=500)
    p.add_argument("--ei-duration", type=float, default=300.0)
    p.add_argument("--ei-interval", type=float, default=10.0)
    p.add_argument("--ei-repeat", type=int, default=2)
    # capacity
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--links-per-agent", type=int, default=100)
    p.add_argument("--interval", type=float, default=60.0)
    p.add_argument("--cycles", type=int, default=5, help="measured intervals (default 5: 300 s at 60 s)")
    p.add_argument("--timezone", help="the daemon's timezone (the month-to-date period), e.g. Pacific/Pago_Pago")
    p.add_argument(
        "--history", choices=("month", "none"), default="month", help="usage each daemon's store starts with"
    )
    # memory
    p.add_argument("--memory-links", default="1000,5000,20000", help="link counts (multiples of --links-per-agent)")
    p.add_argument("--memory-cycles", type=int, default=2)
    args = p.parse_args(argv)
    binary, reason = poll_bench.preflight()
    if binary is None:
        print(f"capacity_bench: cannot run here: {reason}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {"bench": "capacity_bench", "started": time.time(), "params": {}}
    result["params"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    verdicts: list[str] = []
    if args.density in ("all", "every-interface"):
        variants = "sitivmon,sitivmon-base" if args.base else "sitivmon"
        ei_argv = [
            "--agents", str(args.ei_agents), "--interfaces", str(args.ei_interfaces),
            "--links", str(args.ei_interfaces), "--mode", "together", "--duration", str(args.ei_duration),
            "--interval", str(args.ei_interval), "--repeat", str(args.ei_repeat), "--variants", variants,
            "--output", str(RESULTS / f"capacity_bench-{stamp}-every-interface.json"), "--history", args.history,
        ]  # fmt: skip
        if args.base:
            ei_argv += ["--base", str(args.base)]
        print("== every interface a link: poll_bench " + " ".join(ei_argv), flush=True)
        poll_bench.main(ei_argv)
        ei = json.loads((RESULTS / f"capacity_bench-{stamp}-every-interface.json").read_text())
        result["every_interface"] = ei
        for name, ratio in ei["ratios"].items():
            if ratio is not None:
                met = "MET" if ratio <= 0.5 else "NOT MET"
                verdicts.append(f"every interface a link, {name}/exporter CPU per varbind {ratio:.3f} (<= 0.5): {met}")
    counts = sorted({int(x) for x in args.memory_links.split(",") if x.strip()})
    need = max(
        [args.agents * args.links_per_agent] + (counts if args.density in ("all", "memory", "capacity+memory") else [])
    )
    if args.density in ("all", "capacity", "memory", "capacity+memory"):
        n_agents = -(-need // args.links_per_agent)
        print(f"== setting up {n_agents} snmpd agents x {args.links_per_agent} interfaces ...", flush=True)
        t = time.monotonic()
        with (
            tempfile.TemporaryDirectory(prefix="sitivmon-capacity-") as tmp,
            shared_agents(n_agents, args.links_per_agent) as ags,
        ):
            print(f"   agents ready in {time.monotonic() - t:.0f}s", flush=True)
            snmpd_rss = sum(rss_bytes(a.snmpd_pid)[0] for a in ags)
            result["snmpd_rss_mib"] = round(snmpd_rss / 2**20, 1)
            work = Path(tmp)
            runs: list[dict[str, Any]] = []
            if args.density in ("all", "capacity", "capacity+memory"):
                use = ags[: args.agents]
                codes: list[Path | None] = [None] + ([args.base] if args.base else [])
                for code in codes:
                    name = "base" if code else "current"
                    print(f"== capacity [{name}]: {len(use) * args.links_per_agent} links ...", flush=True)
                    r = run_daemon_window(
                        use,
                        args.links_per_agent,
                        args.interval,
                        args.cycles,
                        work,
                        name,
                        base=code,
                        timezone=args.timezone,
                        history=args.history,
                    )
                    runs.append(r)
                    for v in print_capacity(r):
                        verdicts.append(f"[{name}] {v}")
                result["capacity"] = runs
            if args.density in ("all", "memory", "capacity+memory"):
                points: list[tuple[int, float]] = []
                mem_runs = []
                for n in counts:
                    prior = next((r for r in runs if r["links"] == n and r["name"] == "current"), None)
                    if prior is None:
                        k = n // args.links_per_agent
                        print(f"== memory: {n} links ...", flush=True)
                        prior = run_daemon_window(
                            ags[:k], args.links_per_agent, args.interval, args.memory_cycles, work, f"mem{n}",
                            history=args.history,
                        )  # fmt: skip
                    mem_runs.append(prior)
                    points.append((n, prior["rss_end_mib"] * 2**20))
                    print(f"   {n} links: RSS {prior['rss_end_mib']} MiB (high-water {prior['hwm_mib']} MiB)")
                slope = memory_slope(points)
                result["memory"] = {"points": points, "bytes_per_link": slope, "runs": mem_runs}
                if slope is not None:
                    over = ", ".join(str(n) for n, _ in points)
                    print(f"memory per link (RSS slope over {over} links): {slope / 1024:.1f} KiB")
                    verdicts.append(f"memory per link: {slope / 1024:.1f} KiB (measured)")
    print("\nverdicts:")
    for v in verdicts:
        print("  " + v)
    result["verdicts"] = verdicts
    result["finished"] = time.time()
    out = RESULTS / f"capacity_bench-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
