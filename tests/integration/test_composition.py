"""The daemon as a composition: the same core with or without the usage feature, and one selector that
decides for the monitor, the scheduler and the trap receiver alike. In-process, against a real snmpd."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from sitivmon.app.config import load_config
from sitivmon.app.daemon import Composition, Daemon
from sitivmon.config.model import Target
from tests.support import agents
from tests.support.procs import free_port


def _config(tmp_path: Path, snmp_agent: agents.Agent) -> Path:
    doc = agents.base_config(tmp_path / "state")
    cred = {"version": "2c", "community": snmp_agent.community}
    agents.add_target(doc, "loopback", snmp_agent.address, "v2c", cred)
    agents.add_target(doc, "elsewhere", snmp_agent.address, "v2c-other", cred)
    agents.add_link(doc, "givors-lo", "givors", "loopback", name="lo", capacity="1Gbit")
    agents.add_link(doc, "grigny-lo", "grigny", "elsewhere", name="lo", capacity="1Gbit")
    return agents.write_config(tmp_path / "sitivmon.yaml", doc)


async def _scrape_after_polls(daemon: Daemon, polls: int = 2) -> str:
    async with daemon:
        for _ in range(100):
            if all(s.tried for s in daemon.monitor.targets.values()) and sum(
                status.varbinds > 0 for status in daemon.monitor.targets.values()
            ) == len(daemon.monitor.targets):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(polls)
        url = f"http://127.0.0.1:{daemon.bound_port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return await response.text()


class OnlyLoopback:
    """A selector owning one target: what a shard of two would see."""

    def select(self, targets: Sequence[Target]) -> list[Target]:
        return [t for t in targets if t.name == "loopback"]


def _daemon(path: Path, composition: Composition) -> Daemon:
    listen = f"127.0.0.1:{free_port()}"
    return Daemon(path, load_config(path), listen=listen, registry=CollectorRegistry(), composition=composition)


def test_without_usage_the_daemon_monitors_and_records_nothing(tmp_path: Path, snmp_agent: agents.Agent) -> None:
    path = _config(tmp_path, snmp_agent)
    daemon = _daemon(path, Composition(usage=False))
    page = asyncio.run(_scrape_after_polls(daemon))
    metrics = agents.Metrics(page)
    assert metrics.value("sitivmon_target_up", target="loopback") == 1
    assert "sitivmon_link_receive_bytes_total" in page  # links are polled and exposed
    assert daemon.usage is None and daemon.live is None and daemon.monitor.usage_sinks == []
    assert "sitivmon_usage_" not in page  # no recorder, no month-to-date gauges
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").glob("usage*"))


def test_with_usage_the_same_daemon_records(tmp_path: Path, snmp_agent: agents.Agent) -> None:
    path = _config(tmp_path, snmp_agent)
    daemon = _daemon(path, Composition())
    page = asyncio.run(_scrape_after_polls(daemon))
    assert daemon.usage is not None and daemon.monitor.usage_sinks == [daemon.usage]
    assert "sitivmon_usage_store_up 1.0" in page
    assert any((tmp_path / "state").glob("usage*"))
    # The month-to-date refresh keeps its scans up to the buckets that can no longer change: those
    # ended more than the longest poll interval and a flush ago.
    config = load_config(path)
    assert daemon.live is not None
    assert daemon.live.settle_s == max(t.poll.interval or config.poll.interval for t in config.targets) + (
        config.usage.flush_interval_s
    )
    assert daemon.live.settle_s > config.usage.flush_interval_s


def test_one_selector_decides_for_monitor_scheduler_and_exposition(tmp_path: Path, snmp_agent: agents.Agent) -> None:
    path = _config(tmp_path, snmp_agent)
    daemon = _daemon(path, Composition(usage=False, selector=OnlyLoopback()))
    page = asyncio.run(_scrape_after_polls(daemon))
    assert [t.name for t in daemon.monitor.owned] == ["loopback"]
    assert set(daemon.monitor.targets) == {"loopback"}
    assert set(daemon.monitor.links) == {"givors-lo"}
    assert 'target="elsewhere"' not in page
    assert 'link="grigny-lo"' not in page
    assert agents.Metrics(page).value("sitivmon_target_up", target="loopback") == 1
