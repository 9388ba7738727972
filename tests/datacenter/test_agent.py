"""Against a real snmpd: HOST-RESOURCES and UCD for this machine, scripted PDU, VM and sensor tables."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sitivmon.agents.scripted import Outlet, Sensor, Vm, pdu_values, sensor_values, vm_values
from sitivmon.app.config import SitivmonConfig
from sitivmon.config.profiles import profile_table
from sitivmon.datacenter.handler import COMMUNE_FAMILIES, FAMILIES, DatacenterHandler
from sitivmon.datacenter.rows import extract
from sitivmon.engine.poll import TargetPoll, poll_target
from sitivmon.readings import Quantity
from tests.datacenter.conftest import REPO, Agent, make_config

PROFILES = ["host_resources", "ucd", "entity_sensors", "apc_pdu_outlets", "vm_inventory"]


def dc_config(port: int) -> SitivmonConfig:
    return make_config(
        f"""
profile_files: [profiles/apc_pdu_outlets.yaml, profiles/vm_inventory.yaml]
targets:
  - name: dc-1
    address: 127.0.0.1:{port}
    credentials: lab
    profiles: {PROFILES}
attribution:
  storage:
    - {{equals: /, commune: shared}}
    - {{match: '^/srv/(?P<commune>[a-z-]+)'}}
  vm: {{VEN-: venissieux, GIV-: givors, CORB-: corbas, SCH-: saint-chamond}}
  outlet:
    - {{prefix: VEN-, commune: venissieux}}
    - {{prefix: GIV-, commune: givors}}
    - {{prefix: SHARED-, commune: shared}}
    - {{match: '^(?P<commune>.+) NAS$'}}
  sensor:
    - {{match: '^PSU\\d (?P<commune>.+)$'}}
""",
        REPO / "config",
    )


async def poll(agent: Agent, config: SitivmonConfig, names: list[str] | None = None) -> TargetPoll:
    table = profile_table(config, REPO / "config")
    client = agent.client()
    result = await poll_target(
        client, "dc-1", [table[n] for n in names or PROFILES], version="2c", deadline_s=10, max_varbinds=100_000
    )
    await client.close()
    assert result.ok, result.error
    return result


def set_tables(agent: Agent, outlets: list[Outlet], vms: list[Vm], sensors: list[Sensor]) -> None:
    agent.write("pdu", pdu_values(outlets))
    agent.write("vms", vm_values(vms))
    values, names = sensor_values(sensors)
    agent.write("sensors", values)
    agent.write("entity_names", names)


async def test_storage_sizes_match_statvfs(agent: Agent) -> None:
    result = await poll(agent, dc_config(agent.port), ["host_resources"])
    descr = {k: v.decode() for k, v in result.tables["hrStorageDescr"].items() if isinstance(v, bytes)}
    checked = 0
    for idx, path in descr.items():
        if not path.startswith("/") or not os.path.ismount(path):  # noqa: ASYNC240 - a test, not the daemon
            continue
        units = result.tables["hrStorageAllocationUnits"][idx]
        size = result.tables["hrStorageSize"][idx]
        assert isinstance(units, int) and isinstance(size, int)
        st = os.statvfs(path)
        assert abs(size * units - st.f_blocks * st.f_frsize) <= units, path
        checked += 1
    assert checked >= 1, descr  # at least the root filesystem


async def test_ucd_memory_matches_proc_meminfo(agent: Agent) -> None:
    config = dc_config(agent.port)
    handler = DatacenterHandler(config, config.attribution, base_dir=REPO / "config")
    handler.on_poll(config.targets[0], await poll(agent, config, ["host_resources", "ucd"]))
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())  # noqa: ASYNC240
    total_kib = int(meminfo["MemTotal"].split()[0])
    samples = _samples(handler)
    total = samples[("sitivmon_host_memory_total_bytes", (("commune", "shared"), ("target", "dc-1")))]
    assert total == total_kib * 1024
    assert {dict(k[1]).get("period") for k in samples if k[0] == "sitivmon_host_load_average"} == {"1m", "5m", "15m"}
    # HOST-RESOURCES' RAM row less its buffers and cache rows means what UCD's figure means: the two
    # sources agree (within what the host's memory moved between the two walks), nothing set aside
    result = await poll(agent, config, ["host_resources", "ucd"])
    table = profile_table(config, REPO / "config")
    _, hr = extract([table["host_resources"]], result.tables, result.scalars)
    _, ucd = extract([table["ucd"]], result.tables, result.scalars)
    assert hr.anomalies == [] and ucd.anomalies == []
    assert hr.memory_used_bytes is not None and ucd.memory_used_bytes is not None
    assert abs(hr.memory_used_bytes - ucd.memory_used_bytes) < 0.05 * total_kib * 1024, (hr, ucd)
    # dskTable is not used when hrStorageTable is polled: each filesystem once
    roots = [k for k in samples if k[0] == "sitivmon_host_storage_size_bytes" and dict(k[1])["storage"] == "/"]
    assert len(roots) == 1


def _samples(handler: DatacenterHandler) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: list[str] = []
    handler.render(out)
    samples = {}
    for family in text_string_to_metric_families("".join(out)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_pdu_vms_sensors_attribution_and_energy(agent: Agent) -> None:
    config = dc_config(agent.port)
    target = config.targets[0]
    handler = DatacenterHandler(config, config.attribution, base_dir=REPO / "config")
    vms = [Vm("VEN-web-01", 4, 8192), Vm("Ven-db", 8, 32768), Vm("GIV-état-civil", 2, 4096),
           Vm("CORB-gestion", 2, 4096, "poweredOff"), Vm("test-migration", 1, 2048)]
    sensors = [Sensor("PSU1 Pierre-Bénite", 6, 1950, precision=1, entity_class=6),
               Sensor("PSU2 Rive de Gier", 6, 2, scale=10, entity_class=6), Sensor("Inlet", 8, 235, precision=1)]
    set_tables(
        agent,
        [Outlet("VEN-baie-1", 420, 1204), Outlet("GIV-mairie", 310, 877), Outlet("Vaulx-en-Velin NAS", 180, 455),
         Outlet("SHARED-core", 250, 3020), Outlet("spare-7", 35, None)],
        vms, sensors,
    )
    first = await poll(agent, config)
    first.at = 1_000.0
    c1 = handler.on_poll(target, first)
    assert c1.counters == ()  # first reading: a baseline, no interval yet
    set_tables(
        agent,
        [Outlet("VEN-baie-1", 430, 1207), Outlet("GIV-mairie", 310, 877), Outlet("Vaulx-en-Velin NAS", 180, 456),
         Outlet("SHARED-core", 250, 3021), Outlet("spare-7", 45, None)],
        vms, sensors,
    )
    second = await poll(agent, config)
    second.at = 1_060.0
    c2 = handler.on_poll(target, second)

    energy = {c.key.subject: (c.key.commune, c.delta, c.start, c.end) for c in c2.counters}
    assert energy["dc-1/outlet/VEN-baie-1"] == ("venissieux", 3 * 360_000, 1000.0, 1060.0)  # device counter
    assert energy["dc-1/outlet/GIV-mairie"] == ("givors", 0, 1000.0, 1060.0)
    assert energy["dc-1/outlet/Vaulx-en-Velin NAS"] == ("vaulx-en-velin", 360_000, 1000.0, 1060.0)
    assert energy["dc-1/outlet/spare-7"] == ("unattributed", (35 + 45) * 60 // 2, 1000.0, 1060.0)  # integrated
    assert energy["dc-1/sensor/PSU1 Pierre-Bénite"] == ("pierre-benite", 195 * 60, 1000.0, 1060.0)
    assert energy["dc-1/sensor/PSU2 Rive de Gier"] == ("rive-de-gier", 2000 * 60, 1000.0, 1060.0)  # scale kilo
    assert all(c.key.quantity is Quantity.ENERGY_JOULES for c in c2.counters)
    assert set(c2.baselines) >= set(energy)

    gauges = {(g.key.subject, g.key.quantity): (g.key.commune, g.value) for g in c2.gauges}
    assert gauges[("dc-1/vm/VEN-web-01", Quantity.VCPUS)] == ("venissieux", 4)
    assert gauges[("dc-1/vm/GIV-état-civil", Quantity.MEMORY_BYTES)] == ("givors", 4096 * 2**20)
    assert gauges[("dc-1/vm/test-migration", Quantity.VCPUS)] == ("unattributed", 1)
    assert gauges[("dc-1/storage//", Quantity.STORAGE_BYTES)][0] == "shared"
    assert not any(s.startswith("dc-1/storage/Physical memory") for s, _ in gauges)  # RAM is not storage

    samples = _samples(handler)
    assert _get(samples, "sitivmon_power_watts", target="dc-1", outlet="VEN-baie-1", commune="venissieux") == 430
    assert _get(samples, "sitivmon_current_amperes", target="dc-1", outlet="spare-7", commune="unattributed") == 1.0
    assert _get(samples, "sitivmon_power_watts", target="dc-1", sensor="PSU1 Pierre-Bénite",
                commune="pierre-benite") == 195.0
    assert _get(samples, "sitivmon_temperature_celsius", target="dc-1", sensor="Inlet", commune="unattributed") == 23.5
    assert _get(samples, "sitivmon_energy_joules_total", target="dc-1", outlet="VEN-baie-1",
                commune="venissieux") == 1_080_000
    assert _get(samples, "sitivmon_vm_vcpus", target="dc-1", vm="Ven-db", commune="venissieux") == 8
    assert _get(samples, "sitivmon_vm_memory_bytes", target="dc-1", vm="VEN-web-01", commune="venissieux") == 8 * 2**30
    assert _get(samples, "sitivmon_vm_power_state", target="dc-1", vm="CORB-gestion", commune="corbas",
                state="poweredOff") == 1
    assert _get(samples, "sitivmon_commune_vcpus", commune="venissieux") == 12
    assert _get(samples, "sitivmon_commune_vcpus", commune="grigny") == 0  # every commune, even idle ones
    assert _get(samples, "sitivmon_commune_memory_bytes", commune="givors") == 4 * 2**30
    assert _get(samples, "sitivmon_commune_power_watts", commune="venissieux") == 430
    assert _get(samples, "sitivmon_commune_power_watts", commune="unattributed") == 45  # spare-7
    assert _get(samples, "sitivmon_commune_energy_joules_total", commune="venissieux") == 1_080_000
    assert _get(samples, "sitivmon_unattributed_series", target="dc-1", resource="vm") == 1
    assert _get(samples, "sitivmon_unattributed_series", target="dc-1", resource="outlet") == 1
    assert _get(samples, "sitivmon_unattributed_series", target="dc-1", resource="sensor") == 1
    shared_storage = _get(samples, "sitivmon_host_storage_used_bytes", target="dc-1", storage="/", commune="shared")
    assert _get(samples, "sitivmon_commune_storage_used_bytes", commune="shared") >= shared_storage


async def test_restart_resumes_energy_from_baselines(agent: Agent) -> None:
    config = dc_config(agent.port)
    target = config.targets[0]
    set_tables(agent, [Outlet("VEN-baie-1", 100, None)], [], [])
    before = DatacenterHandler(config, config.attribution, base_dir=REPO / "config")
    p1 = await poll(agent, config, ["apc_pdu_outlets"])
    p1.at = 0.0
    baselines = dict(before.on_poll(target, p1).baselines)
    after = DatacenterHandler(config, config.attribution, base_dir=REPO / "config")  # the daemon restarted
    assert after.seed_baselines({**baselines, "some-link": "{}"}) == 1
    p2 = await poll(agent, config, ["apc_pdu_outlets"])
    p2.at = 600.0  # ten minutes down, longer than 3 intervals: counted and flagged
    (interval,) = after.on_poll(target, p2).counters
    assert (interval.start, interval.end, interval.delta) == (0.0, 600.0, 60_000)
    assert {f.value for f in interval.flags} == {"gap"}


def test_decimal_scale_is_exact() -> None:
    assert Decimal("0.1") * 3 * 3_600_000 == 1_080_000


async def test_metrics_through_the_monitor_pass_promtool(agent: Agent, tmp_path: Path) -> None:
    """Wired as the daemon wires it: Monitor(handlers=[DatacenterHandler]) and the exposition render."""
    import asyncio
    import subprocess

    from sitivmon.exposition import LabelCache, render
    from sitivmon.monitor import Monitor
    from tests.support.procs import require_binary

    promtool = require_binary("promtool")
    config = dc_config(agent.port)
    set_tables(agent, [Outlet("VEN-baie-1", 420, 1204), Outlet("spare", 30, None)], [Vm("VEN-a", 2, 1024)],
               [Sensor("PSU1 Givors", 6, 100, entity_class=6)])
    handler = DatacenterHandler(config, config.attribution, base_dir=REPO / "config")
    monitor = Monitor(config, handlers=[handler])
    monitor.on_poll(config.targets[0], await poll(agent, config))
    monitor.on_poll(config.targets[0], await poll(agent, config))
    text = render(monitor, LabelCache())
    assert 'sitivmon_vm_vcpus{target="dc-1",vm="VEN-a",commune="venissieux"} 2' in text
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {f for f in FAMILIES if f"\n{f}{{" in text} >= {"sitivmon_power_watts", "sitivmon_energy_joules_total",
                                                          "sitivmon_vm_vcpus", "sitivmon_host_storage_used_bytes"}
    assert all(f"# TYPE {f} " in text for f in COMMUNE_FAMILIES)


async def test_demo_target_shows_per_commune_figures(agent: Agent) -> None:
    """The demo's config snippet and scripted tables, as the README demo runs them."""
    from sitivmon.agents.scripted import DEMO_CONFIG_YAML, demo_values

    for name, values in demo_values().items():
        agent.write(name, values)
    config = make_config(
        DEMO_CONFIG_YAML.format(port=agent.port, profiles_dir=REPO / "config" / "profiles", credentials="lab")
    )
    handler = DatacenterHandler(config, config.attribution)
    table = profile_table(config)
    client = agent.client()
    result = await poll_target(
        client, "dc-demo", [table[p] for p in config.targets[0].profiles], version="2c", deadline_s=10,
        max_varbinds=100_000,
    )
    await client.close()
    handler.on_poll(config.targets[0], result)
    samples = _samples(handler)
    assert _get(samples, "sitivmon_commune_storage_used_bytes", commune="venissieux") == 1_234_567_890 * 1024
    assert _get(samples, "sitivmon_commune_storage_used_bytes", commune="saint-chamond") == 157_286_400 * 1024
    assert _get(samples, "sitivmon_commune_vcpus", commune="venissieux") == 12
    assert 360 <= _get(samples, "sitivmon_commune_power_watts", commune="venissieux") <= 480  # 420 W ± 60
    assert _get(samples, "sitivmon_commune_power_watts", commune="pierre-benite") > 0  # a PSU sensor
    assert _get(samples, "sitivmon_unattributed_series", target="dc-demo", resource="storage") >= 1  # old-backup
