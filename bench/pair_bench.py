"""Issue 13: the cost of a replica pair against one daemon, on a real PostgreSQL, in the same run.

Same agents as `capacity_bench.py` (`--agents` snmpd in one namespace, `--links-per-agent` links
each, 60 s polls, usage recording and month-to-date gauges on, /metrics scraped once per interval
on every daemon), but the usage store is PostgreSQL (a durable cluster started for the run by
`tests/support/postgres.serve(durable=True)`, as `pg_driver_bench.py` does: fsync on) and two phases run one
after the other, each on a fresh database of the same cluster:

  one    one daemon (`usage.store: postgresql`, no replica): it holds every role itself;
  pair   the same config twice, `replica: a` and `replica: b`: both poll every target and write
         their own buckets; one of them (elected through an advisory lock) is the global leader and
         alone refreshes the month-to-date gauges.

Each phase: start, wait ready, one warm-up interval, then `--cycles` intervals measured. Reported
per daemon: CPU (utime + stime from /proc), RSS mean/max, poll start lag, flushes; for the server:
CPU of the postmaster and all its processes (live children's /proc times plus the postmaster's
cutime/cstime, which holds the reaped ones), and what it wrote in the window: WAL bytes
(`pg_stat_wal`), buffers written by the checkpointer, bgwriter and backends (`pg_stat_bgwriter`,
8 KiB each), rows inserted/updated/deleted (`pg_stat_database`), and the database's size at the end.
The ratio pair/one is printed for every figure.

Run as root:  .venv/bin/python bench/pair_bench.py [--agents 30 --links-per-agent 100 --cycles 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import poll_bench  # noqa: E402
from capacity_bench import count_above, hist_delta, histogram, quantile_bound, rss_bytes, shared_agents  # noqa: E402
from poll_bench import RESULTS, TICK, Agent, http_get, samples  # noqa: E402

DSN_ENV = "SITIVMON_PAIRBENCH_DSN"  # the daemons read the DSN (a secret) from it: never in a file


def pg_cpu(datadir: Path) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster's own and reaped children's times, plus
    every live child's (backends, checkpointer, walwriter...)."""
    post = int((datadir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = (proc / "stat").read_text()
        except OSError:
            continue
        f = text[text.rindex(")") + 2 :].split()
        pid, ppid = int(proc.name), int(f[1])
        if pid == post:
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK
        elif ppid == post:
            total += (int(f[11]) + int(f[12])) / TICK
    return total


def pg_stats(psql: Any, db: str) -> dict[str, float]:
    """Cluster-wide write counters and this database's row counters and size (PostgreSQL 15)."""
    sql = (
        "SELECT (SELECT wal_bytes FROM pg_stat_wal),"
        " (SELECT buffers_checkpoint + buffers_clean + buffers_backend FROM pg_stat_bgwriter),"
        f" tup_inserted, tup_updated, tup_deleted, xact_commit, pg_database_size('{db}')"
        f" FROM pg_stat_database WHERE datname = '{db}'"
    )
    names = ("wal_bytes", "buffers_written", "tup_inserted", "tup_updated", "tup_deleted", "commits", "db_bytes")
    values = psql(sql, "postgres").split("|")
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def counter(text: str, name: str) -> float:
    return sum(v for _, v in samples(text, name))


def run_phase(
    pg: Any,
    ags: list[Agent],
    links_per_agent: int,
    interval: float,
    cycles: int,
    work: Path,
    phase: str,
    replicas: list[str | None],
    timezone: str | None = None,
) -> dict[str, Any]:
    db = f"usage_{phase}"
    os.environ[DSN_ENV] = pg.create_database(db)
    daemons: list[tuple[str, poll_bench.Sitivmon]] = []
    try:
        for rep in replicas:
            name = f"{phase}-{rep or 'solo'}"
            config = poll_bench.sitivmon_config(ags, links_per_agent, interval, 25, work / f"state-{name}")
            config["links"] = [
                {"id": f"{a.name}-b{k}", "commune": f"c{i % 8}", "target": a.name, "interface": {"name": f"b{k}"}}
                for i, a in enumerate(ags)
                for k in range(links_per_agent)
            ]
            config["communes"] = [{"id": f"c{i}", "name": f"Commune {i}", "insee": f"6900{i}"} for i in range(8)]
            config["usage"] = {"store": "postgresql", "dsn": "${" + DSN_ENV + "}"}
            if timezone:
                config["timezone"] = timezone
            if rep:
                config["replica"] = rep
            daemons.append((name, poll_bench.Sitivmon("sitivmon", work, config, None, None, tag=name)))
        for _, d in daemons:
            d.wait_ready(timeout=3 * interval + 120)
        time.sleep(interval)  # warm-up cycle: every target polled, pools and the election settled
        texts0 = [http_get(d.url("/metrics"), timeout=600) for _, d in daemons]
        st0, pcpu0 = pg_stats(pg.psql, db), pg_cpu(pg.datadir)
        t0 = time.monotonic()
        cpu0 = [sum(d.cpu()) for _, d in daemons]
        rss: list[list[int]] = [[] for _ in daemons]
        next_scrape, end = t0 + interval, t0 + cycles * interval
        texts1 = texts0
        while True:
            if time.monotonic() >= next_scrape:
                texts1 = [http_get(d.url("/metrics"), timeout=600) for _, d in daemons]
                next_scrape += interval
                if next_scrape > end + 1:
                    break
            for i, (_, d) in enumerate(daemons):
                rss[i].append(rss_bytes(d.proc.pid)[0])
            time.sleep(min(5.0, max(0.05, next_scrape - time.monotonic())))
        window = time.monotonic() - t0
        cpu = [sum(d.cpu()) - c for (_, d), c in zip(daemons, cpu0, strict=True)]
        pcpu, st1 = pg_cpu(pg.datadir) - pcpu0, pg_stats(pg.psql, db)
        per: list[dict[str, Any]] = []
        for i, (name, d) in enumerate(daemons):
            lag = hist_delta(histogram(texts0[i], "sitivmon_poll_start_lag_seconds"),
                             histogram(texts1[i], "sitivmon_poll_start_lag_seconds"))  # fmt: skip
            flush = hist_delta(histogram(texts0[i], "sitivmon_usage_flush_seconds"),
                               histogram(texts1[i], "sitivmon_usage_flush_seconds"))  # fmt: skip
            surely, perhaps = count_above(lag, interval * 0.1) if lag else (0.0, 0.0)
            per.append({
                "name": name,
                "cpu_s": round(cpu[i], 2),
                "cores": round(cpu[i] / window, 4),
                "rss_mean_mib": round(statistics.fmean(rss[i]) / 2**20, 1),
                "rss_max_mib": round(max(rss[i]) / 2**20, 1),
                "hwm_mib": round(rss_bytes(d.proc.pid)[1] / 2**20, 1),
                "month_to_date_exposed": "sitivmon_usage_month_to_date" in texts1[i],
                "polls": lag.get(float("inf"), 0.0),
                "lag_p99_le": quantile_bound(lag, 0.99),
                "lag_max_le": quantile_bound(lag, 1.0),
                "late_perhaps": perhaps,
                "late_surely": surely,
                "skipped": counter(texts1[i], "sitivmon_polls_skipped_total")
                - counter(texts0[i], "sitivmon_polls_skipped_total"),
                "flush_count": flush.get(float("inf"), 0.0),
                "flush_p50_le": quantile_bound(flush, 0.5),
                "flush_max_le": quantile_bound(flush, 1.0),
                "varbinds": counter(texts1[i], "sitivmon_target_varbinds_total")
                - counter(texts0[i], "sitivmon_target_varbinds_total"),
            })  # fmt: skip
        delta = {k: st1[k] - st0[k] for k in st0 if k != "db_bytes"}
        return {
            "phase": phase,
            "links": len(ags) * links_per_agent,
            "window_s": round(window, 1),
            "daemons": per,
            "daemons_cpu_s": round(sum(cpu), 2),
            "daemons_cores": round(sum(cpu) / window, 4),
            "daemons_rss_mean_mib": round(sum(p["rss_mean_mib"] for p in per), 1),
            "pg_cpu_s": round(pcpu, 2),
            "pg_cores": round(pcpu / window, 4),
            "pg_wal_mib": round(delta["wal_bytes"] / 2**20, 2),
            "pg_buffers_written_mib": round(delta["buffers_written"] * 8192 / 2**20, 2),
            "pg_rows_written": delta["tup_inserted"] + delta["tup_updated"] + delta["tup_deleted"],
            "pg_commits": delta["commits"],
            "pg_db_mib_end": round(st1["db_bytes"] / 2**20, 1),
        }
    finally:
        for _, d in daemons:
            d.stop()


def print_phase(r: dict[str, Any]) -> None:
    print(f"{r['phase']}: {r['links']} links, window {r['window_s']} s")
    for p in r["daemons"]:
        print(
            f"  {p['name']:10} CPU {p['cpu_s']:7.2f} s = {p['cores']:.3f} cores; RSS mean {p['rss_mean_mib']} MiB, "
            f"max {p['rss_max_mib']} (high-water {p['hwm_mib']}); month-to-date exposed: {p['month_to_date_exposed']}; "
            f"polls {p['polls']:.0f}, lag p99 <= {p['lag_p99_le']} s, max <= {p['lag_max_le']} s, "
            f"skipped {p['skipped']:.0f}; flushes {p['flush_count']:.0f}, p50 <= {p['flush_p50_le']} s, "
            f"max <= {p['flush_max_le']} s; varbinds {p['varbinds']:.0f}"
        )
    print(
        f"  PostgreSQL CPU {r['pg_cpu_s']} s = {r['pg_cores']:.3f} cores; WAL {r['pg_wal_mib']} MiB, buffers "
        f"written {r['pg_buffers_written_mib']} MiB, rows written {r['pg_rows_written']:.0f}, commits "
        f"{r['pg_commits']:.0f}; database {r['pg_db_mib_end']} MiB at the end"
    )


RATIOS = ("daemons_cores", "daemons_rss_mean_mib", "pg_cores", "pg_wal_mib", "pg_buffers_written_mib",
          "pg_rows_written", "pg_commits", "pg_db_mib_end")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=30)
    p.add_argument("--links-per-agent", type=int, default=100)
    p.add_argument("--interval", type=float, default=60.0)
    p.add_argument("--cycles", type=int, default=4, help="measured intervals per phase")
    p.add_argument("--timezone", help="the daemons' timezone (the month-to-date period), as capacity_bench.py")
    p.add_argument("--net", default="198.18.252", help="the agents' management /24 (capacity_bench: 198.18.251)")
    args = p.parse_args(argv)
    binary, reason = poll_bench.preflight()
    if binary is None:
        print(f"pair_bench: cannot run here: {reason}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {"bench": "pair_bench", "started": time.time(), "params": vars(args)}
    from tests.support import postgres

    with (
        tempfile.TemporaryDirectory(prefix="sitivmon-pair-") as tmp,
        postgres.serve(durable=True) as pg,
        shared_agents(args.agents, args.links_per_agent, args.net) as ags,
    ):
        phases = []
        for phase, reps in (("one", [None]), ("pair", ["a", "b"])):
            print(f"== {phase}: {len(reps)} daemon(s), {args.agents * args.links_per_agent} links ...", flush=True)
            r = run_phase(
                pg, ags, args.links_per_agent, args.interval, args.cycles, Path(tmp), phase, reps, args.timezone
            )
            print_phase(r)
            phases.append(r)
    one, pair = phases
    ratios = {k: (pair[k] / one[k] if one[k] else None) for k in RATIOS}
    print("\nratio pair/one:")
    for k, v in ratios.items():
        print(f"  {k:24} {one[k]:>12} -> {pair[k]:>12}: " + (f"{v:.2f}x" if v is not None else "-"))
    result.update(phases=phases, ratios=ratios, finished=time.time())
    out = RESULTS / f"pair_bench-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
