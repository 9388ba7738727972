"""Run the real sitivmon daemon without usage recording, to attribute the recorder's cost.

    python bench/attribution_daemon.py run --config FILE [--listen HOST:PORT]

Used by poll_bench.py (`--variants sitivmon,sitivmon-nousage`): the difference between the two
is what the usage recorder and the month-to-date gauges cost. It is the same daemon composed without
the usage feature (`Composition(usage=False)`), not a patched one; it is not a way to run sitivmon.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sitivmon.aio import run
from sitivmon.app.config import ConfigError, load_config
from sitivmon.app.daemon import Composition, run_daemon
from sitivmon.logs import setup_logging


def main() -> int:
    parser = argparse.ArgumentParser(prog="attribution_daemon.py")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--listen")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["plain", "json"])
    args = parser.parse_args([a for a in sys.argv[1:] if a != "--"])
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(args.log_format or config.log.format, args.log_level or config.log.level)
    return run(run_daemon(args.config, config, args.listen, composition=Composition(usage=False)))


if __name__ == "__main__":
    raise SystemExit(main())
