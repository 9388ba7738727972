"""Walked columns -> datacenter rows (storage, outlets, VMs, sensors) and host figures. Pure.

One function per profile family. Values leave here in base units (bytes, watts, joules, ratios) as
Decimals, so scales such as APC's tenths of kWh or ENTITY-SENSOR's scale and precision are exact.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sitivmon.normalize.text import decode_device_text, device_text
from sitivmon.profiles.builtin import HR_STORAGE_TYPES, PHYSICAL_CLASSES, SENSOR_TYPES
from sitivmon.profiles.model import Kind, Profile
from sitivmon.readings import Anomaly
from sitivmon.snmp.client import Value

Tables = Mapping[str, Mapping[str, Value]]
Scalars = Mapping[str, Value]

# hrStorage types that hold data someone stores (attributed to communes); the others (RAM, swap,
# buffers) are the host's own and stay with the target's commune.
DISK_TYPES = frozenset({"fixedDisk", "removableDisk", "networkDisk", "flashMemory", "ramDisk"})
_KIB = 1024
_SENSOR_MEASURES = {"watts": "power_watts", "celsius": "temperature_celsius", "amperes": "current_amperes"}
# hrStorage rows that hold the kernel's buffers and page cache, whatever their type (net-snmp on Linux
# calls them "Memory buffers" / "Cached memory" of type other, Arista "RAM (Buffers)" / "RAM (Cache)" of
# type ram): subtracted from the RAM row's used, so both sources mean "used without buffers and cache".
_BUFFERS_OR_CACHE = re.compile(r"buffer|cache", re.IGNORECASE)
# A power supply's output power is the load it feeds, already drawn at its input: not counted twice.
_OUTPUT = re.compile(r"\bout(put)?\b", re.IGNORECASE)
# Entity classes that say nothing about what a sensor measures: look at what contains it instead.
_NEUTRAL_CLASSES = frozenset({"sensor", "container", "other", "unknown"})
MEMORY_IMPLAUSIBLE = "memory_implausible"
STORAGE_IMPLAUSIBLE = "storage_implausible"
SENSOR_IMPLAUSIBLE = "sensor_implausible"


@dataclass(frozen=True, slots=True)
class Row:
    """One attributable thing inside a host: a filesystem, an outlet, a VM, a sensor."""

    resource: str
    name: str
    profile: str
    index: str
    measures: Mapping[str, Decimal] = field(default_factory=dict)
    state: str | None = None  # power state name, for VMs
    attributable: bool = True
    labels: tuple[tuple[str, str], ...] = ()  # index labels and lookups (user profiles)
    extra: tuple[tuple[str, Kind, Decimal], ...] = ()  # numeric columns without a measure
    raw_energy: int | None = None  # device energy counter, raw units (scale in `energy_scale`)
    energy_scale: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ScalarSample:
    """A user profile's scalar as read: one number per target (no row, so no resource label)."""

    profile: str
    name: str  # as written in the profile, without the `<profile>:` prefix
    kind: Kind  # GAUGE or COUNTER
    value: Decimal


@dataclass(slots=True)
class HostFigures:
    uptime_seconds: Decimal | None = None
    processes: int | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None  # without buffers and cache
    cpu_load: dict[str, Decimal] = field(default_factory=dict)  # ratio 0..1 per hrProcessorLoad index
    load_average: dict[str, Decimal] = field(default_factory=dict)  # "1m", "5m", "15m"
    anomalies: list[Anomaly] = field(default_factory=list)  # device values set aside
    scalars: list[ScalarSample] = field(default_factory=list)  # user profiles' numeric scalars


def text(value: Value) -> str:
    """A device string, by the one rule of `sitivmon.normalize.text` (links decode the same way)."""
    return device_text(value)


def integer(value: Value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def number(value: Value, scale: Decimal | None = None) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        out = Decimal(value)
    elif isinstance(value, float):
        out = Decimal(repr(value))
    elif isinstance(value, str | bytes):
        try:
            out = Decimal(text(value).strip())
        except ArithmeticError:
            return None
        if not out.is_finite():
            return None
    else:
        return None
    return out * scale if scale is not None else out


def host_resources(tables: Tables, scalars: Scalars, profile: str = "host_resources") -> tuple[list[Row], HostFigures]:
    figures = HostFigures()
    ticks = integer(scalars.get("hrSystemUptime"))
    if ticks is not None:
        figures.uptime_seconds = Decimal(ticks) / 100
    figures.processes = integer(scalars.get("hrSystemProcesses"))
    rows: list[Row] = []
    memory: list[tuple[str, str, str, int, int]] = []  # (index, type, descr, size bytes, used bytes)
    aside: set[str] = set()
    descr = tables.get("hrStorageDescr", {})
    for idx in sorted(descr, key=_sort_key):
        kind = HR_STORAGE_TYPES.get(text(tables.get("hrStorageType", {}).get(idx)), "other")
        units = integer(tables.get("hrStorageAllocationUnits", {}).get(idx))
        size = integer(tables.get("hrStorageSize", {}).get(idx))
        used = integer(tables.get("hrStorageUsed", {}).get(idx))
        if units is None or size is None or used is None:
            continue
        # hrStorageSize/Used are Integer32: agents report huge filesystems with negative values.
        size, used = size % 2**32, used % 2**32
        name = text(descr[idx]) or f"storage-{idx}"
        if used > size or (units <= 0 and (size or used)):  # 0 units, 0 size: a drive without media
            # A size truncated to 32 bits (an Isilon's /ifs: 1.5 TB "size", 11 TB used) or garbage
            # units: which figure is wrong cannot be known, so neither is billed.
            figures.anomalies.append(
                Anomaly(STORAGE_IMPLAUSIBLE, f"hrStorage.{idx}",
                        f"{name!r}: {used} units used of {size}, allocation unit {units} bytes")
            )
            aside.add(idx)
            memory.append((idx, kind, name, 0, 0))
            continue
        memory.append((idx, kind, name, size * units, used * units))
        rows.append(
            Row(
                "storage", name, profile, idx,
                {"storage_size_bytes": Decimal(size * units), "storage_used_bytes": Decimal(used * units)},
                attributable=kind in DISK_TYPES,
            )
        )
    _hr_memory(figures, memory, aside)
    if figures.memory_total_bytes is None:
        mem_kib = integer(scalars.get("hrMemorySize"))
        if mem_kib is not None and mem_kib > 0:
            figures.memory_total_bytes = mem_kib * _KIB
    for idx, value in tables.get("hrProcessorLoad", {}).items():
        load = integer(value)
        if load is not None:
            figures.cpu_load[idx] = Decimal(load) / 100
    return rows, figures


def _hr_memory(figures: HostFigures, storage: Sequence[tuple[str, str, str, int, int]], aside: set[str]) -> None:
    """Physical memory from hrStorageTable: the first RAM row that is not buffers or cache, less the
    rows holding buffers and cache (each set aside if larger than the memory it is part of). When that
    RAM row was set aside, no other row stands in for it (a second RAM row means something else)."""
    main = next((s for s in storage if s[1] == "ram" and not _BUFFERS_OR_CACHE.search(s[2])), None)
    if main is None or main[0] in aside:
        return
    idx, _, _, total, used = main
    if total <= 0:
        figures.anomalies.append(Anomaly(MEMORY_IMPLAUSIBLE, f"hrStorage.{idx}", f"RAM size {total} bytes"))
        return
    figures.memory_total_bytes = total
    for sidx, kind, name, _size, amount in storage:
        if sidx == idx or sidx in aside or kind not in ("ram", "other") or not _BUFFERS_OR_CACHE.search(name):
            continue
        if amount > used:
            figures.anomalies.append(
                Anomaly(MEMORY_IMPLAUSIBLE, f"hrStorage.{sidx}",
                        f"{name!r} holds {amount} bytes, more than the {used} bytes of RAM used")
            )
            continue
        used -= amount
    figures.memory_used_bytes = used


def _high_low(tables: Tables, base: str, idx: str) -> int | None:
    low = integer(tables.get(f"{base}Low", {}).get(idx))
    high = integer(tables.get(f"{base}High", {}).get(idx))
    if low is None or high is None:
        return None
    return (high % 2**32) * 2**32 + low % 2**32


def ucd(tables: Tables, scalars: Scalars, *, disks: bool, profile: str = "ucd") -> tuple[list[Row], HostFigures]:
    """UCD memory and load; dskTable rows only when `disks` (a host also polled with host_resources
    has its filesystems counted once, from hrStorageTable)."""
    figures = HostFigures()
    _ucd_memory(figures, scalars)
    names = tables.get("laNames", {})
    for idx, value in tables.get("laLoadInt", {}).items():
        load = integer(value)
        if load is None:
            continue
        period = {"Load-1": "1m", "Load-5": "5m", "Load-15": "15m"}.get(text(names.get(idx)), idx)
        figures.load_average[period] = Decimal(load) / 100
    rows: list[Row] = []
    if disks:
        for idx in sorted(tables.get("dskPath", {}), key=_sort_key):
            size = _high_low(tables, "dskTotal", idx)
            used = _high_low(tables, "dskUsed", idx)
            if size is None or used is None:
                continue
            name = text(tables["dskPath"][idx]) or f"disk-{idx}"
            if used > size:
                figures.anomalies.append(
                    Anomaly(STORAGE_IMPLAUSIBLE, f"dskTable.{idx}", f"{name!r}: {used} KiB used of {size} KiB")
                )
                continue
            rows.append(
                Row(
                    "storage", name, profile, idx,
                    {"storage_size_bytes": Decimal(size * _KIB), "storage_used_bytes": Decimal(used * _KIB)},
                )
            )
    return rows, figures


def _ucd_memory(figures: HostFigures, scalars: Scalars) -> None:
    """memTotalReal - memAvailReal - memBuffer - memCached (KiB), only when every part fits in the
    total: an Isilon serves a memCached 32 times its memTotalReal, which made "used" read 0."""
    total = integer(scalars.get("memTotalReal"))
    if total is None:
        return  # no UCD memory objects (an Arista answers the walk with nothing)
    if total <= 0:
        figures.anomalies.append(Anomaly(MEMORY_IMPLAUSIBLE, "memTotalReal", f"memTotalReal {total} KiB"))
        return
    figures.memory_total_bytes = total * _KIB
    avail = integer(scalars.get("memAvailReal"))
    if avail is None:
        return
    parts = {"memAvailReal": avail, "memBuffer": integer(scalars.get("memBuffer")) or 0,
             "memCached": integer(scalars.get("memCached")) or 0}
    for name, value in parts.items():
        if not 0 <= value <= total:
            figures.anomalies.append(
                Anomaly(MEMORY_IMPLAUSIBLE, name, f"{name} {value} KiB outside 0..memTotalReal {total} KiB")
            )
            return
    used = total - sum(parts.values())
    if used < 0:
        figures.anomalies.append(
            Anomaly(MEMORY_IMPLAUSIBLE, "memAvailReal",
                    f"free {parts['memAvailReal']} + buffers {parts['memBuffer']} + cached {parts['memCached']} KiB "
                    f"exceed memTotalReal {total} KiB")
        )
        return
    figures.memory_used_bytes = used * _KIB


def sensor_value(raw: int, scale: int | None, precision: int | None) -> Decimal:
    """ENTITY-SENSOR-MIB: value x 10^(3 x (scale - 9)) x 10^-precision (scale 9 = units, 8 = milli)."""
    exponent = 3 * ((scale if scale is not None else 9) - 9) - (precision or 0)
    return Decimal(raw).scaleb(exponent)


def measured_class(idx: str, classes: Mapping[str, Value], contained: Mapping[str, Value]) -> str | None:
    """What a sensor measures, by ENTITY-MIB class: its own class, or, when that says nothing (sensor,
    container, other), the first telling class up its entPhysicalContainedIn chain. An Arista's
    transceiver RX/TX power sensor is a sensor in a module (the lane) in containers; a power supply's
    sensor is in a container in the powerSupply. None when the agent does not serve the tree."""
    current = idx
    for _ in range(32):  # a containment loop in a broken agent must end
        kind = PHYSICAL_CLASSES.get(integer(classes.get(current)) or 0)
        if kind is None:
            return None
        if kind not in _NEUTRAL_CLASSES:
            return kind
        parent = integer(contained.get(current))
        if not parent:
            return None
        current = str(parent)
    return None


def entity_sensors(tables: Tables, profile: str = "entity_sensors") -> tuple[list[Row], list[Anomaly]]:
    """Sensors in base units. A watts sensor is consumption (`power_watts`: summed per commune and
    integrated into energy) only when it measures a power supply; a transceiver's optical level, a
    module's or the chassis' own draw (a part of, or the same watts as, what the power supplies
    deliver: counting it too would count them twice), a power supply's output power (its input already
    counts it) and a sensor whose entity class the agent does not serve are `sensor_watts`: shown,
    never billed."""
    rows = []
    anomalies: list[Anomaly] = []
    names = tables.get("entPhysicalName", {})
    descrs = tables.get("entPhysicalDescr", {})
    classes = tables.get("entPhysicalClass", {})
    contained = tables.get("entPhysicalContainedIn", {})
    for idx, value in sorted(tables.get("entPhySensorValue", {}).items(), key=lambda kv: _sort_key(kv[0])):
        raw = integer(value)
        kind = SENSOR_TYPES.get(integer(tables.get("entPhySensorType", {}).get(idx)) or 0)
        measure = _SENSOR_MEASURES.get(kind or "")
        status = integer(tables.get("entPhySensorOperStatus", {}).get(idx))
        if raw is None or measure is None or status not in (None, 1):
            continue
        name = text(names.get(idx)).strip() or text(descrs.get(idx)).strip() or f"sensor-{idx}"
        scale = integer(tables.get("entPhySensorScale", {}).get(idx))
        precision = integer(tables.get("entPhySensorPrecision", {}).get(idx))
        if not (scale is None or 1 <= scale <= 17) or not (precision is None or -8 <= precision <= 9):
            # outside the MIB's ranges (yocto..yotta, -8..9): no exponent to trust, and a hostile one
            # would overflow the Decimal context
            anomalies.append(
                Anomaly(SENSOR_IMPLAUSIBLE, f"entPhySensor.{idx}", f"{name!r}: scale {scale}, precision {precision}")
            )
            continue
        scaled = sensor_value(raw, scale, precision)
        attributable = True
        if measure == "power_watts":
            if measured_class(idx, classes, contained) != "powerSupply" or _OUTPUT.search(name):
                measure, attributable = "sensor_watts", False
            elif scaled < 0:
                anomalies.append(Anomaly(SENSOR_IMPLAUSIBLE, f"entPhySensor.{idx}", f"{name!r}: {scaled} W"))
                continue
        rows.append(Row("sensor", name, profile, idx, {measure: scaled}, attributable=attributable))
    return rows, anomalies


def split_index(suffix: str, parts: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """Index suffix -> labels: integer (one sub-id), string (length-prefixed), implied (the rest)."""
    subids = suffix.split(".") if suffix else []
    out: dict[str, str] = {}
    pos = 0
    try:
        for label, kind in parts:
            if kind == "integer":
                out[label] = subids[pos]
                pos += 1
            elif kind == "string":
                n = int(subids[pos])
                if len(subids) < pos + 1 + n:
                    return None
                out[label] = decode_device_text(bytes(int(x) for x in subids[pos + 1 : pos + 1 + n]))
                pos += 1 + n
            else:
                out[label] = decode_device_text(bytes(int(x) for x in subids[pos:]))
                pos = len(subids)
    except (IndexError, ValueError):
        return None
    return out


def _index_subids(labels: Mapping[str, str], parts: Sequence[tuple[str, str]], wanted: Sequence[str]) -> str:
    kinds = dict(parts)
    out: list[str] = []
    for label in wanted:
        value = labels[label]
        if kinds.get(label) == "integer":
            out.append(value)
        else:
            data = value.encode()
            if kinds.get(label) == "string":
                out.append(str(len(data)))
            out.extend(str(b) for b in data)
    return ".".join(out)


def table_rows(profile: Profile, tables: Tables) -> list[Row]:
    """Rows of a user profile: measures by column, labels from the index and from lookups."""
    lookup_columns = {lk.column for lk in profile.lookups}
    own = [c for c in profile.columns if c.name not in lookup_columns or c.measure is not None]
    indexes: set[str] = set()
    for c in own:
        indexes.update(tables.get(c.name, {}))
    parts = [(p.label, p.type) for p in profile.indexes]
    short = len(profile.name) + 1
    rows = []
    for idx in sorted(indexes, key=_sort_key):
        index_labels = split_index(idx, parts) if parts else {}
        if index_labels is None:
            continue
        labels = dict(index_labels)
        for lk in profile.lookups:
            key = _index_subids(index_labels, parts, lk.index) if lk.index else idx
            found = tables.get(lk.column, {}).get(key)
            if found is not None:
                labels[lk.label] = text(found)
        measures: dict[str, Decimal] = {}
        extra: list[tuple[str, Kind, Decimal]] = []
        name = labels.get(profile.resource, "")
        state = None
        raw_energy = None
        energy_scale = None
        for c in profile.columns:
            value = tables.get(c.name, {}).get(idx)
            if value is None:
                continue
            if c.measure == "name":
                name = text(value) or name
            elif c.measure == "power_state":
                code = integer(value)
                state = c.enum.get(code, str(code)) if code is not None else text(value)
            elif c.measure == "energy_joules":
                raw_energy = integer(value)
                energy_scale = c.scale if c.scale is not None else Decimal(1)
            elif c.measure is not None:
                scaled = number(value, c.scale)
                if scaled is not None:
                    measures[c.measure] = scaled
            elif c.kind in (Kind.GAUGE, Kind.COUNTER) and c.name not in lookup_columns:
                scaled = number(value, c.scale)
                if scaled is not None:
                    extra.append((c.name[short:], c.kind, scaled))
        rows.append(
            Row(
                profile.resource, name or idx, profile.name, idx, measures, state,
                labels=tuple(sorted((k, v) for k, v in labels.items() if k != profile.resource)),
                extra=tuple(extra), raw_energy=raw_energy, energy_scale=energy_scale,
            )
        )
    return rows


def table_scalars(profile: Profile, scalars: Scalars) -> list[ScalarSample]:
    """A user profile's gauge and counter scalars, scaled, by the rule of its unnamed numeric columns:
    info and enum scalars have no number to show, and a value that is not a number is left out as a
    column's would be. An object the agent lacks is absent from `scalars` and already reported by the
    poll (`missing_object`), so it is simply not shown here."""
    short = len(profile.name) + 1
    out = []
    for s in profile.scalars:
        value = scalars.get(s.name)
        if value is None or s.kind not in (Kind.GAUGE, Kind.COUNTER):
            continue
        scaled = number(value, s.scale)
        if scaled is not None:
            out.append(ScalarSample(profile.name, s.name[short:], s.kind, scaled))
    return out


def _sort_key(idx: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in idx.split("."))
    except ValueError:
        return (2**63,)


def extract(profiles: Sequence[Profile], tables: Tables, scalars: Scalars) -> tuple[list[Row], HostFigures]:
    """All rows of one poll, names made unique per resource, and the host's figures merged: memory from
    the first source with a plausible used figure (UCD, then hrStorage's RAM row), else the first with
    a total; dskTable is used only without hrStorageTable. Values set aside are in `anomalies`."""
    families = {p.family for p in profiles}
    rows: list[Row] = []
    figures = HostFigures()
    memory: list[HostFigures] = []
    for p in profiles:
        if p.family == "host_resources":
            got, hr = host_resources(tables, scalars, p.name)
            rows += got
            figures.uptime_seconds, figures.processes = hr.uptime_seconds, hr.processes
            figures.cpu_load = hr.cpu_load
            figures.anomalies += hr.anomalies
            memory.append(hr)
        elif p.family == "ucd":
            got, u = ucd(tables, scalars, disks="host_resources" not in families, profile=p.name)
            rows += got
            figures.load_average = u.load_average
            figures.anomalies += u.anomalies
            memory.insert(0, u)
        elif p.family == "entity_sensors":
            got, odd = entity_sensors(tables, p.name)
            rows += got
            figures.anomalies += odd
        elif p.family == "table":
            rows += table_rows(p, tables)
            figures.scalars += table_scalars(p, scalars)
    source = next((m for m in memory if m.memory_used_bytes is not None), None) or next(
        (m for m in memory if m.memory_total_bytes is not None), None
    )
    if source is not None:
        figures.memory_total_bytes, figures.memory_used_bytes = source.memory_total_bytes, source.memory_used_bytes
    return _unique(rows), figures


def _unique(rows: list[Row]) -> list[Row]:
    """Two outlets named alike would share a subject id and a label set: suffix them with their index."""
    counts = Counter((r.resource, r.name) for r in rows)
    out = []
    for r in rows:
        if counts[(r.resource, r.name)] > 1:
            r = Row(
                r.resource, f"{r.name}#{r.index}", r.profile, r.index, r.measures, r.state, r.attributable,
                r.labels, r.extra, r.raw_energy, r.energy_scale,
            )
        out.append(r)
    return out

