"""Tables snmpd does not serve (PDU outlets, VMs, sensors), served by a `pass_persist` script.

The script is plain Python run by the same interpreter (`sys.executable`). It answers snmpd's
pass_persist protocol (PING/PONG, get, getnext) from a JSON file of `{oid: [type, value]}` that it
re-reads whenever the file changes, so a test or the demo changes what the agent reports by
rewriting the file (atomically, with `write_values`). A value may also be an expression evaluated at
request time, so the demo's figures move on their own:

* `{"linear": {"start": 1000, "per_s": 2.5, "t0": 1700000000}}`: a counter growing with time;
* `{"sine": {"mean": 230, "amplitude": 40, "period_s": 300}}`: a power reading that varies.

Used by the tests, the demo and the profile-cost benchmark, so all three exercise the same agent.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = r'''
import json, math, os, sys, time

path, prefix = sys.argv[1], sys.argv[2].strip(".")
state = {"mtime": None, "keys": [], "values": {}}

def key(oid):
    return tuple(int(p) for p in oid.strip(".").split(".") if p)

def load():
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return
    if mtime == state["mtime"]:
        return
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return
    head = key(prefix)
    values = {key(o): v for o, v in data.items() if key(o)[: len(head)] == head}
    state.update(mtime=mtime, keys=sorted(values), values=values)

def evaluate(value):
    if isinstance(value, dict):
        now = time.time()
        if "linear" in value:
            p = value["linear"]
            return int(p.get("start", 0) + p.get("per_s", 0) * (now - p.get("t0", now)))
        if "sine" in value:
            p = value["sine"]
            phase = math.sin(2 * math.pi * now / p.get("period_s", 60))
            return int(round(p.get("mean", 0) + p.get("amplitude", 0) * phase))
    return value

def answer(k):
    kind, value = state["values"][k]
    text = str(evaluate(value)).replace("\n", " ")
    sys.stdout.write("." + ".".join(map(str, k)) + "\n" + kind + "\n" + text + "\n")

def main():
    import bisect
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        cmd = line.strip().lower()
        if cmd == "ping":
            sys.stdout.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = key(sys.stdin.readline())
            load()
            if cmd == "get":
                if oid in state["values"]:
                    answer(oid)
                else:
                    sys.stdout.write("NONE\n")
            else:
                keys = state["keys"]
                i = bisect.bisect_right(keys, oid)
                if i < len(keys):
                    answer(keys[i])
                else:
                    sys.stdout.write("NONE\n")
        elif cmd == "set":
            sys.stdin.readline()
            sys.stdin.readline()
            sys.stdout.write("not-writable\n")
        else:
            sys.stdout.write("NONE\n")
        sys.stdout.flush()

main()
'''

Values = Mapping[str, tuple[str, Any]]


def write_values(path: Path, values: Values) -> None:
    """Replace the served values atomically (the script never reads a half-written file)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({oid.strip("."): [kind, value] for oid, (kind, value) in values.items()}))
    os.replace(tmp, path)
    # Same-second rewrites must still be seen: make sure the mtime moves.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, max(st.st_mtime_ns, time.time_ns())))


@dataclass(frozen=True, slots=True)
class ScriptedTable:
    """A pass_persist script serving `prefix` from `data`; `registration` goes into SnmpdSpec.pass_persist."""

    prefix: str
    script: Path
    data: Path

    @property
    def registration(self) -> tuple[str, str]:
        return self.prefix, f"{sys.executable} {self.script} {self.data} {self.prefix}"

    def write(self, values: Values) -> None:
        write_values(self.data, values)


def scripted_table(workdir: Path, name: str, prefix: str, values: Values) -> ScriptedTable:
    """Write the script and its data file into `workdir` (paths without spaces: snmpd splits on them)."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "sitivmon_pass_persist.py"
    if not script.exists() or script.read_text() != SCRIPT:
        script.write_text(SCRIPT)
    table = ScriptedTable(prefix.strip("."), script, workdir / f"{name}.json")
    table.write(values)
    return table


# --- Demo and test tables -------------------------------------------------------------------------

APC_OUTLET = "1.3.6.1.4.1.318.1.1.26.9.4.3.1"
VMWARE_VM = "1.3.6.1.4.1.6876.2.1.1"
ENTITY_SENSOR = "1.3.6.1.2.1.99.1.1.1"
ENTITY_PHYSICAL = "1.3.6.1.2.1.47.1.1.1.1"  # entPhysicalEntry: names and classes of the sensors
ENTITY_NAME = f"{ENTITY_PHYSICAL}.7"
ENTITY_CLASS = f"{ENTITY_PHYSICAL}.5"
# NET-SNMP-MIB::netSnmpPlaypen, reserved for local experiments: the demo's NAS volume table lives here.
DEMO_NAS = "1.3.6.1.4.1.8072.9999.9999.1.1"


@dataclass(frozen=True, slots=True)
class Outlet:
    name: str
    watts: int | dict[str, Any]
    energy_tenth_kwh: int | dict[str, Any] | None = None  # None: this PDU has no energy counter
    current_tenth_a: int = 10


def pdu_values(outlets: Sequence[Outlet]) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    for i, o in enumerate(outlets, start=1):
        out[f"{APC_OUTLET}.1.{i}"] = ("integer", i)
        out[f"{APC_OUTLET}.3.{i}"] = ("string", o.name)
        out[f"{APC_OUTLET}.6.{i}"] = ("gauge", o.current_tenth_a)
        out[f"{APC_OUTLET}.7.{i}"] = ("gauge", o.watts)
        if o.energy_tenth_kwh is not None:
            out[f"{APC_OUTLET}.11.{i}"] = ("gauge", o.energy_tenth_kwh)
    return out


@dataclass(frozen=True, slots=True)
class Vm:
    name: str
    vcpus: int
    memory_mb: int
    state: str = "poweredOn"


def vm_values(vms: Sequence[Vm]) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    for i, vm in enumerate(vms, start=1):
        out[f"{VMWARE_VM}.2.{i}"] = ("string", vm.name)
        out[f"{VMWARE_VM}.5.{i}"] = ("integer", vm.memory_mb)
        out[f"{VMWARE_VM}.6.{i}"] = ("string", vm.state)
        out[f"{VMWARE_VM}.9.{i}"] = ("integer", vm.vcpus)
    return out


@dataclass(frozen=True, slots=True)
class Sensor:
    name: str
    kind: int  # entPhySensorType: 5 amperes, 6 watts, 8 celsius
    value: int | dict[str, Any]
    scale: int = 9  # units
    precision: int = 0
    status: int = 1
    entity_class: int = 8  # entPhysicalClass: 8 sensor, 6 powerSupply (only those count as consumption)


def sensor_values(
    sensors: Sequence[Sensor], first_index: int = 1000
) -> tuple[dict[str, tuple[str, Any]], dict[str, tuple[str, Any]]]:
    """(ENTITY-SENSOR-MIB values, ENTITY-MIB entPhysicalName and entPhysicalClass values): two subtrees,
    two registrations."""
    sens: dict[str, tuple[str, Any]] = {}
    names: dict[str, tuple[str, Any]] = {}
    for n, s in enumerate(sensors):
        i = first_index + n
        sens[f"{ENTITY_SENSOR}.1.{i}"] = ("integer", s.kind)
        sens[f"{ENTITY_SENSOR}.2.{i}"] = ("integer", s.scale)
        sens[f"{ENTITY_SENSOR}.3.{i}"] = ("integer", s.precision)
        sens[f"{ENTITY_SENSOR}.4.{i}"] = ("integer", s.value)
        sens[f"{ENTITY_SENSOR}.5.{i}"] = ("integer", s.status)
        names[f"{ENTITY_NAME}.{i}"] = ("string", s.name)
        names[f"{ENTITY_CLASS}.{i}"] = ("integer", s.entity_class)
    return sens, names


def nas_values(volumes: Sequence[tuple[str, int, int]]) -> dict[str, tuple[str, Any]]:
    """(path, size KiB, used KiB) rows of the demo NAS volume table (profile `demo_nas_volumes`)."""
    out: dict[str, tuple[str, Any]] = {}
    for i, (path, size, used) in enumerate(volumes, start=1):
        out[f"{DEMO_NAS}.2.{i}"] = ("string", path)
        out[f"{DEMO_NAS}.3.{i}"] = ("gauge", size)
        out[f"{DEMO_NAS}.4.{i}"] = ("gauge", used)
    return out


def demo_values(t0: float | None = None) -> dict[str, dict[str, tuple[str, Any]]]:
    """Moving figures for the demo: a PDU (one outlet per commune or two, one unnamed, one without an
    energy counter), a hypervisor's VMs (prefix-named, one unmatched), two power sensors."""
    start = int(t0 if t0 is not None else time.time())

    def energy(base: int, watts: int) -> dict[str, Any]:
        # tenths of kWh growing at `watts`: watts / 360000 tenths per second
        return {"linear": {"start": base, "per_s": watts / 360000, "t0": start}}

    def wave(mean: int, amplitude: int) -> dict[str, Any]:
        return {"sine": {"mean": mean, "amplitude": amplitude, "period_s": 300}}

    pdu = pdu_values(
        [
            Outlet("VEN-baie-1", wave(420, 60), energy(1204, 420)),
            Outlet("GIV-serveur-mairie", wave(310, 40), energy(877, 310)),
            Outlet("Vaulx-en-Velin NAS", wave(180, 20), energy(455, 180)),
            Outlet("SHARED-core-switch", 250, energy(3020, 250)),
            Outlet("spare-7", 35, None),
        ]
    )
    vms = vm_values(
        [
            Vm("VEN-web-01", 4, 8192),
            Vm("VEN-db-01", 8, 32768),
            Vm("GIV-etat-civil", 2, 4096),
            Vm("CORB-gestion", 2, 4096, "poweredOff"),
            Vm("SCH-urbanisme", 4, 16384),
            Vm("test-migration", 1, 2048),
        ]
    )
    sensors, names = sensor_values(
        [
            Sensor("PSU1 Pierre-Bénite", 6, wave(195, 15), entity_class=6),
            Sensor("PSU2 Rive-de-Gier", 6, 2105, precision=1, entity_class=6),
            Sensor("Inlet temperature", 8, 235, precision=1),
        ]
    )
    tib = 2**30  # KiB in a TiB
    nas = nas_values(
        [
            ("/volume1/venissieux", 2 * tib, 1_234_567_890),
            ("/volume1/givors", tib, 402_653_184),
            ("/volume1/Saint-Chamond", tib, 157_286_400),
            ("/volume1/partage", 2 * tib, 987_654_321),
            ("/volume1/old-backup", tib, 536_870_912),
        ]
    )
    return {"pdu": pdu, "vms": vms, "sensors": sensors, "entity_names": names, "nas": nas}


DEMO_PREFIXES = {
    "pdu": APC_OUTLET, "vms": VMWARE_VM, "sensors": ENTITY_SENSOR, "entity_names": ENTITY_PHYSICAL, "nas": DEMO_NAS,
}

# Config for the demo target (add to the demo's YAML; `{port}` is the snmpd port, `{profiles_dir}` the
# absolute path of config/profiles). Every figure it shows is attributed by one of these rules, except
# what is deliberately left unmatched (spare-7, test-migration, Inlet temperature, old-backup) so that
# sitivmon_unattributed_series has something to say.
DEMO_CONFIG_YAML = """\
profile_files:
  - {profiles_dir}/apc_pdu_outlets.yaml
  - {profiles_dir}/vm_inventory.yaml
profiles:
  demo_nas_volumes:
    description: Demo NAS volumes (scripted table under NET-SNMP-MIB netSnmpPlaypen)
    resource: storage
    columns:
      - {{name: volumeName, oid: 1.3.6.1.4.1.8072.9999.9999.1.1.2, type: info, measure: name}}
      - {{name: volumeSizeKiB, oid: 1.3.6.1.4.1.8072.9999.9999.1.1.3, type: gauge, scale: 1024,
         measure: storage_size_bytes}}
      - {{name: volumeUsedKiB, oid: 1.3.6.1.4.1.8072.9999.9999.1.1.4, type: gauge, scale: 1024,
         measure: storage_used_bytes}}
attribution:
  storage:
    - {{equals: /, commune: shared}}
    - {{equals: /volume1/partage, commune: shared}}
    - {{match: '^/(?:srv|volume1)/(?P<commune>[^/]+)'}}
  vm: {{VEN-: venissieux, GIV-: givors, CORB-: corbas, SCH-: saint-chamond}}
  outlet:
    - {{prefix: VEN-, commune: venissieux}}
    - {{prefix: GIV-, commune: givors}}
    - {{prefix: SHARED-, commune: shared}}
    - {{match: '^(?P<commune>.+) NAS$'}}
  sensor:
    - {{match: '^PSU\\d (?P<commune>.+)$'}}
targets:
  - name: dc-demo
    address: 127.0.0.1:{port}
    credentials: {credentials}
    profiles: [host_resources, ucd, entity_sensors, apc_pdu_outlets, vm_inventory, demo_nas_volumes]
"""


def demo_tables(workdir: Path, t0: float | None = None) -> list[ScriptedTable]:
    """Write the demo's scripted tables; pass `[t.registration for t in ...]` as SnmpdSpec.pass_persist."""
    return [
        scripted_table(workdir, name, DEMO_PREFIXES[name], values) for name, values in demo_values(t0).items()
    ]


def registrations(tables: Iterable[ScriptedTable]) -> list[tuple[str, str]]:
    return [t.registration for t in tables]
