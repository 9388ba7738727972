"""Link traps carry the administrative status (issue 10, symptom 14): the trap's own ifAdminStatus and
ifOperStatus are applied, and any change of a published field republishes the retained MQTT state.

The monitor is driven the way the daemon drives it (polls as `TargetPoll`s, traps through
`on_link_trap`) and publishes through the real `MqttPublisher` to a real mosquitto; a fresh subscriber
reads the retained state after each step, as a pager starting up would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sitivmon.app.config import parse_config
from sitivmon.engine.poll import TargetPoll
from sitivmon.monitor import Monitor, trap_link_status
from sitivmon.mqtt.config import MqttConfig
from sitivmon.mqtt.publisher import MqttPublisher
from sitivmon.readings import LinkState
from tests.mqtt.broker import PASSWORD, READER, READER_PASSWORD, USER, Broker

CONFIG = """
communes:
  - {id: givors, name: Givors, insee: "69091"}
credentials:
  v2: {version: 2c, community: public}
targets:
  - {name: sw1, address: "192.0.2.1", credentials: v2}
links:
  - {id: givors-1, commune: givors, target: sw1, interface: {name: eth1}}
"""
TOPIC = "sitivmon/givors/links/givors-1/state"

UP, DOWN = LinkState.UP, LinkState.DOWN


@pytest.mark.parametrize(
    ("up", "admin", "oper", "expected"),
    [
        (False, 2, 2, (DOWN, False)),  # net-snmp's linkDown for `ip link set X down`
        (False, 1, 2, (DOWN, True)),  # carrier lost, admin still up: an outage
        (True, 1, 1, (UP, True)),
        (False, 1, 7, (DOWN, True)),  # lowerLayerDown
        (True, 3, 1, (UP, False)),  # testing is not admin up
        (False, None, None, (DOWN, None)),  # v1 trap without varbinds: the kind decides, admin unknown
        (True, None, None, (UP, None)),
        (True, 9, 0, (UP, None)),  # out-of-range varbinds are not believed
        (False, -1, 99, (DOWN, None)),
        (True, 1, 2, (DOWN, True)),  # linkUp whose ifOperStatus already says down: the varbind is newer
    ],
)
def test_trap_link_status(
    up: bool, admin: int | None, oper: int | None, expected: tuple[LinkState, bool | None]
) -> None:
    assert trap_link_status(up, admin, oper) == expected


def poll(at: float, admin: int, oper: int) -> TargetPoll:
    return TargetPoll(
        target="sw1", at=at, duration=0.01, scalars={"sysUpTime": int(at * 100)},
        tables={"ifName": {"3": b"eth1"}, "ifDescr": {"3": b"eth1"}, "ifAdminStatus": {"3": admin},
                "ifOperStatus": {"3": oper}, "ifHCInOctets": {"3": int(at)}, "ifHCOutOctets": {"3": int(at)}},
    )  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def retained(broker: Broker) -> dict[str, Any]:
    """The retained state as a subscriber connecting now receives it."""
    async with aiomqtt.Client("127.0.0.1", broker.port, username=READER, password=READER_PASSWORD) as c:
        await c.subscribe(TOPIC, qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                assert m.retain
                doc: dict[str, Any] = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                return doc
    raise AssertionError("no retained state")


async def settle(pub: MqttPublisher) -> None:
    async with asyncio.timeout(10):
        while pub.queue_depth:  # noqa: ASYNC110 - waiting for the broker's acknowledgements
            await asyncio.sleep(0.01)


async def test_admin_shutdown_by_trap_and_poll_converges_on_mqtt(broker: Broker) -> None:
    cfg = parse_config(CONFIG)
    target = cfg.targets[0]
    mqtt = MqttConfig(enabled=True, port=broker.port, username=USER, password=SecretStr(PASSWORD),
                      backoff_min_s=0.05, backoff_max_s=0.3, summary_interval_s=3600)  # fmt: skip
    async with MqttPublisher(mqtt, registry=CollectorRegistry()) as pub:
        monitor = Monitor(cfg, event_sinks=[pub])

        async def step(expected_state: str, expected_admin: bool) -> dict[str, Any]:
            await settle(pub)
            doc = await retained(broker)
            assert (doc["state"], doc["admin_up"]) == (expected_state, expected_admin), doc
            return doc

        monitor.on_poll(target, poll(1000.0, admin=1, oper=1))
        await step("up", True)
        # `ip link set eth1 down`: net-snmp's linkDown carries ifAdminStatus 2 and ifOperStatus 2
        monitor.on_link_trap("192.0.2.1", 3, False, 1001.0, admin_status=2, oper_status=2)
        down = await step("down", False)
        assert down["source"] == "trap"
        monitor.on_poll(target, poll(1002.0, admin=2, oper=2))  # the confirming poll
        await step("down", False)
        monitor.on_link_trap("192.0.2.1", 3, True, 1003.0, admin_status=1, oper_status=1)
        await step("up", True)
        monitor.on_poll(target, poll(1004.0, admin=1, oper=1))
        up = await step("up", True)
        # An admin change a poll sees without an operational change still reaches the retained state,
        # and the state keeps the time it has been up since.
        monitor.on_poll(target, poll(1005.0, admin=2, oper=1))
        doc = await step("up", False)
        assert doc["since_ts"] == up["since_ts"] == 1003.0
        # and a trap that only corrects the admin status does too
        monitor.on_link_trap("192.0.2.1", 3, True, 1006.0, admin_status=1, oper_status=1)
        await step("up", True)
        assert monitor.links["givors-1"].admin_up is True


def test_a_trap_is_stamped_with_when_it_was_received() -> None:
    """A trap delivered late (coalesced under a flood) changes the link as of its arrival, not delivery."""
    from sitivmon.app.daemon import apply_trap
    from sitivmon.traps.events import TrapEvent, TrapKind

    monitor = Monitor(parse_config(CONFIG))
    sw1 = monitor.config.target_by_name()["sw1"]
    monitor.on_poll(sw1, poll(1_000.0, 1, 1))
    event = TrapEvent("192.0.2.1", TrapKind.LINK_DOWN, 3, 1, 2, received_at=1_010.5, version="v2c",
                      user_or_community_name="v2")
    assert apply_trap(monitor, event) == ["sw1"]
    link = monitor.links["givors-1"]
    assert link.state is DOWN and link.last_change == 1_010.5
    other = TrapEvent("192.0.2.9", TrapKind.LINK_UP, 3, 1, 1, received_at=1_020.0, version="v2c",
                      user_or_community_name="v2")
    assert apply_trap(monitor, other) == []  # not a target's address: nothing to poll, nothing changed
    assert link.state is DOWN
