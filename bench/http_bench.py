"""The HTTP edge under the two loads of issue 11, against the real daemon (`python -m sitivmon run`).

1. `/metrics` latency, median and p90, alone and while 12 clients fetch the month's xlsx report in a loop.
2. `/-/healthy` and `/metrics` latency while 1,100 connections sit idle with half a request head sent,
   the daemon's open-files limit set to 1,024 (systemd's default soft limit) with prlimit (needs root).

Run it with the code to measure first on PYTHONPATH (the daemon subprocess inherits it):

    PYTHONPATH=$PWD .venv/bin/python bench/http_bench.py [--seconds 10]

Prints one JSON object. The store is tiny (the daemon polls nothing), as in the issue's probe.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.http.rig import ADMIN, daemon_config, half_sent, timed_get
from tests.support import agents

MONTH = time.strftime("%Y-%m")


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def metrics_under_reports(daemon: agents.DaemonProcess, seconds: float, clients: int = 12) -> dict[str, Any]:
    idle = [timed_get(daemon.url + "/metrics")[0] for _ in range(30)]
    stop = threading.Event()
    reports: list[tuple[float, int]] = []

    def reader() -> None:
        while not stop.is_set():
            reports.append(
                timed_get(f"{daemon.url}/api/v1/reports/{MONTH}.xlsx", {"Authorization": f"Bearer {ADMIN}"})
            )

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    loaded: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loaded.append(timed_get(daemon.url + "/metrics")[0])
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(60)
    return {
        "metrics_idle": summary(idle),
        "metrics_under_12_xlsx_clients": summary(loaded),
        "xlsx_requests": len(reports),
        "xlsx_statuses": sorted({s for _, s in reports}),
        "xlsx": summary([d for d, _ in reports]) if reports else None,
    }


def idle_flood(daemon: agents.DaemonProcess, connections: int = 1100, nofile: int = 1024) -> dict[str, Any]:
    resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
    before = [timed_get(daemon.url + "/-/healthy", timeout=10)[0] for _ in range(10)]
    socks = half_sent(daemon.port, connections)
    try:
        time.sleep(0.5)
        healthy = [timed_get(daemon.url + "/-/healthy", timeout=35) for _ in range(10)]
        metrics = [timed_get(daemon.url + "/metrics", timeout=35) for _ in range(5)]
    finally:
        for s in socks:
            s.close()
    return {
        "healthy_before": summary(before),
        "healthy_under_flood": summary([d for d, _ in healthy]),
        "healthy_statuses": [s for _, s in healthy],
        "metrics_under_flood": summary([d for d, _ in metrics]),
        "metrics_statuses": [s for _, s in metrics],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-flood", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    out: dict[str, Any] = {"pythonpath": os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        work = Path(tmp)
        with agents.running_daemon(daemon_config(work), work) as daemon:
            out.update(metrics_under_reports(daemon, args.seconds))
        if not args.skip_flood:
            with agents.running_daemon(daemon_config(work), work) as daemon:
                out.update(idle_flood(daemon))
                out["flood_log_lines"] = [
                    line for line in daemon.output().splitlines() if "dropped" in line or "accept" in line
                ][:5]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
