"""Folding interface rows into a link: totals, orientation, renumbering, usage records."""

from __future__ import annotations

from typing import Any

import pytest

from sitivmon.config.model import Link
from sitivmon.links.interfaces import InterfaceRow, interface_rows
from sitivmon.links.state import LinkRuntime, apply_row, decode_baseline
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
    out = fold(rt, row(3, 10, 1000), 120)  # a 64-bit counter going back (from the value held over the spike)
    assert Flag.RESET in out.flags and rt.discontinuities == 2
    # Each direction carries its own counter's flags: the receive reset does not taint transmit.
    assert {c.key.quantity: c.flags for c in out.counters} == {
        Quantity.TRAFFIC_IN: {Flag.RESET, Flag.GAP},
        Quantity.TRAFFIC_OUT: frozenset(),
    }
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


# --- issue 10 ---------------------------------------------------------------------------------------------


def columns_row(index: int, **columns: int | None) -> InterfaceRow:
    """A row from the IF-MIB columns given (None: the column is absent from this walk)."""
    i = str(index)
    tables: dict[str, dict[str, Any]] = {"ifName": {i: "xe0"}, "ifOperStatus": {i: 1}, "ifAdminStatus": {i: 1}}
    for column, value in columns.items():
        if value is not None:
            tables[column] = {i: value}
    return interface_rows(tables)[index]


def traffic(outcomes: list[Any], quantity: Quantity = Quantity.TRAFFIC_IN) -> int:
    return sum(c.delta for out in outcomes for c in out.counters if c.key.quantity is quantity)


def test_no_capacity_and_absurd_hc_values_are_set_aside() -> None:
    """Symptom 1: no configured capacity, ifSpeed and ifHighSpeed 0, an HC counter reading 2**64-1 (the
    agent's 'unavailable') then 2**63: nothing absurd reaches the usage records; both are anomalies."""
    rt = LinkRuntime(link())
    speeds = {"ifSpeed": 0, "ifHighSpeed": 0, "ifHCOutOctets": 0}
    outs = [
        fold(rt, columns_row(3, ifHCInOctets=value, **speeds), 60.0 * i)
        for i, value in enumerate([1000, 2**64 - 1, 2**63, 2**63 + 5000])
    ]
    assert rt.capacity_bytes_per_s is None
    assert [(a.reason, a.subject) for a in outs[1].anomalies] == [("counter_unavailable", "givors-fibre in_octets")]
    assert [a.reason for a in outs[2].anomalies] == ["counter_implausible"]
    received = {i: [c for c in out.counters if c.key.quantity is Quantity.TRAFFIC_IN] for i, out in enumerate(outs)}
    assert received[1] == []  # the value is held: no record for that interval
    assert [(c.delta, c.flags) for c in received[2]] == [(0, {Flag.UNKNOWN, Flag.GAP})]
    assert [(c.delta, c.flags) for c in received[3]] == [(5000, frozenset())]
    assert traffic(outs) == 5000 and rt.totals["receive_bytes"] == 5000


def test_hc_column_served_as_counter32_on_a_link() -> None:
    """Symptom 3: 10 MB/s for 80 s on a 100 Mbit port whose ifHCInOctets wraps at 2**32: 800 MB."""
    rt = LinkRuntime(link())
    start = 2**32 - 300_000_000
    outs = [
        apply_row(
            rt,
            columns_row(3, ifHighSpeed=100, ifHCInOctets=(start + 100_000_000 * i) % 2**32, ifHCOutOctets=0),
            at=T0 + 10 * i,
            uptime_ticks=UP0 + 1000 * i,
            interval_s=10,
            target="core",
        )
        for i in range(9)
    ]
    assert traffic(outs) == 800_000_000 and rt.discontinuities == 0
    assert all(c.flags == frozenset() for out in outs for c in out.counters)


def test_hc_column_missing_for_one_poll_is_counted() -> None:
    """Symptom 4: a partial walk lacks ifHCInOctets for one poll; ifInOctets is its low half: 2,000,000
    bytes counted of 2,000,000, without a reset."""
    rt = LinkRuntime(link(capacity="100Mbit"))
    base = 3 * 2**32 + 2**32 - 1_500_000
    outs = [
        fold(rt, columns_row(3, ifHCInOctets=base, ifInOctets=base % 2**32), 0),
        fold(rt, columns_row(3, ifHCInOctets=None, ifInOctets=(base + 1_000_000) % 2**32), 60),
        fold(rt, columns_row(3, ifHCInOctets=base + 2_000_000, ifInOctets=(base + 2_000_000) % 2**32), 120),
    ]
    assert traffic(outs) == 2_000_000 and rt.discontinuities == 0
    assert all(out.flags == frozenset() for out in outs)


def test_ambiguous_32_bit_counts_lower_coverage() -> None:
    """Symptom 5: 32-bit counters on a 10 Gbit port polled every 60 s: +100 is flagged unknown."""
    rt = LinkRuntime(link())
    fold(rt, columns_row(3, ifHighSpeed=10_000, ifInOctets=1000, ifOutOctets=0), 0)
    out = fold(rt, columns_row(3, ifHighSpeed=10_000, ifInOctets=1100, ifOutOctets=0), 60)
    assert [(c.delta, c.flags) for c in out.counters] == [(100, {Flag.UNKNOWN}), (0, {Flag.UNKNOWN})]
    assert {a.reason for a in out.anomalies} == {"counter_ambiguous"}


def test_poller_clock_stepping_back_loses_nothing() -> None:
    """Symptom 6: readings at t = 1000, 1060, 1058, 1118 of +1 MB each: 3 MB counted, and the baseline
    persisted after the step back is the previous reading (a restart then loses nothing either)."""
    rt = LinkRuntime(link())
    outs = []
    for i, t in enumerate([1000.0, 1060.0, 1058.0, 1118.0]):
        r = row(3, 10**6 * i, 0)
        outs.append(apply_row(rt, r, at=t, uptime_ticks=UP0 + 6000 * i, interval_s=60, target="core"))
    assert traffic(outs) == 3 * 10**6 and rt.totals["receive_bytes"] == 3 * 10**6
    _origin, _index, kept = decode_baseline(outs[2].baseline)
    assert kept.counters["in_octets"].value == 10**6


def test_a_passing_spike_loses_nothing() -> None:
    """An implausible value once (over capacity): set aside, and the next reading counts from the last
    good value, over both intervals."""
    rt = LinkRuntime(link(capacity="8kbit"))  # 1000 bytes/s
    fold(rt, row(3, 1000, 0), 0)
    spike = fold(rt, row(3, 10**12, 0), 60)
    assert [a.reason for a in spike.anomalies] == ["counter_implausible"]
    out = fold(rt, row(3, 31_000, 0), 120)
    received = [c for c in out.counters if c.key.quantity is Quantity.TRAFFIC_IN]
    assert [(c.start, c.delta, c.flags) for c in received] == [(T0, 30_000, {Flag.GAP})]
    assert rt.totals["receive_bytes"] == 30_000


def test_unreadable_baselines_raise_only_what_the_monitor_catches() -> None:
    """The monitor skips a baseline on ValueError/KeyError/TypeError; anything else would stop the start."""
    for text in ("[]", '{"origin": "a", "snapshot": "[]"}', '{"origin": "a", "snapshot": "{\\"c\\": 5}"}', "{}"):
        with pytest.raises((ValueError, KeyError, TypeError)):
            decode_baseline(text)


@pytest.mark.parametrize("origin", ["192.0.2.1:161|name=xe0", 'h\u00f4te|alias="Vénissieux" \\ 1G', ""])
def test_baseline_text_is_json_dumps(origin: str) -> None:
    """The baseline is formatted without json.dumps on every poll: still the text it would write."""
    import json

    from sitivmon.links.state import encode_baseline
    from sitivmon.normalize.counters import CounterSnapshot, RawCounter

    snap = CounterSnapshot(T0, UP0, None, {"in_octets": RawCounter(7, 64)})
    expected = json.dumps({"origin": origin, "if_index": 3, "snapshot": snap.to_json()}, separators=(",", ":"))
    assert encode_baseline(origin, 3, snap) == expected
    assert decode_baseline(expected) == (origin, 3, snap)


def test_usage_keys_follow_a_reloaded_link() -> None:
    """Keys are derived once per link config: a reload that moves the link to another commune or side
    must be followed at once."""
    rt = LinkRuntime(link())
    fold(rt, row(3, 1000, 2000), 0)
    out = fold(rt, row(3, 1500, 2600), 60)
    assert {(c.key.commune, c.key.quantity, c.delta) for c in out.counters} == {
        ("givors", Quantity.TRAFFIC_IN, 500), ("givors", Quantity.TRAFFIC_OUT, 600),
    }  # fmt: skip
    rt.link = link(commune="grigny", side="core")
    out = fold(rt, row(3, 1600, 2900), 120)
    assert {(c.key.commune, c.key.quantity, c.delta) for c in out.counters} == {
        ("grigny", Quantity.TRAFFIC_IN, 300), ("grigny", Quantity.TRAFFIC_OUT, 100),
    }  # fmt: skip
    assert [g.key.commune for g in out.gauges] == ["grigny"]


def test_links_of_follows_reloads_that_move_links() -> None:
    """The monitor indexes links by target; a reload that moves, adds or removes links is followed."""
    from sitivmon.app.config import parse_config
    from sitivmon.monitor import Monitor

    def cfg(links: str) -> Any:
        return parse_config(
            'communes:\n  - {id: givors, name: Givors, insee: "69091"}\n'
            "credentials:\n  v2: {version: 2c, community: public}\n"
            "targets:\n  - {name: sw1, address: 192.0.2.1, credentials: v2}\n"
            "  - {name: sw2, address: 192.0.2.2, credentials: v2}\n"
            "links:\n" + links
        )

    a = "  - {id: a, commune: givors, target: sw1, interface: {name: eth1}}\n"
    b = "  - {id: b, commune: givors, target: sw1, interface: {name: eth2}}\n"
    monitor = Monitor(cfg(a + b))
    assert [rt.link.id for rt in monitor.links_of("sw1")] == ["a", "b"]
    monitor.reconfigure(cfg(a + b.replace("sw1", "sw2") + a.replace("id: a", "id: c")))
    assert [rt.link.id for rt in monitor.links_of("sw1")] == ["a", "c"]
    assert [rt.link.id for rt in monitor.links_of("sw2")] == ["b"]
    monitor.reconfigure(cfg(a))
    assert [rt.link.id for rt in monitor.links_of("sw1")] == ["a"] and monitor.links_of("sw2") == []


@pytest.mark.parametrize("side", ["commune", "core"])
def test_usual_poll_series_and_records_follow_any_counter_layout(side: str) -> None:
    """The usual poll sums a layout's raw deltas into series by position (`_SeriesPlan`, built per
    layout); on layouts of any subset and order of counters (one to four packet terms, byte counters
    missing), totals and usage records are those of `oriented_series` by name."""
    import random

    from sitivmon.config.model import Side
    from sitivmon.links.interfaces import SERIES, oriented_series
    from sitivmon.normalize.counters import CounterSnapshot, FlatCounters

    rng = random.Random(side)
    raws = sorted({r for source in SERIES.values() for r in source})
    for _ in range(200):
        names = tuple(rng.sample(raws, rng.randrange(1, len(raws) + 1)))
        before = tuple(rng.randrange(0, 2**40) for _ in names)
        deltas = tuple(rng.randrange(0, 10**6) for _ in names)
        widths = (64,) * len(names)
        rt = LinkRuntime(link(side=side))
        rt.if_index = 3
        rt.snapshot = CounterSnapshot(T0, UP0, None, FlatCounters(names, before, widths))
        totals_before = dict(rt.totals)
        after = tuple(map(sum, zip(before, deltas, strict=True)))
        r = row(3, 0, 0)._replace(counters=FlatCounters(names, after, widths))
        out = fold(rt, r, 60)
        expected = oriented_series(dict(zip(names, deltas, strict=True)), Side(side))
        assert {k: rt.totals[k] - totals_before[k] for k in rt.totals} == expected
        assert list(rt.totals) == list(SERIES)
        read = {"receive_bytes": "out_octets" if side == "core" else "in_octets"}
        read["transmit_bytes"] = "in_octets" if side == "core" else "out_octets"
        wanted = [
            (quantity, expected[series])
            for series, quantity in (("receive_bytes", Quantity.TRAFFIC_IN), ("transmit_bytes", Quantity.TRAFFIC_OUT))
            if read[series] in names
        ]
        assert [(c.key.quantity, c.delta) for c in out.counters] == wanted
        assert all(c.flags == frozenset() and c.start == T0 and c.end == T0 + 60 for c in out.counters)
