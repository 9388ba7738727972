"""A small BER codec for the SNMP messages a trap receiver sees (v1 Trap, v2c Trap and Inform).

Why not pysnmp for these: its generic ASN.1 decoder costs about a millisecond per trap, which caps a
receiver near 1,000 traps per CPU-second. Traps have a fixed, shallow shape, so a direct decoder over
`bytes` with offsets is 20-50x cheaper. Everything here is pure (bytes in, values out) and raises
`BerError` on anything malformed, so the receiver can count and drop bad packets without guessing.
SNMPv3 is not decoded here beyond its header (engine ID, user name, authentication parameters) and,
when in clear text, a bounded walk of its varbinds; pysnmp does USM.

Every datagram comes from the network before anything is authenticated, so the work per datagram is
bounded here, where the bytes are read: the message size, the number of varbinds, the length of an OID
and each of its sub-identifiers (an arc fits in 32 bits, RFC 2578 7.1.3). A longer encoding is refused
at the byte that makes it too long, so no packet costs more than a linear walk of a few kilobytes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# Universal / application / context tags used by SNMP.
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

PDU_RESPONSE = 0xA2
PDU_TRAP_V1 = 0xA4
PDU_INFORM = 0xA6
PDU_TRAP_V2 = 0xA7

VERSION_1 = 0
VERSION_2C = 1
VERSION_3 = 3

_UNSIGNED = frozenset({COUNTER32, GAUGE32, TIMETICKS, COUNTER64})
MAX_OID_ARCS = 128
MAX_ARC = 0xFFFFFFFF
"""An OID sub-identifier is an unsigned 32-bit number (RFC 2578 7.1.3): five encoded bytes at most."""
MAX_OID_BYTES = 5 * MAX_OID_ARCS
MAX_VARBINDS = 512
"""Real notifications carry a handful of varbinds; a datagram with more is refused, not decoded."""
MAX_MESSAGE_BYTES = 32768
"""Notifications are a few hundred bytes; this leaves room for verbose agents and bounds the work per
datagram (the worst case, measured by tests/traps/test_fuzz.py, stays in the low milliseconds)."""

Oid = tuple[int, ...]
Value = int | bytes | str | Oid | None
VarBind = tuple[Oid, Value]


class BerError(ValueError):
    """The packet is not a well-formed SNMP message of a kind this receiver accepts."""


@dataclass(frozen=True, slots=True)
class TrapMessage:
    """A decoded v1 or v2c notification (the community is kept only for the constant-time check)."""

    version: int
    community: bytes
    pdu_type: int
    varbinds: tuple[VarBind, ...]
    request_id: int | None = None
    # v1 Trap-PDU fields
    enterprise: Oid | None = None
    agent_addr: str | None = None
    generic_trap: int | None = None
    specific_trap: int | None = None
    # offsets of the version+community TLVs and of the varbind list TLV, to build an Inform response
    header_span: tuple[int, int] = (0, 0)
    varbinds_span: tuple[int, int] = (0, 0)


FLAG_AUTH = 0x01
FLAG_PRIV = 0x02


@dataclass(frozen=True, slots=True)
class V3Header:
    """The clear-text part of an SNMPv3 message needed before USM processing.

    `varbind_count` is None when the scoped PDU is encrypted; otherwise the varbinds were walked with
    the same bounds as v1/v2c, so pysnmp's slower decoder never sees an oversized clear-text message.
    """

    msg_id: int
    flags: int
    security_model: int
    engine_id: bytes
    user_name: bytes
    auth_params: bytes = b""
    varbind_count: int | None = None


def read_tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return (tag, content start, content end) of the TLV at `pos`; definite lengths only."""
    if pos + 2 > end:
        raise BerError("truncated TLV header")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise BerError("multi-byte tags are not used by SNMP")
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0:
            raise BerError("indefinite length is not allowed in SNMP")
        if n > 4 or pos + n > end:
            raise BerError("bad long-form length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise BerError("truncated TLV content")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    t, s, e = read_tlv(buf, pos, end)
    if t != tag:
        raise BerError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
    return s, e


def decode_integer(buf: bytes, start: int, end: int, unsigned: bool = False) -> int:
    if start >= end:
        raise BerError("empty integer")
    if end - start > 9:
        raise BerError("integer too long")
    return int.from_bytes(buf[start:end], "big", signed=not unsigned)


def decode_oid(buf: bytes, start: int, end: int) -> Oid:
    """Why the bounds: Python ints grow without limit, so an unbounded arc costs the square of its
    length in shifts (a 60 KB arc took half a second); a 32-bit bound keeps every step constant."""
    if start >= end:
        raise BerError("empty OID")
    if end - start > MAX_OID_BYTES:
        raise BerError("OID too long")
    arcs: list[int] = []
    value = 0
    for i in range(start, end):
        b = buf[i]
        value = (value << 7) | (b & 0x7F)
        if value > MAX_ARC:
            raise BerError("OID sub-identifier exceeds 32 bits")
        if not b & 0x80:
            arcs.append(value)
            value = 0
    if buf[end - 1] & 0x80:
        raise BerError("unterminated OID arc")
    if len(arcs) + 1 > MAX_OID_ARCS:  # the first sub-identifier holds two arcs
        raise BerError("OID too long")
    first = arcs[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return head + tuple(arcs[1:])


def decode_value(buf: bytes, tag: int, start: int, end: int) -> Value:
    """A varbind value as a plain Python value (int, bytes, OID tuple, dotted IP, or None)."""
    if tag == INTEGER:
        return decode_integer(buf, start, end)
    if tag in _UNSIGNED:
        return decode_integer(buf, start, end, unsigned=True)
    if tag in (OCTET_STRING, OPAQUE):
        return buf[start:end]
    if tag == OBJECT_IDENTIFIER:
        return decode_oid(buf, start, end)
    if tag == IP_ADDRESS:
        if end - start != 4:
            raise BerError("IpAddress must be 4 bytes")
        return str(ipaddress.IPv4Address(buf[start:end]))
    if tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        return None
    raise BerError(f"unsupported value tag 0x{tag:02x}")


def decode_varbinds(buf: bytes, start: int, end: int) -> tuple[VarBind, ...]:
    out: list[VarBind] = []
    pos = start
    while pos < end:
        if len(out) >= MAX_VARBINDS:
            raise BerError("too many varbinds")
        s, e = _expect(buf, pos, end, SEQUENCE)
        os_, oe = _expect(buf, s, e, OBJECT_IDENTIFIER)
        oid = decode_oid(buf, os_, oe)
        vt, vs, ve = read_tlv(buf, oe, e)
        if ve != e:
            raise BerError("trailing bytes in varbind")
        out.append((oid, decode_value(buf, vt, vs, ve)))
        pos = e
    return tuple(out)


def message_header(buf: bytes) -> tuple[int, bytes | None]:
    """(version, community) without decoding the PDU; the community is None for v3.

    The community precedes the PDU on the wire, so a receiver can refuse a stranger's datagram after
    reading a few bytes instead of decoding whatever the stranger chose to send.
    """
    if len(buf) > MAX_MESSAGE_BYTES:
        raise BerError("message too large")
    s, e = _expect(buf, 0, len(buf), SEQUENCE)
    vs, ve = _expect(buf, s, e, INTEGER)
    version = decode_integer(buf, vs, ve)
    if version not in (VERSION_1, VERSION_2C):
        return version, None
    cs, ce = _expect(buf, ve, e, OCTET_STRING)
    return version, buf[cs:ce]


def decode_message(buf: bytes) -> TrapMessage:
    """Decode a v1 or v2c notification message; any other message raises BerError."""
    end = len(buf)
    if end > MAX_MESSAGE_BYTES:
        raise BerError("message too large")
    s, e = _expect(buf, 0, end, SEQUENCE)
    if e != end:
        raise BerError("trailing bytes after message")
    vs, ve = _expect(buf, s, e, INTEGER)
    version = decode_integer(buf, vs, ve)
    if version not in (VERSION_1, VERSION_2C):
        raise BerError(f"not a v1/v2c message (version {version})")
    cs, ce = _expect(buf, ve, e, OCTET_STRING)
    community = buf[cs:ce]
    header_span = (s, ce)
    pdu_type, ps, pe = read_tlv(buf, ce, e)
    if pe != e:
        raise BerError("trailing bytes after PDU")
    if version == VERSION_1:
        if pdu_type != PDU_TRAP_V1:
            raise BerError(f"unexpected v1 PDU 0x{pdu_type:02x}")
        es, ee = _expect(buf, ps, pe, OBJECT_IDENTIFIER)
        enterprise = decode_oid(buf, es, ee)
        at, as_, ae = read_tlv(buf, ee, pe)
        if at != IP_ADDRESS or ae - as_ != 4:
            raise BerError("bad agent-addr")
        agent_addr = str(ipaddress.IPv4Address(buf[as_:ae]))
        gs, ge = _expect(buf, ae, pe, INTEGER)
        generic = decode_integer(buf, gs, ge)
        ss, se = _expect(buf, ge, pe, INTEGER)
        specific = decode_integer(buf, ss, se)
        ts, te = _expect(buf, se, pe, TIMETICKS)
        decode_integer(buf, ts, te, unsigned=True)
        bs, be = _expect(buf, te, pe, SEQUENCE)
        if be != pe:
            raise BerError("trailing bytes in Trap-PDU")
        return TrapMessage(
            version=version,
            community=community,
            pdu_type=pdu_type,
            varbinds=decode_varbinds(buf, bs, be),
            enterprise=enterprise,
            agent_addr=agent_addr,
            generic_trap=generic,
            specific_trap=specific,
            header_span=header_span,
            varbinds_span=(te, be),
        )
    if pdu_type not in (PDU_TRAP_V2, PDU_INFORM):
        raise BerError(f"unexpected v2c PDU 0x{pdu_type:02x}")
    rs, re_ = _expect(buf, ps, pe, INTEGER)
    request_id = decode_integer(buf, rs, re_)
    es, ee = _expect(buf, re_, pe, INTEGER)
    _is, ie = _expect(buf, ee, pe, INTEGER)
    bs, be = _expect(buf, ie, pe, SEQUENCE)
    if be != pe:
        raise BerError("trailing bytes in PDU")
    return TrapMessage(
        version=version,
        community=community,
        pdu_type=pdu_type,
        varbinds=decode_varbinds(buf, bs, be),
        request_id=request_id,
        header_span=header_span,
        varbinds_span=(ie, be),
    )


def decode_v3_header(buf: bytes) -> V3Header:
    """The msgGlobalData and USM security parameters of a v3 message (before authentication), and
    the number of varbinds of a clear-text scoped PDU (walked with the v1/v2c bounds)."""
    end = len(buf)
    if end > MAX_MESSAGE_BYTES:
        raise BerError("message too large")
    s, e = _expect(buf, 0, end, SEQUENCE)
    vs, ve = _expect(buf, s, e, INTEGER)
    if decode_integer(buf, vs, ve) != VERSION_3:
        raise BerError("not a v3 message")
    gs, ge = _expect(buf, ve, e, SEQUENCE)
    is_, ie = _expect(buf, gs, ge, INTEGER)
    msg_id = decode_integer(buf, is_, ie)
    _ms, me = _expect(buf, ie, ge, INTEGER)
    fs, fe = _expect(buf, me, ge, OCTET_STRING)
    if fe - fs != 1:
        raise BerError("msgFlags must be one byte")
    ss, se = _expect(buf, fe, ge, INTEGER)
    security_model = decode_integer(buf, ss, se)
    ps, pe = _expect(buf, ge, e, OCTET_STRING)
    us, ue = _expect(buf, ps, pe, SEQUENCE)
    eis, eie = _expect(buf, us, ue, OCTET_STRING)
    _bs, be = _expect(buf, eie, ue, INTEGER)
    _ts, te = _expect(buf, be, ue, INTEGER)
    ns, ne = _expect(buf, te, ue, OCTET_STRING)
    aps, ape = _expect(buf, ne, ue, OCTET_STRING)
    flags = buf[fs]
    varbind_count = None if flags & FLAG_PRIV else _scoped_pdu_varbinds(buf, pe, e)
    return V3Header(
        msg_id=msg_id,
        flags=flags,
        security_model=security_model,
        engine_id=buf[eis:eie],
        user_name=buf[ns:ne],
        auth_params=buf[aps:ape],
        varbind_count=varbind_count,
    )


def _scoped_pdu_varbinds(buf: bytes, pos: int, end: int) -> int:
    """Walk a clear-text ScopedPDU (contextEngineID, contextName, PDU) and count its varbinds."""
    s, e = _expect(buf, pos, end, SEQUENCE)
    if e != end:
        raise BerError("trailing bytes after scoped PDU")
    _cs, ce = _expect(buf, s, e, OCTET_STRING)
    _ns, ne = _expect(buf, ce, e, OCTET_STRING)
    pdu_type, ps, pe = read_tlv(buf, ne, e)
    if pdu_type & 0xE0 != 0xA0 or pe != e:
        raise BerError("bad PDU in scoped PDU")
    _rs, re_ = _expect(buf, ps, pe, INTEGER)
    _es, ee = _expect(buf, re_, pe, INTEGER)
    _is, ie = _expect(buf, ee, pe, INTEGER)
    bs, be = _expect(buf, ie, pe, SEQUENCE)
    if be != pe:
        raise BerError("trailing bytes in PDU")
    return len(decode_varbinds(buf, bs, be))


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(content)) + content


def encode_integer(value: int, tag: int = INTEGER) -> bytes:
    if tag in _UNSIGNED:
        body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=False)
    else:
        body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return tlv(tag, body)


def encode_oid(oid: Oid) -> bytes:
    if len(oid) < 2:
        raise BerError("OID needs two arcs")
    arcs = [oid[0] * 40 + oid[1], *oid[2:]]
    out = bytearray()
    for arc in arcs:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(out))


def encode_value(value: Value, tag: int | None = None) -> bytes:
    if value is None:
        return tlv(NULL, b"")
    if isinstance(value, bool):
        raise BerError("booleans are not SNMP values")
    if isinstance(value, int):
        return encode_integer(value, tag or INTEGER)
    if isinstance(value, bytes):
        return tlv(tag or OCTET_STRING, value)
    if isinstance(value, tuple):
        return encode_oid(value)
    return tlv(IP_ADDRESS, ipaddress.IPv4Address(value).packed)


def encode_varbinds(varbinds: tuple[VarBind, ...] | list[VarBind]) -> bytes:
    return tlv(SEQUENCE, b"".join(tlv(SEQUENCE, encode_oid(o) + encode_value(v)) for o, v in varbinds))


def encode_v2c_notification(
    community: bytes, request_id: int, varbinds: list[VarBind], pdu_type: int = PDU_TRAP_V2
) -> bytes:
    """A v2c Trap or Inform (used by the bench and tests to craft packets; varbinds[0:2] must be
    sysUpTime.0 and snmpTrapOID.0; TimeTicks are written as TIMETICKS when the OID is sysUpTime.0)."""
    parts = []
    for oid, value in varbinds:
        tag = TIMETICKS if oid == (1, 3, 6, 1, 2, 1, 1, 3, 0) else None
        parts.append(tlv(SEQUENCE, encode_oid(oid) + encode_value(value, tag)))
    pdu = tlv(
        pdu_type,
        encode_integer(request_id) + encode_integer(0) + encode_integer(0) + tlv(SEQUENCE, b"".join(parts)),
    )
    return tlv(SEQUENCE, encode_integer(VERSION_2C) + tlv(OCTET_STRING, community) + pdu)


def encode_inform_response(buf: bytes, msg: TrapMessage) -> bytes:
    """The Response to a v2c InformRequest: same request-id and varbinds, error-status 0 (RFC 3416 4.2.7).

    Version, community and the varbind list are copied byte for byte from the request, which is both
    cheaper and exactly what the sender matches against.
    """
    if msg.pdu_type != PDU_INFORM or msg.request_id is None:
        raise BerError("only an InformRequest is answered")
    hs, he = msg.header_span
    vs, ve = msg.varbinds_span
    pdu = encode_integer(msg.request_id) + encode_integer(0) + encode_integer(0) + buf[vs:ve]
    return tlv(SEQUENCE, buf[hs:he] + tlv(PDU_RESPONSE, pdu))
