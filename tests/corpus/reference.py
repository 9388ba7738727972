"""What a recording itself says about an interface or a host, read with tests/support/snmprec.py.

These are the expectations the corpus tests hold `sitivmon poll` to. They read the IF-MIB and
HOST-RESOURCES columns straight from the recording and state what the MIBs mean (RFC 2863, RFC 2790),
never what sitivmon computes: where a value has several honest readings (ifSpeed vs ifHighSpeed)
the check accepts any of them and refuses only what no reading of the recording gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.snmprec import COUNTER32, COUNTER64, Recording

IF = "1.3.6.1.2.1.2.2.1."
IFX = "1.3.6.1.2.1.31.1.1.1."
COLUMNS = {
    "ifDescr": IF + "2", "ifSpeed": IF + "5", "ifAdminStatus": IF + "7", "ifOperStatus": IF + "8",
    "ifInOctets": IF + "10", "ifInErrors": IF + "14", "ifOutOctets": IF + "16", "ifOutErrors": IF + "20",
    "ifName": IFX + "1", "ifHCInOctets": IFX + "6", "ifHCOutOctets": IFX + "10", "ifHighSpeed": IFX + "15",
    "ifAlias": IFX + "18",
}  # fmt: skip
HR_STORAGE = "1.3.6.1.2.1.25.2.3.1."
HR_STORAGE_RAM = "1.3.6.1.2.1.25.2.1.2"
UCD_MEM_TOTAL = "1.3.6.1.4.1.2021.4.5.0"
UCD_MEM_AVAIL = "1.3.6.1.4.1.2021.4.6.0"
HR_MEMORY_SIZE = "1.3.6.1.2.1.25.2.2.0"  # KiB
MAX_PLAUSIBLE_BITS = 10**13  # no port is faster than 10 Tbit/s


def ascii_text(value: object) -> str | None:
    """The string when it is plain printable ASCII (a selector can be written for it), else None."""
    if not isinstance(value, bytes):
        return None
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text and text.isprintable() and text == text.strip() else None


@dataclass(frozen=True, slots=True)
class Pick:
    """One interface the test makes a link of, and how the config selects it."""

    index: int
    key: str  # name, descr, alias or index
    wanted: str | int


class Device:
    """A recording with its columns read once."""

    def __init__(self, path: Path) -> None:
        self.rec = Recording(path)
        self.cols = {name: self.rec.column(oid) for name, oid in COLUMNS.items()}

    def value(self, column: str, index: int) -> int | bytes | str | None:
        entry = self.cols[column].get(str(index))
        if entry is None or entry.module is not None:
            return None
        return entry.value

    def moving(self, column: str, index: int) -> bool:
        entry = self.cols[column].get(str(index))
        return entry is not None and entry.module is not None

    def indexes(self) -> list[int]:
        return sorted(int(i) for i in self.cols["ifDescr"] if i.isdigit())

    def picks(self, limit: int = 4) -> list[Pick]:
        """Up to `limit` interfaces, each selected another way (name, descr, alias, index), preferring
        ports whose speed columns are odd (saturated, in the wrong unit, disagreeing)."""
        idxs = self.indexes()

        def unique(column: str) -> dict[int, str]:
            texts = {i: ascii_text(self.value(column, i)) for i in idxs}
            counts: dict[str, int] = {}
            for t in texts.values():
                if t is not None:
                    counts[t] = counts.get(t, 0) + 1
            return {i: t for i, t in texts.items() if t is not None and counts[t] == 1}

        odd = [i for i in idxs if self.odd_speed(i)]
        order = odd + [i for i in idxs if i not in odd]
        picks: list[Pick] = []
        used: set[int] = set()
        for key, column in (("index", None), ("name", "ifName"), ("descr", "ifDescr"), ("alias", "ifAlias")):
            candidates = {i: str(i) for i in order} if column is None else unique(column)
            for i in order:
                if i in candidates and i not in used:
                    picks.append(Pick(i, key, i if key == "index" else candidates[i]))
                    used.add(i)
                    break
        return picks[:limit]

    def odd_speed(self, index: int) -> bool:
        low, high = self.value("ifSpeed", index), self.value("ifHighSpeed", index)
        if low == 4294967295 and not high:
            return True
        return isinstance(low, int) and isinstance(high, int) and high > 0 and abs(high * 10**6 - low) >= 10**6

    def speed_readings(self, index: int) -> set[int]:
        """Every capacity in B/s the recording honestly gives for the port: ifSpeed in bit/s when it is
        not saturated, ifHighSpeed in Mbit/s when it is a port speed at all."""
        out: set[int] = set()
        low, high = self.value("ifSpeed", index), self.value("ifHighSpeed", index)
        if isinstance(low, int) and 0 < low < 4294967295:
            out.add(low // 8)
        if isinstance(high, int) and 0 < high * 10**6 <= MAX_PLAUSIBLE_BITS:
            out.add(high * 10**6 // 8)
        return out

    def counter(self, hc: str, low: str, index: int) -> tuple[int, int] | None:
        """(value, bits) the agent serves for a counter: the HC column when it has one, else the 32-bit."""
        for column, bits, tags in ((hc, 64, (COUNTER64, COUNTER32)), (low, 32, (COUNTER32,))):
            entry = self.cols[column].get(str(index))
            if entry is not None and entry.module is None and entry.tag in tags and isinstance(entry.value, int):
                return entry.value, bits
        return None

    def storage(self) -> dict[str, tuple[int, int]]:
        """hrStorageTable: {descr: (size bytes, used bytes)} for rows with an ASCII, unique descr.
        Size and Used are Integer32 counts of allocation units; agents with huge filesystems let them
        go negative, so they are read as unsigned 32-bit (RFC 2790 says they cannot be negative)."""
        descr = self.rec.values(HR_STORAGE + "3")
        units = self.rec.values(HR_STORAGE + "4")
        size = self.rec.values(HR_STORAGE + "5")
        used = self.rec.values(HR_STORAGE + "6")
        names = {i: ascii_text(d) for i, d in descr.items()}
        seen = [n for n in names.values() if n]
        out: dict[str, tuple[int, int]] = {}
        for i, name in names.items():
            u, s, d = units.get(i), size.get(i), used.get(i)
            if name is None or seen.count(name) > 1:
                continue
            if isinstance(u, int) and isinstance(s, int) and isinstance(d, int):
                out[name] = ((s % 2**32) * u, (d % 2**32) * u)
        return out

    def memory_totals(self) -> set[int]:
        """Total RAM in bytes by each source the recording has (hrStorageRam rows, UCD memTotalReal)."""
        out: set[int] = set()
        types = self.rec.values(HR_STORAGE + "2")
        for i, t in types.items():
            if t == HR_STORAGE_RAM:
                u, s = self.rec.values(HR_STORAGE + "4").get(i), self.rec.values(HR_STORAGE + "5").get(i)
                if isinstance(u, int) and isinstance(s, int) and s > 0:
                    out.add((s % 2**32) * u)
        for oid in (UCD_MEM_TOTAL, HR_MEMORY_SIZE):
            total = self.rec.get(oid)
            if total is not None and isinstance(total.value, int) and total.value > 0:
                out.add(total.value * 1024)
        return out

    def memory_used_known(self) -> bool:
        """Whether the recording says how much RAM is used (an hrStorageRam row, or UCD memAvailReal)."""
        ram = [i for i, t in self.rec.values(HR_STORAGE + "2").items() if t == HR_STORAGE_RAM]
        return bool(ram) or self.rec.get(UCD_MEM_AVAIL) is not None


ENT_SENSOR = "1.3.6.1.2.1.99.1.1.1."
ENT_PHYSICAL = "1.3.6.1.2.1.47.1.1.1.1."
SENSOR_CELSIUS, SENSOR_WATTS = 8, 6


def sensor_values(dev: Device, sensor_type: int) -> dict[str, float]:
    """ENTITY-SENSOR-MIB sensors of a type whose status is ok(1): {index: value in the type's unit}.
    RFC 3433: value x 10^(3 x (scale - 9)) (scale 9 is units, 8 milli...), precision = decimals."""
    types = dev.rec.values(ENT_SENSOR + "1")
    scales = dev.rec.values(ENT_SENSOR + "2")
    precisions = dev.rec.values(ENT_SENSOR + "3")
    values = dev.rec.values(ENT_SENSOR + "4")
    status = dev.rec.values(ENT_SENSOR + "5")
    out: dict[str, float] = {}
    for i, t in types.items():
        raw, scale, prec = values.get(i), scales.get(i, 9), precisions.get(i, 0)
        if t != sensor_type or status.get(i) != 1 or not isinstance(raw, int):
            continue
        if raw >= 2**31:  # Integer32 served as its unsigned bits
            raw -= 2**32
        assert isinstance(scale, int) and isinstance(prec, int)
        out[i] = raw * 10.0 ** (3 * (scale - 9)) / 10.0**prec
    return out


def transceiver_sensors(dev: Device) -> set[str]:
    """Sensors of an optical transceiver (DOM), by their own or their container's entPhysicalDescr."""
    descr = dev.rec.values(ENT_PHYSICAL + "2")
    parent = dev.rec.values(ENT_PHYSICAL + "4")
    words = ("dom ", "xcvr", "transceiver", "sfp", "optic")
    out = set()
    for i in dev.rec.values(ENT_SENSOR + "1"):
        texts = [descr.get(i), descr.get(str(parent.get(i)))]
        if any(isinstance(t, bytes) and any(w in t.decode("latin-1").lower() for w in words) for t in texts):
            out.add(i)
    return out
