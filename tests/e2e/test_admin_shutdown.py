"""An administrative shutdown end to end (issue 10, symptom 14): `ip link set X down` in a namespace,
the real snmpd sends linkDown with ifAdminStatus 2, and the retained MQTT state a new subscriber gets
from a real mosquitto says so at once; after linkUp and after each confirming poll it still tells the
truth (admin and operational status both up)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from sitivmon.agents.netns import Lab
from tests.e2e.test_link_outage import TRAP_LINES, Subscriber, wait_until
from tests.e2e.test_link_outage import broker as broker  # the fixture
from tests.mqtt.broker import PASSWORD, READER, READER_PASSWORD, USER, Broker
from tests.support import agents
from tests.support.procs import free_udp_port, require_binary

LINK_IF = "givors0"
TOPIC = "sitivmon/givors/links/givors-fibre-1/state"


def retained_state(port: int) -> dict[str, Any]:
    """What a subscriber connecting now is told (mosquitto_sub takes the retained message and exits)."""
    out = subprocess.run(
        [require_binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port), "-u", READER, "-P", READER_PASSWORD,
         "-t", TOPIC, "-C", "1", "-W", "5"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    return json.loads(out.stdout) if out.stdout.strip() else {}


def next_poll(daemon: agents.DaemonProcess, after: float | None = None) -> float:
    """Wait for a poll of the target to complete (after `after`, default: from now); its time."""
    after = daemon.last_success("ring-sw1") if after is None else after
    return float(wait_until(lambda: max(0.0, daemon.last_success("ring-sw1") - after) and
                            daemon.last_success("ring-sw1"), 15, "a poll"))  # fmt: skip


def test_admin_shutdown_is_published_and_the_retained_state_converges(
    netns_lab: Lab, tmp_path: Path, broker: Broker
) -> None:
    trap_port = free_udp_port()
    trap_lines = [*TRAP_LINES, f"trap2sink {netns_lab.mgmt_host_addr}:{trap_port} {agents.COMMUNITY}"]
    netns_lab.add_link(LINK_IF)
    agent = agents.start_snmpd(
        address=netns_lab.agent_addr, port=161, netns_name=netns_lab.agent_ns, users=(),
        extra=trap_lines, fresh=True,
    )  # fmt: skip
    try:
        doc = agents.base_config(
            tmp_path / "state", interval="8s", timeout="2s",
            traps={"host": netns_lab.mgmt_host_addr, "port": trap_port, "communities": ["v2c"]},
            mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": USER,
                  "password": PASSWORD, "summary_interval_s": 30},
        )  # fmt: skip
        agents.add_target(doc, "ring-sw1", f"{netns_lab.agent_addr}:161", "v2c",
                          {"version": "2c", "community": agents.COMMUNITY})  # fmt: skip
        agents.add_link(doc, "givors-fibre-1", "givors", "ring-sw1", name=LINK_IF, capacity="1Gbit")
        daemon = agents.DaemonProcess(agents.write_config(tmp_path / "sitivmon.yaml", doc), tmp_path)
        sub = Subscriber(broker.port, TOPIC)
        try:
            sub.wait_for(lambda m: m[2].get("state") == "up", timeout=20)
            assert retained_state(broker.port)["admin_up"] is True

            polled = next_poll(daemon)  # act right after a poll: the change is the trap's, not a poll's
            netns_lab.set_link(LINK_IF, up=False)  # an administrative shutdown
            t_down = time.time()
            _, _, state = sub.wait_for(lambda m: m[2].get("state") == "down" and m[0] >= t_down, timeout=10)
            assert (state["source"], state["admin_up"]) == ("trap", False), state
            retained = retained_state(broker.port)
            assert (retained["state"], retained["admin_up"]) == ("down", False), retained
            next_poll(daemon, polled)  # the confirming poll
            time.sleep(0.5)
            retained = retained_state(broker.port)
            assert (retained["state"], retained["admin_up"]) == ("down", False), retained

            polled = next_poll(daemon)
            netns_lab.set_link(LINK_IF, up=True)
            t_up = time.time()
            _, _, state = sub.wait_for(lambda m: m[2].get("state") == "up" and m[0] >= t_up, timeout=10)
            assert (state["source"], state["admin_up"]) == ("trap", True), state
            next_poll(daemon, polled)
            time.sleep(0.5)
            retained = retained_state(broker.port)
            assert (retained["state"], retained["admin_up"]) == ("up", True), retained
            metrics = daemon.metrics()
            assert metrics.link("sitivmon_link_admin_up", "givors-fibre-1") == 1
        except BaseException:
            print(daemon.output()[-6000:])
            raise
        finally:
            sub.stop()
            daemon.stop()
    finally:
        agent.stop()
