"""Run the real sitivmon daemon without usage recording, to attribute the recorder's cost.

    python bench/attribution_daemon.py -- run --config ...

Used by poll_bench.py (`--variants sitivmon,sitivmon-nousage`): the difference between the two
is what the usage recorder and the month-to-date gauges cost. It is not a way to run sitivmon.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print("usage: attribution_daemon.py -- <sitivmon args>", file=sys.stderr)
        return 2
    import sitivmon.app.daemon
    import sitivmon.usage.recorder

    class _NoCollector:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def describe(self) -> list[object]:
            return []

        def collect(self) -> list[object]:
            return []

        def follow(self, *args: object) -> None:
            pass

    sitivmon.app.daemon.UsageLiveCollector = _NoCollector  # type: ignore[misc,assignment]
    sitivmon.usage.recorder.UsageRecorder.submit = lambda self, batch: None  # type: ignore[method-assign]

    from sitivmon.app.cli import main as cli_main

    return cli_main(argv[argv.index("--") + 1 :])


if __name__ == "__main__":
    raise SystemExit(main())
