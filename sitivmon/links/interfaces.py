"""Turn walked IF-MIB columns into interface rows, and rows into commune-oriented counters. Pure.

The 64-bit HC counters are preferred per counter when the agent serves them; otherwise the 32-bit
ones are used (and their wraps handled by normalisation). Strings are decoded by the one rule of
`sitivmon.normalize.text`; the port speed is cross-checked between ifSpeed and ifHighSpeed
(`port_speed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sitivmon.config.model import InterfaceSelector, Side
from sitivmon.normalize.counters import RawCounter
from sitivmon.normalize.text import device_text
from sitivmon.readings import Anomaly
from sitivmon.snmp.client import Value

Tables = Mapping[str, Mapping[str, Value]]

# (raw counter name in snapshots, HC column, 32-bit column). Packets sum unicast, multicast, broadcast.
_COUNTER_SOURCES: tuple[tuple[str, str | None, str], ...] = (
    ("in_octets", "ifHCInOctets", "ifInOctets"),
    ("out_octets", "ifHCOutOctets", "ifOutOctets"),
    ("in_ucast", "ifHCInUcastPkts", "ifInUcastPkts"),
    ("out_ucast", "ifHCOutUcastPkts", "ifOutUcastPkts"),
    ("in_errors", None, "ifInErrors"),
    ("out_errors", None, "ifOutErrors"),
    ("in_discards", None, "ifInDiscards"),
    ("out_discards", None, "ifOutDiscards"),
)
# Non-unicast packets: HC multicast + broadcast when available, else the deprecated ifInNUcastPkts.
_NUCAST_HC = {
    "in": ("ifHCInMulticastPkts", "ifHCInBroadcastPkts"),
    "out": ("ifHCOutMulticastPkts", "ifHCOutBroadcastPkts"),
}
_NUCAST_32 = {"in": "ifInNUcastPkts", "out": "ifOutNUcastPkts"}
_NUCAST = tuple((d, _NUCAST_HC[d], _NUCAST_32[d]) for d in ("in", "out"))

# Commune-oriented series -> raw counters summed, for side=commune. side=core swaps in and out.
SERIES: dict[str, tuple[str, ...]] = {
    "receive_bytes": ("in_octets",),
    "transmit_bytes": ("out_octets",),
    "receive_packets": ("in_ucast", "in_mcast", "in_bcast", "in_nucast"),
    "transmit_packets": ("out_ucast", "out_mcast", "out_bcast", "out_nucast"),
    "receive_errors": ("in_errors",),
    "transmit_errors": ("out_errors",),
    "receive_discards": ("in_discards",),
    "transmit_discards": ("out_discards",),
}

STATUS_UP = 1


def _int(value: Value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return None


def _counter(value: Value, bits: int) -> int | None:
    """A counter value, or None when the agent sent something a Counter32/64 cannot hold (a string,
    a negative number, a value past 2**bits): counting it would make totals go down."""
    number = _int(value)
    if number is None or not 0 <= number < 1 << bits:
        return None
    return number


_text = device_text

IF_SPEED_SATURATED = 4_294_967_295  # RFC 2863: ifSpeed "cannot represent" the speed, read ifHighSpeed
# Above this an ifHighSpeed (Mbit/s) is not a port: 10 Tbit/s, six times the fastest Ethernet port.
MAX_PLAUSIBLE_MBIT = 10_000_000
_MBIT = 1_000_000


@dataclass(frozen=True, slots=True)
class PortSpeed:
    bytes_per_s: int | None  # the capacity, None when the agent does not say it
    floor_bytes_per_s: int | None = None  # a saturated ifSpeed without ifHighSpeed: "at least this"
    anomalies: tuple[Anomaly, ...] = ()


def port_speed(if_speed: Value, if_high_speed: Value, subject: str = "") -> PortSpeed:
    """The port's capacity in bytes/s from ifSpeed (bit/s, saturates at 2**32-1) and ifHighSpeed
    (Mbit/s), distrusting either when they disagree.

    Real agents get these wrong in known ways: D-Link DES-3038 serves ifHighSpeed in bit/s (100000000
    for a 100 Mbit port, 100 Tbit/s read as Mbit/s); NetApp serves a saturated ifSpeed 4294967295 and
    no ifHighSpeed (a lower bound, not 536,870,911 B/s of capacity); dptech and Brocade serve an
    ifSpeed wrapped modulo 2**32 or just under saturation beside a right ifHighSpeed. A speed set
    aside is an Anomaly; ifHighSpeed wins a plain disagreement (RFC 2863 makes it the speed of fast
    ports, and a capacity too low would clamp real traffic to zero).
    """
    low = _int(if_speed)
    high = _int(if_high_speed)
    anomalies: list[Anomaly] = []
    low_ok = low is not None and 0 < low < IF_SPEED_SATURATED
    if high is not None and high > 0:
        if high > MAX_PLAUSIBLE_MBIT or (high == low and high >= _MBIT):
            anomalies.append(
                Anomaly(
                    "if_high_speed_implausible", subject,
                    f"ifHighSpeed {high} Mbit/s is not a port speed (ifSpeed {low} bit/s): ignored",
                )
            )
            high = None
    elif high is not None:
        high = None  # 0: unknown (or below 500 kbit/s); ifSpeed tells
    if high is not None:
        high_bits = high * _MBIT
        if low_ok and low is not None:
            if high_bits < IF_SPEED_SATURATED and abs(high_bits - low) < _MBIT:
                return PortSpeed(low // 8)  # agree (ifHighSpeed is rounded): ifSpeed is the exact one
            # Past 2**32 bit/s ifSpeed saturates (some agents stop one short, some wrap it).
            beyond = high_bits >= IF_SPEED_SATURATED and (
                low >= IF_SPEED_SATURATED - _MBIT or low == high_bits % (1 << 32)
            )
            if not beyond and abs(high_bits - low) >= _MBIT:
                anomalies.append(
                    Anomaly("speed_mismatch", subject, f"ifSpeed {low} bit/s disagrees with ifHighSpeed {high} Mbit/s")
                )
        return PortSpeed(high_bits // 8, None, tuple(anomalies))
    if low_ok and low is not None:
        return PortSpeed(low // 8, None, tuple(anomalies))
    if low == IF_SPEED_SATURATED:
        anomalies.append(
            Anomaly(
                "speed_lower_bound", subject,
                "ifSpeed 4294967295 (saturated) and no usable ifHighSpeed: the capacity is unknown",
            )
        )
        return PortSpeed(None, IF_SPEED_SATURATED // 8, tuple(anomalies))
    return PortSpeed(None, None, tuple(anomalies))


@dataclass(frozen=True, slots=True)
class InterfaceRow:
    index: int
    name: str
    alias: str
    descr: str
    admin_status: int | None
    oper_status: int | None
    speed_bytes_per_s: int | None
    last_change_ticks: int | None
    discontinuity_ticks: int | None
    counters: dict[str, RawCounter] = field(default_factory=dict)
    speed_floor_bytes_per_s: int | None = None  # saturated ifSpeed, no ifHighSpeed: at least this
    anomalies: tuple[Anomaly, ...] = ()  # values of this row set aside (speed)

    @property
    def label(self) -> str:
        return self.name or self.descr or str(self.index)


_PRESENCE = ("ifDescr", "ifName", "ifInOctets", "ifHCInOctets", "ifOperStatus")


def interface_indexes(tables: Tables) -> set[str]:
    """The ifIndexes (as walked suffixes) that have at least an ifDescr, ifName or a counter."""
    indexes: set[str] = set()
    for column in _PRESENCE:
        indexes.update(tables.get(column, {}))
    return {i for i in indexes if i.isdigit()}


_EMPTY: Mapping[str, Value] = {}
_LIMIT = {32: 1 << 32, 64: 1 << 64}


def _counter_of(tables: Tables, column: str, idx: str, bits: int) -> int | None:
    """`_counter` of one cell; the plain int that agents serve takes the short way (once per counter
    per linked interface per poll)."""
    value = tables.get(column, _EMPTY).get(idx)
    if type(value) is int:
        return value if 0 <= value < _LIMIT[bits] else None
    return _counter(value, bits)


def interface_row(tables: Tables, idx: str) -> InterfaceRow:
    """The row of one interface (`idx` is the walked index suffix, e.g. "3")."""

    def get(col: str) -> Value:
        return tables.get(col, _EMPTY).get(idx)

    counters: dict[str, RawCounter] = {}
    for raw, hc, low in _COUNTER_SOURCES:
        hc_value = _counter_of(tables, hc, idx, 64) if hc else None
        if hc_value is not None:
            counters[raw] = RawCounter(hc_value, 64)
        else:
            low_value = _counter_of(tables, low, idx, 32)
            if low_value is not None:
                counters[raw] = RawCounter(low_value, 32)
    for direction, (mc_col, bc_col), nu_col in _NUCAST:
        mc, bc = _counter_of(tables, mc_col, idx, 64), _counter_of(tables, bc_col, idx, 64)
        if mc is not None and bc is not None:
            counters[f"{direction}_mcast"] = RawCounter(mc, 64)
            counters[f"{direction}_bcast"] = RawCounter(bc, 64)
        else:
            nu = _counter_of(tables, nu_col, idx, 32)
            if nu is not None:
                counters[f"{direction}_nucast"] = RawCounter(nu, 32)
    speed = port_speed(get("ifSpeed"), get("ifHighSpeed"), f"ifIndex {idx}")
    return InterfaceRow(
        index=int(idx),
        name=_text(get("ifName")),
        alias=_text(get("ifAlias")),
        descr=_text(get("ifDescr")),
        admin_status=_int(get("ifAdminStatus")),
        oper_status=_int(get("ifOperStatus")),
        speed_bytes_per_s=speed.bytes_per_s,
        last_change_ticks=_int(get("ifLastChange")),
        discontinuity_ticks=_int(get("ifCounterDiscontinuityTime")),
        counters=counters,
        speed_floor_bytes_per_s=speed.floor_bytes_per_s,
        anomalies=speed.anomalies,
    )


def interface_rows(tables: Tables) -> dict[int, InterfaceRow]:
    """Every interface that has at least an ifDescr, ifName or a counter, keyed by ifIndex."""
    return {int(idx): interface_row(tables, idx) for idx in interface_indexes(tables)}


class ResolveError(Exception):
    """The selector matches no interface, or several."""


_KEY_COLUMN = {"name": "ifName", "alias": "ifAlias", "descr": "ifDescr"}


class InterfaceIndex:
    """One poll's interfaces for link resolution, built anew on every poll so that an ifIndex
    renumbering is followed. Only the rows that links resolve to are built (a row costs about 40
    dict look-ups: building all 500 of a switch for 50 links was most of the fold's CPU); selector
    look-ups are O(1) on a per-poll index of the selector's column. Rows already built for ifAlias
    discovery may be handed in and are reused.
    """

    def __init__(self, tables: Tables, rows: Mapping[int, InterfaceRow] | None = None) -> None:
        self.tables = tables
        self.indexes = interface_indexes(tables)
        self._by_key: dict[str, dict[str, list[str]]] = {}
        self._rows: dict[str, InterfaceRow] = {str(k): v for k, v in (rows or {}).items()}

    def row(self, idx: str) -> InterfaceRow:
        row = self._rows.get(idx)
        if row is None:
            row = self._rows[idx] = interface_row(self.tables, idx)
        return row

    def resolve(self, selector: InterfaceSelector) -> InterfaceRow:
        """The one interface the selector names: by ifIndex, or by the exact decoded text of its
        ifName, ifAlias or ifDescr; ResolveError when none or several match."""
        if selector.index is not None:
            idx = str(selector.index)
            if idx not in self.indexes:
                raise ResolveError(f"no interface with ifIndex {selector.index}")
            return self.row(idx)
        key = selector.key
        wanted = selector.wanted
        by = self._by_key.get(key)
        if by is None:
            column = self.tables.get(_KEY_COLUMN[key], {})
            by = {}
            for idx in self.indexes:
                by.setdefault(_text(column.get(idx)), []).append(idx)
            self._by_key[key] = by
        found = by.get(wanted, [])
        if not found:
            raise ResolveError(f"no interface with if{key.capitalize()} {wanted!r}")
        if len(found) > 1:
            listed = ", ".join(str(i) for i in sorted(int(i) for i in found))
            raise ResolveError(f"if{key.capitalize()} {wanted!r} matches several interfaces (ifIndex {listed})")
        return self.row(found[0])


def _swap(raws: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(r.replace("in_", "\0").replace("out_", "in_").replace("\0", "out_") for r in raws)


_ORIENTED: dict[Side, tuple[tuple[str, tuple[str, ...]], ...]] = {
    Side.COMMUNE: tuple(SERIES.items()),
    Side.CORE: tuple((series, _swap(raws)) for series, raws in SERIES.items()),
}


def oriented_series(raw_deltas: Mapping[str, int], side: Side) -> dict[str, int]:
    """Sum raw counter deltas into the commune's receive/transmit series, swapping for side=core."""
    get = raw_deltas.get
    out: dict[str, int] = {}
    for series, source in _ORIENTED[side]:
        if len(source) == 1:
            out[series] = get(source[0], 0)
        else:
            total = 0
            for r in source:
                total += get(r, 0)
            out[series] = total
    return out


def capacities(row: InterfaceRow, configured: int | None) -> dict[str, int | None]:
    """Per raw counter, the most it can grow per second: the configured capacity, else the port speed."""
    cap = configured or row.speed_bytes_per_s
    return {"in_octets": cap, "out_octets": cap}
