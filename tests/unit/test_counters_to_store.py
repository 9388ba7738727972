"""Device nonsense, from the interface row to the SQLite store: nothing a device serves can make the
usage flush raise (issue 10, symptom 1). Real store, real SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sitivmon.config.model import Link
from sitivmon.links.interfaces import interface_rows
from sitivmon.links.state import LinkRuntime, apply_row
from sitivmon.readings import PollBatch, Quantity, UsageKey
from sitivmon.usage.indicators import series_sum
from sitivmon.usage.recorder import Accumulator
from sitivmon.usage.store import SqliteUsageStore

T0 = 1_790_000_000.0  # 2026-09-21, bucket-aligned enough for this test
UP0 = 360_000


def test_absurd_hc_values_without_capacity_reach_the_store_bounded(tmp_path: Path) -> None:
    """No configured capacity, ifSpeed/ifHighSpeed 0; ifHCInOctets serves 2**64-1 ('unavailable'),
    then garbage near 2**64 twice, then sane values again with a passing spike: every flush writes, the
    month reads back exactly what was counted, and the garbage is nowhere in it."""
    link = Link.model_validate({"id": "l1", "commune": "givors", "target": "core", "interface": {"name": "xe0"}})
    rt = LinkRuntime(link)
    acc = Accumulator()
    values = [1000, 2**64 - 1, 2**64 - 2, 2**64 - 2, 500, 9_500, 2**63, 10_500]
    with SqliteUsageStore(tmp_path / "u.db") as store:
        store.migrate()
        for i, value in enumerate(values):
            tables: dict[str, dict[str, Any]] = {
                "ifName": {"3": "xe0"}, "ifOperStatus": {"3": 1}, "ifSpeed": {"3": 0}, "ifHighSpeed": {"3": 0},
                "ifHCInOctets": {"3": value}, "ifHCOutOctets": {"3": 0},
            }  # fmt: skip
            at = T0 + 60 * i
            out = apply_row(
                rt, interface_rows(tables)[3], at=at, uptime_ticks=UP0 + 6000 * i, interval_s=60, target="core"
            )
            acc.apply(PollBatch("core", at, 60, out.counters, out.gauges, {link.id: out.baseline}))
            closed, open_buckets, baselines, _ = acc.snapshot()
            store.write(closed, open_buckets, baselines, now=at)
        month = store.month_series(int(T0) - 86_400, int(T0) + 86_400)
    received = month[UsageKey("givors", "l1", Quantity.TRAFFIC_IN)]
    assert series_sum(received) == rt.totals["receive_bytes"] == 9_000 + 1_000
