"""The usage issue's integration tests: the real daemon polling real snmpd in a network namespace,
traffic through a real veth pair, and the month's volume printed by the real `sitivmon usage` command
compared, to the byte, with the kernel's counters.

1. Month-to-date volume = the kernel's byte delta since the daemon's first poll, exactly.
2. SIGKILL mid-way (traffic going on meanwhile), restart on the same state_dir: still exact, and the
   downtime is flagged (a `gap` run in the JSON, `flagged_buckets.gap`).
3. The database made read-only under the running daemon: it keeps polling, counts and retries its
   write errors, holds the batches, and catches up exactly once the file is writable again.

How "read-only" is made real: the daemon runs as root, which ignores the file mode, and a descriptor
opened before a chmod keeps its write access anyway. Remounting the file system (or a bind mount of the
state directory, in the daemon's own mount namespace) read-only is refused with EBUSY while SQLite
holds the file open for writing, and an ext4 error remount (`errors=remount-ro`) cannot be undone
without unmounting. The immutable attribute (`chattr +i`, ext4) is what does it: every write through
every descriptor fails (EPERM -> SQLite "disk I/O error"), and a reopen can only open the file read-only
("attempt to write a readonly database"); `chattr -i` gives it back.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon
from tests.support import agents

from . import rig

pytestmark = pytest.mark.netns


def covers(gap: dict[str, Any], t: float) -> bool:
    return datetime.fromisoformat(gap["start"]).timestamp() <= t < datetime.fromisoformat(gap["end"]).timestamp()


def test_month_to_date_volume_equals_the_kernel_delta(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    config = agents.write_config(tmp_path / "sitivmon.yaml", rig.usage_config(tmp_path / "state", netns_snmp))
    since = time.time()
    k0 = lab.kernel_bytes("eth1")
    daemon = start_daemon(config)
    rig.quiet_baseline(lab, daemon, k0)

    rig.burst(lab, link, 3)
    daemon.wait_polls(rig.TARGET, 1)
    rig.burst(lab, link, 3)  # across several polls, so that several intervals add up
    k1, vol = rig.exact_volumes(lab, daemon, config, since)

    rx, tx = k1[0] - k0[0], k1[1] - k0[1]
    assert rx >= 6 * 40 * 1000 and tx >= 6 * 25 * 600, (rx, tx)  # the traffic did cross eth1
    assert vol.values == rig.expected(k0, k1)
    for commune in ("givors", "grigny"):
        assert vol.flagged(commune) == {}, vol.flagged(commune)  # no reset, clamp or gap
        reasons = {r for g in vol.gaps(commune) for r in g["reasons"]}
        assert reasons <= {"missing"}, vol.gaps(commune)  # before the first poll and after now only

    m = daemon.metrics()  # the live month-to-date gauges say the same
    assert rig.live_volume(m, "givors", "in") == rx and rig.live_volume(m, "givors", "out") == tx
    assert rig.live_volume(m, "grigny", "in") == tx and rig.live_volume(m, "grigny", "out") == rx
    assert rig.total(m, rig.WRITE_ERRORS) == 0

    assert daemon.stop() == 0  # SIGTERM flushes; the stopped daemon's store says the same
    assert rig.volumes(config, since).values == rig.expected(k0, k1)


def test_sigkill_mid_way_then_restart_is_exact_with_the_downtime_flagged(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    # Flushes rarer than polls, so that the kill finds batches polled but not yet committed.
    doc = rig.usage_config(tmp_path / "state", netns_snmp, flush_interval_s=2.5)
    config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    since = time.time()
    k0 = lab.kernel_bytes("eth1")
    first = start_daemon(config)
    rig.quiet_baseline(lab, first, k0)

    with rig.Traffic(lab, link) as traffic:
        m = first.wait_for(
            lambda m: rig.last_write(m) > 0 and rig.pending(m) >= 2,
            "a committed flush, then two polls not yet committed",
            timeout=20,
        )
        committed = rig.last_write(m)
        first.signal(signal.SIGKILL)
        assert first.proc is not None
        assert first.proc.proc.wait(10) == -signal.SIGKILL
        killed_at = time.time()
        bursts_at_kill = traffic.bursts
        time.sleep(4.0)  # four poll intervals of downtime, traffic going on
        second = start_daemon(config)
        assert "restored 2 counter baselines" in second.output(), second.output()[-2000:]
        second.wait_polls(rig.TARGET, 3)
        traffic.stop()
    assert traffic.bursts > bursts_at_kill + 5, "traffic did not go on during the downtime"
    assert killed_at > committed

    k1, vol = rig.exact_volumes(lab, second, config, since)
    assert vol.values == rig.expected(k0, k1)

    for commune, subject in (("givors", rig.COMMUNE_LINK), ("grigny", rig.CORE_LINK)):
        # The interval spanning the downtime is split over the buckets it overlaps, flagged `gap`; a
        # run of gap-like buckets (merged with the never-written ones around it) covers the kill.
        gaps = [g for g in vol.gaps(commune) if "gap" in g["reasons"] and covers(g, killed_at)]
        assert gaps, f"the downtime is not flagged for {commune}: {vol.gaps(commune)}"
        assert {g["subject"] for g in gaps} == {subject}
        flagged = vol.flagged(commune)
        assert flagged.get("gap", 0) >= 2, flagged  # in and out, at least one bucket each
        assert not {"reset", "clamp"} & set(flagged), flagged  # the agent did not restart: nothing lost
    assert second.stop() == 0
    assert rig.volumes(config, since).values == rig.expected(k0, k1)


def test_read_only_database_keeps_polling_and_catches_up(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    with rig.immutable_capable_dir(tmp_path) as base:
        state = base / "state"
        doc = rig.usage_config(state, netns_snmp, retry_initial_s=0.25, retry_max_s=1.0)
        config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
        since = time.time()
        k0 = lab.kernel_bytes("eth1")
        daemon = start_daemon(config)
        try:
            rig.quiet_baseline(lab, daemon, k0)
            rig.burst(lab, link, 2)
            daemon.wait_polls(rig.TARGET, 1)
            rig.wait_flushes(daemon)  # the store has data and baselines before it goes read-only

            with rig.read_only_database(state):
                m = daemon.wait_for(lambda m: rig.total(m, rig.WRITE_ERRORS) > 0, "a failed usage write", timeout=10)
                committed = rig.last_write(m)
                polled, held = daemon.last_success(rig.TARGET, m), rig.pending(m)
                rig.burst(lab, link, 2)
                m = daemon.wait_polls(rig.TARGET, 3)
                rig.burst(lab, link, 2)
                m = daemon.wait_for(
                    lambda m: rig.pending(m) >= held + 4 and rig.total(m, rig.WRITE_ERRORS) >= 3,
                    "batches held in memory while writes keep failing",
                    timeout=15,
                )
                assert daemon.last_success(rig.TARGET, m) > polled + 3  # polling went on
                assert m.value("sitivmon_target_up", target=rig.TARGET) == 1
                assert rig.last_write(m) == committed  # nothing committed meanwhile
                held = rig.pending(m)
            writable_at = time.time()

            m = daemon.wait_for(
                lambda m: rig.last_write(m) > writable_at and rig.pending(m) < held,
                "the held batches committed once the database is writable again",
                timeout=15,
            )
            errors = m.series(rig.WRITE_ERRORS)  # a flush in flight at chattr -i may still have failed
            rig.burst(lab, link, 2)
            k1, vol = rig.exact_volumes(lab, daemon, config, since)
            assert vol.values == rig.expected(k0, k1)
            for commune in ("givors", "grigny"):
                assert vol.flagged(commune) == {}, vol.flagged(commune)  # no hole: the daemon never stopped
                assert {r for g in vol.gaps(commune) for r in g["reasons"]} <= {"missing"}, vol.gaps(commune)
            m = daemon.metrics()
            assert m.series(rig.WRITE_ERRORS) == errors  # no failure after the file came back
            labels = {dict(k)["error"] for k in errors}
            assert labels <= {"StoreUnavailable"}, labels
            log = daemon.output()
            assert "usage store write failed" in log
            assert "readonly" in log or "disk I/O error" in log, log[-3000:]
            assert daemon.stop() == 0
            assert rig.volumes(config, since).values == rig.expected(k0, k1)
        finally:
            daemon.stop()  # before the loop mount (if any) goes away


def test_stopped_while_read_only_then_restarted_is_still_exact(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """docs/usage.md: stopped while the store fails, the daemon gives up after a few prompt attempts,
    and this is still exact because the baselines on disk match the data on disk: the next start
    re-polls from there, the uncommitted part counted once, as part of a flagged interval."""
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    with rig.immutable_capable_dir(tmp_path) as base:
        state = base / "state"
        doc = rig.usage_config(state, netns_snmp, retry_initial_s=0.25, retry_max_s=1.0)
        config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
        since = time.time()
        k0 = lab.kernel_bytes("eth1")
        first = start_daemon(config)
        second: agents.DaemonProcess | None = None
        try:
            rig.quiet_baseline(lab, first, k0)
            rig.burst(lab, link, 2)
            first.wait_polls(rig.TARGET, 1)
            rig.wait_flushes(first)
            with rig.read_only_database(state):
                rig.burst(lab, link, 2)
                first.wait_for(
                    lambda m: rig.total(m, rig.WRITE_ERRORS) > 0 and rig.pending(m) >= 2,
                    "failed writes and batches held",
                    timeout=10,
                )
                stopped_at = time.time()
                assert first.stop(timeout=20) == 0
                assert "batches not committed" in first.output(), first.output()[-2000:]
            rig.burst(lab, link, 2)  # while no daemon runs
            second = start_daemon(config)
            assert "restored 2 counter baselines" in second.output(), second.output()[-2000:]
            rig.burst(lab, link, 2)
            k1, vol = rig.exact_volumes(lab, second, config, since)
            assert vol.values == rig.expected(k0, k1)
            for commune in ("givors", "grigny"):
                assert any("gap" in g["reasons"] and covers(g, stopped_at) for g in vol.gaps(commune)), vol.gaps(
                    commune
                )
            assert second.stop() == 0
        finally:
            first.stop()
            if second is not None:
                second.stop()
