"""Regressions for the review's findings: each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sitivmon.aio import wait_event
from sitivmon.app.config import ConfigError, parse_config
from sitivmon.config.model import parse_listen
from sitivmon.links.interfaces import interface_rows
from sitivmon.links.state import decode_baseline, encode_baseline, link_origin
from sitivmon.monitor import Monitor, same_host_key
from sitivmon.normalize.counters import CounterSnapshot, RawCounter
from sitivmon.readings import LinkState

BASE = """
communes:
  - {id: givors, name: Givors, insee: "69091"}
credentials:
  v2: {version: 2c, community: public}
targets:
  - {name: sw1, address: "%s", credentials: v2}
links:
  - {id: givors-1, commune: givors, target: sw1, interface: {name: eth1}}
"""


def config(address: str = "192.0.2.1") -> Any:
    return parse_config(BASE % address)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, RawCounter(5, 32)),
        (2**32 - 1, RawCounter(2**32 - 1, 32)),
        (2**32, None),  # does not fit a Counter32: counting it would make totals go down later
        (-1, None),
        (b"12", None),
    ],
)
def test_32bit_counter_values_out_of_range_are_not_counters(value: Any, expected: RawCounter | None) -> None:
    rows = interface_rows({"ifDescr": {"1": b"eth1"}, "ifInOctets": {"1": value}})
    assert rows[1].counters.get("in_octets") == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("192.0.2.1", "::ffff:192.0.2.1", True),
        ("2001:db8::1", "2001:DB8:0:0::1", True),
        ("[2001:db8::1]", "2001:db8::1", True),
        ("192.0.2.1", "192.0.2.2", False),
    ],
)
def test_trap_sources_compare_as_addresses(a: str, b: str, same: bool) -> None:
    assert (same_host_key(a) == same_host_key(b)) is same


def test_trap_without_ifindex_changes_no_link() -> None:
    monitor = Monitor(config())
    rt = monitor.links["givors-1"]
    rt.if_index, rt.state = 3, LinkState.UP
    assert monitor.on_link_trap("192.0.2.1", None, up=False, at=1.0) == []
    assert rt.state is LinkState.UP
    events = monitor.on_link_trap("::ffff:192.0.2.1", 3, up=False, at=2.0)
    assert [e.state for e in events] == [LinkState.DOWN]


def test_baseline_from_another_device_is_not_restored() -> None:
    cfg = config()
    snap = CounterSnapshot(100.0, 1000, None, {"in_octets": RawCounter(10**12, 64)})
    text = encode_baseline(link_origin("192.0.2.99", cfg.links[0]), 3, snap)
    monitor = Monitor(cfg)
    assert monitor.seed_baselines({"givors-1": text}) == 0
    assert monitor.links["givors-1"].snapshot is None
    good = encode_baseline(link_origin("192.0.2.1", cfg.links[0]), 3, snap)
    assert monitor.seed_baselines({"givors-1": good}) == 1
    assert monitor.links["givors-1"].snapshot == snap
    assert monitor.links["givors-1"].if_index == 3
    assert decode_baseline(good)[2] == snap


def test_reload_with_a_new_device_address_drops_the_snapshot() -> None:
    monitor = Monitor(config())
    monitor.links["givors-1"].snapshot = CounterSnapshot(1.0, None, None, {})
    monitor.reconfigure(config("192.0.2.7"))
    assert monitor.links["givors-1"].snapshot is None


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("localhost:1161", "<value> is not an IP address (host names are not resolved)"),
        ("[::1", "missing ']'"),
        ("[::1]:x", "invalid port"),
    ],
)
def test_target_addresses_must_be_ip_literals(address: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(address)
    assert message in str(err.value) and "targets[0].address" in str(err.value)


def test_insee_code_that_lost_its_leading_zero_is_refused() -> None:
    text = (BASE % "192.0.2.1").replace('insee: "69091"', "insee: 01053")
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert "communes[0].insee" in str(err.value) and "quoted string" in str(err.value)


@pytest.mark.parametrize(("value", "ok"), [("127.0.0.1:9811", True), ("9811", False), ("127.0.0.1:99999", False)])
def test_listen_needs_a_port_in_range(value: str, ok: bool) -> None:
    if ok:
        assert parse_listen(value) == ("127.0.0.1", 9811)
    else:
        with pytest.raises(ValueError):
            parse_listen(value)


async def test_wait_event_can_be_cancelled_while_the_event_keeps_firing() -> None:
    event = asyncio.Event()

    async def waiter() -> None:
        while True:
            await wait_event(event, 10)
            event.clear()

    async def storm() -> None:
        while True:
            event.set()
            await asyncio.sleep(0)

    task, noise = asyncio.create_task(waiter()), asyncio.create_task(storm())
    for _ in range(50):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    noise.cancel()
    assert task in done and task.cancelled()
