"""Hostile datagrams against the real receiver (issue 11, item 1): strangers cost a few header bytes,
and a burst of costly datagrams never holds the event loop for long."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from sitivmon.snmp import ber
from sitivmon.traps.config import resolve_trap_auth
from sitivmon.traps.events import TrapEvent
from sitivmon.traps.receiver import TrapReceiver
from tests.traps import hostile
from tests.traps.test_receiver import COMMUNITY, CREDENTIALS, make_config, value


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[TrapReceiver, list[TrapEvent], CollectorRegistry]]:
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    cfg = make_config(v3_users=[])
    async with TrapReceiver(cfg, resolve_trap_auth(cfg, CREDENTIALS), events.append, registry=registry) as r:
        yield r, events, registry


async def wait_until(cond: object, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert cond(), "condition not met in time"  # type: ignore[operator]


def test_wrong_community_refused_before_the_pdu_is_decoded() -> None:
    """A stranger's PDU is never decoded: the refusal reason is the community, not the PDU's garbage."""
    registry = CollectorRegistry()
    cfg = make_config(v3_users=[])
    r = TrapReceiver(cfg, resolve_trap_auth(cfg, CREDENTIALS), lambda e: None, registry=registry)
    for data in (hostile.v2c_raw(b"wrong", b"\x30\x03\xff\xff\xff"), hostile.huge_arc_trap(30_000)):
        r.handle_datagram(data, ("127.0.0.1", 1), time.monotonic())
    assert value(registry, "sitivmon_traps_rejected_total", reason="unknown_community") == 2
    assert value(registry, "sitivmon_traps_rejected_total", reason="decode_error") == 0


async def test_a_burst_of_costly_datagrams_yields_to_the_loop(
    receiver: tuple[TrapReceiver, list[TrapEvent], CollectorRegistry],
) -> None:
    """300 of the costliest well-formed datagrams queued at once (the loop was busy while they arrived)
    are decoded in slices: the loop's other work waits milliseconds, not the whole burst."""
    r, _events, registry = receiver
    heavy = hostile.heavy_trap(COMMUNITY.encode(), 25, oid_arcs=128)
    assert len(heavy) <= ber.MAX_MESSAGE_BYTES
    n = 300
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(n):  # sent while this test holds the loop: all of them wait in the socket
            s.sendto(heavy, r.address)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t0)

    task = asyncio.create_task(ticker())
    try:
        await wait_until(lambda: value(registry, "sitivmon_traps_received_total", source="127.0.0.1", type="other")
                         >= n, timeout=30)  # fmt: skip
    finally:
        task.cancel()
    worst = max(lags)
    print(f"{n} datagrams of {len(heavy)} bytes: worst loop stall {worst * 1000:.1f} ms over {len(lags)} ticks")
    assert worst < 0.1, f"the event loop stalled {worst * 1000:.0f} ms"
