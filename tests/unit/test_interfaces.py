"""IF-MIB rows: counter sources, packets, speed, resolution of a link's interface, orientation."""

from __future__ import annotations

from typing import Any

import pytest

from sitivmon.config.model import InterfaceSelector, Side
from sitivmon.datacenter.rows import text as datacenter_text
from sitivmon.links.interfaces import (
    SERIES,
    InterfaceIndex,
    InterfaceRow,
    ResolveError,
    capacities,
    interface_row,
    interface_rows,
    oriented_series,
    port_speed,
)
from sitivmon.normalize.counters import RawCounter
from sitivmon.normalize.text import device_text


def tables(**columns: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(columns)


def one(**columns: Any) -> InterfaceRow:
    """The row of ifIndex 1 built from `column=value` pairs."""
    rows = interface_rows({name: {"1": value} for name, value in columns.items()})
    return rows[1]


# --- counter sources -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"ifHCInOctets": 2**40, "ifInOctets": 7}, {"in_octets": RawCounter(2**40, 64)}),
        ({"ifInOctets": 7}, {"in_octets": RawCounter(7, 32)}),
        ({"ifHCInOctets": 0, "ifInOctets": 7}, {"in_octets": RawCounter(0, 64)}),  # HC 0 is a value
        ({"ifHCInOctets": None, "ifInOctets": 7}, {"in_octets": RawCounter(7, 32)}),
        ({"ifHCInOctets": b"\x00", "ifInOctets": 7}, {"in_octets": RawCounter(7, 32)}),  # not an integer
        # per counter: HC in, 32-bit out
        (
            {"ifHCInOctets": 100, "ifInOctets": 1, "ifOutOctets": 2},
            {"in_octets": RawCounter(100, 64), "out_octets": RawCounter(2, 32)},
        ),
        (
            {"ifHCOutUcastPkts": 5, "ifOutUcastPkts": 3, "ifInUcastPkts": 4},
            {"out_ucast": RawCounter(5, 64), "in_ucast": RawCounter(4, 32)},
        ),
        (
            {"ifInErrors": 1, "ifOutErrors": 2, "ifInDiscards": 3, "ifOutDiscards": 4},
            {
                "in_errors": RawCounter(1, 32),
                "out_errors": RawCounter(2, 32),
                "in_discards": RawCounter(3, 32),
                "out_discards": RawCounter(4, 32),
            },
        ),
    ],
)
def test_counter_sources(columns: dict[str, Any], expected: dict[str, RawCounter]) -> None:
    assert one(ifDescr="eth0", **columns).counters == expected


def test_non_unicast_packets_hc_pair_or_32_bit_fallback() -> None:
    hc = one(ifDescr="x", ifHCInMulticastPkts=3, ifHCInBroadcastPkts=4, ifInNUcastPkts=99)
    assert hc.counters == {"in_mcast": RawCounter(3, 64), "in_bcast": RawCounter(4, 64)}
    # Half of the HC pair is no pair: the deprecated 32-bit sum is used.
    half = one(ifDescr="x", ifHCOutMulticastPkts=3, ifOutNUcastPkts=9)
    assert half.counters == {"out_nucast": RawCounter(9, 32)}


@pytest.mark.parametrize("side", [Side.COMMUNE, Side.CORE])
def test_packets_sum_unicast_multicast_broadcast(side: Side) -> None:
    raw = {
        "in_ucast": 100,
        "in_mcast": 10,
        "in_bcast": 1,
        "out_ucast": 200,
        "out_nucast": 20,
        "in_octets": 5000,
        "out_octets": 7000,
        "in_errors": 1,
        "out_errors": 2,
        "in_discards": 3,
        "out_discards": 4,
    }
    series = oriented_series(raw, side)
    if side is Side.COMMUNE:
        assert series == {
            "receive_bytes": 5000,
            "transmit_bytes": 7000,
            "receive_packets": 111,
            "transmit_packets": 220,
            "receive_errors": 1,
            "transmit_errors": 2,
            "receive_discards": 3,
            "transmit_discards": 4,
        }
    else:  # the interface is on the core router: what it sends, the commune receives
        assert series == {
            "receive_bytes": 7000,
            "transmit_bytes": 5000,
            "receive_packets": 220,
            "transmit_packets": 111,
            "receive_errors": 2,
            "transmit_errors": 1,
            "receive_discards": 4,
            "transmit_discards": 3,
        }
    assert set(series) == set(SERIES)


def test_oriented_series_missing_counters_are_zero() -> None:
    assert oriented_series({}, Side.CORE) == dict.fromkeys(SERIES, 0)


# --- speed ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "speed"),
    [
        ({"ifHighSpeed": 10_000, "ifSpeed": 4_294_967_295}, 1_250_000_000),  # 10G: ifSpeed saturated
        ({"ifHighSpeed": 1000, "ifSpeed": 1_000_000_000}, 125_000_000),
        ({"ifHighSpeed": 0, "ifSpeed": 10_000_000}, 1_250_000),  # sub-Mbit ports report 0 high speed
        ({"ifSpeed": 100_000_000}, 12_500_000),
        ({"ifSpeed": 0}, None),
        ({}, None),
    ],
)
def test_speed(columns: dict[str, Any], speed: int | None) -> None:
    assert one(ifDescr="x", **columns).speed_bytes_per_s == speed


# Issue 10 symptom 8: (ifSpeed, ifHighSpeed) -> capacity B/s, lower bound B/s, anomaly reasons.
@pytest.mark.parametrize(
    ("if_speed", "if_high_speed", "capacity", "floor", "reasons"),
    [
        (100_000_000, 100_000_000, 12_500_000, None, ["if_high_speed_implausible"]),  # D-Link: Mbit/s in bit/s
        (10_000_000, 10_000_000, 1_250_000, None, ["if_high_speed_implausible"]),  # same, 10 Mbit port
        (0, 100_000_000, None, None, ["if_high_speed_implausible"]),  # and no ifSpeed to fall back on
        (4_294_967_295, None, None, 536_870_911, ["speed_lower_bound"]),  # NetApp: at least, not a capacity
        (4_294_967_295, 0, None, 536_870_911, ["speed_lower_bound"]),
        (4_294_967_295, 40_000, 5_000_000_000, None, []),  # 40G: ifSpeed saturated, ifHighSpeed tells
        (4_294_967_294, 8_000, 1_000_000_000, None, []),  # Brocade FC: one under saturation
        (1_410_065_408, 10_000, 1_250_000_000, None, []),  # dptech: 10G wrapped modulo 2**32
        (1_544_000, 2, 193_000, None, []),  # T1: ifHighSpeed rounded, ifSpeed exact
        (1_000_000_000, 10_000, 1_250_000_000, None, ["speed_mismatch"]),  # Isilon, Sangfor: disagree
        (0, 100, 12_500_000, None, []),  # H3C: ifSpeed 0, ifHighSpeed 100
        (10_000_000, 0, 1_250_000, None, []),
        (None, None, None, None, []),
        (b"fast", b"faster", None, None, []),
    ],
)
def test_port_speed(
    if_speed: Any, if_high_speed: Any, capacity: int | None, floor: int | None, reasons: list[str]
) -> None:
    got = port_speed(if_speed, if_high_speed, "ifIndex 1")
    assert (got.bytes_per_s, got.floor_bytes_per_s) == (capacity, floor)
    assert [a.reason for a in got.anomalies] == reasons
    assert all(a.subject == "ifIndex 1" for a in got.anomalies)
    row = one(ifDescr="x", ifSpeed=if_speed, ifHighSpeed=if_high_speed)
    assert (row.speed_bytes_per_s, row.speed_floor_bytes_per_s) == (capacity, floor)
    assert capacities(row, None)["in_octets"] == capacity  # a lower bound never clamps traffic


def test_capacities_prefer_configured() -> None:
    row = one(ifDescr="x", ifHighSpeed=1000)
    assert capacities(row, None) == {"in_octets": 125_000_000, "out_octets": 125_000_000}
    assert capacities(row, 12_500_000) == {"in_octets": 12_500_000, "out_octets": 12_500_000}
    assert capacities(one(ifDescr="x"), None) == {"in_octets": None, "out_octets": None}


# --- rows -----------------------------------------------------------------------------------------------


def test_rows_text_status_and_indexes() -> None:
    rows = interface_rows(
        {
            "ifDescr": {"1": b"GigabitEthernet0/1\x00", "2": "lo", "x.1": "bad index"},
            "ifName": {"1": b"Gi0/1"},
            "ifAlias": {"1": "Vénissieux — fibre".encode()},
            "ifAdminStatus": {"1": 1, "2": 2},
            "ifOperStatus": {"1": 1, "2": 7},
            "ifLastChange": {"1": 1234},
            "ifCounterDiscontinuityTime": {"1": 99},
            "ifHCInOctets": {"3": 5},  # a row known only by a counter
        }
    )
    assert sorted(rows) == [1, 2, 3]
    r1 = rows[1]
    assert (r1.descr, r1.name, r1.alias, r1.label) == ("GigabitEthernet0/1", "Gi0/1", "Vénissieux — fibre", "Gi0/1")
    assert (r1.admin_status, r1.oper_status, r1.last_change_ticks, r1.discontinuity_ticks) == (1, 1, 1234, 99)
    assert (rows[2].label, rows[2].oper_status, rows[2].alias) == ("lo", 7, "")
    assert rows[3].label == "3" and rows[3].counters == {"in_octets": RawCounter(5, 64)}


def test_invalid_utf8_falls_back_to_cp1252_not_fatal() -> None:
    assert one(ifDescr=b"port\xff1").descr == "port\xff1"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"Commune: V\xe9nissieux [1G] {circuit-42}", "Commune: Vénissieux [1G] {circuit-42}"),  # Latin-1
        ("Commune: Vénissieux [1G]".encode(), "Commune: Vénissieux [1G]"),  # UTF-8 stays UTF-8
        (b"Pierre-B\xe9nite \x80", "Pierre-Bénite €"),  # cp1252, not bare Latin-1
        (b"x\x81y", "x\ufffdy"),  # undefined in cp1252: Latin-1 U+0081, a C1 control: replaced
        (b"eth0\x00\x00\x00", "eth0"),  # NUL padding
        (b"fake\nlog line\x1b[31m", "fake\ufffdlog line\ufffd[31m"),  # controls cannot forge lines
        (b"a\tb", "a\tb"),
        (None, ""),
    ],
)
def test_one_decoding_rule_for_device_strings(raw: bytes | None, text: str) -> None:
    assert device_text(raw) == text
    if raw is not None:
        assert one(ifDescr=raw).descr == text
        assert datacenter_text(raw) == text  # datacenter rows decode by the same rule


def test_latin1_alias_selects_its_link() -> None:
    """Issue 10 symptom 11: a Latin-1 ifAlias never matched the alias written in the config."""
    alias = "Commune: Vénissieux [1G] {circuit-42}"
    tables = {"ifDescr": {"1": b"ge-0/0/1", "2": b"ge-0/0/2"}, "ifAlias": {"1": b"", "2": alias.encode("latin-1")}}
    assert InterfaceIndex(tables).resolve(InterfaceSelector(alias=alias)).index == 2


# --- resolution: InterfaceIndex.resolve, what the monitor calls on every poll ---------------------------

TABLES: dict[str, dict[str, Any]] = {
    "ifDescr": {"1": b"lo", "2": b"xe-0/0/1", "3": b"xe-0/0/2", "4": b"xe-0/0/2", "5": b"mgmt"},
    "ifName": {"1": b"lo", "2": b"xe-0/0/1", "3": b"xe-0/0/2.0", "4": b"xe-0/0/2.1"},  # 5 has no ifName
    "ifAlias": {"1": b"", "2": b"GIVORS fibre", "3": b"CORBAS", "4": b"CORBAS", "5": b"oob"},
    "ifHCInOctets": {"2": 1_000, "3": 2_000, "4": 3_000},
}


def indexes_of(tables: dict[str, dict[str, Any]]) -> list[InterfaceIndex]:
    """The index as the monitor builds it: from the tables alone, and with rows already built for
    ifAlias discovery (which it reuses rather than builds again)."""
    return [InterfaceIndex(tables), InterfaceIndex(tables, interface_rows(tables))]


@pytest.mark.parametrize(
    ("selector", "index"),
    [
        ({"name": "xe-0/0/1"}, 2),
        ({"name": "xe-0/0/2.1"}, 4),  # unique by ifName though its ifDescr and ifAlias are shared
        ({"alias": "GIVORS fibre"}, 2),
        ({"alias": "oob"}, 5),
        ({"descr": "lo"}, 1),
        ({"descr": "mgmt"}, 5),  # a row without ifName or counters is still found by what it has
        ({"index": 3}, 3),
        ({"index": 5}, 5),
    ],
)
def test_resolve(selector: dict[str, Any], index: int) -> None:
    for interfaces in indexes_of(TABLES):
        row = interfaces.resolve(InterfaceSelector(**selector))
        assert row == interface_row(TABLES, str(index))  # the whole row, counters included


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ({"name": "xe-0/0/9"}, "no interface with ifName 'xe-0/0/9'"),
        ({"name": "XE-0/0/1"}, "no interface with ifName 'XE-0/0/1'"),  # exact match, case included
        ({"name": "xe-0/0/1 "}, "no interface with ifName 'xe-0/0/1 '"),  # and spaces
        ({"alias": "givors fibre"}, "no interface with ifAlias 'givors fibre'"),
        ({"descr": "xe-0/0/3"}, "no interface with ifDescr 'xe-0/0/3'"),
        ({"index": 9}, "no interface with ifIndex 9"),
        ({"alias": "CORBAS"}, "ifAlias 'CORBAS' matches several interfaces (ifIndex 3, 4)"),
        ({"descr": "xe-0/0/2"}, "ifDescr 'xe-0/0/2' matches several interfaces (ifIndex 3, 4)"),
    ],
)
def test_resolve_missing_or_ambiguous(selector: dict[str, Any], message: str) -> None:
    for interfaces in indexes_of(TABLES):
        with pytest.raises(ResolveError) as info:
            interfaces.resolve(InterfaceSelector(**selector))
        assert str(info.value) == message


def test_resolve_ambiguity_lists_indexes_numerically() -> None:
    tables = {"ifAlias": {"10": b"x", "9": b"x", "100": b"x"}, "ifDescr": {"10": b"a", "9": b"b", "100": b"c"}}
    with pytest.raises(ResolveError, match=r"\(ifIndex 9, 10, 100\)$"):
        InterfaceIndex(tables).resolve(InterfaceSelector(alias="x"))


def test_resolve_ignores_cells_of_no_interface() -> None:
    """An ifAlias cell at an index no presence column has (a stale or odd agent) is not an interface;
    nor is a non-numeric suffix."""
    tables = {"ifDescr": {"1": b"eth0"}, "ifAlias": {"1": b"", "7": b"ghost", "1.5": b"ghost"}}
    interfaces = InterfaceIndex(tables)
    with pytest.raises(ResolveError, match="no interface with ifAlias 'ghost'"):
        interfaces.resolve(InterfaceSelector(alias="ghost"))
    with pytest.raises(ResolveError, match="no interface with ifIndex 7"):
        interfaces.resolve(InterfaceSelector(index=7))


def test_resolve_follows_a_renumbering() -> None:
    """Resolved again on every poll: after a reboot renumbers the ports, a name, alias or descr
    selector finds its interface at its new ifIndex, while an index selector stays on the number."""
    before = {
        "ifName": {"2": b"xe-0/0/1", "3": b"xe-0/0/2"},
        "ifAlias": {"2": b"GIVORS", "3": b"CORBAS"},
        "ifDescr": {"2": b"port 1", "3": b"port 2"},
    }
    after = {
        "ifName": {"12": b"xe-0/0/1", "2": b"xe-0/0/2"},
        "ifAlias": {"12": b"GIVORS", "2": b"CORBAS"},
        "ifDescr": {"12": b"port 1", "2": b"port 2"},
    }
    for sel in ({"name": "xe-0/0/1"}, {"alias": "GIVORS"}, {"descr": "port 1"}):
        assert InterfaceIndex(before).resolve(InterfaceSelector(**sel)).index == 2
        assert InterfaceIndex(after).resolve(InterfaceSelector(**sel)).index == 12
    assert InterfaceIndex(after).resolve(InterfaceSelector(index=2)).name == "xe-0/0/2"
    with pytest.raises(ResolveError, match="no interface with ifIndex 3"):
        InterfaceIndex(after).resolve(InterfaceSelector(index=3))


def test_resolve_builds_only_the_rows_it_returns() -> None:
    """Why InterfaceIndex exists: a switch of 500 ports polled for a few links builds a few rows."""
    tables = {
        "ifName": {str(i): f"ge-{i}".encode() for i in range(1, 501)},
        "ifHCInOctets": {str(i): i for i in range(1, 501)},
    }
    interfaces = InterfaceIndex(tables)
    assert interfaces.resolve(InterfaceSelector(name="ge-7")).counters["in_octets"] == RawCounter(7, 64)
    assert interfaces.resolve(InterfaceSelector(index=9)).name == "ge-9"
    assert interfaces.resolve(InterfaceSelector(name="ge-7")) is interfaces.row("7")  # built once
    assert sorted(interfaces._rows) == ["7", "9"]


# --- ifAlias convention on real bytes (symptom 11) -------------------------------------------------------


def test_latin1_alias_becomes_a_link_and_ignored_aliases_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    from sitivmon.links.ifalias import links_from_aliases
    from tests.datacenter.conftest import make_config

    config = make_config(
        "targets:\n  - {name: core-9, address: 127.0.0.9, credentials: lab, ifalias_parser: true}\nlinks: []\n"
    )
    tables = {
        "ifName": {"1": b"ge-0/0/1", "2": b"ge-0/0/2"},
        "ifAlias": {"1": "Commune: Vénissieux [1G] {circuit-42}".encode("latin-1"), "2": b"Commune: Lyon [1G]"},
    }
    rows = interface_rows(tables)
    with caplog.at_level("WARNING", logger="sitivmon.links.ifalias"):
        for _ in range(3):  # parsed at every poll
            links = links_from_aliases(config, config.targets[0], rows)
    assert [(lk.commune, lk.circuit, lk.interface.describe()) for lk in links] == [
        ("venissieux", "circuit-42", "name=ge-0/0/1")
    ]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "ifIndex 2" in said[0] and "'Lyon'" in said[0]


def test_row_memo_gives_the_rows_of_no_memo_and_stays_bounded() -> None:
    """The memo reuses decoded texts and speeds while the raw values are equal and of the same type;
    a device renumbering on every poll does not grow it past about twice its interfaces."""
    from sitivmon.links.interfaces import RowMemo

    memo = RowMemo()
    for poll in range(300):
        base = 1 + (poll % 50) * 1000  # the same 3 interfaces, renumbered on every poll
        speed: Any = 10.0 if poll % 7 == 0 else 10  # equal values of another type read differently
        tables = {
            "ifName": {str(base + i): f"ge-{i}".encode() for i in range(3)},
            "ifAlias": {str(base + i): b"V\xe9nissieux" if poll % 3 else b"x" for i in range(3)},
            "ifSpeed": {str(base + i): speed for i in range(3)},
            "ifHCInOctets": {str(base + i): poll for i in range(3)},
        }
        with_memo, without = InterfaceIndex(tables, memo=memo), InterfaceIndex(tables)
        for i in range(3):
            sel = InterfaceSelector(name=f"ge-{i}")
            assert with_memo.resolve(sel) == without.resolve(sel)
        assert len(memo.statics) <= 3 * 3 + 64  # trimmed to 2n + 64 before each poll adds its n


def test_rows_column_by_column_are_the_rows_one_by_one() -> None:
    """`prefetch` (`_Columns.rows`, whole columns at once, statics reused whole through
    `RowMemo.batch`) builds the rows `row` builds one by one without a memo, on seeded columns with
    cells missing, negative, too large, of other types, and statics that change value or only type."""
    import random

    from sitivmon.links.interfaces import RowMemo

    rng = random.Random(15)
    memo = RowMemo()
    odd: list[Any] = [None, -1, 2**64, 2**32, 1.0, True, "7", b"7", 2**64 - 1]
    batch_hits = 0
    for poll in range(400):
        idxs = [str(i) for i in range(1, 9)]
        cols: dict[str, dict[str, Any]] = {
            c: {i: rng.randrange(0, 2**31) for i in idxs}
            for c in ("ifHCInOctets", "ifHCOutOctets", "ifInUcastPkts", "ifOutUcastPkts", "ifInErrors",
                      "ifHCInMulticastPkts", "ifHCInBroadcastPkts", "ifOutNUcastPkts")
        }  # fmt: skip
        if poll % 4 == 1:  # one odd cell somewhere: the whole poll takes the way row by row
            column = rng.choice(sorted(cols))
            value = rng.choice(odd)
            if value is None:
                del cols[column][rng.choice(idxs)]
            else:
                cols[column][rng.choice(idxs)] = value
        speed: Any = 10.0 if poll % 9 == 0 else 10  # an equal value of another type reads differently
        cols["ifName"] = {i: f"ge-{i}".encode() for i in idxs}
        cols["ifAlias"] = {i: b"V\xe9nissieux" if poll % 5 else b"x" for i in idxs}
        cols["ifSpeed"] = {i: speed for i in idxs}
        cols["ifHighSpeed"] = {i: 0 for i in idxs}
        cols["ifOperStatus"] = {i: rng.choice([1, 2, "up", None]) for i in idxs}
        cols["ifAdminStatus"] = {i: 1 for i in idxs}
        if poll % 11 == 0:
            del cols["ifHighSpeed"]["3"]
        wanted = rng.sample(idxs, rng.randrange(0, 9)) if poll % 7 == 0 else idxs[2:]
        known = memo.batch
        fetched = InterfaceIndex(cols, memo=memo)
        fetched.prefetch(wanted)
        batch_hits += bool(wanted) and known is not None and memo.batch is known and poll % 4 != 1
        plain = InterfaceIndex(cols)
        for idx in wanted:
            assert fetched._rows[idx] == plain.row(idx)
            assert fetched.row(idx).counters == plain.row(idx).counters
        fetched.prefetch(wanted)  # already built: kept
    assert batch_hits > 50, batch_hits  # the reuse was exercised
