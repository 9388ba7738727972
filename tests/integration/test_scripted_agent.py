"""A scripted device behind a real snmpd (pass_persist): 32-bit wraps, a reboot, a 64-bit counter going
back and an agent answering with non-increasing OIDs, as the running daemon exposes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartDaemon
from tests.support import agents
from tests.support.procs import require_binary

WAN = "givors-wan"  # ge-0/0/1, 32-bit counters only, seen from the commune
CORE = "grigny-core"  # ge-0/0/2, HC counters, on the core router (side=core)
IF_DESCR = f"{agents.IF}.2"


@pytest.fixture
def scripted_device(tmp_path: Path) -> Iterator[tuple[agents.Agent, agents.ScriptedDevice]]:
    require_binary("snmpd")
    with agents.scripted_agent(tmp_path) as (agent, device):
        device.interface(1, "ge-0/0/1", hc=False, in_octets=2**32 - 296, out_octets=1000)
        device.interface(2, "ge-0/0/2", in_octets=10**12, out_octets=5 * 10**11)
        device.write()
        yield agent, device


def totals(m: agents.Metrics, link: str) -> tuple[float | None, float | None, float | None]:
    return (
        m.link("sitivmon_link_receive_bytes_total", link),
        m.link("sitivmon_link_transmit_bytes_total", link),
        m.link("sitivmon_counter_discontinuities_total", link),
    )


def test_wrap_reboot_and_nonincreasing(
    tmp_path: Path, start_daemon: StartDaemon, scripted_device: tuple[agents.Agent, agents.ScriptedDevice]
) -> None:
    agent, scripted = scripted_device
    doc = agents.base_config(tmp_path / "state", interval="0.5s", timeout="0.3s")
    agents.add_target(doc, "device", agent.address, "v2c", {"version": "2c", "community": agent.community})
    agents.add_link(doc, WAN, "givors", "device", name="ge-0/0/1")
    agents.add_link(doc, CORE, "grigny", "device", name="ge-0/0/2", side="core")
    daemon = start_daemon(doc)
    m = daemon.wait_for(
        lambda m: m.link("sitivmon_link_up", WAN) == 1 and m.link("sitivmon_link_up", CORE) == 1, "both links polled"
    )
    m = daemon.wait_polls("device", 1)
    assert totals(m, WAN) == (0, 0, 0) and totals(m, CORE) == (0, 0, 0)  # a baseline, no deltas invented
    assert m.link("sitivmon_link_speed_bytes", WAN) == 125_000_000  # ifHighSpeed 1000

    # The 32-bit in-counter wraps: 296 bytes to the wrap, 200 after it. HC counters just grow.
    scripted.counters(1, in_octets=200, out_octets=1500, hc=False)
    scripted.counters(2, in_octets=10**12 + 1_000_000, out_octets=5 * 10**11 + 2_000_000)
    scripted.write()
    daemon.wait_for(lambda m: totals(m, WAN) == (496, 500, 0), "the wrap counted")
    daemon.wait_for(lambda m: totals(m, CORE) == (2_000_000, 1_000_000, 0), "core side swapped")
    m = daemon.wait_polls("device", 2)
    assert totals(m, WAN) == (496, 500, 0), "a wrap is counted once, not at every poll"

    # A 64-bit counter going back without a reboot: a discontinuity, never a 2**64 wrap.
    scripted.counters(2, in_octets=10**12 + 1_000_000, out_octets=1000)
    scripted.write()
    daemon.wait_for(lambda m: totals(m, CORE) == (2_000_000, 1_000_000, 1), "64-bit going back is a reset")

    # The device reboots: sysUpTime back to 1 s. Counters below their previous values restarted from
    # zero (all of it counts); at or above them only the increase counts.
    scripted.reboot(uptime_s=1.0)
    scripted.counters(1, in_octets=30, out_octets=1600, hc=False)
    scripted.counters(2, in_octets=700, out_octets=1200)
    scripted.write()
    m = daemon.wait_for(lambda m: totals(m, WAN) == (496 + 30, 500 + 100, 1), "reboot on the 32-bit link")
    m = daemon.wait_for(lambda m: totals(m, CORE) == (2_000_000 + 200, 1_000_000 + 700, 2), "reboot, core side")
    m = daemon.wait_polls("device", 2)
    assert totals(m, WAN) == (526, 600, 1) and totals(m, CORE) == (2_000_200, 1_000_700, 2)
    assert m.value("sitivmon_poll_errors_total", target="device", reason="nonincreasing") == 0

    # The agent answers a GETNEXT on ifDescr.1 with ifDescr.1 again: the walk stops, the reason is
    # counted, the rows read so far are kept and the poll still succeeds.
    scripted.next_override(f"{IF_DESCR}.1", f"{IF_DESCR}.1")
    scripted.write()
    m = daemon.wait_for(
        lambda m: (m.value("sitivmon_poll_errors_total", target="device", reason="nonincreasing") or 0) >= 2,
        "non-increasing walks counted",
    )
    assert m.value("sitivmon_target_up", target="device") == 1
    scripted.counters(1, in_octets=130, out_octets=1600, hc=False)
    scripted.write()
    daemon.wait_for(lambda m: totals(m, WAN) == (626, 600, 1), "still counting with a buggy ifDescr")
    assert "stopped early: nonincreasing" in daemon.output()
    duration = daemon.metrics().value("sitivmon_target_poll_duration_seconds", target="device")
    assert duration is not None and duration < 0.3
