"""Real devices: `sitivmon poll` against snmpsim serving recordings from the snmpsim-data package.

One simulator serves every recording (community = recording name); one config has a target per
recording with links on up to four of its interfaces, selected by index, ifName, ifDescr and ifAlias
(odd speed columns first). Each target is polled twice by the real CLI (`python -m sitivmon poll`)
and what it prints is checked against the recording itself (tests/corpus/reference.py): interface
selection, speed, admin/oper status, the raw counters and which column (HC or 32-bit) they came from,
zero deltas on a recording that does not move, hrStorage sizes and use, and memory where the
recording has it. Every recording passes: the issue-10 symptoms they showed are fixed, each with its
check here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.reference import (
    SENSOR_CELSIUS,
    SENSOR_WATTS,
    Device,
    Pick,
    ascii_text,
    sensor_values,
    transceiver_sensors,
)
from tests.support import agents, snmpsim

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Case:
    community: str
    path: str  # under snmpsim_data/data, without extension
    vendor: str
    profiles: tuple[str, ...] = ("interfaces",)


HOST = ("interfaces", "host_resources")
HOST_UCD = ("interfaces", "host_resources", "ucd")
CORPUS = (
    Case("cisco-c3560", "network/switch/cisco-c3560", "Cisco IOS"),
    Case("cisco-n5000", "network/switch/cisco-n5000", "Cisco NX-OS"),
    Case("cisco-ucs-6100", "network/appliance/cisco-ucs-6100", "Cisco UCS 6100 (2.6 MB, 368 ports)"),
    Case("juniper-mx960-13", "network/router/juniper-mx960-13-3r9-13", "Juniper MX960", HOST),
    Case("arista-7150s", "cloud/arista-dcs-7150s-52-cl", "Arista", (*HOST_UCD, "entity_sensors")),
    Case("hpe-procurve", "network/switch/hpe-procurve-516733-b21", "HPE ProCurve"),
    Case("hp-onboard-admin", "bmc/hp-onboard-administrator", "HP Onboard Administrator", ("interfaces", "ucd")),
    Case("aruba-7210", "network/wifi/aruba-7210", "Aruba"),
    Case("dlink-des3038", "network/switch/dlink-des3038", "D-Link DES-3038"),
    Case("dlink-des3200", "network/switch/dlink-des3200", "D-Link DES-3200"),
    Case("huawei-s5720", "network/router/huawei-s5720", "Huawei S5720"),
    Case("huawei-acu2", "network/router/huawei-acu2", "Huawei ACU2 (8 MB, largest)"),
    Case("h3c-e528", "network/switch/h3c-e528-1", "H3C"),
    Case("netapp-fas3270", "storage/netapp-fas3270", "NetApp FAS3270"),
    Case("netapp-ontap", "storage/netapp-ontap-8-2-3", "NetApp ONTAP 8.2.3"),
    Case("isilon-onefs", "storage/isilon-onefs", "Isilon OneFS", HOST_UCD),
    Case("windows-xp", "os/windows/XP", "Windows XP", HOST),
    Case("windows-2003", "os/windows/server-2003-5-2", "Windows Server 2003", HOST),
    Case("linux-netsnmp", "os/linux/unknown-002", "Linux (net-snmp)", HOST_UCD),
    Case("brocade-icx6430", "network/switch/brocade-icx6430-24", "Brocade ICX"),
    Case("zte-zxr10-5250", "network/switch/zte-zxr10-5250", "ZTE ZXR10"),
    Case("ruijie-s5750", "network/switch/ruijie-s5750-24gt12sfp", "Ruijie"),
    Case("fortinet-xcu", "network/firewall/fortinet-xcu", "Fortinet"),
    Case("paloalto-pa5000", "network/firewall/paloalto-pa-5000", "Palo Alto", (*HOST, "entity_sensors")),
    Case("venus-vsos", "network/firewall/venus-vsos-v0600r0705b20180507", "Venus (HC as Counter32)"),
    Case("metel-poe", "network/switch/metel-poe-box", "Metel PoE (HC as Counter32)"),
    Case("eaton-93e", "UPS/eaton-93e-80", "Eaton UPS"),
    Case("apc-8641", "UPS/apc-8641", "APC UPS"),
)  # fmt: skip
BIG = frozenset({"huawei-acu2"})


@dataclass(slots=True)
class Polled:
    device: Device
    picks: list[Pick]
    report: dict[str, Any]
    stderr: str


def _selector(pick: Pick) -> dict[str, Any]:
    return {pick.key: pick.wanted}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Polled]]:
    paths = {c.community: snmpsim.recording(c.path) for c in CORPUS}
    devices = {name: Device(path) for name, path in paths.items()}
    work = tmp_path_factory.mktemp("corpus")
    # The largest recording gets a simulator of its own, indexed on the other core meanwhile.
    groups = [{n: p for n, p in paths.items() if (n in BIG) == big} for big in (True, False)]
    with snmpsim.serve_groups(groups) as sims:
        doc = agents.base_config(work / "state", interval="60s", timeout="5s", retries=1)
        picks: dict[str, list[Pick]] = {}
        for case in CORPUS:
            agents.add_target(
                doc, case.community, sims[case.community].address, case.community,
                {"version": "2c", "community": case.community}, profiles=list(case.profiles),
            )
            picks[case.community] = devices[case.community].picks()
            for n, pick in enumerate(picks[case.community]):
                doc["links"].append(
                    {
                        "id": f"{case.community}-{n}", "commune": "givors", "target": case.community,
                        "interface": _selector(pick),
                    }
                )
        config = agents.write_config(work / "corpus.yaml", doc)

        def poll(name: str) -> tuple[str, subprocess.CompletedProcess[str]]:
            argv = [sys.executable, "-m", "sitivmon", "poll", "--config", str(config), "--target", name]
            return name, subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)

        with ThreadPoolExecutor(8) as pool:  # each poll mostly waits (2 s between its samples)
            done = dict(pool.map(poll, [c.community for c in CORPUS]))
    out: dict[str, Polled] = {}
    for name, proc in done.items():
        assert proc.stdout, f"{name}: sitivmon poll printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
        out[name] = Polled(devices[name], picks[name], json.loads(proc.stdout), proc.stderr)
    yield out


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


_SAMPLE = re.compile(r'^(?P<name>\w+)\{(?P<labels>.*)\} (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(entry: dict[str, Any], family: str) -> dict[str, float]:
    """{first non-target label value: value} of one metric family in a poll's datacenter samples."""
    out: dict[str, float] = {}
    for line in entry["datacenter_samples"]:
        m = _SAMPLE.match(line)
        if m is None or m.group("name") != family:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group("labels"))}
        key = next((v for k, v in labels.items() if k not in ("target", "commune")), "")
        out[key] = float(m.group("value"))
    return out


def samples_all(entry: dict[str, Any], family: str) -> list[float]:
    """Every value of one metric family in a poll's datacenter samples."""
    out = []
    for line in entry["datacenter_samples"]:
        m = _SAMPLE.match(line)
        if m is not None and m.group("name") == family:
            out.append(float(m.group("value")))
    return out


IDS = [c.community for c in CORPUS]
OCTETS = (("in_octets", "ifHCInOctets", "ifInOctets"), ("out_octets", "ifHCOutOctets", "ifOutOctets"))


@pytest.mark.parametrize("name", IDS)
def test_interfaces_as_recorded(corpus: dict[str, Polled], name: str) -> None:
    got = corpus[name]
    dev, report = got.device, got.report
    assert report["error"] is None, report["error"]
    assert got.picks, f"{name}: the recording has no interface"
    first, second = report["polls"]
    for poll in (first, second):
        links = {lk["link"]: lk for lk in poll["links"]}
        for n, pick in enumerate(got.picks):
            lk = links[f"{name}-{n}"]
            idx = pick.index
            assert lk["resolve_error"] is None and lk["if_index"] == idx, (pick, lk["resolve_error"])
            # The interface's label (ifName, else ifDescr, else the index) and alias, where ASCII.
            if_name, descr = dev.value("ifName", idx), dev.value("ifDescr", idx)
            label = if_name if isinstance(if_name, bytes) and if_name.strip(b"\0") else descr
            if isinstance(label, bytes) and ascii_text(label) is not None:
                assert lk["interface"] == ascii_text(label)
            alias = dev.value("ifAlias", idx)
            if ascii_text(alias) is not None or alias in (None, b""):
                assert lk["alias"] == (ascii_text(alias) or "")
            # Status as the recording has it (RFC 2863: 1 up; every other oper status is not up).
            oper, admin = dev.value("ifOperStatus", idx), dev.value("ifAdminStatus", idx)
            assert lk["state"] == ("unknown" if oper is None else "up" if oper == 1 else "down")
            assert lk["admin_up"] == (None if admin is None else admin == 1)
            # Speed: one of the recording's honest readings, or none when it has none.
            readings = dev.speed_readings(idx)
            if readings:
                assert lk["port_speed_bytes_per_s"] in readings, (idx, readings, lk["port_speed_bytes_per_s"])
            else:
                assert lk["port_speed_bytes_per_s"] is None, (idx, lk["port_speed_bytes_per_s"])
            # Counters: what the agent serves, from the HC column when it has one.
            for raw, hc, low in OCTETS:
                expected = dev.counter(hc, low, idx)
                if dev.moving(hc, idx) or dev.moving(low, idx):
                    continue  # a variation module moves it: see test_moving_counters
                counters = lk["raw_counters"] or {}
                seen = counters.get(raw)
                assert (None if seen is None else (seen["value"], seen["bits"])) == expected, (idx, raw)
            for raw, column in (("in_errors", "ifInErrors"), ("out_errors", "ifOutErrors")):
                value = dev.value(column, idx)
                if isinstance(value, int) and not dev.moving(column, idx):
                    assert (lk["raw_counters"] or {}).get(raw) == {"value": value, "bits": 32}
    # A recording does not move: the second poll counts nothing (and no reset or clamp invents traffic).
    for lk in second["links"]:
        idx = lk["if_index"]
        if not any(dev.moving(c, idx) for c in ("ifHCInOctets", "ifHCOutOctets", "ifInOctets", "ifOutOctets")):
            assert lk["delta_since_previous"] is not None
            assert lk["delta_since_previous"]["receive_bytes"] == 0
            assert lk["delta_since_previous"]["transmit_bytes"] == 0


HOSTS = [c.community for c in CORPUS if "host_resources" in c.profiles]


@pytest.mark.parametrize("name", HOSTS)
def test_storage_as_recorded(corpus: dict[str, Polled], name: str) -> None:
    got = corpus[name]
    expected = got.device.storage()
    assert expected, f"{name}: no hrStorage rows in the recording"
    entry = got.report["polls"][-1]
    size = samples(entry, "sitivmon_host_storage_size_bytes")
    used = samples(entry, "sitivmon_host_storage_used_bytes")
    for descr, (s, u) in expected.items():
        if u > s:  # more used than the size (the Isilon's /ifs: a size cut at 32 bits): set aside, not billed
            assert descr not in used and descr not in size, (descr, used.get(descr), size.get(descr))
            continue
        assert size.get(descr) == s, (descr, size.get(descr), s)
        assert used.get(descr) == u, (descr, used.get(descr), u)


MEMORY = [c.community for c in CORPUS if {"host_resources", "ucd"} & set(c.profiles)]


@pytest.mark.parametrize("name", MEMORY)
def test_memory_from_a_source_that_has_it(corpus: dict[str, Polled], name: str) -> None:
    got = corpus[name]
    totals = got.device.memory_totals()
    entry = got.report["polls"][-1]
    total = samples(entry, "sitivmon_host_memory_total_bytes")
    used = samples(entry, "sitivmon_host_memory_used_bytes")
    if not totals:
        assert not total, f"{name}: memory total {total} from a recording without memory objects"
        return
    assert total.get("") in totals, (total, totals)
    if used or got.device.memory_used_known():
        assert 0 < used.get("", 0) <= total[""], (used, total)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("dlink-des3038", "if_high_speed_implausible"), ("netapp-fas3270", "speed_lower_bound"),
     ("netapp-ontap", "speed_lower_bound")],
)  # fmt: skip
def test_speed_units_and_saturation(corpus: dict[str, Polled], name: str, reason: str) -> None:
    """Issue 10 symptom 8: D-Link DES-3038 serves ifHighSpeed in bit/s (100000000 for a 100 Mbit port:
    100 Tbit/s read as Mbit/s); NetApp serves a saturated ifSpeed 4294967295 and no ifHighSpeed, which
    says "at least 4.29 Gbit/s", not a capacity of 536,870,911 B/s."""
    got = corpus[name]
    dev = got.device
    odd = [p for p in got.picks if dev.odd_speed(p.index)]
    assert odd, f"{name}: no port with the odd speed columns was picked"
    links = {lk["if_index"]: lk for lk in got.report["polls"][-1]["links"]}
    for pick in odd:
        low, high = dev.value("ifSpeed", pick.index), dev.value("ifHighSpeed", pick.index)
        lk = links[pick.index]
        if reason == "if_high_speed_implausible":
            assert isinstance(low, int) and high == low >= 10**6
            assert lk["port_speed_bytes_per_s"] == low // 8 == lk["capacity_bytes_per_s"]
        else:
            assert low == 4294967295 and high is None
            assert lk["port_speed_bytes_per_s"] is None and lk["capacity_bytes_per_s"] is None
    assert got.report["polls"][-1]["anomaly_counts"].get(reason, 0) >= len(odd)
    assert "set aside (" + reason in got.stderr  # logged, once per port
    assert got.stderr.count("set aside (" + reason) == len(odd)


SENSORS = [c for c in CORPUS if "entity_sensors" in c.profiles]


@pytest.mark.parametrize("name", [c.community for c in SENSORS])
def test_temperatures_as_recorded(corpus: dict[str, Polled], name: str) -> None:
    """Every ok temperature sensor, scaled by RFC 3433 (compared as values: sensor names are checked
    in test_datacenter_corpus.py)."""
    got = corpus[name]
    expected = sorted(sensor_values(got.device, SENSOR_CELSIUS).values())
    assert expected, f"{name}: no temperature sensor in the recording"
    seen = sorted(samples_all(got.report["polls"][-1], "sitivmon_temperature_celsius"))
    assert seen == pytest.approx(expected)


@pytest.mark.parametrize("name", ["arista-7150s"])  # the corpus's recording with transceiver power sensors
def test_power_only_from_consumers(corpus: dict[str, Polled], name: str) -> None:
    """Power and energy count what a device draws: never a transceiver's optical TX/RX level."""
    got = corpus[name]
    dom = transceiver_sensors(got.device)
    optical = {round(v, 12) for i, v in sensor_values(got.device, SENSOR_WATTS).items() if i in dom}
    assert optical, f"{name}: no transceiver power sensor in the recording"
    seen = samples_all(got.report["polls"][-1], "sitivmon_power_watts")
    assert not [v for v in seen if round(v, 12) in optical], f"{name}: optical levels counted as power"
