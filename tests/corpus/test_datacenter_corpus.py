"""Memory and power of real devices, served by snmpsim from snmpsim-data recordings, polled by sitivmon.

What sitivmon shows is checked against the recording itself (read with tests/support/snmprec.py), never
against sitivmon's own output. Issue 10, symptom 9: the Arista (host_resources and ucd, no UCD memory
objects) and the Isilon (memCached 32 x memTotalReal) must show HOST-RESOURCES' memory; symptom 12: the
Arista's 18 transceiver RX/TX levels (ENTITY-SENSOR watts, milli) are shown but never counted as power
or energy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sitivmon.app.config import load_config
from sitivmon.config.profiles import profile_lookup
from sitivmon.datacenter.handler import DatacenterHandler
from sitivmon.engine.poll import poll_target
from sitivmon.exposition import LabelCache, render
from sitivmon.monitor import Monitor
from sitivmon.snmp.gufo import gufo_factory
from tests.datacenter.conftest import COMMUNES
from tests.datacenter.recordings import (
    ARISTA,
    ENT_PHYSICAL,
    ENT_SENSOR,
    HR_STORAGE,
    ISILON,
    PALOALTO,
    number,
    octets,
    path_of,
)
from tests.support import snmpsim
from tests.support.snmprec import Recording

REPO = Path(__file__).resolve().parents[2]
APC_PDU = "UPS/apc-8641.snmprec"  # AP8641 metered-by-outlet PDU: the shipped apc_pdu_outlets profile
APC_OUTLET = "1.3.6.1.4.1.318.1.1.26.9.4.3.1"  # PowerNet-MIB rPDU2OutletMeteredStatusEntry
DEVICES = {"arista": ARISTA, "isilon": ISILON, "paloalto": PALOALTO, "pdu": APC_PDU}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def sim() -> Iterator[snmpsim.Simulator]:
    with snmpsim.serve({name: path_of(rel) for name, rel in DEVICES.items()}) as served:
        yield served


@pytest.fixture(scope="module")
def config_path(sim: snmpsim.Simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "sitivmon.yaml"
    path.write_text(
        COMMUNES
        + "credentials:\n"
        + "".join(f"  {name}: {{version: 2c, community: {name}}}\n" for name in DEVICES)
        + f"profile_files: [{REPO / 'config' / 'profiles' / 'apc_pdu_outlets.yaml'}]\n"
        + f"""targets:
  - {{name: arista, address: "{sim.address}", credentials: arista, commune: venissieux,
     profiles: [host_resources, ucd, entity_sensors]}}
  - {{name: isilon, address: "{sim.address}", credentials: isilon, profiles: [host_resources, ucd]}}
  - {{name: paloalto, address: "{sim.address}", credentials: paloalto, profiles: [entity_sensors]}}
  - {{name: pdu, address: "{sim.address}", credentials: pdu, profiles: [apc_pdu_outlets]}}
attribution:
  outlet:
    - {{prefix: SRV-OPSHOST, commune: venissieux}}
    - {{prefix: SW-, commune: shared}}
"""
    )
    return path


def _sitivmon_poll(config: Path, target: str) -> Samples:
    done = subprocess.run(
        [sys.executable, "-m", "sitivmon", "poll", "--config", str(config), "--target", target, "--samples", "2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["error"] is None
    return _parse("".join(f"{line}\n" for line in report["polls"][-1]["datacenter_samples"]))


def _parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _of(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def _hr(rec: Recording, descr: str, column: int) -> int:
    (idx,) = [i for i, e in rec.column(f"{HR_STORAGE}.3").items()
              if isinstance(e.value, bytes) and e.value.decode("ascii") == descr]
    return number(rec, f"{HR_STORAGE}.{column}.{idx}")


@pytest.fixture(scope="module")
def arista(config_path: Path) -> Samples:
    return _sitivmon_poll(config_path, "arista")


LAB = (("commune", "venissieux"), ("target", "arista"))


def test_arista_memory_from_host_resources(arista: Samples) -> None:
    rec = Recording(path_of(ARISTA))
    units = _hr(rec, "RAM", 4)
    assert _of(arista, "sitivmon_host_memory_total_bytes") == {LAB: _hr(rec, "RAM", 5) * units}
    used = (_hr(rec, "RAM", 6) - _hr(rec, "RAM (Buffers)", 6) - _hr(rec, "RAM (Cache)", 6)) * units
    assert _of(arista, "sitivmon_host_memory_used_bytes") == {LAB: used}


def test_arista_optical_levels_are_not_power(arista: Samples) -> None:
    rec = Recording(path_of(ARISTA))
    samples, lab = arista, LAB
    assert _of(samples, "sitivmon_power_watts") == {}  # no power supply of this switch reports watts
    assert _of(samples, "sitivmon_energy_joules_total") == {}
    expected = {}
    for idx, entry in rec.column(f"{ENT_SENSOR}.1").items():
        if entry.value != 6:  # watts
            continue
        exponent = 3 * (number(rec, f"{ENT_SENSOR}.2.{idx}") - 9) - number(rec, f"{ENT_SENSOR}.3.{idx}")
        name = octets(rec, f"{ENT_PHYSICAL}.2.{idx}")  # entPhysicalName is empty on this agent
        expected[(*lab[:1], ("sensor", name), *lab[1:])] = float(
            Decimal(number(rec, f"{ENT_SENSOR}.4.{idx}")).scaleb(exponent)
        )
    assert len(expected) == 18
    assert _of(samples, "sitivmon_sensor_watts") == expected


def test_isilon_memory_falls_back_to_host_resources(config_path: Path) -> None:
    rec = Recording(path_of(ISILON))
    samples = _sitivmon_poll(config_path, "isilon")
    units = _hr(rec, "Physical memory", 4)
    lab = (("commune", "shared"), ("target", "isilon"))
    total = _of(samples, "sitivmon_host_memory_total_bytes")[lab]
    used = _of(samples, "sitivmon_host_memory_used_bytes")[lab]
    assert (total, used) == (_hr(rec, "Physical memory", 5) * units, _hr(rec, "Physical memory", 6) * units)
    assert used / total > 0.97
    storage = {dict(k)["storage"] for k in _of(samples, "sitivmon_host_storage_used_bytes")}
    assert "/ifs" not in storage and "/" in storage  # /ifs: used above its 32-bit-truncated size


def test_paloalto_temperatures_named_by_entity(config_path: Path) -> None:
    rec = Recording(path_of(PALOALTO))
    samples = _sitivmon_poll(config_path, "paloalto")
    expected = {}
    for idx, entry in rec.column(f"{ENT_SENSOR}.1").items():
        if entry.value == 8:  # celsius
            exponent = 3 * (number(rec, f"{ENT_SENSOR}.2.{idx}") - 9) - number(rec, f"{ENT_SENSOR}.3.{idx}")
            expected[octets(rec, f"{ENT_PHYSICAL}.7.{idx}")] = float(
                Decimal(number(rec, f"{ENT_SENSOR}.4.{idx}")).scaleb(exponent)
            )
    got = {dict(k)["sensor"]: v for k, v in _of(samples, "sitivmon_temperature_celsius").items()}
    assert expected and got == expected


async def test_anomalies_reach_the_daemon_metrics(config_path: Path) -> None:
    """The Monitor with the real gufo client, as the daemon polls: what is set aside is counted."""
    config = load_config(config_path)
    monitor = Monitor(config, handlers=[DatacenterHandler(config, config.attribution, base_dir=config_path.parent)])
    lookup = profile_lookup(config, config_path.parent)
    for target in config.targets:
        settings = config.poll_settings(target)
        client = gufo_factory(target, config.credentials[target.credentials], settings)
        try:
            poll = await poll_target(
                client, target.name, [lookup(p) for p in target.profiles], version="2c",
                deadline_s=settings.interval, max_varbinds=settings.max_varbinds,
            )
        finally:
            await client.close()
        assert poll.ok, poll.error
        monitor.on_poll(target, poll)
    samples = _parse(render(monitor, LabelCache()))
    anomalies = {tuple(sorted(dict(k).items())): v for k, v in _of(samples, "sitivmon_device_anomalies_total").items()}
    assert anomalies.get((("reason", "memory_implausible"), ("target", "isilon"))) == 1  # memCached
    assert anomalies.get((("reason", "storage_implausible"), ("target", "isilon"))) == 1  # /ifs
    # nothing set aside on healthy devices; objects a profile asks for and the device lacks are counted apart
    # (the Arista has no UCD memory objects: missing_object, and its memory comes from HOST-RESOURCES)
    assert not any(dict(k)["target"] in ("arista", "paloalto", "pdu") and dict(k)["reason"] != "missing_object"
                   for k in anomalies), anomalies
    assert anomalies.get((("reason", "missing_object"), ("target", "arista")), 0) >= 1
    # commune power is the PDU's outlets and nothing else: the Arista's 18 optical levels add nothing
    rec = Recording(path_of(APC_PDU))
    expected: dict[str, float] = dict.fromkeys(["unattributed", "shared", *(c.id for c in config.communes)], 0.0)
    for idx, entry in rec.column(f"{APC_OUTLET}.3").items():
        assert isinstance(entry.value, bytes)
        expected[_outlet_commune(entry.value.decode("ascii"))] += number(rec, f"{APC_OUTLET}.7.{idx}")
    power = {dict(k)["commune"]: v for k, v in _of(samples, "sitivmon_commune_power_watts").items()}
    assert power == expected and expected["venissieux"] > 0


def _outlet_commune(name: str) -> str:
    """The test config's attribution rules, applied by hand."""
    return "venissieux" if name.startswith("SRV-OPSHOST") else "shared" if name.startswith("SW-") else "unattributed"


def test_pdu_outlets_are_power_and_energy(config_path: Path) -> None:
    """Outlets do count: every outlet's power, current and commune as the recording and the rules say."""
    rec = Recording(path_of(APC_PDU))
    outlet = APC_OUTLET
    samples = _sitivmon_poll(config_path, "pdu")
    names = {i: e.value.decode("ascii") for i, e in rec.column(f"{outlet}.3").items() if isinstance(e.value, bytes)}
    assert len(names) == 24

    power = {(("commune", _outlet_commune(n)), ("outlet", n), ("target", "pdu")): float(number(rec, f"{outlet}.7.{i}"))
             for i, n in names.items()}
    assert _of(samples, "sitivmon_power_watts") == power
    current = {k: number(rec, f"{outlet}.6.{i}") / 10 for k, i in zip(power, names, strict=True)}
    assert _of(samples, "sitivmon_current_amperes") == current
    # the recorded energy counters do not move: two polls add nothing, and every outlet has its series
    assert _of(samples, "sitivmon_energy_joules_total") == dict.fromkeys(power, 0.0)
