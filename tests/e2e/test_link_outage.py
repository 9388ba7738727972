"""The whole outage chain with real components: a veth link goes down in a namespace, the real snmpd
sends linkDown, sitivmon's trap receiver flips the link at once, mosquitto delivers the retained
state, Prometheus evaluates the shipped alert rules and Alertmanager posts to a webhook; then the
link comes back and everything resolves.

The rules are the shipped `deploy/prometheus/alerts.yml`, with only SitivmonLinkDown's `for: 2m`
shortened so the test does not wait two minutes; promtool's unit tests cover the real duration.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sitivmon.agents.netns import Lab
from tests.mqtt.broker import PASSWORD, READER, READER_PASSWORD, USER, Broker
from tests.support import agents
from tests.support.procs import free_udp_port, require_binary
from tests.support.prom import alertmanager, prometheus, webhook_receiver

ROOT = Path(__file__).resolve().parents[2]
LINK_IF = "givors0"

IF_VARBINDS = ".1.3.6.1.2.1.2.2.1.1 .1.3.6.1.2.1.2.2.1.7 .1.3.6.1.2.1.2.2.1.8"
# snmpd checks ifOperStatus every second and sends a v2c notification to sitivmon on each edge.
TRAP_LINES = [
    "createUser internal",
    "rouser internal noauth",
    "iquerySecName internal",
    "agentSecName internal",
    # Numeric OIDs: the agent runs without MIB files. linkUp/linkDown with ifIndex, ifAdminStatus, ifOperStatus.
    f"notificationEvent linkUpTrap .1.3.6.1.6.3.1.1.5.4 {IF_VARBINDS}",
    f"notificationEvent linkDownTrap .1.3.6.1.6.3.1.1.5.3 {IF_VARBINDS}",
    'monitor -r 1 -e linkUpTrap "link up" .1.3.6.1.2.1.2.2.1.8 == 1',
    'monitor -r 1 -e linkDownTrap "link down" .1.3.6.1.2.1.2.2.1.8 != 1',
]


class Subscriber:
    """mosquitto_sub in the background; every message with the time it arrived here."""

    def __init__(self, port: int, topic: str) -> None:
        exe = require_binary("mosquitto_sub")
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [exe, "-h", "127.0.0.1", "-p", str(port), "-u", READER, "-P", READER_PASSWORD, "-t", topic, "-v",
             "-q", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            topic, _, payload = line.strip().partition(" ")
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            with self.lock:
                self.messages.append((time.time(), topic, doc))

    def wait_for(self, predicate: Any, timeout: float) -> tuple[float, str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if predicate(m):
                        return m
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f"no matching MQTT message in {timeout}s; got {self.messages[-5:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    text = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    head, sep, tail = text.partition("- alert: SitivmonLinkDown")
    assert sep, "alerts.yml has no SitivmonLinkDown"
    tail = re.sub(r"for: 2m", "for: 3s", tail, count=1)
    path = tmp_path / "alerts.yml"
    path.write_text(head + sep + tail)
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "mqtt")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_link_down_alert_and_mqtt_state_end_to_end(
    netns_lab: Lab, tmp_path: Path, rules: Path, broker: Broker
) -> None:
    trap_port = free_udp_port()
    trap_lines = [*TRAP_LINES, f"trap2sink {netns_lab.mgmt_host_addr}:{trap_port} {agents.COMMUNITY}"]
    link = netns_lab.add_link(LINK_IF)
    agent = agents.start_snmpd(
        address=netns_lab.agent_addr, port=161, netns_name=netns_lab.agent_ns, users=(),
        extra=trap_lines, fresh=True,
    )  # fmt: skip
    try:
        doc = agents.base_config(
            tmp_path / "state", interval="15s", timeout="2s",
            # Polls every 15 s: the state change must come from the trap, within a second or two.
            traps={"host": netns_lab.mgmt_host_addr, "port": trap_port, "communities": ["v2c"]},
            mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": USER,
                  "password": PASSWORD, "summary_interval_s": 30},
        )  # fmt: skip
        agents.add_target(doc, "ring-sw1", f"{netns_lab.agent_addr}:161", "v2c",
                          {"version": "2c", "community": agents.COMMUNITY})  # fmt: skip
        agents.add_link(doc, "givors-fibre-1", "givors", "ring-sw1", name=LINK_IF, capacity="1Gbit")
        config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
        daemon = agents.DaemonProcess(config, tmp_path)
        sub = Subscriber(broker.port, "sitivmon/givors/links/givors-fibre-1/state")
        try:
            with (
                webhook_receiver() as hook,
                alertmanager(tmp_path, hook.url) as am_url,
                prometheus(tmp_path, [f"127.0.0.1:{daemon.port}"], rule_files=[rules], alertmanager_url=am_url) as prom,
            ):
                sub.wait_for(lambda m: m[2].get("state") == "up", timeout=20)
                wait_until(
                    lambda: prom.query('sitivmon_link_up{link="givors-fibre-1"} == 1')["data"]["result"],
                    30, "Prometheus to see the link up",
                )
                assert not hook.alerts("SitivmonLinkDown", "firing")

                # Carrier lost from the far end: admin up, oper down, the case the alert is for.
                netns_lab.set_carrier(link, up=False)
                t_down = time.time()
                arrived, _, state = sub.wait_for(
                    lambda m: m[2].get("state") == "down" and m[0] >= t_down, timeout=10
                )
                assert state["source"] == "trap", state
                assert state["interface"] == LINK_IF and state["target"] == "ring-sw1"
                trap_seen = agents.Metrics(daemon.get("/metrics")[1]).value(
                    "sitivmon_traps_received_total", source=netns_lab.agent_addr, type="linkDown"
                )
                assert trap_seen and trap_seen >= 1
                # snmpd samples ifOperStatus once a second; the rest of the chain must add well under one.
                assert arrived - t_down < 2.5, f"MQTT state arrived {arrived - t_down:.2f}s after the link went down"

                firing = wait_until(lambda: hook.alerts("SitivmonLinkDown", "firing"), 60, "SitivmonLinkDown")
                labels = firing[0]["labels"]
                assert labels["link"] == "givors-fibre-1" and labels["commune"] == "givors"
                assert labels["severity"] == "critical"
                assert firing[0]["annotations"]["runbook_url"].endswith(".md")

                netns_lab.set_carrier(link, up=True)
                t_up = time.time()
                _, _, state = sub.wait_for(lambda m: m[2].get("state") == "up" and m[0] >= t_up, timeout=10)
                assert state["source"] == "trap", state
                wait_until(lambda: hook.alerts("SitivmonLinkDown", "resolved"), 60, "SitivmonLinkDown to resolve")
        finally:
            sub.stop()
            daemon.stop()
    finally:
        agent.stop()
