"""The daemon's model of the world: targets and links, folded from polls and traps.

Polls arrive here as `TargetPoll`s; the monitor resolves links, normalises counters, records state
changes and hands usage records and events on. It does no I/O itself besides logging state changes
once (a failing target is logged when it fails and when it recovers, not every poll).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sitivmon.config.model import CoreConfig, Target
from sitivmon.contracts import EventSink, LinkStateSink, PollHandler, UsageSink
from sitivmon.engine.poll import TargetPoll
from sitivmon.engine.selection import ALL_TARGETS, TargetSelector
from sitivmon.links.ifalias import links_from_aliases
from sitivmon.links.interfaces import (
    STATUS_UP,
    InterfaceIndex,
    InterfaceRow,
    ResolveError,
    RowMemo,
    interface_rows,
)
from sitivmon.links.state import LinkRuntime, apply_row, decode_baseline, derived_of, link_origin
from sitivmon.readings import (
    Anomaly,
    Baseline,
    CounterInterval,
    GaugeReading,
    LinkState,
    LinkStateEvent,
    PollBatch,
    StateSource,
)
from sitivmon.snmp.client import PollErrorReason

log = logging.getLogger("sitivmon.monitor")


def same_host_key(host: str) -> str:
    """A canonical spelling of an address (IPv4-mapped IPv6 unmapped); names are kept as written."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(slots=True)
class TargetStatus:
    name: str
    interval_s: float
    up: bool | None = None
    tried: bool = False
    last_success: float | None = None
    last_duration: float = 0.0
    last_error: str | None = None
    errors: Counter[str] = field(default_factory=Counter)
    varbinds: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)  # by reason
    anomalies_seen: set[tuple[str, str]] = field(default_factory=set)  # (subject, reason) already logged


# ifAdminStatus up(1) down(2) testing(3); ifOperStatus up(1) .. lowerLayerDown(7) (RFC 2863).
_ADMIN_STATUSES = range(1, 4)
_OPER_STATUSES = range(1, 8)


def trap_link_status(up: bool, admin_status: int | None, oper_status: int | None) -> tuple[LinkState, bool | None]:
    """(operational state, admin up or None when the trap does not say) from a link trap.

    The trap's own ifOperStatus/ifAdminStatus varbinds are the device's word at the moment of the
    change, read with the same rule as a poll (up only when 1); the trap's kind decides only when the
    varbind is absent or out of range.
    """
    if isinstance(oper_status, int) and oper_status in _OPER_STATUSES:
        state = LinkState.UP if oper_status == STATUS_UP else LinkState.DOWN
    else:
        state = LinkState.UP if up else LinkState.DOWN
    admin = admin_status == STATUS_UP if isinstance(admin_status, int) and admin_status in _ADMIN_STATUSES else None
    return state, admin


class Monitor:
    """Folds polls and traps of the targets its selector owns into link and target state.

    What it produces goes to listeners: usage sinks receive one batch per poll, event sinks every
    link state change; there may be none of either (a monitoring-only composition) or several.
    """

    def __init__(
        self,
        config: CoreConfig,
        *,
        usage_sinks: Sequence[UsageSink] = (),
        event_sinks: Sequence[EventSink] = (),
        handlers: Sequence[PollHandler] = (),
        selector: TargetSelector = ALL_TARGETS,
    ) -> None:
        self.usage_sinks = list(usage_sinks)
        self.event_sinks = list(event_sinks)
        self.handlers = list(handlers)
        self.selector = selector
        self.owned: list[Target] = []
        self.links: dict[str, LinkRuntime] = {}
        self._by_target: dict[str, list[LinkRuntime]] | None = None  # links_of's index, rebuilt lazily
        self.targets: dict[str, TargetStatus] = {}
        self._memos: dict[str, RowMemo] = {}  # per target: what its next poll reuses (`RowMemo`)
        self.config = config
        self.reconfigure(config)

    def add_usage_sink(self, sink: UsageSink) -> None:
        self.usage_sinks.append(sink)

    def add_event_sink(self, sink: EventSink) -> None:
        self.event_sinks.append(sink)

    def reconfigure(self, config: CoreConfig) -> None:
        """Adopt a new config, keeping the state of links and targets that still exist."""
        old_addresses = {t.name: t.address for t in self.owned}
        self.owned = self.selector.select(config.targets)
        new_addresses = {t.name: t.address for t in self.owned}
        self.config = config
        old_links = self.links
        configured = {link.id for link in config.links}
        targets = {t.name for t in self.owned if t.ifalias_parser}
        self.links = {
            link_id: rt
            for link_id, rt in old_links.items()
            if rt.discovered and link_id not in configured and rt.link.target in targets
        }
        for link in config.links:
            if link.target not in new_addresses:
                continue  # another daemon's target
            rt = old_links.get(link.id)
            if rt is None:
                rt = LinkRuntime(link)
            else:
                moved = old_addresses.get(link.target) != new_addresses.get(link.target)
                if rt.link.target != link.target or rt.link.interface != link.interface or moved:
                    rt.snapshot = None  # another interface or device: its counters are not this one's
                    rt.if_index = None
                rt.link = link
            self.links[link.id] = rt
        self._by_target = None
        old_targets = self.targets
        self.targets = {}
        for target in self.owned:
            status = old_targets.get(target.name) or TargetStatus(target.name, 0.0)
            status.interval_s = config.poll_settings(target).interval
            self.targets[target.name] = status
        self._memos = {name: memo for name, memo in self._memos.items() if name in self.targets}
        for handler in self.handlers:
            handler.reconfigure(config)

    def seed_baselines(self, baselines: Mapping[str, str]) -> int:
        """Restore counter snapshots persisted by the usage store, so a restart neither loses nor
        double counts traffic: the first delta after start spans the downtime."""
        seeded = 0
        targets = {t.name: t for t in self.owned}
        for subject, text in baselines.items():
            rt = self.links.get(subject)
            if rt is None:
                continue
            try:
                origin, if_index, snapshot = decode_baseline(text)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable counter baseline for link %s", subject)
                continue
            target = targets.get(rt.link.target)
            if target is None or origin != link_origin(target.address, rt.link):
                log.warning(
                    "link %s: its saved counters were read from another device or interface (%s); starting afresh",
                    subject,
                    origin.partition("|")[2] or "unknown",
                )
                continue
            rt.snapshot = snapshot
            rt.if_index = if_index  # a renumbering during the downtime then drops the snapshot
            seeded += 1
        for handler in self.handlers:
            seeded += handler.seed_baselines(baselines)
        return seeded

    def links_of(self, target: str) -> list[LinkRuntime]:
        """The target's links, from an index kept until the links change (scanning every link for each
        poll costs O(links x targets) per interval: a millisecond per poll at 20,000 links)."""
        by = self._by_target
        if by is None:
            by = {}
            for rt in self.links.values():
                by.setdefault(rt.link.target, []).append(rt)
            self._by_target = by
        return list(by.get(target, ()))

    def on_poll(self, target: Target, poll: TargetPoll) -> None:
        status = self.targets.get(target.name)
        if status is None:
            return  # target removed by a reload while its poll was in flight
        status.tried = True
        status.last_duration = poll.duration
        status.varbinds += poll.varbinds
        self.note_anomalies(status, poll.anomalies)
        for column, stop in poll.walk_stops:
            status.errors[stop.value] += 1
            log.warning("target %s: walk of %s stopped early: %s", target.name, column, stop.value)
        if poll.error is not None:
            status.errors[poll.error.reason.value] += 1
            if status.up is not False:
                log.error("target %s is down: %s", target.name, poll.error)
            status.up = False
            status.last_error = str(poll.error)
            for rt in self.links_of(target.name):
                self._emit(rt.set_state(LinkState.UNKNOWN, poll.at, StateSource.POLL, target.name))
            return
        if status.up is False:
            log.info("target %s recovered after: %s", target.name, status.last_error)
        status.up = True
        status.last_error = None
        status.last_success = poll.at
        self._fold(target, poll, status)

    def _fold(self, target: Target, poll: TargetPoll, status: TargetStatus) -> None:
        counters: list[CounterInterval] = []
        gauges: list[GaugeReading] = []
        baselines: dict[str, Baseline] = {}
        tables = poll.tables if poll.tables.get("ifDescr") or poll.tables.get("ifName") else {}
        rows: Mapping[int, InterfaceRow] = {}
        memo = self._memos.get(target.name)
        if memo is None:
            memo = self._memos[target.name] = RowMemo()
        if target.ifalias_parser and tables:
            rows = interface_rows(tables, memo)  # discovery reads every interface's alias
            if rows:
                self._discover(target, rows)
        links = self.links_of(target.name)
        if links:
            interfaces = InterfaceIndex(tables, rows, memo)  # builds only the rows that links resolve to
            uptime = poll.scalars.get("sysUpTime")
            uptime_ticks = uptime if isinstance(uptime, int) else None
            # Every link located first and their rows built together, column by column (`prefetch`):
            # per column rather than per cell. Locating has no effect but on the memo; what follows is
            # done link by link in the links' order, as before.
            address = target.address
            located: list[tuple[LinkRuntime, str, str | ResolveError]] = []  # (link, origin, idx or why not)
            found: list[str] = []
            for rt in links:
                derived = rt.derived
                if derived is None or derived.link is not rt.link or derived.address != address:
                    derived = derived_of(rt, address)
                try:
                    idx = interfaces.locate_parts(*derived.selector)
                except ResolveError as exc:
                    located.append((rt, derived.origin, exc))
                    continue
                found.append(idx)
                located.append((rt, derived.origin, idx))
            rows_of = interfaces.prefetch(found)
            for rt, origin, where in located:
                if type(where) is str:
                    row = rows_of[where]
                else:
                    assert isinstance(where, ResolveError)
                    error = where
                    # Counted on every poll the link stays unresolved (the metric's rate shows it is
                    # still so); logged once per distinct error.
                    status.errors[PollErrorReason.RESOLVE.value] += 1
                    if rt.resolve_error != str(error):
                        log.error("link %s on %s: %s", rt.link.id, target.name, error)
                    rt.resolve_error = str(error)
                    self._emit(rt.set_state(LinkState.UNKNOWN, poll.at, StateSource.POLL, target.name))
                    continue
                admin_up, interface = rt.admin_up, rt.interface  # as published
                outcome = apply_row(
                    rt,
                    row,
                    at=poll.at,
                    uptime_ticks=uptime_ticks,
                    interval_s=status.interval_s,
                    target=target.name,
                    origin=origin,
                )
                if outcome.event is not None:
                    self._emit(outcome.event)
                elif rt.admin_up != admin_up or rt.interface != interface:
                    self._refresh_state(rt, target.name, StateSource.POLL, poll.at)
                if row.anomalies:
                    self.note_anomalies(status, row.anomalies)
                if outcome.anomalies:
                    self.note_anomalies(status, outcome.anomalies)
                counters += outcome.counters
                gauges += outcome.gauges
                baselines[rt.link.id] = outcome.baseline
        for handler in self.handlers:
            try:
                contribution = handler.on_poll(target, poll)
            except Exception:  # a broken profile family must not cost the links their usage
                log.exception("target %s: %s failed on this poll", target.name, type(handler).__name__)
                continue
            counters.extend(contribution.counters)
            gauges.extend(contribution.gauges)
            baselines.update(contribution.baselines)
            self.note_anomalies(status, contribution.anomalies)
        if self.usage_sinks and (counters or gauges or baselines):
            batch = PollBatch(target.name, poll.at, status.interval_s, tuple(counters), tuple(gauges), baselines)
            for sink in self.usage_sinks:
                sink.submit(batch)

    def note_anomalies(self, status: TargetStatus, anomalies: Sequence[Anomaly]) -> None:
        """Count device values set aside, and log each new (subject, reason) of a target once.

        Once per subject and reason, not per poll: a device that keeps serving the same absurd value
        must not flood the log, but a new kind of trouble on it must be heard.
        """
        for anomaly in anomalies:
            status.anomalies[anomaly.reason] += 1
            seen = (anomaly.subject, anomaly.reason)
            # Bounded: a hostile device inventing new subjects cannot grow this set (or the log) forever.
            if seen not in status.anomalies_seen and len(status.anomalies_seen) < 10_000:
                status.anomalies_seen.add(seen)
                log.warning(
                    "target %s: %s set aside (%s): %s", status.name, anomaly.subject, anomaly.reason, anomaly.detail
                )

    def _discover(self, target: Target, rows: Mapping[int, InterfaceRow]) -> None:
        """Links announced by ifAlias (`Commune: Vénissieux [1G] {circuit-42}`); configured links win.

        Discovered links live until the interface stops announcing itself; a reload keeps them
        (they are found again by the next poll anyway).
        """
        found = {link.id: link for link in links_from_aliases(self.config, target, rows)}
        for link_id, link in found.items():
            rt = self.links.get(link_id)
            if rt is None:
                self.links[link_id] = LinkRuntime(link, discovered=True)
                self._by_target = None
                log.info("link %s discovered from ifAlias on %s (commune %s)", link_id, target.name, link.commune)
            elif rt.discovered:
                if rt.link.target != link.target:
                    self._by_target = None
                rt.link = link
        for link_id, rt in list(self.links.items()):
            if rt.discovered and rt.link.target == target.name and link_id not in found:
                log.info("link %s no longer announced by ifAlias on %s", link_id, target.name)
                del self.links[link_id]
                self._by_target = None

    def targets_at(self, source: str) -> list[Target]:
        """The targets whose address is the trap's source, compared as IP addresses (an IPv6 written
        differently, or an IPv4 seen as ::ffff:a.b.c.d, is the same host)."""
        wanted = same_host_key(source)
        return [t for t in self.owned if same_host_key(t.host) == wanted]

    def on_link_trap(
        self,
        source: str,
        if_index: int | None,
        up: bool,
        at: float,
        *,
        admin_status: int | None = None,
        oper_status: int | None = None,
    ) -> list[LinkStateEvent]:
        """A linkUp/linkDown trap: change the state at once; the next poll confirms or corrects it.

        The trap's ifAdminStatus and ifOperStatus are applied with it (an `ip link set X down` is an
        admin shutdown, not an outage, and must be published as one at once). A trap without ifIndex
        names no link: it changes nothing here (the poll it triggers will)."""
        events: list[LinkStateEvent] = []
        if if_index is None:
            return events
        state, admin_up = trap_link_status(up, admin_status, oper_status)
        for target in self.targets_at(source):
            for rt in self.links_of(target.name):
                if rt.if_index != if_index:
                    continue
                admin_changed = admin_up is not None and rt.admin_up != admin_up
                if admin_up is not None:
                    rt.admin_up = admin_up
                ev = rt.set_state(state, at, StateSource.TRAP, target.name)
                if ev is not None:
                    events.append(ev)
                    self._emit(ev)
                elif admin_changed:
                    self._refresh_state(rt, target.name, StateSource.TRAP, at)
        return events

    def _refresh_state(self, rt: LinkRuntime, target: str, source: StateSource, at: float) -> None:
        """Republish a link's retained state whose operational state did not change but another
        published field (admin status, interface) did."""
        sinks = [sink for sink in self.event_sinks if isinstance(sink, LinkStateSink)]
        if not sinks:
            return
        event = LinkStateEvent(
            link=rt.link.id, commune=rt.link.commune, target=target, interface=rt.interface, state=rt.state,
            previous=rt.state, since=rt.last_change if rt.last_change is not None else at, source=source,
            admin_up=rt.admin_up,
        )  # fmt: skip
        for sink in sinks:
            sink.publish_link_state(event)

    def on_restart_trap(self, source: str, at: float) -> None:
        """coldStart/warmStart: the agent restarted; links are unknown until the next poll."""
        for target in self.targets_at(source):
            for rt in self.links_of(target.name):
                self._emit(rt.set_state(LinkState.UNKNOWN, at, StateSource.TRAP, target.name))

    def _emit(self, event: LinkStateEvent | None) -> None:
        if event is None:
            return
        level = logging.DEBUG if LinkState.UNKNOWN in (event.previous, event.state) else logging.INFO
        log.log(
            level,
            "link %s (%s) %s -> %s via %s",
            event.link,
            event.commune,
            event.previous.value,
            event.state.value,
            event.source.value,
        )
        for sink in self.event_sinks:
            sink.publish_link_event(event)

    def ready(self) -> bool:
        return all(s.tried for s in self.targets.values())
