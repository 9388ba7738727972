"""IF-MIB rows: counter sources, packets, speed, resolution of a link's interface, orientation."""

from __future__ import annotations

from typing import Any

import pytest

from sitivmon.config.model import InterfaceSelector, Side
from sitivmon.links.interfaces import (
    SERIES,
    InterfaceRow,
    ResolveError,
    capacities,
    interface_rows,
    oriented_series,
    resolve,
)
from sitivmon.normalize.counters import RawCounter


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


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert one(ifDescr=b"port\xff1").descr == "port\ufffd1"


# --- resolution ------------------------------------------------------------------------------------------

ROWS = interface_rows({
    "ifDescr": {"1": "lo", "2": "xe-0/0/1", "3": "xe-0/0/2", "4": "xe-0/0/2"},
    "ifName": {"1": "lo", "2": "xe-0/0/1", "3": "xe-0/0/2.0", "4": "xe-0/0/2.1"},
    "ifAlias": {"1": "", "2": "GIVORS fibre", "3": "CORBAS", "4": "CORBAS"},
})  # fmt: skip


@pytest.mark.parametrize(
    ("selector", "index"),
    [
        ({"name": "xe-0/0/1"}, 2),
        ({"name": "xe-0/0/2.1"}, 4),
        ({"alias": "GIVORS fibre"}, 2),
        ({"descr": "lo"}, 1),
        ({"index": 3}, 3),
    ],
)
def test_resolve(selector: dict[str, Any], index: int) -> None:
    assert resolve(InterfaceSelector(**selector), ROWS).index == index


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ({"name": "xe-0/0/9"}, "no interface with ifName 'xe-0/0/9'"),
        ({"name": "XE-0/0/1"}, "no interface with ifName 'XE-0/0/1'"),  # exact match, case included
        ({"alias": "givors fibre"}, "no interface with ifAlias 'givors fibre'"),
        ({"index": 9}, "no interface with ifIndex 9"),
        ({"alias": "CORBAS"}, "ifAlias 'CORBAS' matches several interfaces (ifIndex 3, 4)"),
        ({"descr": "xe-0/0/2"}, "ifDescr 'xe-0/0/2' matches several interfaces (ifIndex 3, 4)"),
    ],
)
def test_resolve_missing_or_ambiguous(selector: dict[str, Any], message: str) -> None:
    with pytest.raises(ResolveError) as info:
        resolve(InterfaceSelector(**selector), ROWS)
    assert str(info.value) == message
