"""A hostile config file reloaded into the running daemon (SIGHUP): refused fast, in bounded memory,
while polling and the HTTP endpoints carry on."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import yaml

from tests.conftest import StartDaemon
from tests.support import agents
from tests.unit.test_config_hostile import alias_bomb


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def test_reload_of_an_alias_bomb_is_refused_fast(
    tmp_path: Path, start_daemon: StartDaemon, snmp_agent: agents.Agent
) -> None:
    """Before: the reload thread walked 9^9 nodes for over a minute and several GB, starving the loop."""
    doc = agents.base_config(tmp_path / "state")
    agents.add_target(doc, "loopback", snmp_agent.address, "v2c", {"version": "2c", "community": snmp_agent.community})
    agents.add_link(doc, "givors-lo", "givors", "loopback", name="lo")
    path = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    daemon = start_daemon(path)
    daemon.wait_polls("loopback", 2)
    peak_before = _peak_rss_kb(daemon.pid)

    path.write_text(yaml.safe_dump(doc, sort_keys=False) + alias_bomb(), encoding="utf-8")
    started = time.monotonic()
    daemon.reload()
    m = daemon.wait_for(lambda m: m.value("sitivmon_config_last_reload_successful") == 0, "refused reload", 10)
    refused_after = time.monotonic() - started
    assert refused_after < 3, refused_after
    assert "aliases expand the document beyond 1,000,000 values" in daemon.output()
    assert m.value("sitivmon_config_reloads_total", result="failure") == 1

    # still serving and polling, and the reload did not balloon the process
    with urllib.request.urlopen(daemon.url + "/-/healthy", timeout=2) as r:
        assert r.status == 200
    daemon.wait_polls("loopback", 1)
    assert _peak_rss_kb(daemon.pid) - peak_before < 50_000
