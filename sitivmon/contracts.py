"""The core's contracts with the features around it: what a poll handler gives, what sinks receive.

Features implement these (the datacenter handler, the usage recorder, the MQTT publisher); the core
calls them without knowing which are there. Only the composition root (`sitivmon.app`) connects them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sitivmon.config.model import CoreConfig, Target
from sitivmon.engine.poll import TargetPoll
from sitivmon.readings import Anomaly, CounterInterval, GaugeReading, LinkStateEvent, PollBatch


@dataclass(frozen=True, slots=True)
class Contribution:
    """What a profile handler adds to a poll's usage batch."""

    counters: tuple[CounterInterval, ...] = ()
    gauges: tuple[GaugeReading, ...] = ()
    baselines: Mapping[str, str] = field(default_factory=dict)
    anomalies: tuple[Anomaly, ...] = ()


class PollHandler(Protocol):
    """Extension point for profile families beyond interfaces (datacenter hosts, PDUs, VMs)."""

    def reconfigure(self, config: CoreConfig) -> None: ...

    def on_poll(self, target: Target, poll: TargetPoll) -> Contribution: ...

    def render(self, out: list[str]) -> None: ...

    def seed_baselines(self, baselines: Mapping[str, str]) -> int: ...


class UsageSink(Protocol):
    """Receives poll batches; implementations must not block the poller (queue and write elsewhere)."""

    def submit(self, batch: PollBatch) -> None: ...


class EventSink(Protocol):
    """Receives link events (MQTT publisher); must not block the caller."""

    def publish_link_event(self, event: LinkStateEvent) -> None: ...


@runtime_checkable
class LinkStateSink(Protocol):
    """An event sink that also keeps a retained per-link state (MQTT), refreshed when a published
    field other than the operational state changes."""

    def publish_link_state(self, event: LinkStateEvent) -> None: ...
