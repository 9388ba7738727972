"""Usage accounting's cross-checks of the core configuration, run by the composition root's `check`."""

from __future__ import annotations

from collections.abc import Iterator

from sitivmon.config.crossref import Problem
from sitivmon.config.model import CoreConfig
from sitivmon.usage.buckets import check_recordable_interval


def interval_problems(config: CoreConfig) -> Iterator[Problem]:
    """Poll intervals the usage store cannot tell apart are refused where they are written: a gauge
    reading is held for one interval, recovered from the samples count the store keeps per bucket."""
    intervals: list[tuple[tuple[str | int, ...], float | None]] = [(("poll", "interval"), config.poll.interval)]
    intervals += [(("targets", i, "poll", "interval"), t.poll.interval) for i, t in enumerate(config.targets)]
    for loc, interval in intervals:
        if interval is None:
            continue
        try:
            check_recordable_interval(interval)
        except ValueError as exc:
            yield loc, str(exc)
