"""Built-in profiles. Numeric OIDs only: no MIB files are needed on the machine."""

from __future__ import annotations

from decimal import Decimal

from sitivmon.profiles.model import Column, IndexPart, Kind, Lookup, Profile, Scalar

SYS_UPTIME = Scalar("sysUpTime", "1.3.6.1.2.1.1.3.0", Kind.GAUGE)

_IF = "1.3.6.1.2.1.2.2.1"
_IFX = "1.3.6.1.2.1.31.1.1.1"
_STATUS = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}

INTERFACES = Profile(
    name="interfaces",
    description="IF-MIB ifTable and ifXTable: traffic, packets, errors, discards, state, speed",
    scalars=(SYS_UPTIME,),
    columns=(
        Column("ifDescr", f"{_IF}.2", Kind.INFO),
        Column("ifSpeed", f"{_IF}.5", Kind.GAUGE),
        Column("ifAdminStatus", f"{_IF}.7", Kind.ENUM, enum=_STATUS),
        Column("ifOperStatus", f"{_IF}.8", Kind.ENUM, enum=_STATUS),
        Column("ifLastChange", f"{_IF}.9", Kind.GAUGE),
        Column("ifInOctets", f"{_IF}.10", Kind.COUNTER),
        Column("ifInUcastPkts", f"{_IF}.11", Kind.COUNTER),
        Column("ifInNUcastPkts", f"{_IF}.12", Kind.COUNTER),
        Column("ifInDiscards", f"{_IF}.13", Kind.COUNTER),
        Column("ifInErrors", f"{_IF}.14", Kind.COUNTER),
        Column("ifOutOctets", f"{_IF}.16", Kind.COUNTER),
        Column("ifOutUcastPkts", f"{_IF}.17", Kind.COUNTER),
        Column("ifOutNUcastPkts", f"{_IF}.18", Kind.COUNTER),
        Column("ifOutDiscards", f"{_IF}.19", Kind.COUNTER),
        Column("ifOutErrors", f"{_IF}.20", Kind.COUNTER),
        Column("ifName", f"{_IFX}.1", Kind.INFO),
        Column("ifHCInOctets", f"{_IFX}.6", Kind.COUNTER, needs_v2=True),
        Column("ifHCInUcastPkts", f"{_IFX}.7", Kind.COUNTER, needs_v2=True),
        Column("ifHCInMulticastPkts", f"{_IFX}.8", Kind.COUNTER, needs_v2=True),
        Column("ifHCInBroadcastPkts", f"{_IFX}.9", Kind.COUNTER, needs_v2=True),
        Column("ifHCOutOctets", f"{_IFX}.10", Kind.COUNTER, needs_v2=True),
        Column("ifHCOutUcastPkts", f"{_IFX}.11", Kind.COUNTER, needs_v2=True),
        Column("ifHCOutMulticastPkts", f"{_IFX}.12", Kind.COUNTER, needs_v2=True),
        Column("ifHCOutBroadcastPkts", f"{_IFX}.13", Kind.COUNTER, needs_v2=True),
        Column("ifHighSpeed", f"{_IFX}.15", Kind.GAUGE),
        Column("ifAlias", f"{_IFX}.18", Kind.INFO),
        Column("ifCounterDiscontinuityTime", f"{_IFX}.19", Kind.GAUGE),
    ),
)

_HR = "1.3.6.1.2.1.25"
HR_STORAGE_TYPES = {
    "1.3.6.1.2.1.25.2.1.1": "other",
    "1.3.6.1.2.1.25.2.1.2": "ram",
    "1.3.6.1.2.1.25.2.1.3": "virtualMemory",
    "1.3.6.1.2.1.25.2.1.4": "fixedDisk",
    "1.3.6.1.2.1.25.2.1.5": "removableDisk",
    "1.3.6.1.2.1.25.2.1.6": "floppyDisk",
    "1.3.6.1.2.1.25.2.1.7": "compactDisc",
    "1.3.6.1.2.1.25.2.1.8": "ramDisk",
    "1.3.6.1.2.1.25.2.1.9": "flashMemory",
    "1.3.6.1.2.1.25.2.1.10": "networkDisk",
}

HOST_RESOURCES = Profile(
    name="host_resources",
    description="HOST-RESOURCES-MIB: hrStorageTable, hrProcessorLoad, hrSystemUptime, hrSystemProcesses",
    family="host_resources",
    resource="storage",
    scalars=(
        Scalar("hrSystemUptime", f"{_HR}.1.1.0", Kind.GAUGE),
        Scalar("hrSystemProcesses", f"{_HR}.1.6.0", Kind.GAUGE),
        Scalar("hrMemorySize", f"{_HR}.2.2.0", Kind.GAUGE),
    ),
    columns=(
        Column("hrStorageType", f"{_HR}.2.3.1.2", Kind.INFO),
        Column("hrStorageDescr", f"{_HR}.2.3.1.3", Kind.INFO, measure="name"),
        Column("hrStorageAllocationUnits", f"{_HR}.2.3.1.4", Kind.GAUGE),
        Column("hrStorageSize", f"{_HR}.2.3.1.5", Kind.GAUGE),
        Column("hrStorageUsed", f"{_HR}.2.3.1.6", Kind.GAUGE),
        Column("hrProcessorLoad", f"{_HR}.3.3.1.2", Kind.GAUGE, scale=Decimal("0.01")),
    ),
)

_UCD = "1.3.6.1.4.1.2021"
UCD = Profile(
    name="ucd",
    description="UCD-SNMP-MIB: memory (memTotalReal...), load averages (laTable), disks (dskTable)",
    family="ucd",
    resource="storage",
    scalars=(
        Scalar("memTotalSwap", f"{_UCD}.4.3.0", Kind.GAUGE),
        Scalar("memAvailSwap", f"{_UCD}.4.4.0", Kind.GAUGE),
        Scalar("memTotalReal", f"{_UCD}.4.5.0", Kind.GAUGE),
        Scalar("memAvailReal", f"{_UCD}.4.6.0", Kind.GAUGE),
        Scalar("memShared", f"{_UCD}.4.13.0", Kind.GAUGE),
        Scalar("memBuffer", f"{_UCD}.4.14.0", Kind.GAUGE),
        Scalar("memCached", f"{_UCD}.4.15.0", Kind.GAUGE),
    ),
    columns=(
        Column("laNames", f"{_UCD}.10.1.2", Kind.INFO),
        Column("laLoadInt", f"{_UCD}.10.1.5", Kind.GAUGE, scale=Decimal("0.01")),
        Column("dskPath", f"{_UCD}.9.1.2", Kind.INFO, measure="name"),
        Column("dskDevice", f"{_UCD}.9.1.3", Kind.INFO),
        Column("dskTotalLow", f"{_UCD}.9.1.11", Kind.GAUGE),
        Column("dskTotalHigh", f"{_UCD}.9.1.12", Kind.GAUGE),
        Column("dskAvailLow", f"{_UCD}.9.1.13", Kind.GAUGE),
        Column("dskAvailHigh", f"{_UCD}.9.1.14", Kind.GAUGE),
        Column("dskUsedLow", f"{_UCD}.9.1.15", Kind.GAUGE),
        Column("dskUsedHigh", f"{_UCD}.9.1.16", Kind.GAUGE),
    ),
)

_SENSOR = "1.3.6.1.2.1.99.1.1.1"
SENSOR_TYPES = {
    1: "other", 2: "unknown", 3: "voltsAC", 4: "voltsDC", 5: "amperes", 6: "watts", 7: "hertz", 8: "celsius",
    9: "percentRH", 10: "rpm", 11: "cmm", 12: "truthvalue",
}
SENSOR_STATUS = {1: "ok", 2: "unavailable", 3: "nonoperational"}
_PHYSICAL = "1.3.6.1.2.1.47.1.1.1.1"
# ENTITY-MIB PhysicalClass (RFC 6933 added energyObject, battery, storageDrive).
PHYSICAL_CLASSES = {
    1: "other", 2: "unknown", 3: "chassis", 4: "backplane", 5: "container", 6: "powerSupply", 7: "fan", 8: "sensor",
    9: "module", 10: "port", 11: "stack", 12: "cpu", 13: "energyObject", 14: "battery", 15: "storageDrive",
}
# entPhysicalClass and entPhysicalContainedIn tell a power supply's input power from a transceiver's
# optical level (both are ENTITY-SENSOR watts); entPhysicalDescr names sensors whose entPhysicalName is
# empty (Arista leaves every name empty).
ENTITY_SENSORS = Profile(
    name="entity_sensors",
    description="ENTITY-SENSOR-MIB entPhySensorTable (power, temperature, current) named by entPhysicalName, "
    "classified by the ENTITY-MIB containment tree",
    family="entity_sensors",
    resource="sensor",
    columns=(
        Column("entPhySensorType", f"{_SENSOR}.1", Kind.ENUM, enum=SENSOR_TYPES),
        Column("entPhySensorScale", f"{_SENSOR}.2", Kind.GAUGE),
        Column("entPhySensorPrecision", f"{_SENSOR}.3", Kind.GAUGE),
        Column("entPhySensorValue", f"{_SENSOR}.4", Kind.GAUGE),
        Column("entPhySensorOperStatus", f"{_SENSOR}.5", Kind.ENUM, enum=SENSOR_STATUS),
        Column("entPhysicalDescr", f"{_PHYSICAL}.2", Kind.INFO),
        Column("entPhysicalContainedIn", f"{_PHYSICAL}.4", Kind.GAUGE),
        Column("entPhysicalClass", f"{_PHYSICAL}.5", Kind.ENUM, enum=PHYSICAL_CLASSES),
        Column("entPhysicalName", f"{_PHYSICAL}.7", Kind.INFO),
    ),
    indexes=(IndexPart("entPhysicalIndex"),),
    lookups=(Lookup("sensor", "entPhysicalName"),),
)

BUILTIN_PROFILES: dict[str, Profile] = {p.name: p for p in (INTERFACES, HOST_RESOURCES, UCD, ENTITY_SENSORS)}
