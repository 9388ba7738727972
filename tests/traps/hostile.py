"""Crafted hostile datagrams (what the issue-11 probe sent), shared by the trap tests."""

from __future__ import annotations

from sitivmon.snmp import ber

SYS_UPTIME: ber.Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
TRAP_OID: ber.Oid = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
LINK_DOWN: ber.Oid = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
LINK_UP: ber.Oid = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)


def v2c_raw(community: bytes, varbind_list: bytes, pdu_type: int = ber.PDU_TRAP_V2) -> bytes:
    """A v2c message around an already encoded varbind list (whatever its content)."""
    pdu = ber.tlv(pdu_type, ber.encode_integer(1) + ber.encode_integer(0) + ber.encode_integer(0) + varbind_list)
    return ber.tlv(ber.SEQUENCE, ber.encode_integer(ber.VERSION_2C) + ber.tlv(ber.OCTET_STRING, community) + pdu)


def huge_arc_trap(arc_bytes: int, community: bytes = b"wrong") -> bytes:
    """A v2c trap whose only OID holds one sub-identifier `arc_bytes` long (the probe's 60 KB freeze)."""
    oid = ber.tlv(ber.OBJECT_IDENTIFIER, b"\x2b" + b"\xff" * arc_bytes + b"\x7f")
    return v2c_raw(community, ber.tlv(ber.SEQUENCE, ber.tlv(ber.SEQUENCE, oid + ber.tlv(ber.NULL, b""))))


def link_trap(community: bytes, if_index: int, up: bool, admin: int = 1, request_id: int = 1) -> bytes:
    return ber.encode_v2c_notification(community, request_id, [
        (SYS_UPTIME, 1), (TRAP_OID, LINK_UP if up else LINK_DOWN),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, if_index), if_index),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 7, if_index), admin),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, if_index), 1 if up else 2),
    ])  # fmt: skip


def heavy_trap(community: bytes, varbinds: int, oid_arcs: int = 40) -> bytes:
    """A well-formed trap as costly as the bounds allow: many varbinds with long OIDs of large arcs."""
    vbs: list[ber.VarBind] = [(SYS_UPTIME, 1), (TRAP_OID, (1, 3, 6, 1, 4, 1, 9, 0, 1))]
    for i in range(varbinds - 2):
        vbs.append(((1, 3, 6, 1, 4, 1, *([0xFFFFFFFF] * (oid_arcs - 7)), i), i))
    return ber.encode_v2c_notification(community, 7, vbs)


def v3_plaintext(user: bytes, varbinds: int, *, engine_id: bytes = b"", flags: int = 0x04) -> bytes:
    """A clear-text SNMPv3 message (noAuthNoPriv by default) carrying `varbinds` NULL varbinds."""
    t, i = ber.tlv, ber.encode_integer
    usm = t(ber.SEQUENCE, t(ber.OCTET_STRING, engine_id) + i(0) + i(0) + t(ber.OCTET_STRING, user)
            + t(ber.OCTET_STRING, b"") + t(ber.OCTET_STRING, b""))  # fmt: skip
    header = t(ber.SEQUENCE, i(1) + i(65507) + t(ber.OCTET_STRING, bytes((flags,))) + i(3))
    vbl = ber.encode_varbinds([((1, 3, 6, 1, 4, 1, n), None) for n in range(varbinds)])
    pdu = t(ber.PDU_TRAP_V2, i(1) + i(0) + i(0) + vbl)
    scoped = t(ber.SEQUENCE, t(ber.OCTET_STRING, engine_id) + t(ber.OCTET_STRING, b"") + pdu)
    return t(ber.SEQUENCE, i(3) + header + t(ber.OCTET_STRING, usm) + scoped)
