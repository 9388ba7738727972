"""The MQTT publisher of a replica that is not its shard's leader (standby), with a real mosquitto:
it does not connect nor publish, keeps the links' latest states, and on taking over publishes them and
every commune's summary at once; stepping down disconnects it and forgets what was queued."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sitivmon.mqtt.publisher import MqttPublisher
from tests.mqtt.broker import Broker
from tests.mqtt.test_publisher import Subscriber, config, ev, value, wait_for


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def test_standby_publishes_nothing_then_takes_over_with_states_and_summaries(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with Subscriber(broker.port, "sitivmon/#") as sub, \
            MqttPublisher(config(broker), registry=reg, active=False) as pub:  # fmt: skip
        pub.publish_link_event(ev(0))
        pub.publish_link_event(ev(1))  # the same link, up again: the latest state is what counts
        pub.publish_link_event(ev(2, link="marsac-fibre", commune="marsac"))
        pub.publish_summary("ambert")
        await asyncio.sleep(0.5)
        assert sub.messages == [] and pub.queue_depth == 0
        assert value(reg, "sitivmon_mqtt_connected") == 0  # standby: not even connected

        loop = asyncio.get_running_loop()
        took = loop.time()
        pub.set_active(True)
        got = await sub.wait(4)
        delay = loop.time() - took
        topics = sorted(str(m.topic) for m in sub.messages)
        assert topics == ["sitivmon/ambert/links/ambert-fibre/state", "sitivmon/ambert/summary",
                          "sitivmon/marsac/links/marsac-fibre/state", "sitivmon/marsac/summary"]  # fmt: skip
        states = {p["link"]: p["state"] for p in got if "link" in p and "state" in p}
        assert states == {"ambert-fibre": "up", "marsac-fibre": "down"}
        assert delay < 2.0  # at once, not at the next summary period (an hour here)
        assert value(reg, "sitivmon_mqtt_connected") == 1

        pub.set_active(False)
        await wait_for(lambda: value(reg, "sitivmon_mqtt_connected") == 0)
        pub.publish_link_event(ev(3))
        await asyncio.sleep(0.5)
        assert len(sub.messages) == 4 and pub.queue_depth == 0
