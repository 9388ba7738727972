"""Turn walked IF-MIB columns into interface rows, and rows into commune-oriented counters. Pure.

The 64-bit HC counters are preferred per counter when the agent serves them; otherwise the 32-bit
ones are used (and their wraps handled by normalisation). Strings are decoded by the one rule of
`sitivmon.normalize.text`; the port speed is cross-checked between ifSpeed and ifHighSpeed
(`port_speed`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, cast

from sitivmon.config.model import InterfaceSelector, Side
from sitivmon.normalize.counters import FlatCounters, RawCounter, shared_layout
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
                    "if_high_speed_implausible",
                    subject,
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
                "speed_lower_bound",
                subject,
                "ifSpeed 4294967295 (saturated) and no usable ifHighSpeed: the capacity is unknown",
            )
        )
        return PortSpeed(None, IF_SPEED_SATURATED // 8, tuple(anomalies))
    return PortSpeed(None, None, tuple(anomalies))


_NO_COUNTERS: Mapping[str, RawCounter] = MappingProxyType({})


class InterfaceRow(NamedTuple):
    """One interface as a poll read it. A named tuple rather than a frozen dataclass: one is built
    for every linked interface on every poll, and the frozen `__init__` (a `__setattr__` per field)
    cost 4 µs of it; `_Columns.row` builds it with `tuple.__new__`. Immutable, `counters` included."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, which no one calls on a row
    name: str
    alias: str
    descr: str
    admin_status: int | None
    oper_status: int | None
    speed_bytes_per_s: int | None
    last_change_ticks: int | None
    discontinuity_ticks: int | None
    counters: Mapping[str, RawCounter] = _NO_COUNTERS
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
_LIMIT64, _LIMIT32 = 1 << 64, 1 << 32
_NUCAST_NAMES = {d: (f"{d}_mcast", f"{d}_bcast", f"{d}_nucast") for d in ("in", "out")}


def _cell_counter(column: Mapping[str, Value], idx: str, limit: int, bits: int) -> int | None:
    """`_counter` of one cell; the plain int that agents serve takes the short way (once per counter
    per linked interface per poll)."""
    value = column.get(idx)
    if type(value) is int:
        return value if 0 <= value < limit else None
    return None if value is None else _counter(value, bits)


# What a row takes from the columns that rarely change between polls (texts, speeds): decoded once and
# reused while the raw values stay equal (see `RowMemo`).
_StaticRaw = tuple[Value, Value, Value, Value, Value]
_Static = tuple[str, str, str, PortSpeed]


def _same(a: _StaticRaw, b: _StaticRaw) -> bool:
    """Equal and of the same types (10 == 10.0, yet a float speed is refused and a float name reads
    "10.0")."""
    return (
        a == b
        and type(a[0]) is type(b[0])
        and type(a[1]) is type(b[1])
        and type(a[2]) is type(b[2])
        and type(a[3]) is type(b[3])
        and type(a[4]) is type(b[4])
    )


class _Columns:
    """One poll's columns, each looked up once rather than once per row and cell (a row reads 26 cells:
    two dict look-ups each were a fifth of the fold's CPU at 500 links per target)."""

    __slots__ = (
        "admin", "alias", "change", "counters", "descr", "disc", "high", "name", "nucast", "oper", "plan", "speed"
    )  # fmt: skip

    def __init__(self, tables: Tables) -> None:
        get = tables.get
        self.counters = tuple(
            (raw, get(hc, _EMPTY) if hc else None, get(low, _EMPTY)) for raw, hc, low in _COUNTER_SOURCES
        )
        self.nucast = tuple(
            (*_NUCAST_NAMES[d], get(mc, _EMPTY), get(bc, _EMPTY), get(nu, _EMPTY)) for d, (mc, bc), nu in _NUCAST
        )
        self.name, self.alias, self.descr = get("ifName", _EMPTY), get("ifAlias", _EMPTY), get("ifDescr", _EMPTY)
        self.speed, self.high = get("ifSpeed", _EMPTY), get("ifHighSpeed", _EMPTY)
        self.admin, self.oper = get("ifAdminStatus", _EMPTY), get("ifOperStatus", _EMPTY)
        self.change, self.disc = get("ifLastChange", _EMPTY), get("ifCounterDiscontinuityTime", _EMPTY)
        self.plan = self._plan()

    def _plan(
        self,
    ) -> tuple[tuple[str, ...], tuple[int, ...], tuple[Callable[[str], Value | None], ...], tuple[int, ...]]:
        """The counters a row has when every cell of the walked columns is a plain int: per counter, its
        HC column when walked, else its 32-bit one; multicast + broadcast when both were walked, else
        the non-unicast column. `row` reads these cells first and takes the cell-by-cell way (the
        same outcome for such a row) only when one of them is missing or no plain int in range."""
        names: list[str] = []
        widths: list[int] = []
        getters: list[Callable[[str], Value | None]] = []
        for raw, hc, low in self.counters:
            column, bits = (hc, 64) if hc else (low, 32)
            if column:
                names.append(raw)
                widths.append(bits)
                getters.append(column.get)
        for mc_name, bc_name, nu_name, mc_col, bc_col, nu_col in self.nucast:
            if mc_col and bc_col:
                names += (mc_name, bc_name)
                widths += (64, 64)
                getters += (mc_col.get, bc_col.get)
            elif nu_col:
                names.append(nu_name)
                widths.append(32)
                getters.append(nu_col.get)
        shared_names, shared_widths = shared_layout(tuple(names), tuple(widths))
        limits = tuple(_LIMIT64 if bits == 64 else _LIMIT32 for bits in widths)
        return shared_names, shared_widths, tuple(getters), limits

    def row(self, idx: str, statics: dict[str, tuple[_StaticRaw, _Static]] | None = None) -> InterfaceRow:
        """The row of one interface; `statics` (idx -> raw values, decoded) is read and updated."""
        names, widths, getters, limits = self.plan
        cells = [get(idx) for get in getters]  # whole-row checks below run in C, not cell by cell
        numbers = cast("list[int]", cells)  # when the first check holds
        if cells and set(map(type, cells)) == _INT_ONLY and min(numbers) >= 0 and all(map(_lt, numbers, limits)):
            counters = FlatCounters(names, tuple(numbers), widths)
        else:
            counters = self._counters(idx)
        raw_static = (
            self.name.get(idx), self.alias.get(idx), self.descr.get(idx), self.speed.get(idx), self.high.get(idx)
        )  # fmt: skip
        name, alias, descr, speed = _statics(idx, raw_static, statics)
        admin, oper = self.admin.get(idx), self.oper.get(idx)
        change, disc = self.change.get(idx), self.disc.get(idx)
        return _new_row(
            InterfaceRow,
            (
                int(idx),
                name,
                alias,
                descr,
                admin if type(admin) is int else _int(admin),
                oper if type(oper) is int else _int(oper),
                speed.bytes_per_s,
                change if type(change) is int else _int(change),
                disc if type(disc) is int else _int(disc),
                counters,
                speed.floor_bytes_per_s,
                speed.anomalies,
            ),
        )

    def rows(self, idxs: list[str], memo: RowMemo | None = None) -> dict[str, InterfaceRow]:
        """`row` of each interface, column by column: what `row` does per cell (a look-up, a type and
        range check) done per column in C loops. The same rows as `row`; the general way is taken
        row by row when a counter column has a cell that is missing, not a plain int or out of range.

        The texts and speeds are reused all at once when the five raw static columns read for these
        interfaces are the previous call's, value for value and type for type (`RowMemo.batch`);
        otherwise row by row through `RowMemo.statics`, as `row` does."""
        if not idxs:
            return {}
        statics = memo.statics if memo is not None else None
        names, widths, getters, limits = self.plan
        cells = [list(map(get, idxs)) for get in getters]
        if not cells or not all(map(_clean, cells, limits)):
            return {idx: self.row(idx, statics) for idx in idxs}
        raw = [list(map(column.get, idxs)) for column in (self.name, self.alias, self.descr, self.speed, self.high)]
        types = [list(map(type, column)) for column in raw]
        known = memo.batch if memo is not None else None
        decoded: list[_Static]
        if known is not None and known[0] == idxs and known[1] == raw and known[2] == types:
            decoded = known[3]
        else:
            each = zip(idxs, zip(*raw, strict=True), strict=True)
            decoded = [_statics(idx, raw_static, statics) for idx, raw_static in each]
            if memo is not None:
                memo.batch = (idxs, raw, types, decoded)
        out: dict[str, InterfaceRow] = {}
        for idx, numbers, (name, alias, descr, speed), admin, oper, change, disc in zip(
            idxs,
            zip(*cells, strict=True),
            decoded,
            map(self.admin.get, idxs),
            map(self.oper.get, idxs),
            map(self.change.get, idxs),
            map(self.disc.get, idxs),
            strict=True,
        ):
            counters = FlatCounters(names, numbers, widths)
            out[idx] = _new_row(
                InterfaceRow,
                (
                    int(idx),
                    name,
                    alias,
                    descr,
                    admin if type(admin) is int else _int(admin),
                    oper if type(oper) is int else _int(oper),
                    speed.bytes_per_s,
                    change if type(change) is int else _int(change),
                    disc if type(disc) is int else _int(disc),
                    counters,
                    speed.floor_bytes_per_s,
                    speed.anomalies,
                ),
            )
        return out

    def _counters(self, idx: str) -> FlatCounters:
        """A row's counters cell by cell: the HC cell when it holds a counter, else the 32-bit one."""
        names: list[str] = []
        values: list[int] = []
        widths: list[int] = []
        for raw, hc, low in self.counters:
            if hc is not None:
                hc_value = _cell_counter(hc, idx, _LIMIT64, 64)
                if hc_value is not None:
                    names.append(raw)
                    values.append(hc_value)
                    widths.append(64)
                    continue
            low_value = _cell_counter(low, idx, _LIMIT32, 32)
            if low_value is not None:
                names.append(raw)
                values.append(low_value)
                widths.append(32)
        for mc_name, bc_name, nu_name, mc_col, bc_col, nu_col in self.nucast:
            mc, bc = _cell_counter(mc_col, idx, _LIMIT64, 64), _cell_counter(bc_col, idx, _LIMIT64, 64)
            if mc is not None and bc is not None:
                names += (mc_name, bc_name)
                values += (mc, bc)
                widths += (64, 64)
            else:
                nu = _cell_counter(nu_col, idx, _LIMIT32, 32)
                if nu is not None:
                    names.append(nu_name)
                    values.append(nu)
                    widths.append(32)
        shared_names, shared_widths = shared_layout(tuple(names), tuple(widths))
        return FlatCounters(shared_names, tuple(values), shared_widths)


_INT_ONLY = {int}
_lt = operator.lt


def _statics(idx: str, raw: _StaticRaw, statics: dict[str, tuple[_StaticRaw, _Static]] | None) -> _Static:
    """The decoded texts and speed of one interface, reused from `statics` while its raw values are
    the same (`_same`), and kept there."""
    known = statics.get(idx) if statics is not None else None
    if known is not None and _same(known[0], raw):
        return known[1]
    decoded = (_text(raw[0]), _text(raw[1]), _text(raw[2]), port_speed(raw[3], raw[4], f"ifIndex {idx}"))
    if statics is not None:
        statics[idx] = (raw, decoded)
    return decoded


def _clean(cells: list[Value | None], limit: int) -> bool:
    """Every cell of a counter column a plain int in [0, limit) (the check `row` makes per row)."""
    numbers = cast("list[int]", cells)  # when the first check holds
    return set(map(type, cells)) == _INT_ONLY and min(numbers) >= 0 and max(numbers) < limit



_new_row = tuple.__new__  # `InterfaceRow(...)` without the named tuple's Python-level `__new__`


def interface_row(tables: Tables, idx: str) -> InterfaceRow:
    """The row of one interface (`idx` is the walked index suffix, e.g. "3")."""
    return _Columns(tables).row(idx)


def interface_rows(tables: Tables, memo: RowMemo | None = None) -> dict[int, InterfaceRow]:
    """Every interface that has at least an ifDescr, ifName or a counter, keyed by ifIndex."""
    columns = _Columns(tables)
    indexes = interface_indexes(tables)
    if memo is not None:
        memo.trim(indexes)
    statics = memo.statics if memo is not None else None
    return {int(idx): columns.row(idx, statics) for idx in indexes}


class RowMemo:
    """What one target's polls reuse from the previous one, owned by the monitor per target: the texts
    and speed of each interface while its raw ifName/ifAlias/ifDescr/ifSpeed/ifHighSpeed stay equal,
    and a selector column's index while that column and the interfaces are unchanged. Decoding the
    same bytes on every poll (three texts per linked row, one per interface for the index) was a
    quarter of the fold at 500 links per target. Equality of the raw values decides, so a change on
    the device is seen on the poll that brings it. Bounded by the device's interfaces."""

    __slots__ = ("batch", "by_key", "statics")

    def __init__(self) -> None:
        self.statics: dict[str, tuple[_StaticRaw, _Static]] = {}
        # The last `_Columns.rows`: (its interfaces, their raw static columns, the types of those
        # cells, the decoded statics). Reused whole when all three are equal.
        self.batch: tuple[list[str], list[list[Value]], list[list[type]], list[_Static]] | None = None
        # key -> (the column as walked, the interfaces, decoded text -> idxs)
        self.by_key: dict[str, tuple[Mapping[str, Value], set[str], dict[str, list[str]]]] = {}

    def trim(self, indexes: set[str]) -> None:
        """Forget interfaces the device no longer has once they outnumber the ones it has: a device
        that keeps renumbering (dynamic interfaces, PPP sessions) would otherwise grow this forever."""
        if len(self.statics) > 2 * len(indexes) + 64:
            self.statics = {idx: v for idx, v in self.statics.items() if idx in indexes}


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

    def __init__(
        self, tables: Tables, rows: Mapping[int, InterfaceRow] | None = None, memo: RowMemo | None = None
    ) -> None:
        self.tables = tables
        self.indexes = interface_indexes(tables)
        self._by_key: dict[str, dict[str, list[str]]] = {}
        self._rows: dict[str, InterfaceRow] = {str(k): v for k, v in (rows or {}).items()}
        self._columns: _Columns | None = None
        self._memo = memo
        if memo is not None:
            memo.trim(self.indexes)

    def row(self, idx: str) -> InterfaceRow:
        row = self._rows.get(idx)
        if row is None:
            columns = self._columns
            if columns is None:
                columns = self._columns = _Columns(self.tables)
            memo = self._memo
            row = self._rows[idx] = columns.row(idx, memo.statics if memo is not None else None)
        return row

    def prefetch(self, idxs: list[str]) -> Mapping[str, InterfaceRow]:
        """Build the rows of these interfaces (those `locate_parts` found) at once, column by column
        (`_Columns.rows`); the rows built so far by index suffix, theirs included (read-only: `row`
        returns the same). Rows already built are kept."""
        rows = self._rows
        todo = [idx for idx in idxs if idx not in rows] if rows else idxs
        if todo:
            columns = self._columns
            if columns is None:
                columns = self._columns = _Columns(self.tables)
            rows.update(columns.rows(todo, self._memo))
        return rows

    def resolve(self, selector: InterfaceSelector) -> InterfaceRow:
        """The one interface the selector names: by ifIndex, or by the exact decoded text of its
        ifName, ifAlias or ifDescr; ResolveError when none or several match."""
        if selector.index is not None:
            return self.resolve_parts(selector.index, "index", "")
        return self.resolve_parts(None, selector.key, selector.wanted)

    def resolve_parts(self, index: int | None, key: str, wanted: str) -> InterfaceRow:
        """`resolve` of a selector already taken apart (its `index`, else its `key` and `wanted`): the
        monitor takes each link's apart once, not on every poll."""
        return self.row(self.locate_parts(index, key, wanted))

    def locate_parts(self, index: int | None, key: str, wanted: str) -> str:
        """The walked index suffix of the one interface `resolve_parts` would return, without building
        its row; ResolveError as `resolve_parts`."""
        if index is not None:
            idx = str(index)
            if idx not in self.indexes:
                raise ResolveError(f"no interface with ifIndex {index}")
            return idx
        by = self._by_key.get(key)
        if by is None:
            by = self._by_key[key] = self._index_of(key)
        found = by.get(wanted, [])
        if not found:
            raise ResolveError(f"no interface with if{key.capitalize()} {wanted!r}")
        if len(found) > 1:
            listed = ", ".join(str(i) for i in sorted(int(i) for i in found))
            raise ResolveError(f"if{key.capitalize()} {wanted!r} matches several interfaces (ifIndex {listed})")
        return found[0]

    def _index_of(self, key: str) -> dict[str, list[str]]:
        """Decoded text of the selector's column -> ifIndexes; the previous poll's when the column and
        the interfaces are the same (compared by value: a renaming or renumbering is seen at once)."""
        column = self.tables.get(_KEY_COLUMN[key], {})
        memo = self._memo
        if memo is not None:
            known = memo.by_key.get(key)
            if known is not None and known[1] == self.indexes and known[0] == column:
                return known[2]
        by: dict[str, list[str]] = {}
        only_bytes = True
        for idx in self.indexes:
            value = column.get(idx)
            if type(value) is not bytes:
                only_bytes = False
            by.setdefault(_text(value), []).append(idx)
        if memo is not None:
            # Kept only when every cell was bytes: bytes are equal to nothing but bytes, whereas an
            # agent's number 10 equals 10.0 and would read "10" for "10.0".
            if only_bytes:
                memo.by_key[key] = (column, self.indexes, by)
            else:
                memo.by_key.pop(key, None)
        return by


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


# (counter names in a snapshot's order, side) -> per series, the positions of its raw counters.
_POSITIONS: dict[tuple[tuple[str, ...], Side], tuple[tuple[str, tuple[int, ...]], ...]] = {}


def series_positions(names: tuple[str, ...], side: Side) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Per series (in `SERIES` order), where its raw counters sit in `names`: `oriented_series` of
    deltas given as a list in that order is `{s: sum(deltas[i] for i in at) for s, at in positions}`.
    Computed once per counter layout (a handful per device) rather than by name for every link."""
    known = _POSITIONS.get((names, side))
    if known is not None:
        return known
    where = {name: i for i, name in enumerate(names)}
    positions = tuple((series, tuple(where[r] for r in source if r in where)) for series, source in _ORIENTED[side])
    if len(_POSITIONS) < 256:
        _POSITIONS[(names, side)] = positions
    return positions


def capacities(row: InterfaceRow, configured: int | None) -> Mapping[str, int | None]:
    """Per raw counter, the most it can grow per second: the configured capacity, else the port speed.

    The same read-only mapping for every link of a capacity (a dict per link per poll, otherwise)."""
    cap = configured or row.speed_bytes_per_s
    known = _CAPACITIES.get(cap) if type(cap) is int or cap is None else None
    if known is None:
        known = MappingProxyType({"in_octets": cap, "out_octets": cap})
        if (type(cap) is int or cap is None) and len(_CAPACITIES) < 1024:
            _CAPACITIES[cap] = known
    return known


_CAPACITIES: dict[int | None, Mapping[str, int | None]] = {}
