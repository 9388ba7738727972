"""Hostile trap datagrams against the running daemon (issue 11, item 1): forty costly datagrams sent
in about 10 ms from a target's address (allowed by default) must not freeze `/-/healthy`.

The probe's datagrams held one enormous OID sub-identifier: 60 KB took ~0.34 s each to decode, on the
event loop, before the community was checked, and the whole burst in one batch (~30 s of freeze)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from typing import Any

from tests.conftest import StartDaemon
from tests.support import agents
from tests.support.procs import free_udp_port
from tests.traps import hostile


def test_costly_trap_burst_does_not_freeze_health(snmp_agent: agents.Agent, start_daemon: StartDaemon,
                                                  tmp_path: Any) -> None:  # fmt: skip
    trap_port = free_udp_port()
    doc = agents.base_config(tmp_path / "state", traps={"host": "127.0.0.1", "port": trap_port, "communities": ["v2c"]})
    agents.add_target(doc, "loopback", snmp_agent.address, "v2c",
                      {"version": "2c", "community": snmp_agent.community})  # fmt: skip
    daemon = start_daemon(doc)
    daemon.wait_polls("loopback", 2)
    burst = [hostile.huge_arc_trap(60_000)] * 20  # wrong community, as the probe sent them
    # the right community (a leaked or guessed one) and an arc under the size bound: the decoder's own bound
    burst += [hostile.huge_arc_trap(30_000, community=snmp_agent.community.encode())] * 20
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            with urllib.request.urlopen(daemon.url + "/-/healthy", timeout=60) as r:
                assert r.status == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)

    skipped_before = daemon.metrics().value("sitivmon_polls_skipped_total", target="loopback") or 0
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        t0 = time.perf_counter()
        for data in burst:
            s.sendto(data, ("127.0.0.1", trap_port))
        sent_in = time.perf_counter() - t0
    time.sleep(3)
    stop.set()
    prober.join(120)
    worst = max(latencies)
    print(f"40 datagrams sent in {sent_in * 1000:.1f} ms; /-/healthy worst {worst * 1000:.1f} ms "
          f"over {len(latencies)} requests")  # fmt: skip
    m = daemon.metrics()
    refused = sum(
        m.value("sitivmon_traps_rejected_total", reason=r) or 0 for r in ("unknown_community", "decode_error")
    )
    assert refused == 40
    assert worst < 0.5, f"/-/healthy took {worst:.2f} s during the burst"
    # the target is polled every second: none of its polls was skipped while the burst was handled
    assert (m.value("sitivmon_polls_skipped_total", target="loopback") or 0) == skipped_before
