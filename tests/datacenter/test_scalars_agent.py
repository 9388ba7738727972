"""A profile of scalars only, against a real snmpd: `check` passes, and the poll shows its samples.

The scalars are served by the scripted pass_persist table (exact values), beside the agent's own
sysUpTime, which the target's `interfaces` profile GETs too under its own name; one scalar the agent
lacks is reported as a `missing_object` anomaly, as any absent scalar is.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sitivmon.agents.scripted import DEMO_NAS
from sitivmon.config.profiles import profile_table
from sitivmon.datacenter.handler import DatacenterHandler
from sitivmon.engine.poll import TargetPoll, poll_target
from sitivmon.exposition import LabelCache, render
from sitivmon.monitor import Monitor
from sitivmon.readings import Anomaly
from tests.datacenter.conftest import COMMUNES, Agent, make_config
from tests.support.agents import _clean_env
from tests.support.procs import require_binary

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
VOLTS = f"{DEMO_NAS}.9.1.0"
BOOTS = f"{DEMO_NAS}.9.2.0"
ABSENT = f"{DEMO_NAS}.9.9.0"


def body(port: int) -> str:
    return f"""
profiles:
  site:
    description: a site controller's own figures, no table
    scalars:
      - {{name: inletVolts, oid: {VOLTS}, type: gauge, scale: 0.1}}
      - {{name: bootCount, oid: {BOOTS}, type: counter}}
      - {{name: uptime, oid: {SYS_UPTIME}, type: gauge, scale: 0.01}}
      - {{name: absent, oid: {ABSENT}, type: gauge}}
targets:
  - {{name: ctl-1, address: "127.0.0.1:{port}", credentials: lab, commune: givors, profiles: [interfaces, site]}}
"""


def serve(agent: Agent) -> None:
    agent.write("nas", {VOLTS: ("gauge", 2301), BOOTS: ("counter", 42)})


async def poll(agent: Agent) -> TargetPoll:
    config = make_config(body(agent.port))
    table = profile_table(config)
    client = agent.client()
    result = await poll_target(
        client, "ctl-1", [table[p] for p in config.targets[0].profiles], version="2c", deadline_s=10,
        max_varbinds=100_000,
    )
    await client.close()
    assert result.ok, result.error
    return result


async def test_scalars_only_profile_yields_samples_on_metrics(agent: Agent, tmp_path: Path) -> None:
    serve(agent)
    config = make_config(body(agent.port))
    target = config.targets[0]
    result = await poll(agent)
    # one OID, two names: the interfaces profile's sysUpTime (reboots are read from it) and the user's
    ticks = result.scalars["sysUpTime"]
    assert isinstance(ticks, int) and ticks > 0
    assert result.scalars["site:uptime"] == ticks
    assert result.anomalies == [Anomaly("missing_object", "site:absent", f"the agent has no site:absent ({ABSENT})")]

    handler = DatacenterHandler(config, config.attribution)
    monitor = Monitor(config, handlers=[handler])
    monitor.on_poll(target, result)
    text = render(monitor, LabelCache())
    assert 'sitivmon_site_inlet_volts{target="ctl-1",commune="givors"} 230.1\n' in text
    assert 'sitivmon_site_boot_count_total{target="ctl-1",commune="givors"} 42\n' in text
    assert "# TYPE sitivmon_site_boot_count_total counter\n" in text
    assert "# TYPE sitivmon_site_inlet_volts gauge\n" in text
    assert "sitivmon_site_absent" not in text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    uptime = samples[("sitivmon_site_uptime", (("commune", "givors"), ("target", "ctl-1")))]
    assert uptime == ticks / 100
    reason = (("reason", "missing_object"), ("target", "ctl-1"))
    assert samples[("sitivmon_device_anomalies_total", reason)] == 1

    promtool = require_binary("promtool")
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # the values move: the next poll's samples follow the device
    agent.write("nas", {VOLTS: ("gauge", 2288), BOOTS: ("counter", 43)})
    monitor.on_poll(target, await poll(agent))
    text = render(monitor, LabelCache())
    assert 'sitivmon_site_inlet_volts{target="ctl-1",commune="givors"} 228.8\n' in text
    assert 'sitivmon_site_boot_count_total{target="ctl-1",commune="givors"} 43\n' in text


def sitivmon(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sitivmon", *argv], capture_output=True, text=True, env=_clean_env(None),
        timeout=60, check=False,
    )


async def test_check_passes_then_poll_shows_the_scalars(agent: Agent, tmp_path: Path) -> None:
    serve(agent)
    path = tmp_path / "site.yaml"
    path.write_text(COMMUNES + "credentials:\n  lab: {version: 2c, community: public}\n" + body(agent.port))
    check = await asyncio.to_thread(sitivmon, "check", "--config", str(path))
    assert check.returncode == 0, check.stderr
    assert check.stdout.endswith(": OK (8 communes, 1 targets, 0 links)\n")
    run = await asyncio.to_thread(sitivmon, "poll", "--config", str(path), "--target", "ctl-1", "--samples", "1")
    assert run.returncode == 0, run.stderr + run.stdout
    (entry,) = json.loads(run.stdout)["polls"]
    samples = entry["datacenter_samples"]
    assert 'sitivmon_site_inlet_volts{target="ctl-1",commune="givors"} 230.1' in samples
    assert 'sitivmon_site_boot_count_total{target="ctl-1",commune="givors"} 42' in samples
    assert any(s.startswith('sitivmon_site_uptime{target="ctl-1",commune="givors"} ') for s in samples), samples
    assert entry["anomalies"] == [
        {"reason": "missing_object", "subject": "site:absent", "detail": f"the agent has no site:absent ({ABSENT})"}
    ]
    assert entry["anomaly_counts"] == {"missing_object": 1}
