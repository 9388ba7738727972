"""Shared fixtures with real components: snmpd agents, a namespace lab, the daemon as a subprocess.

Reuse them from any suite:

* `snmp_agent` (session): snmpd on a free loopback UDP port, v2c community `agents.COMMUNITY` and one
  v3 user per security level and protocol (`agents.V3_USERS`; config entries: `agents.all_credentials()`),
  interface cache off (counters current at every request, not every 3 s).
* `netns_lab`: a namespace lab (`sitivmon.agents.netns.Lab`); skipped with the reason when namespaces
  cannot be made here, a failure under CI.
* `netns_snmp`: the lab plus snmpd in its agent namespace on `lab.agent_addr:161`, serving a quiet
  data link `eth1` (IPv6 off), interface cache off so counters are current at every poll.
* `start_daemon`: factory `start_daemon(config_doc_or_path, env=..., args=...) -> DaemonProcess`;
  every daemon started is stopped after the test (its log is printed when the test fails).
* `sitivmon_daemon` (session): the real daemon (`python -m sitivmon run`) polling `snmp_agent`
  every second, one link per commune on `lo` (see `daemon_config`); `daemon_url` is its base URL and
  `running_daemon` its /metrics URL. Shared: read it, never signal or reload it (use `start_daemon`).
* `netns_daemon_config` (override it in a test module) -> `netns_daemon`: the daemon polling `netns_snmp`, with
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
    require_binary("snmpset")
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

    def start(
        config: dict[str, Any] | Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> agents.DaemonProcess:
        path = (
            config
            if isinstance(config, Path)
            else agents.write_config(tmp_path / f"sitivmon-{next(numbers)}.yaml", config)
        )
        daemon = agents.DaemonProcess(path, tmp_path, env=env, args=args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
        # Shown by pytest only when the test failed.
        print(f"--- sitivmon log ({daemon.config.name}) ---\n{daemon.output()[-5000:]}")


@pytest.fixture(scope="session")
def daemon_config(tmp_path_factory: pytest.TempPathFactory, snmp_agent: agents.Agent) -> dict[str, Any]:
    """The shared daemon's config: `snmp_agent` polled every second over v2c as target `loopback`, one
    link per commune on its interface `lo` (SNMP itself is the traffic), `venissieux-lo` seen from the
    core side. Needs its own rig? Use `start_daemon` with `agents.base_config(...)`."""
    doc = agents.base_config(tmp_path_factory.mktemp("daemon-state"))
    agents.add_target(doc, "loopback", snmp_agent.address, "v2c", {"version": "2c", "community": snmp_agent.community})
    for commune, _, _ in agents.COMMUNES:
        side = "core" if commune == "venissieux" else "commune"
        agents.add_link(doc, f"{commune}-lo", commune, "loopback", name="lo", side=side, capacity="1Gbit")
    return doc


@pytest.fixture(scope="session")
def sitivmon_daemon(
    tmp_path_factory: pytest.TempPathFactory, daemon_config: dict[str, Any]
) -> Iterator[agents.DaemonProcess]:
    """One daemon for the whole session (read-only use: do not signal or reload it)."""
    work = tmp_path_factory.mktemp("daemon")
    with agents.running_daemon(agents.write_config(work / "sitivmon.yaml", daemon_config), work) as daemon:
        daemon.wait_polls("loopback", 2)  # counters have a baseline and a first delta
        yield daemon


@pytest.fixture(scope="session")
def daemon_url(sitivmon_daemon: agents.DaemonProcess) -> str:
    """Base URL of the shared daemon, e.g. http://127.0.0.1:PORT (no trailing slash)."""
    return sitivmon_daemon.url


@pytest.fixture(scope="session")
def running_daemon(sitivmon_daemon: agents.DaemonProcess) -> str:
    """The shared daemon's metrics URL, http://127.0.0.1:PORT/metrics (what tests/dashboards expects)."""
    return sitivmon_daemon.url + "/metrics"


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
    agents.add_target(
        doc, "agent", netns_snmp.address, "v2c", {"version": "2c", "community": netns_snmp.agent.community}
    )
    agents.add_link(doc, "givors-eth1", "givors", "agent", name="eth1", side="commune")
    agents.add_link(doc, "grigny-eth1-core", "grigny", "agent", name="eth1", side="core")
    return doc


@pytest.fixture
def netns_daemon(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, netns_daemon_config: dict[str, Any]
) -> NetnsDaemon:
    daemon = start_daemon(netns_daemon_config)
    return NetnsDaemon(netns_snmp.lab, netns_snmp, daemon, netns_daemon_config)
