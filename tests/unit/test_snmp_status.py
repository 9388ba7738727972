"""The error-status read from the head of a response datagram (what gufo-snmp does not surface)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sitivmon.snmp.ber import INTEGER, OCTET_STRING, SEQUENCE, encode_integer, encode_oid, tlv
from sitivmon.snmp.status import GEN_ERR, TOO_BIG, response_status, status_name

RESPONSE, REPORT, GETBULK = 0xA2, 0xA8, 0xA5


def pdu(status: int, tag: int = RESPONSE, varbinds: bytes = b"") -> bytes:
    vbs = varbinds or tlv(SEQUENCE, encode_oid((1, 3, 6, 1, 2, 1, 1, 3, 0)) + tlv(0x05, b""))
    return tlv(tag, encode_integer(12345) + encode_integer(status) + encode_integer(1) + tlv(SEQUENCE, vbs))


def v2c(status: int, tag: int = RESPONSE, community: bytes = b"public", varbinds: bytes = b"") -> bytes:
    return tlv(SEQUENCE, encode_integer(1) + tlv(OCTET_STRING, community) + pdu(status, tag, varbinds))


def v1(status: int) -> bytes:
    return tlv(SEQUENCE, encode_integer(0) + tlv(OCTET_STRING, b"public") + pdu(status))


def v3(status: int, encrypted: bool = False) -> bytes:
    header = tlv(SEQUENCE, encode_integer(42) + encode_integer(65507) + tlv(OCTET_STRING, b"\x03") + encode_integer(3))
    engine, user = tlv(OCTET_STRING, b"\x80" * 12), tlv(OCTET_STRING, b"user")
    params = engine + encode_integer(1) + encode_integer(2) + user + tlv(OCTET_STRING, b"\x00" * 12)
    usm = tlv(OCTET_STRING, tlv(SEQUENCE, params + tlv(OCTET_STRING, b"")))
    scoped = tlv(SEQUENCE, tlv(OCTET_STRING, b"\x80" * 12) + tlv(OCTET_STRING, b"") + pdu(status))
    data = tlv(OCTET_STRING, b"\x17" * 64) if encrypted else scoped
    return tlv(SEQUENCE, encode_integer(3) + header + usm + data)


WIDE = b"".join(tlv(SEQUENCE, encode_oid((1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i)) + tlv(OCTET_STRING, b"." * 200))
                for i in range(1, 31))  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    datagram: bytes
    expected: int | None
    peek: int = 512  # bytes of the datagram that were peeked


CASES = [
    Case("v2c ok", v2c(0), 0),
    Case("v2c genErr", v2c(GEN_ERR), GEN_ERR),
    Case("v2c tooBig", v2c(TOO_BIG), TOO_BIG),
    Case("v1 noSuchName", v1(2), 2),
    Case("long community", v2c(GEN_ERR, community=b"c" * 200), GEN_ERR),
    Case("a 6 KB answer read from its first 512 bytes", v2c(0, varbinds=WIDE), 0),
    Case("status past the peeked bytes", v2c(GEN_ERR, community=b"c" * 600), None),
    Case("v3 in clear text", v3(GEN_ERR), GEN_ERR),
    Case("v3 encrypted", v3(GEN_ERR, encrypted=True), None),
    Case("a Report, not a Response", v2c(0, tag=REPORT), None),
    Case("a request", v2c(0, tag=GETBULK), None),
    Case("unknown version", tlv(SEQUENCE, encode_integer(7) + tlv(OCTET_STRING, b"x") + pdu(5)), None),
    Case("cut inside a long-form length", b"\x30\x82", None),
    Case("truncated datagram", v2c(GEN_ERR)[:20], None),
    Case("garbage", b"\x30\x40" + bytes(range(64)), None),
    Case("empty", b"", None),
    Case("not a SEQUENCE", tlv(INTEGER, b"\x01"), None),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_response_status(case: Case) -> None:
    assert response_status(case.datagram[: case.peek], len(case.datagram)) == case.expected


def test_status_names() -> None:
    assert status_name(GEN_ERR) == "genErr(5)"
    assert status_name(TOO_BIG) == "tooBig(1)"
    assert status_name(99) == "unknown(99)"
