"""A stand-in for the daemon, run as a subprocess by test_durability: polls a synthetic counter on a
simulated clock, feeds a real UsageRecorder, seeds itself from the committed baselines on start.

    python -m tests.usage.durable_writer DB --origin REAL_T --until SIM_T [--fsize-fail-after N]

Simulated time = SIM_T0 + (time.time() - origin) * SPEED, so a process killed and restarted resumes
at the right simulated time and its downtime is real (simulated) downtime.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from sitivmon.readings import CounterInterval, Flag, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.periods import month_range
from sitivmon.usage.recorder import UsageRecorder
from sitivmon.usage.store import SqliteUsageStore

SIM_T0 = month_range("2026-10").start + 5 * 86400
SPEED = 600.0  # simulated seconds per real second
INTERVAL = 60.0  # simulated poll interval
KIN = UsageKey("venissieux", "l1", Quantity.TRAFFIC_IN)
KUP = UsageKey("venissieux", "l1", Quantity.LINK_UP)


def counter(t: float) -> int:
    x = t - SIM_T0
    return int(x * 1000) + int(x * x) // 9


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("db", type=Path)
    ap.add_argument("--origin", type=float, required=True)
    ap.add_argument("--until", type=float, required=True)
    ap.add_argument("--first", type=Path, required=True, help="where to note a fresh baseline")
    ap.add_argument(
        "--fsize-fail",
        nargs=2,
        type=int,
        metavar=("FROM", "TO"),
        help="make every file write fail (RLIMIT_FSIZE) between these poll numbers",
    )
    args = ap.parse_args()

    def now() -> float:
        return SIM_T0 + (time.time() - args.origin) * SPEED

    reg = CollectorRegistry()
    settings = UsageSettings(flush_interval_s=0.03, busy_timeout_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
    rec = UsageRecorder(SqliteUsageStore(args.db), reg, settings)
    state = rec.load_baselines().get("l1")
    last = tuple(json.loads(state)) if state else None
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails with EFBIG instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    errors_seen = 0.0
    async with rec:
        n = 0
        while (t := now()) <= args.until:
            n += 1
            if args.fsize_fail and n == args.fsize_fail[0]:
                resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
            if args.fsize_fail and n == args.fsize_fail[1]:
                errors_seen = (
                    reg.get_sample_value("sitivmon_usage_write_errors_total", {"error": "StoreUnavailable"}) or 0
                )
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            c = counter(t)
            if last is None:
                args.first.write_text(json.dumps([t, c]))
                rec.submit(PollBatch("t", t, INTERVAL, baselines={"l1": json.dumps([t, c])}))
            else:
                flags = frozenset({Flag.GAP}) if t - last[0] > 1.5 * INTERVAL else frozenset()
                rec.submit(
                    PollBatch(
                        "t",
                        t,
                        INTERVAL,
                        counters=(CounterInterval(KIN, last[0], t, c - last[1], flags),),
                        gauges=(GaugeReading(KUP, t, 1.0),),
                        baselines={"l1": json.dumps([t, c])},
                    )
                )
            last = (t, c)
            print(n, t, flush=True)
            await asyncio.sleep(INTERVAL / SPEED)
    pending = reg.get_sample_value("sitivmon_usage_pending_batches")
    print(json.dumps({"errors": errors_seen, "pending": pending}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
