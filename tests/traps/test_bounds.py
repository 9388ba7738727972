"""The decoder bounds the work of every datagram (issue 11, item 1): arcs, OID length, varbinds, size."""

from __future__ import annotations

import time

import pytest

from sitivmon.snmp import ber
from tests.traps import hostile


def oid_content(*encoded_arcs: bytes) -> bytes:
    return b"\x2b" + b"".join(encoded_arcs)


def arc(value: int) -> bytes:
    return ber.encode_oid((1, 3, value))[3:]  # the encoding of `value` alone


# (content bytes of an OID, expected arcs or None when refused)
OID_CASES = [
    (oid_content(arc(0xFFFFFFFF)), (1, 3, 0xFFFFFFFF)),
    (oid_content(arc(0x100000000)), None),  # 2**32: one past the largest arc
    (oid_content(b"\x8f\xff\xff\xff\x7f"), (1, 3, 0xFFFFFFFF)),  # five bytes, 32 bits: allowed
    (oid_content(b"\x90\x80\x80\x80\x00"), None),  # five bytes, 33 bits
    (oid_content(b"\xff" * 6 + b"\x7f"), None),  # a long arc is refused at its sixth byte
    (oid_content(*[arc(1)] * 126), (1, 3, *[1] * 126)),  # 128 arcs (RFC 2578's most)
    (oid_content(*[arc(1)] * 127), None),  # 129
    (oid_content(*[arc(0xFFFFFFFF)] * 126), (1, 3, *[0xFFFFFFFF] * 126)),  # the longest OID: 631 bytes
    (b"\x2b" + b"\x81" * 700 + b"\x01", None),  # over MAX_OID_BYTES
]


@pytest.mark.parametrize(("content", "expected"), OID_CASES, ids=range(len(OID_CASES)))
def test_oid_arcs_are_32_bit_and_oids_bounded(content: bytes, expected: tuple[int, ...] | None) -> None:
    if expected is None:
        with pytest.raises(ber.BerError):
            ber.decode_oid(content, 0, len(content))
    else:
        assert ber.decode_oid(content, 0, len(content)) == expected


@pytest.mark.parametrize(
    ("count", "ok"), [(ber.MAX_VARBINDS, True), (ber.MAX_VARBINDS + 1, False)], ids=["at-cap", "over-cap"]
)
def test_varbind_count_bounded(count: int, ok: bool) -> None:
    data = ber.encode_v2c_notification(b"c", 1, [((1, 3, 6, 1, 4, 1, i), i) for i in range(count)])
    if ok:
        assert len(ber.decode_message(data).varbinds) == count
    else:
        with pytest.raises(ber.BerError, match="too many varbinds"):
            ber.decode_message(data)


def test_message_size_bounded_before_any_decoding() -> None:
    data = ber.encode_v2c_notification(b"c", 1, [((1, 3, 6, 1, 4, 1, 1), b"x" * ber.MAX_MESSAGE_BYTES)])
    for decode in (ber.decode_message, ber.message_header, ber.decode_v3_header):
        with pytest.raises(ber.BerError, match="too large"):
            decode(data)


def test_header_gives_the_community_without_decoding_the_pdu() -> None:
    data = hostile.v2c_raw(b"n0t-public", b"\x30\x03\xff\xff\xff")  # the PDU is garbage
    assert ber.message_header(data) == (ber.VERSION_2C, b"n0t-public")
    with pytest.raises(ber.BerError):
        ber.decode_message(data)


@pytest.mark.parametrize("arc_bytes", [60_000, 30_000], ids=["60KB-datagram", "30KB-datagram"])
def test_huge_sub_identifier_is_refused_in_bounded_time(arc_bytes: int) -> None:
    """The probe's datagram took 0.34 s (60 KB) and 0.1 s (30 KB) to decode; now a few microseconds."""
    data = hostile.huge_arc_trap(arc_bytes, community=b"c")
    t0 = time.perf_counter()
    with pytest.raises(ber.BerError):
        ber.decode_message(data)
    assert time.perf_counter() - t0 < 0.02


def test_worst_case_well_formed_datagram_is_cheap() -> None:
    """The costliest datagram the bounds let through is decoded in milliseconds, not tenths of seconds."""
    base, per = (
        len(hostile.heavy_trap(b"c", 2, 128)),
        len(hostile.heavy_trap(b"c", 3, 128)) - len(hostile.heavy_trap(b"c", 2, 128)),
    )
    n = 2 + (ber.MAX_MESSAGE_BYTES - base) // per
    while len(data := hostile.heavy_trap(b"c", n, oid_arcs=128)) > ber.MAX_MESSAGE_BYTES:
        n -= 1  # as many of the longest OIDs as fit in the size bound
    assert len(ber.decode_message(data).varbinds) == n
    best = min(_timed(lambda: ber.decode_message(data)) for _ in range(5))
    print(f"worst case: {best * 1000:.2f} ms for {len(data)} bytes, {n} varbinds")
    assert best < 0.05, f"{best * 1000:.1f} ms for {len(data)} bytes"


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0
