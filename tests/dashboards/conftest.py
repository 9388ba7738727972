"""`running_daemon`: a real sitivmon polling a real snmpd (this machine's interfaces, plus scripted PDU
outlets, VMs, sensors and NAS volumes), with its usage store, trap receiver and MQTT publisher to a
real mosquitto all on, so that every family the dashboards and rules read is really exported.

SITIVMON_METRICS_URL=http://127.0.0.1:9811/metrics runs the live tests against a daemon started by hand.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sitivmon.agents.scripted import DEMO_CONFIG_YAML, demo_tables, registrations
from sitivmon.agents.snmpd import Snmpd, SnmpdSpec
from tests.mqtt.broker import PASSWORD, USER, Broker
from tests.support import agents
from tests.support.procs import free_udp_port, require_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def running_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("SITIVMON_METRICS_URL")
    if url:
        yield url
        return
    require_binary("snmpd")
    work = tmp_path_factory.mktemp("live")
    broker = Broker(work / "mqtt")
    broker.start()
    port = free_udp_port()
    tables = demo_tables(work)
    agent = Snmpd(SnmpdSpec(port=port, communities=(agents.COMMUNITY,), pass_persist=registrations(tables)), work)
    daemon = None
    try:
        doc = agents.base_config(
            work / "state", interval="2s", timeout="1s",
            mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": USER, "password": PASSWORD},
        )  # fmt: skip
        agents.add_target(doc, "core-sw1", f"127.0.0.1:{port}", "v2c", {"version": "2c", "community": agents.COMMUNITY})
        agents.add_link(doc, "givors-fibre-1", "givors", "core-sw1", name="lo", capacity="1Gbit")
        agents.add_link(doc, "venissieux-fibre-1", "venissieux", "core-sw1", name="lo", side="core")
        datacenter = yaml.safe_load(
            DEMO_CONFIG_YAML.format(port=port, profiles_dir=ROOT / "config" / "profiles", credentials="v2c")
        )
        doc["targets"].extend(datacenter.pop("targets"))
        doc.update(datacenter)
        config = agents.write_config(work / "sitivmon.yaml", doc)
        daemon = agents.DaemonProcess(config, work)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and daemon.get("/-/ready")[0] != 200:
            time.sleep(0.2)
        # net-snmp serves hrProcessorLoad only once it has sampled the CPUs for a while (up to a minute
        # after it starts): wait for it rather than test a page without it.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "sitivmon_host_cpu_load_ratio{" not in daemon.get("/metrics")[1]:
            time.sleep(1)
        time.sleep(4.5)  # two more polls, so counters have deltas and energy has been integrated
        yield f"{daemon.url}/metrics"
    finally:
        if daemon is not None:
            daemon.stop()
        agent.stop()
        broker.stop()
