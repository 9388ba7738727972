"""The error-status of an SNMP response, read from the first bytes of the datagram.

gufo-snmp 0.13 decodes a response's error-status but acts only on authorizationError: a genErr or
tooBig answer comes back as its (NULL) varbinds, which the library skips, so the request reads as
"nothing there" (an empty MIB) instead of failing. The library exposes no status, so the adapter
peeks at the datagram before handing it over and reads the status here. Pure: bytes in, status out.

Only what precedes the varbinds is read (version, community or v3 header, request-id, error-status),
so a peek of a few hundred bytes is enough whatever the datagram's size. An SNMPv3 response with
privacy is encrypted: its status cannot be read (None), as for anything that is not a Response PDU.
"""

from __future__ import annotations

from sitivmon.snmp.ber import INTEGER, OCTET_STRING, PDU_RESPONSE, SEQUENCE, BerError, decode_integer, read_tlv

# error-status values of RFC 3416 §3 (RFC 1157 for the first six)
TOO_BIG = 1
NO_SUCH_NAME = 2
GEN_ERR = 5
STATUS_NAMES = {
    1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr", 6: "noAccess",
    7: "wrongType", 8: "wrongLength", 9: "wrongEncoding", 10: "wrongValue", 11: "noCreation",
    12: "inconsistentValue", 13: "resourceUnavailable", 14: "commitFailed", 15: "undoFailed",
    16: "authorizationError", 17: "notWritable", 18: "inconsistentName",
}  # fmt: skip


def status_name(status: int) -> str:
    return f"{STATUS_NAMES.get(status, 'unknown')}({status})"


def response_status(head: bytes, size: int) -> int | None:
    """error-status of the Response PDU in a datagram of `size` bytes whose first bytes are `head`;
    None when it cannot be read (not a Response, encrypted v3, malformed, or cut by the peek)."""
    try:
        _, pos, end = read_tlv(head, 0, size)  # the message, checked against the datagram's real size
        t, s, e = read_tlv(head, pos, end)
        if t != INTEGER:
            return None
        version = decode_integer(head, s, e)
        if version in (0, 1):  # v1, v2c: community, then the PDU
            t, _, pos = read_tlv(head, e, end)
            if t != OCTET_STRING:
                return None
        elif version == 3:  # msgGlobalData, msgSecurityParameters, then a ScopedPDU in clear text
            _, _, pos = read_tlv(head, e, end)
            _, _, pos = read_tlv(head, pos, end)
            t, pos, end = read_tlv(head, pos, end)
            if t != SEQUENCE:
                return None  # encryptedPDU (OCTET STRING)
            _, _, pos = read_tlv(head, pos, end)  # contextEngineID
            _, _, pos = read_tlv(head, pos, end)  # contextName
        else:
            return None
        t, pos, end = read_tlv(head, pos, end)
        if t != PDU_RESPONSE:
            return None
        _, _, pos = read_tlv(head, pos, end)  # request-id
        t, s, e = read_tlv(head, pos, end)
        if t != INTEGER or e > len(head):
            return None
        return decode_integer(head, s, e)
    except (BerError, IndexError):
        return None
