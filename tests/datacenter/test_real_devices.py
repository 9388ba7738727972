"""Memory and power from real devices' recordings (snmpsim-data), checked against the recording itself.

Issue 10, symptom 9: an Arista polled with host_resources and ucd lost its memory (UCD "won" with no
objects); an Isilon's memCached (32 x memTotalReal) made memory used read 0 where HOST-RESOURCES says
97 %. Symptom 12: an Arista's transceiver RX/TX levels (ENTITY-SENSOR watts, milli) were summed into a
commune's power and integrated into its energy.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from sitivmon.datacenter.handler import DatacenterHandler
from sitivmon.datacenter.rows import extract, measured_class
from sitivmon.engine.poll import TargetPoll
from sitivmon.profiles.builtin import ENTITY_SENSORS, HOST_RESOURCES, UCD
from sitivmon.readings import Quantity
from sitivmon.snmp.client import Value
from tests.datacenter.conftest import make_config
from tests.datacenter.recordings import (
    ARISTA,
    ENT_PHYSICAL,
    ENT_SENSOR,
    HR_STORAGE,
    ISILON,
    PALOALTO,
    UCD_MEMORY,
    number,
    octets,
    recording,
    served,
)
from tests.support.snmprec import Recording


def _storage_index(rec: Recording, descr: str) -> str:
    (idx,) = [i for i, e in rec.column(f"{HR_STORAGE}.3").items() if isinstance(e.value, bytes)
              and e.value.decode("ascii") == descr]
    return idx


def _hr(rec: Recording, descr: str, column: int) -> int:
    return number(rec, f"{HR_STORAGE}.{column}.{_storage_index(rec, descr)}")


def test_arista_memory_comes_from_host_resources_when_ucd_has_none() -> None:
    rec = recording(ARISTA)
    assert not rec.column(UCD_MEMORY), "the Arista serves no UCD memory objects"
    tables, scalars = served(rec, [HOST_RESOURCES, UCD])
    _, figures = extract([HOST_RESOURCES, UCD], tables, scalars)
    units = _hr(rec, "RAM", 4)
    assert figures.memory_total_bytes == _hr(rec, "RAM", 5) * units == 3_956_120 * 1024
    # RAM used less the agent's own "RAM (Buffers)" and "RAM (Cache)" rows: used without buffers and cache
    expected = (_hr(rec, "RAM", 6) - _hr(rec, "RAM (Buffers)", 6) - _hr(rec, "RAM (Cache)", 6)) * units
    assert figures.memory_used_bytes == expected == 891_056 * 1024
    assert figures.anomalies == []


def test_isilon_implausible_ucd_cache_is_set_aside_and_host_resources_used() -> None:
    rec = recording(ISILON)
    total_kib, cached_kib = number(rec, f"{UCD_MEMORY}.5.0"), number(rec, f"{UCD_MEMORY}.15.0")
    assert cached_kib > total_kib  # the recording's own oddity
    tables, scalars = served(rec, [HOST_RESOURCES, UCD])
    _, figures = extract([HOST_RESOURCES, UCD], tables, scalars)
    units = _hr(rec, "Physical memory", 4)
    assert figures.memory_total_bytes == _hr(rec, "Physical memory", 5) * units
    assert figures.memory_used_bytes == _hr(rec, "Physical memory", 6) * units
    assert figures.memory_total_bytes is not None
    assert figures.memory_used_bytes / figures.memory_total_bytes > 0.97
    reasons = {(a.reason, a.subject) for a in figures.anomalies}
    assert ("memory_implausible", "memCached") in reasons

    # UCD alone: its total is plausible and kept, its used is not guessed
    _, ucd_only = extract([UCD], tables, scalars)
    assert (ucd_only.memory_total_bytes, ucd_only.memory_used_bytes) == (total_kib * 1024, None)


def test_isilon_storage_with_used_above_size_is_set_aside() -> None:
    """/ifs: hrStorageSize truncated to 32 bits (1.5 TB) under 11 TB used: neither is billed."""
    rec = recording(ISILON)
    assert _hr(rec, "/ifs", 6) > _hr(rec, "/ifs", 5)
    tables, scalars = served(rec, [HOST_RESOURCES])
    rows, figures = extract([HOST_RESOURCES], tables, scalars)
    assert "/ifs" not in {r.name for r in rows}
    assert ("storage_implausible", f"hrStorage.{_storage_index(rec, '/ifs')}") in {
        (a.reason, a.subject) for a in figures.anomalies
    }
    root = next(r for r in rows if r.name == "/")
    assert root.measures["storage_used_bytes"] == _hr(rec, "/", 6) * _hr(rec, "/", 4)


# (memTotalReal, memAvailReal, memBuffer, memCached) KiB -> used KiB, or the scalar set aside
@pytest.mark.parametrize(
    ("total", "avail", "buffers", "cached", "used", "aside"),
    [
        (1000, 200, 100, 300, 400, None),
        (1000, 0, 0, 0, 1000, None),
        (1000, 1000, 0, 0, 0, None),
        (1000, 200, 100, 32_000, None, "memCached"),  # the Isilon
        (1000, 200, 2000, 0, None, "memBuffer"),
        (1000, 1200, 0, 0, None, "memAvailReal"),
        (1000, -5, 0, 0, None, "memAvailReal"),
        (1000, 600, 300, 300, None, "memAvailReal"),  # parts larger than the whole
        (0, 0, 0, 0, None, "memTotalReal"),
        (-4, 0, 0, 0, None, "memTotalReal"),
    ],
)
def test_ucd_memory_plausibility(
    total: int, avail: int, buffers: int, cached: int, used: int | None, aside: str | None
) -> None:
    scalars: dict[str, Value] = {"memTotalReal": total, "memAvailReal": avail, "memBuffer": buffers,
                                 "memCached": cached}
    _, figures = extract([UCD], {}, scalars)
    assert figures.memory_used_bytes == (None if used is None else used * 1024)
    assert [a.subject for a in figures.anomalies] == ([aside] if aside else [])
    assert all(a.reason == "memory_implausible" for a in figures.anomalies)


def _hr_tables(rows: list[tuple[str, str, int, int, int]]) -> dict[str, dict[str, Value]]:
    kinds = {"ram": "1.3.6.1.2.1.25.2.1.2", "other": "1.3.6.1.2.1.25.2.1.1", "disk": "1.3.6.1.2.1.25.2.1.4"}
    tables: dict[str, dict[str, Value]] = {c: {} for c in ("hrStorageType", "hrStorageDescr",
                                                          "hrStorageAllocationUnits", "hrStorageSize", "hrStorageUsed")}
    for i, (kind, descr, units, size, used) in enumerate(rows, start=1):
        tables["hrStorageType"][str(i)] = kinds[kind]
        tables["hrStorageDescr"][str(i)] = descr.encode()
        tables["hrStorageAllocationUnits"][str(i)] = units
        tables["hrStorageSize"][str(i)] = size
        tables["hrStorageUsed"][str(i)] = used
    return tables


@pytest.mark.parametrize(
    ("rows", "ucd", "total", "used", "aside"),
    [
        # net-snmp on Linux: buffers and cache as type other, subtracted from Physical memory's used
        ([("ram", "Physical memory", 1024, 1000, 900), ("other", "Memory buffers", 1024, 1000, 100),
          ("other", "Cached memory", 1024, 300, 300)], {}, 1000 * 1024, 500 * 1024, []),
        # a cache row larger than the RAM used is set aside, not subtracted
        ([("ram", "RAM", 1024, 1000, 400), ("ram", "RAM (Cache)", 1024, 1000, 500)], {}, 1000 * 1024,
         400 * 1024, ["hrStorage.2"]),
        # UCD with plausible figures wins over hrStorage
        ([("ram", "Physical memory", 1024, 1000, 900)],
         {"memTotalReal": 2000, "memAvailReal": 500, "memBuffer": 0, "memCached": 500}, 2000 * 1024,
         1000 * 1024, []),
        # UCD with a total only: hrStorage has the used figure and wins
        ([("ram", "Physical memory", 1024, 1000, 900)], {"memTotalReal": 2000}, 1000 * 1024, 900 * 1024, []),
        # neither has a used figure: UCD's total
        ([("disk", "/", 4096, 10, 5)], {"memTotalReal": 2000}, 2000 * 1024, None, []),
        # RAM of size 0: set aside, hrMemorySize (KiB) gives the total
        ([("ram", "Physical memory", 1024, 0, 0)], {"hrMemorySize": 64}, 64 * 1024, None, ["hrStorage.1"]),
        # a RAM row whose used exceeds its size is set aside, and the next RAM row does not stand in
        ([("ram", "Physical memory", 1024, 1000, 1200), ("ram", "Real memory", 1024, 500, 100)], {}, None, None,
         ["hrStorage.1"]),
        # a filesystem whose used exceeds its size is set aside
        ([("disk", "/ifs", 8192, 10, 11)], {}, None, None, ["hrStorage.1"]),
    ],
)
def test_memory_source_choice(
    rows: list[tuple[str, str, int, int, int]], ucd: dict[str, Value], total: int | None, used: int | None,
    aside: list[str],
) -> None:
    _, figures = extract([HOST_RESOURCES, UCD], _hr_tables(rows), ucd)
    assert (figures.memory_total_bytes, figures.memory_used_bytes) == (total, used)
    assert [a.subject for a in figures.anomalies] == aside


# entPhysicalIndex -> (class, containedIn); the Arista's shapes plus a flat and a looping agent
TREE = {
    "1": (3, 0),  # chassis
    "10": (6, 1), "11": (5, 10), "12": (8, 11),  # powerSupply > container > sensor
    "20": (5, 1), "21": (9, 20), "22": (8, 21),  # container > module (transceiver lane) > sensor
    "30": (10, 1), "31": (8, 30),  # port > sensor
    "40": (8, 1),  # sensor straight in the chassis
    "50": (6, 1),  # a sensor classed as what it measures (some agents): the power supply itself
    "60": (8, 61), "61": (5, 60),  # a containment loop
    "70": (8, 99),  # parent the agent does not serve
}


@pytest.mark.parametrize(
    ("idx", "expected"),
    [("12", "powerSupply"), ("22", "module"), ("31", "port"), ("40", "chassis"), ("50", "powerSupply"),
     ("60", None), ("70", None), ("404", None)],
)
def test_measured_class(idx: str, expected: str | None) -> None:
    classes: dict[str, Value] = {k: v[0] for k, v in TREE.items()}
    contained: dict[str, Value] = {k: v[1] for k, v in TREE.items()}
    assert measured_class(idx, classes, contained) == expected


def test_only_power_supply_watts_are_consumption() -> None:
    tables: dict[str, dict[str, Value]] = {
        "entPhySensorType": {"16": 6, "12": 6, "22": 6, "31": 6, "40": 6, "70": 6, "13": 6, "14": 6, "15": 8},
        "entPhySensorScale": {"16": 9, "12": 9, "22": 8, "31": 8, "40": 9, "70": 9, "13": 9, "14": 2**31 - 1, "15": 9},
        "entPhySensorPrecision": {"16": 0, "12": 1, "22": 4, "31": 0, "40": 0, "70": 0, "13": 0, "14": 0, "15": -99},
        "entPhySensorValue": {"16": 180, "12": 1955, "22": 6015, "31": 2, "40": 350, "70": 90, "13": -20, "14": 1,
                              "15": 1},
        "entPhysicalClass": {**{k: v[0] for k, v in TREE.items()}, "13": 8, "14": 8, "15": 8, "16": 8},
        "entPhysicalContainedIn": {**{k: v[1] for k, v in TREE.items()}, "13": 11, "14": 11, "15": 11, "16": 11},
        "entPhysicalName": {"12": b"PSU1 input", "22": b"", "16": b"PSU1 Output Power"},
        "entPhysicalDescr": {"22": b"DOM TX Power Sensor for Ethernet5"},
    }
    rows, figures = extract([ENTITY_SENSORS], tables, {})
    got = {r.name: (dict(r.measures), r.attributable) for r in rows}
    assert got == {
        "PSU1 input": ({"power_watts": Decimal("195.5")}, True),
        "PSU1 Output Power": ({"sensor_watts": Decimal(180)}, False),  # what the input already counts
        "DOM TX Power Sensor for Ethernet5": ({"sensor_watts": Decimal("0.0006015")}, False),  # named by descr
        "sensor-31": ({"sensor_watts": Decimal("0.002")}, False),
        "sensor-40": ({"sensor_watts": Decimal(350)}, False),  # chassis-level: the PSUs' watts again
        "sensor-70": ({"sensor_watts": Decimal(90)}, False),  # class unknown: not billed
    }
    assert [(a.reason, a.subject) for a in figures.anomalies] == [
        ("sensor_implausible", "entPhySensor.13"),  # a power supply drawing -20 W
        ("sensor_implausible", "entPhySensor.14"),  # scale outside yocto..yotta
        ("sensor_implausible", "entPhySensor.15"),  # precision outside -8..9
    ]


def _poll(tables: dict[str, dict[str, Value]], scalars: dict[str, Value], at: float) -> TargetPoll:
    return TargetPoll(target="arista", at=at, duration=0.1, tables=tables, scalars=scalars)


def test_arista_transceiver_levels_add_nothing_to_power_or_energy() -> None:
    rec = recording(ARISTA)
    config = make_config(
        "targets:\n  - {name: arista, address: 127.0.0.1, credentials: lab, commune: venissieux,\n"
        "     profiles: [host_resources, ucd, entity_sensors]}\n"
    )
    target = config.targets[0]
    handler = DatacenterHandler(config, config.attribution)
    tables, scalars = served(rec, [HOST_RESOURCES, UCD, ENTITY_SENSORS])
    handler.on_poll(target, _poll(tables, scalars, 1000.0))
    second = handler.on_poll(target, _poll(tables, scalars, 1060.0))
    assert [c for c in second.counters if c.key.quantity is Quantity.ENERGY_JOULES] == []
    assert all(v == 0 for v in handler.commune_sums()["sitivmon_commune_power_watts"].values())

    # every watts sensor of the recording is shown, in watts, named by its entPhysicalDescr
    watts = {i for i, e in rec.column(f"{ENT_SENSOR}.1").items() if e.value == 6}
    assert len(watts) == 18
    shown = {r.index: (r.name, r.measures) for r, _ in handler.views["arista"].rows if "sensor_watts" in r.measures}
    assert set(shown) == watts
    for idx in watts:
        assert number(rec, f"{ENT_SENSOR}.2.{idx}") == 8  # milli
        value = Decimal(number(rec, f"{ENT_SENSOR}.4.{idx}")).scaleb(-3 - number(rec, f"{ENT_SENSOR}.3.{idx}"))
        assert shown[idx] == (octets(rec, f"{ENT_PHYSICAL}.2.{idx}"), {"sensor_watts": value})
    out: list[str] = []
    handler.render(out)
    text = "".join(out)
    assert 'sitivmon_sensor_watts{target="arista",sensor="DOM RX Power Sensor for Ethernet5",' in text
    assert "sitivmon_power_watts{" not in text and "sitivmon_energy_joules_total{" not in text


def test_paloalto_sensors_keep_their_entity_names() -> None:
    rec = recording(PALOALTO)
    tables, _ = served(rec, [ENTITY_SENSORS])
    rows, figures = extract([ENTITY_SENSORS], tables, {})
    expected = {octets(rec, f"{ENT_PHYSICAL}.7.{i}") for i, e in rec.column(f"{ENT_SENSOR}.1").items()
                if e.value == 8}
    assert expected and {r.name for r in rows if "temperature_celsius" in r.measures} == expected
    assert figures.anomalies == []


def test_isilon_anomalies_are_counted_by_the_monitor() -> None:
    """Wired as the daemon wires it: what the handler sets aside reaches sitivmon_device_anomalies_total."""
    from sitivmon.exposition import LabelCache, render
    from sitivmon.monitor import Monitor

    rec = recording(ISILON)
    config = make_config(
        "targets:\n  - {name: isilon, address: 127.0.0.1, credentials: lab,\n"
        "     profiles: [host_resources, ucd]}\n"
    )
    handler = DatacenterHandler(config, config.attribution)
    monitor = Monitor(config, handlers=[handler])
    tables, scalars = served(rec, [HOST_RESOURCES, UCD])
    for at in (1000.0, 1060.0):
        poll = _poll(tables, scalars, at)
        poll.target = "isilon"
        monitor.on_poll(config.targets[0], poll)
    text = render(monitor, LabelCache())
    assert 'sitivmon_device_anomalies_total{target="isilon",reason="memory_implausible"} 2\n' in text
    assert 'sitivmon_device_anomalies_total{target="isilon",reason="storage_implausible"} 2\n' in text
    used = _hr(rec, "Physical memory", 6) * _hr(rec, "Physical memory", 4)
    assert f'sitivmon_host_memory_used_bytes{{target="isilon",commune="shared"}} {used}\n' in text


def test_ucd_disk_with_used_above_size_is_set_aside() -> None:
    tables: dict[str, dict[str, Value]] = {
        "dskPath": {"1": b"/", "2": b"/srv"}, "dskTotalLow": {"1": 1000, "2": 1000}, "dskTotalHigh": {"1": 0, "2": 0},
        "dskUsedLow": {"1": 400, "2": 1001}, "dskUsedHigh": {"1": 0, "2": 0},
    }
    rows, figures = extract([UCD], tables, {})
    assert [(r.name, r.measures["storage_used_bytes"]) for r in rows] == [("/", 400 * 1024)]
    assert [(a.reason, a.subject) for a in figures.anomalies] == [("storage_implausible", "dskTable.2")]


# Every recording of snmpsim-data that serves UCD memory or hrStorageTable (the two largest Juniper
# MX960 walks left out for time: their storage table has the same shape as the two kept).
MEMORY_CORPUS = [
    "bmc/hp-onboard-administrator.snmprec.bz2", "network/appliance/infosec-nsae-6500.snmprec.bz2",
    "network/appliance/empirical-hw-mgmt.snmprec.bz2", "network/appliance/nsfocus-ads.snmprec.bz2",
    "network/wifi/ruckus-smartcell-gateway.snmprec.bz2", "network/router/juniper-mx960-12-3r6-6.snmprec.bz2",
    "network/router/juniper-mx960-13-3r9-13.snmprec.bz2", "network/router/vyatta-unknown.snmprec.bz2",
    "network/firewall/sangfor-vad1.snmprec.bz2", "network/firewall/netentsec-ngfw.snmprec.bz2",
    "network/firewall/sangfor-ad1800-fp2.snmprec.bz2", "network/firewall/nsfocus-osms.snmprec.bz2",
    PALOALTO, ISILON, ARISTA, "os/linux/unknown-001.snmprec.bz2", "os/linux/unknown-002.snmprec.bz2",
    "os/linux/unknown-003.snmprec.bz2", "os/linux/unknown-004.snmprec.bz2", "os/linux/unknown-006.snmprec.bz2",
    "os/linux/unknown-007.snmprec.bz2", "os/linux/ibm-x3550-m3.snmprec.bz2", "os/linux/ibm-power-chrp.snmprec.bz2",
    "os/linux/slackware.snmprec.bz2", "os/windows/XP.snmprec.bz2", "os/windows/server-2003-5-2.snmprec.bz2",
    "camera/samsung-ipolis.snmprec.bz2", "camera/semac-ipcam-500.snmprec.bz2",
]
RAM_TYPE = "1.3.6.1.2.1.25.2.1.2"


def _expected_memory(rec: Recording) -> tuple[int | None, int | None]:
    """(total, used) bytes by the rule, straight from the recording: UCD when all its parts fit in its
    total, else the first RAM row that is not buffers or cache, less the buffers/cache rows, else
    hrMemorySize with no used figure."""
    def scalar(oid: str) -> int | None:
        entry = rec.get(oid)
        return entry.value if entry is not None and isinstance(entry.value, int) else None

    total, avail = scalar(f"{UCD_MEMORY}.5.0"), scalar(f"{UCD_MEMORY}.6.0")
    buffers, cached = scalar(f"{UCD_MEMORY}.14.0") or 0, scalar(f"{UCD_MEMORY}.15.0") or 0
    if total and avail is not None and all(0 <= v <= total for v in (avail, buffers, cached)) \
            and avail + buffers + cached <= total:
        return total * 1024, (total - avail - buffers - cached) * 1024
    descr = {i: e.value.decode("latin-1") for i, e in rec.column(f"{HR_STORAGE}.3").items()
             if isinstance(e.value, bytes)}
    ram = sorted((int(i) for i, e in rec.column(f"{HR_STORAGE}.2").items()
                  if e.value == RAM_TYPE and not any(w in descr.get(i, "").lower() for w in ("buffer", "cache"))))
    if ram:
        idx = str(ram[0])
        units = number(rec, f"{HR_STORAGE}.4.{idx}")
        used = number(rec, f"{HR_STORAGE}.6.{idx}") * units
        for other, text in descr.items():
            amount = rec.get(f"{HR_STORAGE}.6.{other}")
            part_units = rec.get(f"{HR_STORAGE}.4.{other}")
            if other != idx and ("buffer" in text.lower() or "cache" in text.lower()) and amount and part_units:
                assert isinstance(amount.value, int) and isinstance(part_units.value, int)
                used -= amount.value * part_units.value
        return number(rec, f"{HR_STORAGE}.5.{idx}") * units, used
    size = scalar("1.3.6.1.2.1.25.2.2.0")
    return (size * 1024 if size else total * 1024 if total else None), None


@pytest.mark.parametrize("relative", MEMORY_CORPUS)
def test_memory_of_every_recorded_host(relative: str) -> None:
    rec = recording(relative)
    tables, scalars = served(rec, [HOST_RESOURCES, UCD])
    _, figures = extract([HOST_RESOURCES, UCD], tables, scalars)
    assert (figures.memory_total_bytes, figures.memory_used_bytes) == _expected_memory(rec)
    if figures.memory_used_bytes is not None:
        assert figures.memory_total_bytes is not None
        assert 0 <= figures.memory_used_bytes <= figures.memory_total_bytes
    expected_aside = {("memory_implausible", "memCached"), ("storage_implausible", "hrStorage.37")} \
        if relative == ISILON else set()
    assert {(a.reason, a.subject) for a in figures.anomalies} == expected_aside  # healthy hosts are not flagged
