"""Read snmpsim recordings (`.snmprec`, optionally bz2) as the independent reference for corpus tests.

The corpus tests check what sitivmon derives from a real device against the recording itself, never
against sitivmon's own output; this reader is deliberately tiny and shares no code with the package.

Format (snmpsim docs): one `OID|TAG|VALUE` per line. TAG is the BER type number (2 Integer32,
4 OCTET STRING, 5 NULL, 6 OID, 64 IpAddress, 65 Counter32, 66 Gauge32, 67 TimeTicks, 68 Opaque,
70 Counter64), with an `x` suffix when VALUE is hex, and `:module` when a variation module serves it
(the value is then the module's arguments, kept as text here).
"""

from __future__ import annotations

import bz2
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INTEGER, OCTETS, NULL, OID, IPADDRESS, COUNTER32, GAUGE32, TIMETICKS, OPAQUE, COUNTER64 = (
    2, 4, 5, 6, 64, 65, 66, 67, 68, 70,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entry:
    oid: str
    tag: int
    value: int | bytes | str  # int for numeric types, bytes for strings, str for OIDs and module args
    module: str | None = None  # variation module serving this OID, if any


def _parse_line(line: str) -> Entry | None:
    if not line or line.startswith("#"):
        return None
    oid, _, rest = line.partition("|")
    tag_text, _, raw = rest.partition("|")
    if not oid or not tag_text:
        return None
    tag_part, _, module = tag_text.partition(":")
    hexed = tag_part.endswith("x")
    tag = int(tag_part.rstrip("x"))
    if module:
        return Entry(oid, tag, raw, module)
    if hexed:
        try:
            data = bytes.fromhex(raw)
        except ValueError:  # a damaged line (juniper-ac has `4x|Juniper`): no value to compare with
            return None
        if tag in (INTEGER, COUNTER32, GAUGE32, TIMETICKS, COUNTER64):
            return Entry(oid, tag, int.from_bytes(data, "big"))
        if tag == IPADDRESS:
            return Entry(oid, tag, ".".join(str(b) for b in data))
        return Entry(oid, tag, data)
    if tag in (INTEGER, COUNTER32, GAUGE32, TIMETICKS, COUNTER64):
        return Entry(oid, tag, int(raw))
    if tag == OCTETS:
        return Entry(oid, tag, raw.encode("utf-8", "surrogateescape"))
    return Entry(oid, tag, raw)


def _lines(path: Path) -> Iterator[str]:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            yield line.rstrip("\r\n")


class Recording:
    """One device's recording, indexed by OID."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        for line in _lines(path):
            entry = _parse_line(line)
            if entry is not None:
                self.entries[entry.oid] = entry

    def get(self, oid: str) -> Entry | None:
        return self.entries.get(oid.lstrip("."))

    def column(self, oid: str) -> dict[str, Entry]:
        """Every row of a table column, keyed by index suffix (`"1"`, `"2.5"`)."""
        prefix = oid.lstrip(".") + "."
        return {k[len(prefix):]: e for k, e in self.entries.items() if k.startswith(prefix)}

    def values(self, oid: str) -> dict[str, int | bytes | str]:
        return {k: e.value for k, e in self.column(oid).items()}
