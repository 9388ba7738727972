"""Folding interface rows into a link: totals, orientation, renumbering, usage records."""

from __future__ import annotations

from typing import Any

from sitivmon.config.model import Link
from sitivmon.links.interfaces import InterfaceRow, interface_rows
from sitivmon.links.state import LinkRuntime, apply_row
from sitivmon.readings import Flag, LinkState, Quantity

T0 = 1_764_320_000.0
UP0 = 360_000


def link(**kw: Any) -> Link:
    base: dict[str, Any] = {"id": "givors-fibre", "commune": "givors", "target": "core", "interface": {"name": "xe0"}}
    return Link.model_validate(base | kw)


def row(index: int, in_octets: int, out_octets: int, *, oper: int = 1, speed_mbit: int = 1000) -> InterfaceRow:
    i = str(index)
    return interface_rows({
        "ifName": {i: "xe0"}, "ifOperStatus": {i: oper}, "ifAdminStatus": {i: 1}, "ifHighSpeed": {i: speed_mbit},
        "ifHCInOctets": {i: in_octets}, "ifHCOutOctets": {i: out_octets},
    })[index]  # fmt: skip


def fold(rt: LinkRuntime, r: InterfaceRow, seconds: float) -> Any:
    return apply_row(rt, r, at=T0 + seconds, uptime_ticks=UP0 + int(seconds * 100), interval_s=60, target="core")


def test_first_poll_sets_state_and_baseline_only() -> None:
    rt = LinkRuntime(link())
    out = fold(rt, row(3, 1000, 2000), 0)
    assert rt.state is LinkState.UP and rt.if_index == 3 and rt.interface == "xe0"
    assert out.counters == () and rt.totals["receive_bytes"] == 0
    assert [g.value for g in out.gauges] == [1.0]
    assert rt.capacity_bytes_per_s == 125_000_000


def test_deltas_usage_records_and_core_orientation() -> None:
    for side, rx, tx in (("commune", 500, 900), ("core", 900, 500)):
        rt = LinkRuntime(link(side=side))
        fold(rt, row(3, 1000, 2000), 0)
        out = fold(rt, row(3, 1500, 2900), 60)
        assert (rt.totals["receive_bytes"], rt.totals["transmit_bytes"]) == (rx, tx)
        usage = {c.key.quantity: c for c in out.counters}
        assert usage[Quantity.TRAFFIC_IN].delta == rx and usage[Quantity.TRAFFIC_OUT].delta == tx
        assert usage[Quantity.TRAFFIC_IN].key.commune == "givors"
        assert (usage[Quantity.TRAFFIC_IN].start, usage[Quantity.TRAFFIC_IN].end) == (T0, T0 + 60)


def test_renumbered_interface_restarts_the_baseline() -> None:
    """The link follows its name to a new ifIndex; the old row's counters are never subtracted from the
    new one's."""
    rt = LinkRuntime(link())
    fold(rt, row(3, 10**9, 10**9), 0)
    out = fold(rt, row(7, 5000, 6000), 60)
    assert rt.if_index == 7 and out.counters == () and rt.totals["receive_bytes"] == 0
    fold(rt, row(7, 5600, 6000), 120)
    assert rt.totals["receive_bytes"] == 600


def test_reset_and_clamp_are_counted_as_discontinuities() -> None:
    rt = LinkRuntime(link(capacity="8kbit"))  # 1000 bytes/s
    fold(rt, row(3, 1000, 1000), 0)
    out = fold(rt, row(3, 10**9, 1000), 60)  # far over capacity
    assert out.flags == {Flag.CLAMP} and rt.totals["receive_bytes"] == 0 and rt.discontinuities == 1
    out = fold(rt, row(3, 10, 1000), 120)  # a 64-bit counter going back
    assert Flag.RESET in out.flags and rt.discontinuities == 2
    assert {c.flags for c in out.counters} == {out.flags}
    out = fold(rt, row(3, 20, 1010), 180)
    assert out.flags == frozenset() and rt.totals["receive_bytes"] == 10 and rt.discontinuities == 2


def test_state_changes_are_counted_once_per_change() -> None:
    rt = LinkRuntime(link())
    fold(rt, row(3, 0, 0), 0)
    fold(rt, row(3, 0, 0, oper=2), 60)
    fold(rt, row(3, 0, 0, oper=2), 120)
    out = fold(rt, row(3, 0, 0, oper=1), 180)
    assert rt.state_changes == 2 and rt.last_change == T0 + 180
    assert out.event is not None and out.event.previous is LinkState.DOWN and out.event.state is LinkState.UP
    assert [g.value for g in fold(rt, row(3, 0, 0, oper=7), 240).gauges] == [0.0]  # lowerLayerDown is down
