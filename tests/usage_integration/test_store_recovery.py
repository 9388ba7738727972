"""The real daemon, real snmpd in a network namespace, real traffic: a fresh link's first baseline is
durable before a SIGKILL can lose its first delta (issue 10, symptom 2), and a store made immutable
then writable again is written at the very next retry (issue 11, item 11)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import StartDaemon
from tests.support import agents

from . import rig

pytestmark = pytest.mark.netns


def test_fresh_links_first_bytes_survive_a_sigkill_in_the_first_flush_interval(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Before: the first baselines waited for the 30 s flush; killed before it, the restarted daemon
    took new baselines and the bytes polled before the kill were in neither the volume nor a gap."""
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    doc = rig.usage_config(tmp_path / "state", netns_snmp, flush_interval_s=30.0)  # the default
    config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    since = time.time()
    k0 = lab.kernel_bytes("eth1")
    first = start_daemon(config)
    rig.quiet_baseline(lab, first, k0)
    rig.burst(lab, link, 3)
    first.wait_polls(rig.TARGET, 2)  # the traffic was polled
    first.signal(signal.SIGKILL)
    assert first.proc is not None
    assert first.proc.proc.wait(10) == -signal.SIGKILL
    killed_at = time.time()
    assert killed_at - since < 25, "the kill must come within the first flush interval"
    rig.burst(lab, link, 2)  # while no daemon runs

    second = start_daemon(config)
    assert "restored 2 counter baselines" in second.output(), second.output()[-2000:]
    k1 = rig.settle(lab, second)
    assert second.stop() == 0  # SIGTERM flushes
    vol = rig.volumes(config, since)
    # A late ARP probe may move eth1 after the last settled poll: the volume is then exact against the
    # kernel at whichever poll came last (the settled one, or one more just before SIGTERM).
    k2 = lab.kernel_bytes("eth1")
    assert vol.values in (rig.expected(k0, k1), rig.expected(k0, k2)), (vol.values, k0, k1, k2)
    for commune in ("givors", "grigny"):
        assert vol.flagged(commune).get("gap", 0) >= 2, vol.flagged(commune)  # the downtime shows


def test_immutable_store_is_written_at_the_first_retry_after_it_comes_back(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Before: the reconnect right after a failure reopened the immutable file read-only, so the first
    retry after `chattr -i` failed again and recovery waited one more backoff (about 80 s with the
    default 60 s ceiling)."""
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    ceiling = 4.0
    with rig.immutable_capable_dir(tmp_path) as base:
        state = base / "state"
        doc = rig.usage_config(state, netns_snmp, retry_initial_s=0.25, retry_max_s=ceiling)
        config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
        since = time.time()
        k0 = lab.kernel_bytes("eth1")
        daemon = start_daemon(config)
        try:
            rig.quiet_baseline(lab, daemon, k0)
            rig.burst(lab, link, 2)
            daemon.wait_polls(rig.TARGET, 1)
            rig.wait_flushes(daemon)
            with rig.read_only_database(state):
                rig.burst(lab, link, 2)
                # 0.25 + 0.5 + 1 + 2 + 4: the backoff reached its ceiling, the file was reopened meanwhile
                m = daemon.wait_for(lambda m: rig.total(m, rig.WRITE_ERRORS) >= 6, "failed writes", timeout=40)
                seen = rig.total(m, rig.WRITE_ERRORS)
                m = daemon.wait_for(lambda m: rig.total(m, rig.WRITE_ERRORS) > seen, "one more failure", timeout=10)
                errors_at = rig.total(m, rig.WRITE_ERRORS)
                store_up_while_immutable = m.value("sitivmon_usage_store_up")
            writable_at = time.time()  # the next attempt is about `ceiling` seconds after the last failure
            m = daemon.wait_for(lambda m: rig.last_write(m) > writable_at, "the first write after chattr -i", 20)
            recovery = rig.last_write(m) - writable_at
            print(f"recovery after chattr -i: {recovery:.2f} s (retry ceiling {ceiling} s)")
            assert rig.total(m, rig.WRITE_ERRORS) == errors_at, "the first retry after chattr -i failed"
            assert recovery <= ceiling + 1.0
            assert (store_up_while_immutable, m.value("sitivmon_usage_store_up")) == (0, 1)
            k1, vol = rig.exact_volumes(lab, daemon, config, since)
            assert vol.values == rig.expected(k0, k1)
            assert daemon.stop() == 0
        finally:
            daemon.stop()
