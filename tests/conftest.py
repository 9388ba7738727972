"""Shared fixtures with real components: snmpd agents, a namespace lab, the daemon as a subprocess.

Reuse them from any suite:

* `snmp_agent` (session): snmpd on a free loopback UDP port, v2c community `agents.COMMUNITY` and one
  v3 user per security level and protocol (`agents.V3_USERS`; config entries: `agents.all_credentials()`).
* `netns_lab`: a namespace lab (`sitivmon.agents.netns.Lab`); skipped with the reason when namespaces
  cannot be made here, a failure under CI.
* `netns_snmp`: the lab plus snmpd in its agent namespace on `lab.agent_addr:161`, serving a quiet
  data link `eth1` (IPv6 off), interface cache off so counters are current at every poll.
* `start_daemon`: factory `start_daemon(config_doc_or_path, env=..., args=...) -> DaemonProcess`;
  every daemon started is stopped after the test (its log is printed when the test fails).
* `daemon_config` (override it in a module) -> `running_daemon` -> `daemon_url`: the daemon polling
  `snmp_agent` over v2c, link `givors-lo` on interface `lo`.
* `netns_daemon_config` (override it too) -> `netns_daemon`: the daemon polling `netns_snmp`, with
  link `givors-eth1` (side commune) and `grigny-eth1-core` (side core) on the same interface `eth1`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sitivmon.agents.netns import Lab
from tests.support import agents
from tests.support.procs import require_binary, require_root_netns

StartDaemon = Callable[..., agents.DaemonProcess]


@pytest.fixture(scope="session")
def snmp_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[agents.Agent]:
    require_binary("snmpd")
    with agents.snmpd_agent(workdir=tmp_path_factory.mktemp("snmpd")) as agent:
        yield agent


@pytest.fixture
def netns_lab() -> Iterator[Lab]:
    require_root_netns()
    with agents.netns_lab() as lab:
        yield lab


@pytest.fixture
def netns_snmp(netns_lab: Lab) -> Iterator[agents.NetnsAgent]:
    require_binary("snmpd")
    require_binary("snmpset")
    with agents.netns_agent(netns_lab) as handle:
        yield handle


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    started: list[agents.DaemonProcess] = []
    numbers = itertools.count()

    def start(config: dict[str, Any] | Path, *, env: dict[str, str] | None = None,
              args: tuple[str, ...] = ()) -> agents.DaemonProcess:
        path = config if isinstance(config, Path) else agents.write_config(
            tmp_path / f"sitivmon-{next(numbers)}.yaml", config
        )
        daemon = agents.DaemonProcess(path, tmp_path, env=env, args=args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
        # Shown by pytest only when the test failed.
        print(f"--- sitivmon log ({daemon.config.name}) ---\n{daemon.output()[-5000:]}")


@pytest.fixture
def daemon_config(tmp_path: Path, snmp_agent: agents.Agent) -> dict[str, Any]:
    doc = agents.base_config(tmp_path / "state")
    agents.add_target(doc, "loopback", snmp_agent.address, "v2c", {"version": "2c", "community": snmp_agent.community})
    agents.add_link(doc, "givors-lo", "givors", "loopback", name="lo")
    return doc


@pytest.fixture
def running_daemon(start_daemon: StartDaemon, daemon_config: dict[str, Any]) -> agents.DaemonProcess:
    return start_daemon(daemon_config)


@pytest.fixture
def daemon_url(running_daemon: agents.DaemonProcess) -> str:
    return running_daemon.url


@dataclass(slots=True)
class NetnsDaemon:
    lab: Lab
    agent: agents.NetnsAgent
    daemon: agents.DaemonProcess
    config: dict[str, Any]

    @property
    def url(self) -> str:
        return self.daemon.url


@pytest.fixture
def netns_daemon_config(tmp_path: Path, netns_snmp: agents.NetnsAgent) -> dict[str, Any]:
    doc = agents.base_config(tmp_path / "state")
    agents.add_target(doc, "agent", netns_snmp.address, "v2c",
                      {"version": "2c", "community": netns_snmp.agent.community})
    agents.add_link(doc, "givors-eth1", "givors", "agent", name="eth1", side="commune")
    agents.add_link(doc, "grigny-eth1-core", "grigny", "agent", name="eth1", side="core")
    return doc


@pytest.fixture
def netns_daemon(netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon,
                 netns_daemon_config: dict[str, Any]) -> NetnsDaemon:
    daemon = start_daemon(netns_daemon_config)
    return NetnsDaemon(netns_snmp.lab, netns_snmp, daemon, netns_daemon_config)
