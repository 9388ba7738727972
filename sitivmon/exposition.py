"""Prometheus text rendering of the bulk series (links, communes, targets) straight from the model.

prometheus_client's generic collector path costs about 13 µs per sample; with thousands of links that
would cost more than polling them. Here each link's label set is escaped once and cached, and a
scrape is string joins. The daemon's own instrumentation stays on prometheus_client (see selfmetrics).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial
from operator import add, attrgetter, is_, itemgetter
from typing import TypeVar, cast

from sitivmon.config.model import Link
from sitivmon.links.interfaces import SERIES
from sitivmon.monitor import Monitor
from sitivmon.readings import LinkState
from sitivmon.snmp.client import PollErrorReason

_LINK_COUNTERS = {
    name: (f"sitivmon_link_{name}_total", f"{name.replace('_', ' ').capitalize()} seen from the commune.")
    for name in SERIES
}
_LINK_COUNTERS["receive_bytes"] = ("sitivmon_link_receive_bytes_total", "Bytes received by the commune.")
_LINK_COUNTERS["transmit_bytes"] = ("sitivmon_link_transmit_bytes_total", "Bytes sent by the commune.")
_T = TypeVar("_T")
_STATE_CHANGES = attrgetter("state_changes")
_DISCONTINUITIES = attrgetter("discontinuities")


# Characters a line-oriented reader may take for a line end or drop: C0 controls (\r, NUL, ...), DEL,
# C1 controls (\x85 is a line end for Python's universal newlines) and the Unicode line separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _control(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(value: str) -> str:
    """A label value for the text format. The format escapes only `\\`, `"` and line feeds; any
    other control character an agent puts in ifDescr or ifAlias (a raw CR, a NUL) would reach the
    page as is, and a reader in text mode (universal newlines) then splits the sample and rejects the
    whole page. Those are written as visible backslash sequences (`\\r`, `\\x00`), which both
    Prometheus and prometheus_client keep literally."""
    text = value.replace("\\", "\\\\").replace('"', '\\"')
    return _CONTROL.sub(_control, text)


def labels(**pairs: str) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs.items())


class LabelCache:
    """What a scrape reuses from the previous ones: each link's escaped label block, rebuilt only
    when its identity changes, and the text of the families whose values seldom change.

    A link's labels are kept as `commune="…",link="…",target="…"} `: the block closed, with the space
    before the value, so that a link's line is `name{` + block + value and a family's lines are one
    `str.join` (see `_join`). The families that do not move from poll to poll on a healthy network
    (errors, discards, states, speeds, maintenance, identity) are kept as text with the labels and
    values they were rendered from, and reused while both lists compare equal: comparing two lists is
    a C loop, formatting 2,000 lines is not. Only these are kept (about half the page, ~1 KB a link):
    byte and packet counters change on every poll and are rendered afresh."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], str] = {}
        self._info: dict[tuple[str, str, str], str] = {}
        self._blocks: dict[str, tuple[list[str], object, str]] = {}
        self._layout: tuple[Identical[Link], list[str], list[tuple[str, _Pick]]] | None = None

    def info(self, closed: str, interface: str, alias: str) -> str:
        """A link's `sitivmon_link_info` line (`closed` as `closed()` gives it): its interface and alias
        escaped once, not on every scrape."""
        key = (closed, interface, alias)
        line = self._info.get(key)
        if line is None:
            line = f'sitivmon_link_info{{{closed[:-2]},interface="{escape(interface)}",alias="{escape(alias)}"}} 1\n'
            if len(self._info) > 100_000:
                self._info.clear()
            self._info[key] = line
        return line

    def closed(self, commune: str, link: str, target: str) -> str:
        """The link's label block, closed: `commune="…",link="…",target="…"} `."""
        key = (commune, link, target)
        text = self._cache.get(key)
        if text is None:
            text = labels(commune=commune, link=link, target=target) + "} "
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = text
        return text

    def layout(self, configs: Identical[Link]) -> tuple[list[str], list[tuple[str, _Pick]]]:
        """Each link's closed label block, and per commune a picker of its links' positions, for the
        links of `configs` in that order: kept while the monitor holds the very same link configurations
        (they are frozen; a reload or a discovery brings new objects), so a scrape does not look up
        2,000 label blocks or regroup the links by commune."""
        kept = self._layout
        if kept is not None and kept[0] == configs:
            return kept[1], kept[2]
        closed = [self.closed(c.commune, c.id, c.target) for c in configs]
        positions: dict[str, list[int]] = {}
        for i, c in enumerate(configs):
            positions.setdefault(c.commune, []).append(i)
        groups = [(commune, _pick(idx)) for commune, idx in positions.items()]
        self._layout = (configs, closed, groups)
        return closed, groups

    def block(self, name: str, closed: list[str], values: object, lines: Callable[[], str]) -> str:
        """The text of family `name` rendered by `lines()` from `closed` and `values`, or the text kept
        from the last call if both compare equal to what it was rendered from. `values` must be what
        the lines are written from, compared so that equal means written alike (ints, bools, enums,
        strings; floats as `Identical`)."""
        kept = self._blocks.get(name)
        if kept is not None and kept[1] == values and kept[0] == closed:
            return kept[2]
        text = lines()
        self._blocks[name] = (closed, values, text)
        return text


class Identical(list[_T]):
    """A list equal to another only when they hold the very same objects: for floats, where == would
    take -0.0 for 0.0 (written differently). A float left untouched is the same object."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, list) and len(self) == len(other) and all(map(is_, self, other))

    __hash__ = None


_Pick = Callable[[list[int]], tuple[int, ...]]


def _pick(positions: list[int]) -> _Pick:
    """The values at `positions` of a list, as a tuple (itemgetter of one position gives the bare value)."""
    get = itemgetter(*positions)
    if len(positions) > 1:
        return cast(_Pick, get)
    return lambda values: (get(values),)


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")


def _join(name: str, tails: list[str]) -> str:
    """A family's sample lines from each link's `closed labels + value`, in one join: the page holds
    2,000 links x 16 families, and a generator formatting each line was most of the render's time."""
    if not tails:
        return ""
    head = name + "{"
    return head + ("\n" + head).join(tails) + "\n"


def _numbers(closed: list[str], values: list[int]) -> list[str]:
    # str(v) is what the f-string wrote (format(v, "") is str(v)), without a Python frame per line.
    return list(map(add, closed, map(str, values)))


def _counter_lines(name: str, closed: list[str], values: list[int]) -> str:
    return _join(name, _numbers(closed, values))


_MOVING = frozenset(("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets"))
"""Series that change on every poll of a live link: rendered afresh, not kept (see LabelCache)."""
_STATE = attrgetter("state")
_ADMIN_UP = attrgetter("admin_up")
_SPEED = attrgetter("speed_bytes_per_s")
_CAPACITY = attrgetter("capacity")
_MAINTENANCE = attrgetter("maintenance")
_LAST_CHANGE = attrgetter("last_change")
_INTERFACE = attrgetter("interface")
_ALIAS = attrgetter("alias")
_LINK = attrgetter("link")
_TOTALS = attrgetter("totals")


def render_links(monitor: Monitor, cache: LabelCache, out: list[str]) -> None:
    links = list(monitor.links.values())
    configs: Identical[Link] = Identical(map(_LINK, links))
    closed, groups = cache.layout(configs)
    totals = list(map(_TOTALS, links))
    block = cache.block
    per_series: dict[str, list[int]] = {}
    for series, (name, help_text) in _LINK_COUNTERS.items():
        _family(out, name, "counter", help_text)
        values = per_series[series] = list(map(itemgetter(series), totals))
        if series in _MOVING:
            out.append(_join(name, _numbers(closed, values)))
        else:
            out.append(block(name, closed, values, partial(_counter_lines, name, closed, values)))

    _family(out, "sitivmon_link_up", "gauge", "1 when the link's operational status is up (absent when unknown).")
    states = list(map(_STATE, links))
    up, unknown = LinkState.UP, LinkState.UNKNOWN
    out.append(
        block(
            "sitivmon_link_up",
            closed,
            states,
            lambda: _join(
                "sitivmon_link_up",
                [lab + ("1" if s is up else "0") for lab, s in zip(closed, states, strict=True) if s is not unknown],
            ),
        )
    )
    _family(out, "sitivmon_link_admin_up", "gauge", "1 when the link's administrative status is up.")
    admin = list(map(_ADMIN_UP, links))
    out.append(
        block(
            "sitivmon_link_admin_up",
            closed,
            admin,
            lambda: _join(
                "sitivmon_link_admin_up",
                [lab + str(int(a)) for lab, a in zip(closed, admin, strict=True) if a is not None],
            ),
        )
    )
    _family(
        out, "sitivmon_link_speed_bytes", "gauge", "Link capacity in bytes per second (configured, else port speed)."
    )
    capacities, speeds = list(map(_CAPACITY, configs)), list(map(_SPEED, links))
    out.append(
        block(
            "sitivmon_link_speed_bytes",
            closed,
            (capacities, speeds),
            lambda: _join(
                "sitivmon_link_speed_bytes",
                [lab + str(cap) for lab, c, s in zip(closed, capacities, speeds, strict=True) if (cap := c or s)],
            ),
        )
    )
    _family(out, "sitivmon_link_state_changes_total", "counter", "Operational state changes seen by polls and traps.")
    changes = list(map(_STATE_CHANGES, links))
    out.append(
        block(
            "sitivmon_link_state_changes_total",
            closed,
            changes,
            lambda: _join("sitivmon_link_state_changes_total", _numbers(closed, changes)),
        )
    )
    _family(
        out, "sitivmon_link_last_change_timestamp_seconds", "gauge", "When the link's state last changed (unix time)."
    )
    last = Identical(map(_LAST_CHANGE, links))
    out.append(
        block(
            "sitivmon_link_last_change_timestamp_seconds",
            closed,
            last,
            lambda: _join(
                "sitivmon_link_last_change_timestamp_seconds",
                [lab + format(t, ".3f") for lab, t in zip(closed, last, strict=True) if t is not None],
            ),
        )
    )
    _family(out, "sitivmon_link_maintenance", "gauge", "1 while the configuration marks the link under maintenance.")
    maintenance = list(map(_MAINTENANCE, configs))
    out.append(
        block(
            "sitivmon_link_maintenance",
            closed,
            maintenance,
            lambda: _join(
                "sitivmon_link_maintenance", [lab + str(int(m)) for lab, m in zip(closed, maintenance, strict=True)]
            ),
        )
    )
    _family(
        out,
        "sitivmon_counter_discontinuities_total",
        "counter",
        "Polls whose counters were reset, or clamped for exceeding capacity, on this link.",
    )
    breaks = list(map(_DISCONTINUITIES, links))
    out.append(
        block(
            "sitivmon_counter_discontinuities_total",
            closed,
            breaks,
            lambda: _join("sitivmon_counter_discontinuities_total", _numbers(closed, breaks)),
        )
    )
    _family(out, "sitivmon_link_info", "gauge", "Link identity: the interface it resolved to on its target.")
    interfaces, aliases = list(map(_INTERFACE, links)), list(map(_ALIAS, links))
    info = cache.info
    out.append(
        block(
            "sitivmon_link_info",
            closed,
            (interfaces, aliases),
            lambda: "".join(map(info, closed, interfaces, aliases)),
        )
    )

    per_commune: dict[str, list[int]] = {commune.id: [0, 0] for commune in monitor.config.communes}
    received, sent = per_series["receive_bytes"], per_series["transmit_bytes"]
    for commune, pick in groups:  # sums of the links' values picked in C, not a Python loop per link
        per_commune[commune] = [sum(pick(received)), sum(pick(sent))]
    for idx, (name, help_text) in enumerate(
        (
            ("sitivmon_commune_receive_bytes_total", "Bytes received by the commune over all its links."),
            ("sitivmon_commune_transmit_bytes_total", "Bytes sent by the commune over all its links."),
        )
    ):
        _family(out, name, "counter", help_text)
        out.extend(f'{name}{{commune="{escape(c)}"}} {v[idx]}\n' for c, v in sorted(per_commune.items()))


def render_targets(monitor: Monitor, out: list[str]) -> None:
    statuses = list(monitor.targets.values())
    lab = {s.name: f'target="{escape(s.name)}"' for s in statuses}
    _family(out, "sitivmon_target_up", "gauge", "1 when the last poll of the target succeeded.")
    out.extend(f"sitivmon_target_up{{{lab[s.name]}}} {int(bool(s.up))}\n" for s in statuses if s.tried)
    _family(out, "sitivmon_target_poll_duration_seconds", "gauge", "Duration of the target's last poll.")
    out.extend(
        f"sitivmon_target_poll_duration_seconds{{{lab[s.name]}}} {s.last_duration:.6f}\n" for s in statuses if s.tried
    )
    _family(out, "sitivmon_target_poll_interval_seconds", "gauge", "Configured poll interval of the target.")
    out.extend(f"sitivmon_target_poll_interval_seconds{{{lab[s.name]}}} {s.interval_s:g}\n" for s in statuses)
    _family(
        out, "sitivmon_target_last_success_timestamp_seconds", "gauge", "When the target was last polled successfully."
    )
    out.extend(
        f"sitivmon_target_last_success_timestamp_seconds{{{lab[s.name]}}} {s.last_success:.3f}\n"
        for s in statuses
        if s.last_success is not None
    )
    _family(out, "sitivmon_target_varbinds_total", "counter", "Varbinds read from the target.")
    out.extend(f"sitivmon_target_varbinds_total{{{lab[s.name]}}} {s.varbinds}\n" for s in statuses)
    _family(out, "sitivmon_poll_errors_total", "counter", "Failed polls and early-stopped walks, by reason.")
    reasons = [r.value for r in PollErrorReason]  # every reason at 0 from the start, as alerts expect
    for s in statuses:
        out.extend(
            f'sitivmon_poll_errors_total{{{lab[s.name]},reason="{reason}"}} {s.errors.get(reason, 0)}\n'
            for reason in reasons
        )
    _family(
        out,
        "sitivmon_device_anomalies_total",
        "counter",
        "Values read from a device that were set aside as implausible, by reason.",
    )
    for s in statuses:
        out.extend(
            f'sitivmon_device_anomalies_total{{{lab[s.name]},reason="{escape(reason)}"}} {count}\n'
            for reason, count in sorted(s.anomalies.items())
        )


def render_pieces(monitor: Monitor, cache: LabelCache) -> list[str]:
    """The page as pieces to join: the /metrics handler appends the daemon's own metrics and joins
    once (a 3 MB page at 2,000 links is not copied again to add them)."""
    out: list[str] = []
    render_links(monitor, cache, out)
    render_targets(monitor, out)
    for handler in monitor.handlers:
        handler.render(out)
    return out


def render(monitor: Monitor, cache: LabelCache, extra: Iterable[str] = ()) -> str:
    out = render_pieces(monitor, cache)
    out.extend(extra)
    return "".join(out)
