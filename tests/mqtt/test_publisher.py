"""MqttPublisher against a real mosquitto: retained state, ordered QoS 1 events, broker outage and
recovery, overflow accounting, TLS with username/password."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sitivmon.mqtt.config import MqttConfig, MqttTls
from sitivmon.mqtt.publisher import MqttPublisher
from sitivmon.readings import LinkState, LinkStateEvent, StateSource
from tests.mqtt.broker import PASSWORD, READER, READER_PASSWORD, USER, Broker


def ev(n: int, link: str = "ambert-fibre", commune: str = "ambert") -> LinkStateEvent:
    state = LinkState.DOWN if n % 2 == 0 else LinkState.UP
    prev = LinkState.UP if state is LinkState.DOWN else LinkState.DOWN
    return LinkStateEvent(link=link, commune=commune, target="rtr", interface=f"if{n}", state=state,
                          previous=prev, since=1_700_000_000.0 + n, source=StateSource.TRAP)  # fmt: skip


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def config(broker: Broker, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = dict(enabled=True, port=broker.port, username=USER, password=SecretStr(PASSWORD),
                                client_id="sitivmon-test", backoff_min_s=0.05, backoff_max_s=0.3,
                                summary_interval_s=3600)  # fmt: skip
    base.update(kw)
    return MqttConfig(**base)


class Subscriber:
    """A real MQTT client collecting messages of `topic` (persistent session when `session`)."""

    def __init__(self, port: int, topic: str, session: str | None = None, tls: ssl.SSLContext | None = None):
        self.port, self.topic, self.session, self.tls = port, topic, session, tls
        self.messages: list[aiomqtt.Message] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, username=READER, password=READER_PASSWORD,
                                          identifier=self.session, clean_session=False if self.session else None,
                                          tls_context=self.tls) as c:  # fmt: skip
                    await c.subscribe(self.topic, qos=1)
                    self.ready.set()
                    async for m in c.messages:
                        self.messages.append(m)
            except aiomqtt.MqttError:
                self.ready.clear()
                await asyncio.sleep(0.05)

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    async def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:  # noqa: ASYNC110 - polling what a real client received
                await asyncio.sleep(0.01)
        return [json.loads(bytes(m.payload)) for m in self.messages]  # type: ignore[arg-type]


async def wait_for(cond: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - polling metrics / broker-side effects
            await asyncio.sleep(0.01)


async def test_retained_state_seen_by_a_fresh_subscriber(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with MqttPublisher(config(broker), registry=reg) as pub:
        pub.publish_link_event(ev(0))
        pub.publish_link_event(ev(1, link="marsac-fibre", commune="marsac"))
        await wait_for(lambda: pub.queue_depth == 0)
        assert value(reg, "sitivmon_mqtt_connected") == 1
    assert value(reg, "sitivmon_mqtt_connected") == 0
    assert value(reg, "sitivmon_mqtt_published_total", kind="state") == 2
    assert value(reg, "sitivmon_mqtt_published_total", kind="event") == 2
    async with Subscriber(broker.port, "sitivmon/+/links/+/state") as sub:
        got = await sub.wait(2)
    by_topic = {str(m.topic): (m.retain, p) for m, p in zip(sub.messages, got, strict=True)}
    assert by_topic["sitivmon/ambert/links/ambert-fibre/state"][0] is True
    assert by_topic["sitivmon/ambert/links/ambert-fibre/state"][1]["state"] == "down"
    assert by_topic["sitivmon/marsac/links/marsac-fibre/state"][1]["source"] == "trap"


async def test_events_in_order_with_qos1(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with Subscriber(broker.port, "sitivmon/ambert/events") as sub, \
            MqttPublisher(config(broker), registry=reg) as pub:  # fmt: skip
        for n in range(200):
            pub.publish_link_event(ev(n))
        got = await sub.wait(200)
    assert [p["interface"] for p in got] == [f"if{n}" for n in range(200)]
    assert all(m.qos == 1 for m in sub.messages)


async def test_broker_outage_events_wait_and_go_out_in_order(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with Subscriber(broker.port, "sitivmon/ambert/events", session="reader-1") as sub, \
            MqttPublisher(config(broker), registry=reg) as pub:  # fmt: skip
        pub.publish_link_event(ev(0))
        await sub.wait(1)
        broker.stop()
        await wait_for(lambda: value(reg, "sitivmon_mqtt_connected") == 0)
        for n in range(1, 51):
            pub.publish_link_event(ev(n))
        await asyncio.sleep(0.5)  # several reconnection attempts fail meanwhile
        assert pub.queue_depth == 100  # 50 states + 50 events
        assert value(reg, "sitivmon_mqtt_queue_depth") == 100
        broker.start()  # same port, persistent session of the subscriber restored
        got = await sub.wait(51, timeout=20)
        await wait_for(lambda: pub.queue_depth == 0)
    interfaces = [p["interface"] for p in got]
    # at-least-once: a message in flight when the broker died may appear twice, never out of order
    deduped = [x for i, x in enumerate(interfaces) if i == 0 or x != interfaces[i - 1]]
    assert deduped == [f"if{n}" for n in range(51)]
    assert value(reg, "sitivmon_mqtt_dropped_total") == 0


async def test_overflow_drops_oldest_counts_and_repairs_retained_state(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with Subscriber(broker.port, "sitivmon/ambert/events", session="reader-2") as sub, \
            MqttPublisher(config(broker, queue_size=10), registry=reg) as pub:  # fmt: skip
        broker.stop()
        await wait_for(lambda: value(reg, "sitivmon_mqtt_connected") == 0 and pub.queue_depth == 0)
        for n in range(20):  # 40 messages into a queue of 10
            pub.publish_link_event(ev(n))
        assert value(reg, "sitivmon_mqtt_dropped_total") == 30
        assert pub.queue_depth == 10
        broker.start()
        got = await sub.wait(5, timeout=20)
        await wait_for(lambda: pub.queue_depth == 0)
        await asyncio.sleep(0.2)
    assert [p["interface"] for p in got] == [f"if{n}" for n in range(15, 20)]  # the newest survive
    async with Subscriber(broker.port, "sitivmon/ambert/links/+/state") as fresh:
        (state,) = await fresh.wait(1)
    assert state["interface"] == "if19" and state["state"] == "up"


async def test_summary_published_retained(broker: Broker) -> None:
    reg = CollectorRegistry()
    async with MqttPublisher(config(broker, summary_interval_s=0.2), registry=reg) as pub:
        pub.publish_link_event(ev(0))
        pub.publish_link_event(ev(1, link="ambert-4g"))
        pub.publish_summary("ambert", {"traffic_in_bytes_mtd": 123})
        await asyncio.sleep(0.5)
        await wait_for(lambda: pub.queue_depth == 0)
    assert value(reg, "sitivmon_mqtt_published_total", kind="summary") >= 2
    async with Subscriber(broker.port, "sitivmon/ambert/summary") as sub:
        (summary,) = await sub.wait(1)
    assert summary["links"] == {"total": 2, "up": 1, "down": 0 + 1, "unknown": 0}
    assert summary["links_not_up"] == ["ambert-fibre"] and summary["traffic_in_bytes_mtd"] == 123


async def test_bad_password_stays_disconnected_and_queues(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    reg = CollectorRegistry()
    async with MqttPublisher(config(broker, password=SecretStr("wrong-secret-xyz"), drain_timeout_s=0),
                             registry=reg) as pub:  # fmt: skip
        pub.publish_link_event(ev(0))
        await asyncio.sleep(0.5)
        assert value(reg, "sitivmon_mqtt_connected") == 0
        assert pub.queue_depth == 2
    assert "wrong-secret-xyz" not in caplog.text


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "tls-broker", tls=True)
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def test_tls_with_username_password(tls_broker: Broker) -> None:
    assert tls_broker.ca is not None
    reg = CollectorRegistry()
    cfg = config(tls_broker, port=tls_broker.tls_port, tls=MqttTls(ca_file=tls_broker.ca))
    async with MqttPublisher(cfg, registry=reg) as pub:
        pub.publish_link_event(ev(0))
        await wait_for(lambda: pub.queue_depth == 0)
    ctx = ssl.create_default_context(cafile=str(tls_broker.ca))
    async with Subscriber(tls_broker.tls_port, "sitivmon/+/links/+/state", tls=ctx) as sub:
        (state,) = await sub.wait(1)
    assert state["state"] == "down"


async def test_tls_rejects_unknown_ca(tls_broker: Broker, tmp_path: Path) -> None:
    from tests.mqtt.broker import make_ca

    other = tmp_path / "other-ca"
    other.mkdir()
    other_ca, _, _ = make_ca(other)
    reg = CollectorRegistry()
    cfg = config(tls_broker, port=tls_broker.tls_port, tls=MqttTls(ca_file=other_ca), drain_timeout_s=0)
    async with MqttPublisher(cfg, registry=reg) as pub:
        pub.publish_link_event(ev(0))
        await asyncio.sleep(0.5)
        assert value(reg, "sitivmon_mqtt_connected") == 0 and pub.queue_depth == 2

