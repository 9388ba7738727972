"""What a trap means for link state, independent of the SNMP version that carried it.

Pure functions from decoded varbinds to a `TrapEvent`, so the v1/v2c fast path and the pysnmp v3 path
share one interpretation and one set of tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sitivmon.snmp.ber import Oid, TrapMessage, Value, VarBind


class TrapKind(StrEnum):
    LINK_DOWN = "linkDown"
    LINK_UP = "linkUp"
    COLD_START = "coldStart"
    WARM_START = "warmStart"
    OTHER = "other"

    @property
    def is_link(self) -> bool:
        return self in (TrapKind.LINK_DOWN, TrapKind.LINK_UP)


SNMP_TRAPS = (1, 3, 6, 1, 6, 3, 1, 1, 5)
SNMP_TRAP_OID_0: Oid = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
IF_INDEX: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1, 1)
IF_ADMIN_STATUS: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1, 7)
IF_OPER_STATUS: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)

_BY_TRAP_OID: dict[Oid, TrapKind] = {
    (*SNMP_TRAPS, 1): TrapKind.COLD_START,
    (*SNMP_TRAPS, 2): TrapKind.WARM_START,
    (*SNMP_TRAPS, 3): TrapKind.LINK_DOWN,
    (*SNMP_TRAPS, 4): TrapKind.LINK_UP,
}
_BY_GENERIC: dict[int, TrapKind] = {
    0: TrapKind.COLD_START,
    1: TrapKind.WARM_START,
    2: TrapKind.LINK_DOWN,
    3: TrapKind.LINK_UP,
}


@dataclass(frozen=True, slots=True)
class TrapEvent:
    """One accepted notification. `user_or_community_name` is the credential name (for v1/v2c) or the
    USM user name (v3) — never the community string itself. `received_at` is unix seconds."""

    source_ip: str
    kind: TrapKind
    if_index: int | None
    admin_status: int | None
    oper_status: int | None
    received_at: float
    version: str  # "v1" | "v2c" | "v3"
    user_or_community_name: str
    trap_oid: Oid | None = None
    inform: bool = False


@dataclass(frozen=True, slots=True)
class Interpretation:
    kind: TrapKind
    if_index: int | None
    admin_status: int | None
    oper_status: int | None
    trap_oid: Oid | None


def interface_fields(
    varbinds: tuple[VarBind, ...] | list[VarBind],
) -> tuple[int | None, int | None, int | None]:
    """(ifIndex, ifAdminStatus, ifOperStatus) from the IF-MIB varbinds of a link trap.

    ifIndex comes from the ifIndex value when present, else from the instance suffix of
    ifAdminStatus / ifOperStatus (RFC 2863 linkDown carries only those two).
    """
    if_index: int | None = None
    admin: int | None = None
    oper: int | None = None
    for oid, value in varbinds:
        if len(oid) != 11 or oid[:9] != IF_INDEX[:9]:
            continue
        column = oid[:10]
        idx = oid[10]
        if column == IF_INDEX:
            if isinstance(value, int):
                if_index = value
        elif column == IF_ADMIN_STATUS:
            admin = value if isinstance(value, int) else None
            if_index = if_index if if_index is not None else idx
        elif column == IF_OPER_STATUS:
            oper = value if isinstance(value, int) else None
            if_index = if_index if if_index is not None else idx
    return if_index, admin, oper


def interpret_v2(varbinds: tuple[VarBind, ...] | list[VarBind]) -> Interpretation:
    """Kind and interface fields of a v2c/v3 notification (snmpTrapOID.0 is the second varbind,
    but we look it up by name to tolerate agents that reorder)."""
    trap_oid: Value = None
    for oid, value in varbinds:
        if oid == SNMP_TRAP_OID_0:
            trap_oid = value
            break
    oid_value = trap_oid if isinstance(trap_oid, tuple) else None
    kind = _BY_TRAP_OID.get(oid_value, TrapKind.OTHER) if oid_value is not None else TrapKind.OTHER
    if_index, admin, oper = interface_fields(varbinds) if kind.is_link else (None, None, None)
    return Interpretation(kind, if_index, admin, oper, oid_value)


def interpret_v1(msg: TrapMessage) -> Interpretation:
    """Kind from generic-trap (RFC 1157); enterpriseSpecific (6) is OTHER. The equivalent v2 trap OID
    is reported as RFC 3584 defines it."""
    generic = msg.generic_trap if msg.generic_trap is not None else -1
    kind = _BY_GENERIC.get(generic, TrapKind.OTHER)
    if generic == 6 and msg.enterprise is not None:
        trap_oid: Oid | None = (*msg.enterprise, 0, msg.specific_trap or 0)
    elif 0 <= generic <= 5:
        trap_oid = (*SNMP_TRAPS, generic + 1)
    else:
        trap_oid = None
    if_index, admin, oper = interface_fields(msg.varbinds) if kind.is_link else (None, None, None)
    return Interpretation(kind, if_index, admin, oper, trap_oid)
