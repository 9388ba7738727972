"""One decoding rule for every string a device sends (ifName, ifAlias, hrStorageDescr, sensor names...).

SNMP OCTET STRINGs carry no charset. Agents send UTF-8 today, but older firmware and Windows agents
send the operator's 8-bit charset, in western Europe Latin-1 or its superset cp1252: an ifAlias typed
as `Commune: Vénissieux` on such a device arrives as `V\\xe9nissieux`. So:

1. valid UTF-8 is UTF-8 (a Latin-1 string of accented letters is almost never valid UTF-8, while the
   reverse reading would turn every UTF-8 accent into two wrong letters);
2. anything else is cp1252, the bytes cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) read as
   Latin-1: every byte string decodes, identically wherever it is decoded, so a selector, an
   attribution rule and the ifAlias parser all see the same text;
3. NUL padding (C agents send fixed-size buffers) is dropped, and the other control characters (C0
   but tab, DEL, C1) become U+FFFD: they would otherwise forge log lines or label values, and a
   selector written in YAML cannot contain them anyway.

Before this, links decoded with replacement characters and datacenter rows fell back to Latin-1, so
the same ifAlias matched in one place and not in the other.
"""

from __future__ import annotations

import codecs
import re

_CONTROLS = re.compile("[\x01-\x08\x0a-\x1f\x7f-\x9f]")
REPLACEMENT = "\ufffd"


_LATIN1_FOR_UNDEFINED = "sitivmon.latin1-for-undefined"


def _latin1(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


codecs.register_error(_LATIN1_FOR_UNDEFINED, _latin1)


def decode_device_text(data: bytes) -> str:
    """The text of an OCTET STRING from a device (see the module doc for the rule)."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        decoded = data.decode("cp1252", errors=_LATIN1_FOR_UNDEFINED)
    if "\x00" in decoded:
        decoded = decoded.replace("\x00", "")
    return _CONTROLS.sub(REPLACEMENT, decoded)


def device_text(value: object) -> str:
    """`decode_device_text` for bytes; "" for an absent value; other values (numbers) as text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return decode_device_text(bytes(value))
    if value is None:
        return ""
    return str(value)
