"""Built-in profiles. Numeric OIDs only: no MIB files are needed on the machine."""

from __future__ import annotations

from sitivmon.profiles.model import Column, Kind, Profile, Scalar

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

BUILTIN_PROFILES: dict[str, Profile] = {p.name: p for p in (INTERFACES,)}
