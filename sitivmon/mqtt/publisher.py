"""Publishes link states (retained), link events (QoS 1, in order) and commune summaries to MQTT.

Delivery model, and why:
- `publish_link_event` never blocks the caller (poller, trap handler): it appends to a bounded FIFO.
- One long-lived task owns the connection. It publishes the head of the FIFO and removes it only
  once the broker acknowledged it (QoS 1 PUBACK), so a message interrupted by a disconnection is
  sent again after reconnecting: at-least-once, in order, no loss while under the bound.
- Reconnection uses exponential backoff with full jitter, so many daemons (or restarts) do not
  hammer a recovering broker in step.
- When the FIFO is full the **oldest** message is dropped (counted in `sitivmon_mqtt_dropped_total`):
  recent events matter more to operators than old ones. A dropped *state* message is repaired:
  once the FIFO has drained, the latest state of every such link is published again, so the
  retained state on the broker always converges to the truth.
- The retained state is the link's whole published view (state, admin status, interface, target), so
  a change of any of these is republished even when the operational state did not change
  (`publish_link_state`): a new subscriber must never be told a stale truth.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt
from prometheus_client import CollectorRegistry, Counter, Gauge

from sitivmon.mqtt import payloads
from sitivmon.mqtt.config import MqttConfig
from sitivmon.readings import LinkStateEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    seq: int
    kind: str  # "state" | "event" | "summary"
    topic: str
    payload: bytes
    retain: bool
    qos: int = 1
    link: tuple[str, str] | None = None  # (commune, link) of a state message, to repair it if dropped


def published_view(event: LinkStateEvent) -> tuple[object, ...]:
    """The fields of the retained state that describe the link (not when or how it was learnt)."""
    return (event.state, event.admin_up, event.interface, event.target)


def backoff_delay(attempt: int, low: float, high: float, rng: Callable[[float, float], float]) -> float:
    """Full-jitter exponential backoff: uniform in [low, min(high, low * 2**attempt)]."""
    cap = min(high, low * (2 ** min(attempt, 30)))
    return rng(low, cap)


class MqttMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge("sitivmon_mqtt_connected", "1 while connected to the MQTT broker", registry=registry)
        self.published = Counter(
            "sitivmon_mqtt_published_total",
            "Messages acknowledged by the broker, by kind (state, event, summary)",
            ["kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "sitivmon_mqtt_dropped_total",
            "Messages dropped because the publish queue was full (oldest first)",
            registry=registry,
        )
        self.queue_depth = Gauge("sitivmon_mqtt_queue_depth", "Messages waiting to be published", registry=registry)
        for kind in ("state", "event", "summary"):
            self.published.labels(kind)


class MqttPublisher:
    """`EventSink` for MQTT. Use as `async with MqttPublisher(cfg, registry=r) as pub:`."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        registry: CollectorRegistry,
        client_factory: Callable[[], aiomqtt.Client] | None = None,
        rng: Callable[[float, float], float] = random.uniform,
        shard: str | None = None,
        active: bool = True,
    ) -> None:
        """`shard`: this daemon's shard index when sharded. Each shard knows only its own links, so
        its commune summaries go to `…/<commune>/summary/shard/<index>` (one retained topic per shard,
        which `…/+/summary/#` also matches): no shard overwrites another's with its partial view
        (docs/sharding.md).

        `active=False`: standby (a replica that is not its shard's leader, docs/leader.md) until
        `set_active(True)`: it keeps each link's latest state but neither connects nor queues."""
        self.config = config
        self.shard = shard
        self._active = active
        self._connection: asyncio.Task[None] | None = None
        self.metrics = MqttMetrics(registry)
        self._client_factory = client_factory or self._make_client
        self._rng = rng
        self._queue: collections.deque[Outgoing] = collections.deque()
        self._seq = itertools.count()
        self._inflight: int | None = None
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._latest: dict[tuple[str, str], LinkStateEvent] = {}
        self._resync: set[tuple[str, str]] = set()
        self._extra: dict[str, dict[str, Any]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    # ----- producer side (non-blocking) -------------------------------------------------------

    def publish_link_event(self, event: LinkStateEvent) -> None:
        """Queue the link's retained state and its event; never blocks, never raises on a full queue."""
        key = (event.commune, event.link)
        self._latest[key] = event
        prefix = self.config.topic_prefix
        self._put("state", payloads.state_topic(prefix, event.commune, event.link),
                  payloads.state_payload(event), retain=True, link=key)  # fmt: skip
        self._put("event", payloads.events_topic(prefix, event.commune), payloads.event_payload(event), retain=False)

    def publish_link_state(self, event: LinkStateEvent) -> None:
        """Queue the link's retained state alone (no event) when a published field differs from the
        last one queued; `since` is kept while the state itself is unchanged. Never blocks."""
        key = (event.commune, event.link)
        last = self._latest.get(key)
        if last is not None:
            if published_view(last) == published_view(event):
                return
            if last.state is event.state:
                event = dataclasses.replace(event, since=last.since, previous=last.previous)
        self._latest[key] = event
        self._put("state", payloads.state_topic(self.config.topic_prefix, event.commune, event.link),
                  payloads.state_payload(event), retain=True, link=key)  # fmt: skip

    def publish_summary(self, commune: str, payload: Mapping[str, Any] | None = None) -> None:
        """Queue a summary of `commune` now; `payload` (e.g. usage figures) is remembered and merged
        into this and later periodic summaries."""
        if payload is not None:
            self._extra[commune] = dict(payload)
        states = [e for (c, _), e in self._latest.items() if c == commune]
        body = payloads.summary_payload(commune, states, time.time(), self._extra.get(commune))
        topic = payloads.summary_topic(self.config.topic_prefix, commune)
        if self.shard is not None:
            topic = f"{topic}/shard/{self.shard}"
        self._put("summary", topic, body, retain=True)

    def _put(self, kind: str, topic: str, payload: bytes, retain: bool, link: tuple[str, str] | None = None) -> None:
        if not self._active:
            return  # standby: the leader publishes; `_latest` is kept for the day this daemon takes over
        q = self._queue
        while len(q) >= self.config.queue_size:
            # never drop the message being published: its fate is decided by the broker
            idx = 1 if q and q[0].seq == self._inflight else 0
            if idx >= len(q):
                break
            victim = q[idx]
            del q[idx]
            self.metrics.dropped.inc()
            if victim.link is not None:
                self._resync.add(victim.link)
        q.append(Outgoing(next(self._seq), kind, topic, payload, retain, link=link))
        self.metrics.queue_depth.set(len(q))
        self._drained.clear()
        self._wake.set()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def active(self) -> bool:
        return self._active

    def set_active(self, active: bool) -> None:
        """Leadership changed (sitivmon.leader). Taking over: connect, publish every known link's
        retained state and every commune's summary at once (what the former leader last said may be
        stale). Stepping down: disconnect and forget what was queued (the new leader republishes the
        states; events of the handover are not replayed), so that two daemons never publish for the
        same shard."""
        if active == self._active:
            return
        self._active = active
        if active:
            for key in sorted(self._latest):
                event = self._latest[key]
                self._put("state", payloads.state_topic(self.config.topic_prefix, *key),
                          payloads.state_payload(event), retain=True, link=key)  # fmt: skip
            self._publish_summaries()
            self._connect()
            return
        if self._connection is not None:
            self._connection.cancel()
            self._connection = None
        self._queue.clear()
        self._resync.clear()
        self._inflight = None
        self.metrics.queue_depth.set(0)
        self._drained.set()

    # ----- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> MqttPublisher:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._tasks = [self._tg.create_task(self._summaries(), name="sitivmon-mqtt-summaries")]
        if self._active:
            self._connect()
        return self

    def _connect(self) -> None:
        assert self._tg is not None
        self._connection = self._tg.create_task(self._run(), name="sitivmon-mqtt-publisher")

    async def __aexit__(self, *exc: object) -> None:
        if self._active and self.config.drain_timeout_s > 0 and self._queue and self.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self.config.drain_timeout_s)
        for t in [*self._tasks, *([self._connection] if self._connection is not None else [])]:
            t.cancel()
        assert self._tg is not None
        await self._tg.__aexit__(None, None, None)
        self.metrics.connected.set(0)

    def _make_client(self) -> aiomqtt.Client:
        c = self.config
        return aiomqtt.Client(
            c.host,
            c.port,
            username=c.username,
            password=c.password.get_secret_value() if c.password else None,
            identifier=c.client_id,
            keepalive=c.keepalive_s,
            tls_context=c.tls.context() if c.tls else None,
            tls_insecure=c.tls.insecure if c.tls else None,
            timeout=c.publish_timeout_s,
            logger=logging.getLogger("sitivmon.mqtt.client"),
        )

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._client_factory() as client:
                    attempt = 0
                    self.connected.set()
                    self.metrics.connected.set(1)
                    log.info("MQTT connected to %s:%s", self.config.host, self.config.port)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._watch(client))
                        tg.create_task(self._drain(client))
            except* aiomqtt.MqttError as group:
                # the error text carries broker codes, never our credentials
                log.warning("MQTT connection to %s:%s lost or refused: %s", self.config.host,
                            self.config.port, group.exceptions[0])  # fmt: skip
            finally:
                if self._connection in (None, asyncio.current_task()):  # not a successor's state
                    self.connected.clear()
                    self.metrics.connected.set(0)
                    self._inflight = None
            delay = backoff_delay(attempt, self.config.backoff_min_s, self.config.backoff_max_s, self._rng)
            attempt += 1
            await asyncio.sleep(delay)

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Ends with MqttError as soon as the connection drops, even when nothing is being sent."""
        async for _ in client.messages:
            pass

    async def _drain(self, client: aiomqtt.Client) -> None:
        q = self._queue
        while True:
            if not q:
                if self._resync:
                    self._requeue_resync()
                    continue
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            msg = q[0]
            self._inflight = msg.seq
            await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain,
                                 timeout=self.config.publish_timeout_s)  # fmt: skip
            self._inflight = None
            if q and q[0].seq == msg.seq:
                q.popleft()
            self.metrics.published.labels(msg.kind).inc()
            self.metrics.queue_depth.set(len(q))

    def _requeue_resync(self) -> None:
        keys, self._resync = self._resync, set()
        for key in sorted(keys):
            event = self._latest[key]
            self._put("state", payloads.state_topic(self.config.topic_prefix, *key),
                      payloads.state_payload(event), retain=True, link=key)  # fmt: skip

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(self.config.summary_interval_s)
            self._publish_summaries()

    def _publish_summaries(self) -> None:
        for commune in sorted({c for c, _ in self._latest} | set(self._extra)):
            self.publish_summary(commune)
