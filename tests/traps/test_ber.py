"""BER decoder: table tests on packets produced by net-snmp, plus malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitivmon.snmp import ber
from sitivmon.traps.events import TrapKind, interpret_v1, interpret_v2
from tests.traps import netsnmp as ns

# Captured from net-snmp 5.9.3 `snmptrap` (kept inline so the decoder is tested without the tools).
V2C_LINKDOWN_IF3 = bytes.fromhex(
    "307802010104067075626c6963a76b02043a4513ff020100020100305d300f06082b06010201010300430300b3e2"
    "3017060a2b06010603010104010006092b0601060301010503300f060a2b060102010202010103020103300f060a"
    "2b060102010202010703020101300f060a2b060102010202010803020102"
)
V1_LINKDOWN_IF3 = bytes.fromhex(
    "303d02010004067075626c6963a430060a2b06010401bf0803020a40047f000001020102020100430300b3ef3011"
    "300f060a2b060102010202010103020103"
)


def test_inline_v2c_linkdown() -> None:
    msg = ber.decode_message(V2C_LINKDOWN_IF3)
    assert (msg.version, msg.community, msg.pdu_type) == (1, b"public", ber.PDU_TRAP_V2)
    assert msg.varbinds[1] == ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), (1, 3, 6, 1, 6, 3, 1, 1, 5, 3))
    i = interpret_v2(msg.varbinds)
    assert (i.kind, i.if_index, i.admin_status, i.oper_status) == (TrapKind.LINK_DOWN, 3, 1, 2)


def test_inline_v1_linkdown() -> None:
    msg = ber.decode_message(V1_LINKDOWN_IF3)
    assert (msg.version, msg.generic_trap, msg.agent_addr) == (0, 2, "127.0.0.1")
    assert msg.enterprise == (1, 3, 6, 1, 4, 1, 8072, 3, 2, 10)
    i = interpret_v1(msg)
    assert (i.kind, i.if_index, i.admin_status, i.oper_status) == (TrapKind.LINK_DOWN, 3, None, None)


# (tool, args, expected version, pdu type, kind, ifIndex, admin, oper)
NETSNMP_CASES = [
    ("snmptrap", ["-v", "2c", "-c", "public", "HOST", "", ns.LINK_DOWN, *ns.link_varbinds(3, 1, 2)],
     1, ber.PDU_TRAP_V2, TrapKind.LINK_DOWN, 3, 1, 2),
    ("snmptrap", ["-v", "2c", "-c", "s3cr3t", "HOST", "12345", ns.LINK_UP, *ns.link_varbinds(70000, 1, 1)],
     1, ber.PDU_TRAP_V2, TrapKind.LINK_UP, 70000, 1, 1),
    # RFC 2863 linkDown without the ifIndex varbind: index from the instance suffix
    ("snmptrap", ["-v", "2c", "-c", "public", "HOST", "", ns.LINK_DOWN, f"{ns.IF_ADMIN}.12", "i", "2",
                  f"{ns.IF_OPER}.12", "i", "2"],
     1, ber.PDU_TRAP_V2, TrapKind.LINK_DOWN, 12, 2, 2),
    ("snmptrap", ["-v", "2c", "-c", "public", "HOST", "", ns.COLD_START],
     1, ber.PDU_TRAP_V2, TrapKind.COLD_START, None, None, None),
    ("snmptrap", ["-v", "2c", "-c", "public", "HOST", "", ns.WARM_START],
     1, ber.PDU_TRAP_V2, TrapKind.WARM_START, None, None, None),
    ("snmptrap", ["-v", "2c", "-c", "public", "HOST", "", "1.3.6.1.4.1.9.9.41.2.0.1",
                  "1.3.6.1.4.1.9.9.41.1.2.3.1.2.1", "s", "hello", "1.3.6.1.4.1.9.9.41.1.2.3.1.6.1", "t", "42",
                  "1.3.6.1.4.1.9.9.41.1.2.3.1.7.1", "a", "10.1.2.3", "1.3.6.1.4.1.9.9.41.1.2.3.1.8.1", "c",
                  "4294967295", "1.3.6.1.4.1.9.9.41.1.2.3.1.9.1", "o", "1.3.6.1.2.1"],
     1, ber.PDU_TRAP_V2, TrapKind.OTHER, None, None, None),
    ("snmptrap", ["-v", "1", "-c", "public", "HOST", "1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "3", "0", "",
                  *ns.link_varbinds(5, 1, 1)],
     0, ber.PDU_TRAP_V1, TrapKind.LINK_UP, 5, 1, 1),
    ("snmptrap", ["-v", "1", "-c", "public", "HOST", "1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "0", "0", ""],
     0, ber.PDU_TRAP_V1, TrapKind.COLD_START, None, None, None),
    ("snmptrap", ["-v", "1", "-c", "public", "HOST", "1.3.6.1.4.1.9", "127.0.0.1", "6", "17", ""],
     0, ber.PDU_TRAP_V1, TrapKind.OTHER, None, None, None),
    ("snmpinform", ["-v", "2c", "-c", "public", "HOST", "", ns.LINK_DOWN, *ns.link_varbinds(1, 1, 2)],
     1, ber.PDU_INFORM, TrapKind.LINK_DOWN, 1, 1, 2),
]  # fmt: skip


@pytest.mark.parametrize(("tool", "args", "version", "pdu", "kind", "if_index", "admin", "oper"), NETSNMP_CASES)
def test_netsnmp_packets(
    tool: str, args: list[str], version: int, pdu: int, kind: TrapKind, if_index: int | None,
    admin: int | None, oper: int | None,
) -> None:  # fmt: skip
    data = ns.capture(tool, args)
    msg = ber.decode_message(data)
    assert (msg.version, msg.pdu_type) == (version, pdu)
    interp = interpret_v1(msg) if version == 0 else interpret_v2(msg.varbinds)
    assert (interp.kind, interp.if_index, interp.admin_status, interp.oper_status) == (kind, if_index, admin, oper)


def test_other_value_types_decoded() -> None:
    data = ns.capture("snmptrap", NETSNMP_CASES[5][1])
    values = dict(ber.decode_message(data).varbinds)
    assert values[(1, 3, 6, 1, 4, 1, 9, 9, 41, 1, 2, 3, 1, 2, 1)] == b"hello"
    assert values[(1, 3, 6, 1, 4, 1, 9, 9, 41, 1, 2, 3, 1, 6, 1)] == 42
    assert values[(1, 3, 6, 1, 4, 1, 9, 9, 41, 1, 2, 3, 1, 7, 1)] == "10.1.2.3"
    assert values[(1, 3, 6, 1, 4, 1, 9, 9, 41, 1, 2, 3, 1, 8, 1)] == 4294967295
    assert values[(1, 3, 6, 1, 4, 1, 9, 9, 41, 1, 2, 3, 1, 9, 1)] == (1, 3, 6, 1, 2, 1)


def test_v3_header_from_netsnmp() -> None:
    data = ns.capture(
        "snmptrap",
        ["-v", "3", "-e", "0x8000000001020304", "-u", "trapuser", "-l", "authPriv", "-a", "SHA", "-A",
         "authpass123", "-x", "AES", "-X", "privpass123", "HOST", "", ns.LINK_DOWN, *ns.link_varbinds(1, 1, 2)],
    )  # fmt: skip
    assert ber.message_header(data) == (3, None)
    h = ber.decode_v3_header(data)
    assert (h.engine_id, h.user_name, h.security_model, h.flags & 0x03) == (
        bytes.fromhex("8000000001020304"), b"trapuser", 3, 0x03
    )
    with pytest.raises(ber.BerError):
        ber.decode_message(data)


def test_inform_response_mirrors_request() -> None:
    data = ns.capture("snmpinform", NETSNMP_CASES[-1][1])
    msg = ber.decode_message(data)
    rsp = ber.encode_inform_response(data, msg)
    # a Response PDU decodes with the generic TLV reader and carries the same request-id and varbinds
    s, e = ber._expect(rsp, 0, len(rsp), ber.SEQUENCE)
    _, _, ve = ber.read_tlv(rsp, s, e)
    _, _, ce = ber.read_tlv(rsp, ve, e)
    tag, ps, pe = ber.read_tlv(rsp, ce, e)
    assert tag == ber.PDU_RESPONSE
    _, rs, re_ = ber.read_tlv(rsp, ps, pe)
    assert ber.decode_integer(rsp, rs, re_) == msg.request_id
    vs, ve2 = msg.varbinds_span
    assert rsp.endswith(data[vs:ve2])
    with pytest.raises(ber.BerError):
        ber.encode_inform_response(V2C_LINKDOWN_IF3, ber.decode_message(V2C_LINKDOWN_IF3))


def test_roundtrip_own_encoder() -> None:
    vbs: list[ber.VarBind] = [
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), 123456),
        ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 300), 300),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 300), 1),
        ((1, 3, 6, 1, 4, 1, 1, 2), -5),
        ((1, 3, 6, 1, 4, 1, 1, 3), b"x" * 300),
    ]
    data = ber.encode_v2c_notification(b"c", 2**31 - 1, vbs)
    msg = ber.decode_message(data)
    assert msg.request_id == 2**31 - 1
    assert list(msg.varbinds) == vbs
    assert interpret_v2(msg.varbinds).if_index == 300


MALFORMED = [
    (b"", "empty"),
    (b"\x30", "header only"),
    (b"\x30\x80" + V2C_LINKDOWN_IF3[2:], "indefinite length"),
    (b"\x1f\x01\x00", "multi-byte tag"),
    (b"\x30\x85\x00\x00\x00\x00\x01\x00", "5-byte length"),
    (V2C_LINKDOWN_IF3 + b"\x00", "trailing byte"),
    (V2C_LINKDOWN_IF3[:-1], "truncated"),
    (bytes.fromhex("3010020102040670") + b"ublic\xa7\x00", "version 2 (v2u) not accepted"),
    (bytes.fromhex("301a020101040670") + b"ublic" + bytes.fromhex("a00d020101020100020100300230 00").replace(b" ", b""),
     "GetRequest PDU"),
    (bytes.fromhex("3007020100040270 75a4 00".replace(" ", "")), "empty v1 trap pdu"),
]


@pytest.mark.parametrize(("data", "why"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_rejected(data: bytes, why: str) -> None:
    with pytest.raises(ber.BerError):
        ber.decode_message(data)


@pytest.mark.parametrize("packet", [V2C_LINKDOWN_IF3, V1_LINKDOWN_IF3])
def test_every_truncation_is_a_ber_error(packet: bytes) -> None:
    for cut in range(len(packet)):
        with pytest.raises(ber.BerError):
            ber.decode_message(packet[:cut])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=len(V2C_LINKDOWN_IF3) - 1), st.integers(0, 255))
def test_garbage_only_raises_ber_error(blob: bytes, pos: int, byte: int) -> None:
    for data in (blob, V2C_LINKDOWN_IF3[:pos] + bytes((byte,)) + V2C_LINKDOWN_IF3[pos + 1 :]):
        with contextlib.suppress(ber.BerError):
            ber.decode_message(data)
        with contextlib.suppress(ber.BerError):
            ber.decode_v3_header(data)
