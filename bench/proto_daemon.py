"""Run the real sitivmon daemon with the bench-local prototypes of bench/proto.py patched in.

    python bench/proto_daemon.py [--lean-walk] [--lazy-fold] [--uvloop] [--tools DIR] -- run --config ...

Used by poll_bench.py (`--variants proto,proto-uvloop`) to measure, end to end and against the same
exporter run, what the proposed changes gain. Only names looked up at run time are replaced:
`sitivmon.snmp.gufo.GufoClient` (the scheduler's factory imports it per target) and
`sitivmon.daemon.Monitor`; everything else is the daemon as shipped. `--no-usage` is for attribution
only (what the usage recorder and the month-to-date gauges cost): it is not a proposal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print(
            "usage: proto_daemon.py [--lean-walk] [--lazy-fold] [--uvloop] [--tools DIR] -- <sitivmon args>",
            file=sys.stderr,
        )
        return 2
    cut = argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("--lean-walk", action="store_true")
    p.add_argument("--lazy-fold", action="store_true")
    p.add_argument("--uvloop", action="store_true")
    p.add_argument(
        "--no-usage", action="store_true", help="attribution only: drop usage records and the month-to-date gauges"
    )
    p.add_argument("--tools", default=None)
    args = p.parse_args(argv[:cut])
    if args.tools:
        sys.path.append(args.tools)

    import proto

    import sitivmon.daemon
    import sitivmon.snmp.gufo

    if args.lean_walk:
        sitivmon.snmp.gufo.GufoClient = proto.LeanGufoClient  # type: ignore[misc]
    if args.lazy_fold:
        sitivmon.daemon.Monitor = proto.LazyMonitor  # type: ignore[misc]
    if args.no_usage:
        import sitivmon.usage.recorder

        class _NoCollector:
            def __init__(self, *args: object, **kwargs: object) -> None:
                pass

            def describe(self) -> list[object]:
                return []

            def collect(self) -> list[object]:
                return []

        sitivmon.daemon.UsageLiveCollector = _NoCollector  # type: ignore[misc,assignment]
        sitivmon.usage.recorder.UsageRecorder.submit = lambda self, batch: None  # type: ignore[method-assign]
    if args.uvloop:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    from sitivmon.cli import main as cli_main

    return cli_main(argv[cut + 1 :])


if __name__ == "__main__":
    raise SystemExit(main())
