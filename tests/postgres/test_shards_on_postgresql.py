"""Sharded pollers for real: two, then three `sitivmon run --shard I/N` daemons sharing one real
PostgreSQL, polling one real snmpd in a network namespace (tests/usage_integration/rig.py) through
eight targets (one per commune, each with a link on the agent's eth1). Each daemon polls only its
targets, and the month's traffic_volume per commune printed by `sitivmon usage` equals the kernel's
byte counters exactly: after the two shards, and again after restarting as three shards (two targets
move to the new shard and continue from the baselines their old owner committed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sitivmon.engine.selection import shard_of
from tests.conftest import StartDaemon
from tests.support import agents
from tests.support.postgres import PostgresServer
from tests.usage_integration import rig

pytestmark = pytest.mark.netns

TARGETS = {f"agent-{i}": commune for i, (commune, _, _) in enumerate(agents.COMMUNES)}


def sharded_config(tmp_path: Path, netns_snmp: agents.NetnsAgent, dsn: str) -> Path:
    doc = agents.base_config(
        tmp_path / "state", usage={"flush_interval_s": 0.5, "live_refresh_s": 0, "store": "postgresql", "dsn": dsn}
    )
    doc["credentials"]["v2c"] = {"version": "2c", "community": netns_snmp.agent.community}
    for name, commune in TARGETS.items():
        agents.add_target(doc, name, netns_snmp.address, "v2c")
        agents.add_link(doc, f"{name}-eth1", commune, name, name="eth1", side="commune")
    return agents.write_config(tmp_path / "sitivmon.yaml", doc)


def owners(count: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in range(1, count + 1)}
    for name in TARGETS:
        out[shard_of(name, count)].append(name)
    return out


def start_shards(start_daemon: StartDaemon, config: Path, count: int) -> dict[int, agents.DaemonProcess]:
    return {i: start_daemon(config, args=("--shard", f"{i}/{count}")) for i in range(1, count + 1)}


def polled_targets(m: agents.Metrics) -> set[str]:
    return {dict(labels)["target"] for labels in m.series("sitivmon_target_up")}


def settle_all(lab: Any, shards: dict[int, agents.DaemonProcess], count: int) -> tuple[int, int]:
    """Kernel counters that every target's latest poll read (unchanged across two polls of each)."""
    for _ in range(20):
        k = lab.kernel_bytes("eth1")
        for i, names in owners(count).items():
            for name in names:
                shards[i].wait_polls(name, 2)
        if lab.kernel_bytes("eth1") == k:
            return k
    raise AssertionError("eth1 never went quiet")


def exact(
    lab: Any, shards: dict[int, agents.DaemonProcess], count: int, config: Path, since: float
) -> tuple[tuple[int, int], rig.Volumes]:
    for _ in range(5):
        k = settle_all(lab, shards, count)
        for d in shards.values():
            rig.wait_flushes(d)
        v = rig.volumes(config, since)
        if lab.kernel_bytes("eth1") == k:
            return k, v
    raise AssertionError("eth1 kept moving after the traffic stopped")


def expected(k0: tuple[int, int], k1: tuple[int, int]) -> dict[tuple[str, str], int]:
    """Every commune has one link on eth1, side commune: in = eth1 rx, out = eth1 tx."""
    rx, tx = k1[0] - k0[0], k1[1] - k0[1]
    return {(c, d): (rx if d == "in" else tx) for c in TARGETS.values() for d in ("in", "out")}


def test_two_shards_then_three_count_every_kernel_byte_once(
    postgres_server: PostgresServer, postgres_dsn: str, netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon,
    tmp_path: Path,
) -> None:
    assert all(owners(2).values()) and all(owners(3).values())
    moved = [n for n in TARGETS if shard_of(n, 2) != shard_of(n, 3)]
    assert moved and all(shard_of(n, 3) == 3 for n in moved)
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    config = sharded_config(tmp_path, netns_snmp, postgres_dsn)
    since = time.time()
    k0 = lab.kernel_bytes("eth1")

    shards = start_shards(start_daemon, config, 2)
    for i, names in owners(2).items():
        for name in names:
            shards[i].wait_polls(name, 2, timeout=20)
        assert polled_targets(shards[i].metrics()) == set(names)  # its own targets only
    assert lab.kernel_bytes("eth1") == k0, "eth1 moved before any traffic: the baselines are unknown"
    rig.burst(lab, link, 4)
    k1, vol = exact(lab, shards, 2, config, since)
    assert k1[0] - k0[0] >= 4 * 40 * 1000
    assert vol.values == expected(k0, k1)

    for d in shards.values():
        assert d.stop() == 0  # SIGTERM: the last flush commits every shard's baselines
    rig.burst(lab, link, 2)  # traffic while no shard runs: counted from the baselines at restart

    shards = start_shards(start_daemon, config, 3)
    for i, names in owners(3).items():
        for name in names:
            shards[i].wait_polls(name, 2, timeout=20)
        assert polled_targets(shards[i].metrics()) == set(names)
    rig.burst(lab, link, 3)
    k2, vol = exact(lab, shards, 3, config, since)
    assert k2[0] > k1[0]
    assert vol.values == expected(k0, k2)  # the moved targets neither lost nor doubled a byte
    for commune in TARGETS.values():
        # the restart's downtime (no poll by anyone) is a gap, as with one daemon restarting
        assert set(vol.flagged(commune)) <= {"gap"}, (commune, vol.flagged(commune))

    # (a) shard 3 SIGKILLed for a while: its targets go unpolled (nobody else takes them), traffic
    # flows; restarted, it continues from its last committed baselines: still exact, nothing doubled.
    shards[3].signal(signal.SIGKILL)
    shards[3].proc.proc.wait(10)  # type: ignore[union-attr]
    rig.burst(lab, link, 2)
    for i in (1, 2):
        for name in owners(3)[i]:
            shards[i].wait_polls(name, 2)
        assert polled_targets(shards[i].metrics()) == set(owners(3)[i])
    shards[3] = start_daemon(config, args=("--shard", "3/3"))
    rig.burst(lab, link, 1)
    k3, vol = exact(lab, shards, 3, config, since)
    assert k3[0] > k2[0]
    assert vol.values == expected(k0, k3)
    for name in owners(3)[3]:
        assert vol.flagged(TARGETS[name]).get("gap", 0) >= 1  # the unpolled time is flagged


def test_more_than_one_shard_on_sqlite_is_refused(tmp_path: Path) -> None:
    doc = agents.base_config(tmp_path / "state")
    config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    r = subprocess.run(
        [sys.executable, "-m", "sitivmon", "run", "--config", str(config), "--shard", "1/2"],
        capture_output=True, text=True, cwd=agents.REPO, env=agents._clean_env(None), timeout=60,
    )
    assert r.returncode == 2 and "need a shared usage store" in r.stderr, r.stderr
