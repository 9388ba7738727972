"""A flood of valid link traps over a real socket, wired to the monitor as the daemon wires them:
whatever the rate limit delays or coalesces, every link ends in the state of its last trap."""

from __future__ import annotations

import asyncio
import random
import socket

from prometheus_client import CollectorRegistry

from sitivmon.app.config import parse_config
from sitivmon.engine.poll import TargetPoll
from sitivmon.monitor import Monitor
from sitivmon.readings import LinkState
from sitivmon.traps.config import resolve_trap_auth
from sitivmon.traps.events import TrapEvent, TrapKind
from sitivmon.traps.receiver import TrapReceiver
from tests.traps import hostile
from tests.traps.test_receiver import COMMUNITY, CREDENTIALS, make_config, value

LINKS = 8


async def test_valid_trap_flood_converges_to_the_last_state_of_every_link() -> None:
    links = "".join(
        f"  - {{id: l{i}, commune: givors, target: sw1, interface: {{index: {i}}}}}\n" for i in range(1, LINKS + 1)
    )
    cfg = parse_config(
        'communes: [{id: givors, name: Givors, insee: "69091"}]\n'
        "credentials: {v2: {version: 2c, community: public}}\n"
        'targets: [{name: sw1, address: "127.0.0.1", credentials: v2}]\n'
        "links:\n" + links
    )
    monitor = Monitor(cfg)
    idx = {str(i): b"eth%d" % i for i in range(1, LINKS + 1)}
    up = {str(i): 1 for i in range(1, LINKS + 1)}
    tables = {"ifDescr": idx, "ifAdminStatus": up, "ifOperStatus": up}
    monitor.on_poll(cfg.targets[0], TargetPoll(target="sw1", at=1.0, duration=0.0, tables=tables))

    def on_event(event: TrapEvent) -> None:  # what Daemon._on_trap does
        if event.kind.is_link:
            monitor.on_link_trap(event.source_ip, event.if_index, event.kind is TrapKind.LINK_UP, 2.0,
                                 admin_status=event.admin_status, oper_status=event.oper_status)  # fmt: skip

    trap_cfg = make_config(v3_users=[], rate_limit_per_source=200, rate_burst=20)
    registry = CollectorRegistry()
    rng = random.Random(5)
    final: dict[int, bool] = {}
    n = 4000
    async with TrapReceiver(trap_cfg, resolve_trap_auth(trap_cfg, CREDENTIALS), on_event, registry=registry) as r:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for k in range(n):
                i, is_up = rng.randint(1, LINKS), rng.random() < 0.5
                final[i] = is_up
                s.sendto(hostile.link_trap(COMMUNITY.encode(), i, is_up, request_id=k), r.address)
                if k % 500 == 0:
                    await asyncio.sleep(0)  # let the receiver drain the socket now and then
        def done() -> bool:
            received = sum(value(registry, "sitivmon_traps_received_total", source="127.0.0.1", type=t)
                           for t in ("linkUp", "linkDown"))  # fmt: skip
            return received >= n and not r.pending_coalesced

        async with asyncio.timeout(20):
            while not done():  # noqa: ASYNC110 - polling the receiver's counters
                await asyncio.sleep(0.02)
    assert value(registry, "sitivmon_traps_coalesced_total") > 0, "the flood exceeded the rate limit"
    assert value(registry, "sitivmon_traps_rejected_total", reason="rate_limited") == 0
    states = {i: monitor.links[f"l{i}"].state for i in range(1, LINKS + 1)}
    assert states == {i: LinkState.UP if final[i] else LinkState.DOWN for i in range(1, LINKS + 1)}
