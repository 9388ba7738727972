"""Retained state converges to the truth across a broker outage (issue 11 "keep what holds", issue 10
symptom 14): a real mosquitto stopped and restarted while link states, admin-only changes and events
queue up, with and without queue overflow; events keep their order."""

from __future__ import annotations

import asyncio
import dataclasses

from prometheus_client import CollectorRegistry

from sitivmon.mqtt.publisher import MqttPublisher
from sitivmon.readings import LinkState, LinkStateEvent, StateSource
from tests.mqtt.broker import Broker
from tests.mqtt.test_publisher import Subscriber, broker, config, value, wait_for

__all__ = ["broker"]  # the fixture


def state(link: str, up: bool, admin_up: bool | None, at: float, source: StateSource = StateSource.TRAP
          ) -> LinkStateEvent:  # fmt: skip
    now, before = (LinkState.UP, LinkState.DOWN) if up else (LinkState.DOWN, LinkState.UP)
    return LinkStateEvent(link=link, commune="givors", target="sw1", interface=f"{link}-if", state=now,
                          previous=before, since=at, source=source, admin_up=admin_up)  # fmt: skip


async def retained_states(broker: Broker, n: int) -> dict[str, dict[str, object]]:
    async with Subscriber(broker.port, "sitivmon/givors/links/+/state") as fresh:
        docs = await fresh.wait(n)
        await asyncio.sleep(0.2)
        assert len(fresh.messages) == n, "one retained state per link"
    return {str(d["link"]): d for d in docs}


async def test_admin_only_change_is_republished_once_and_keeps_since(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with MqttPublisher(config(broker), registry=reg) as pub:
        pub.publish_link_event(state("l1", up=True, admin_up=True, at=100.0))
        refreshed = state("l1", up=True, admin_up=False, at=150.0, source=StateSource.POLL)
        pub.publish_link_state(refreshed)
        pub.publish_link_state(refreshed)  # nothing published has changed: nothing is sent
        pub.publish_link_state(dataclasses.replace(refreshed, since=170.0))  # only the time differs
        await wait_for(lambda: pub.queue_depth == 0)
    assert value(reg, "sitivmon_mqtt_published_total", kind="state") == 2
    assert value(reg, "sitivmon_mqtt_published_total", kind="event") == 1  # a refresh is not an event
    doc = (await retained_states(broker, 1))["l1"]
    assert (doc["state"], doc["admin_up"], doc["since_ts"], doc["source"]) == ("up", False, 100.0, "poll")


async def test_retained_states_converge_across_a_broker_restart(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with Subscriber(broker.port, "sitivmon/givors/events", session="reader-conv") as sub, \
            MqttPublisher(config(broker), registry=reg) as pub:  # fmt: skip
        pub.publish_link_event(state("l1", up=True, admin_up=True, at=1.0))
        await sub.wait(1)
        broker.stop()
        await wait_for(lambda: value(reg, "sitivmon_mqtt_connected") == 0)
        truth: dict[str, tuple[str, bool]] = {}
        for n in range(2, 42):  # 40 changes over 4 links while the broker is away
            link, up = f"l{n % 4 + 1}", n % 3 != 0
            pub.publish_link_event(state(link, up=up, admin_up=True, at=float(n)))
            truth[link] = ("up" if up else "down", True)
        pub.publish_link_state(state("l2", up=truth["l2"][0] == "up", admin_up=False, at=50.0))
        truth["l2"] = (truth["l2"][0], False)
        await asyncio.sleep(0.3)  # reconnection attempts fail meanwhile
        broker.start()
        got = await sub.wait(41, timeout=20)
        await wait_for(lambda: pub.queue_depth == 0)
    at = [p["at_ts"] for p in got]
    deduped = [x for i, x in enumerate(at) if i == 0 or x != at[i - 1]]  # at-least-once, never reordered
    assert deduped == [float(n) for n in range(1, 42)]
    docs = await retained_states(broker, 4)
    assert {link: (d["state"], d["admin_up"]) for link, d in docs.items()} == truth


async def test_dropped_refresh_is_repaired_after_overflow(broker: Broker) -> None:
    """An admin-only refresh dropped by a full queue during an outage is republished after it."""
    reg = CollectorRegistry()
    async with MqttPublisher(config(broker, queue_size=8), registry=reg) as pub:
        broker.stop()
        await wait_for(lambda: value(reg, "sitivmon_mqtt_connected") == 0)
        pub.publish_link_event(state("l1", up=False, admin_up=True, at=1.0))
        pub.publish_link_state(state("l1", up=False, admin_up=False, at=2.0))
        for n in range(3, 13):  # another link's flaps push l1's messages out of the queue
            pub.publish_link_event(state("l2", up=n % 2 == 0, admin_up=True, at=float(n)))
        assert value(reg, "sitivmon_mqtt_dropped_total") > 0
        broker.start()
        await wait_for(lambda: value(reg, "sitivmon_mqtt_connected") == 1, timeout=20)
        await wait_for(lambda: pub.queue_depth == 0)
        await asyncio.sleep(0.2)
    docs = await retained_states(broker, 2)
    assert (docs["l1"]["state"], docs["l1"]["admin_up"]) == ("down", False)
    assert (docs["l2"]["state"], docs["l2"]["admin_up"]) == ("up", True)
