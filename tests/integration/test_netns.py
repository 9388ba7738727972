"""The daemon polling snmpd inside a network namespace, over real veth interfaces whose kernel counters
move: counters grow by exactly the kernel's byte counts, a link going down shows within one interval."""

from __future__ import annotations

import time

from tests.conftest import NetnsDaemon
from tests.support import agents

COMMUNE_LINK = "givors-eth1"  # side=commune on eth1
CORE_LINK = "grigny-eth1-core"  # side=core on the same eth1


def link_bytes(m: agents.Metrics) -> dict[str, float]:
    out = {}
    for link in (COMMUNE_LINK, CORE_LINK):
        for direction in ("receive", "transmit"):
            v = m.link(f"sitivmon_link_{direction}_bytes_total", link)
            assert v is not None, f"{direction} bytes of {link} not exposed"
            out[f"{link}:{direction}"] = v
    return out


def settled(nd: NetnsDaemon) -> tuple[tuple[int, int], dict[str, float]]:
    """Kernel (rx, tx) of eth1 and the exposed totals, taken when a poll read exactly that kernel state:
    the kernel did not move across two whole polls, the second started after the first reading."""
    for _ in range(20):
        k0 = nd.lab.kernel_bytes("eth1")
        m = nd.daemon.wait_polls("agent", 2)
        if nd.lab.kernel_bytes("eth1") == k0:
            return k0, link_bytes(m)
    raise AssertionError("eth1 never went quiet")


def test_counters_follow_the_kernel_exactly(netns_daemon: NetnsDaemon) -> None:
    nd = netns_daemon
    link = nd.agent.links["eth1"]
    k0, m0 = settled(nd)
    nd.lab.send_udp(link, 1200, 50, to_agent=True)  # peer -> agent: eth1 receives
    nd.lab.send_udp(link, 700, 30, to_agent=False)  # agent -> peer: eth1 transmits
    k1, m1 = settled(nd)
    rx, tx = k1[0] - k0[0], k1[1] - k0[1]
    assert rx >= 50 * 1200 and tx >= 30 * 700, (rx, tx)  # the traffic did cross the link
    delta = {k: m1[k] - m0[k] for k in m1}
    assert delta == {
        f"{COMMUNE_LINK}:receive": rx,
        f"{COMMUNE_LINK}:transmit": tx,
        f"{CORE_LINK}:receive": tx,  # the core's interface transmits what the commune receives
        f"{CORE_LINK}:transmit": rx,
    }
    m = nd.daemon.metrics()
    for linkid in (COMMUNE_LINK, CORE_LINK):
        assert m.link("sitivmon_counter_discontinuities_total", linkid) == 0
    rx_commune = {dict(k)["commune"]: v for k, v in m.series("sitivmon_commune_receive_bytes_total").items()}
    assert rx_commune["givors"] == m.link("sitivmon_link_receive_bytes_total", COMMUNE_LINK)
    assert rx_commune["grigny"] == m.link("sitivmon_link_receive_bytes_total", CORE_LINK)


def test_link_down_within_one_interval(netns_daemon: NetnsDaemon) -> None:
    nd = netns_daemon
    interval = 1.0
    nd.daemon.wait_for(lambda m: m.link("sitivmon_link_up", COMMUNE_LINK) == 1, "eth1 up")
    nd.lab.set_link("eth1", up=False)
    started = time.monotonic()
    m = nd.daemon.wait_for(lambda m: m.link("sitivmon_link_up", COMMUNE_LINK) == 0, "eth1 down", timeout=5, every=0.02)
    took = time.monotonic() - started
    assert took <= interval + 0.5, f"link down seen after {took:.2f}s"
    assert m.link("sitivmon_link_up", CORE_LINK) == 0
    assert m.link("sitivmon_link_admin_up", COMMUNE_LINK) == 0  # `ip link set down` is administrative
    assert m.link("sitivmon_link_state_changes_total", COMMUNE_LINK) == 1
    nd.lab.set_link("eth1", up=True)
    m = nd.daemon.wait_for(lambda m: m.link("sitivmon_link_up", COMMUNE_LINK) == 1, "eth1 up again", timeout=5)
    assert m.link("sitivmon_link_state_changes_total", COMMUNE_LINK) == 2
    assert m.value("sitivmon_target_up", target="agent") == 1
