"""Prometheus text rendering of the bulk series (links, communes, targets) straight from the model.

prometheus_client's generic collector path costs about 13 µs per sample; with thousands of links that
would cost more than polling them. Here each link's label set is escaped once and cached, and a
scrape is string joins. The daemon's own instrumentation stays on prometheus_client (see selfmetrics).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

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
    """Escaped label strings, rebuilt only when a link's identity changes."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], str] = {}
        self._info: dict[tuple[str, str, str], str] = {}

    def info(self, lab: str, interface: str, alias: str) -> str:
        """A link's `sitivmon_link_info` line: its interface and alias escaped once, not on every scrape."""
        key = (lab, interface, alias)
        line = self._info.get(key)
        if line is None:
            line = f'sitivmon_link_info{{{lab},interface="{escape(interface)}",alias="{escape(alias)}"}} 1\n'
            if len(self._info) > 100_000:
                self._info.clear()
            self._info[key] = line
        return line

    def get(self, *values: str) -> str:
        key = values
        text = self._cache.get(key)
        if text is None:
            text = labels(commune=values[0], link=values[1], target=values[2])
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = text
        return text


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")


def render_links(monitor: Monitor, cache: LabelCache, out: list[str]) -> None:
    links = list(monitor.links.values())
    keyed = [(rt, cache.get(rt.link.commune, rt.link.id, rt.link.target)) for rt in links]
    for series, (name, help_text) in _LINK_COUNTERS.items():
        _family(out, name, "counter", help_text)
        out.extend(f"{name}{{{lab}}} {rt.totals[series]}\n" for rt, lab in keyed)

    _family(out, "sitivmon_link_up", "gauge", "1 when the link's operational status is up (absent when unknown).")
    out.extend(
        f"sitivmon_link_up{{{lab}}} {1 if rt.state is LinkState.UP else 0}\n"
        for rt, lab in keyed
        if rt.state is not LinkState.UNKNOWN
    )
    _family(out, "sitivmon_link_admin_up", "gauge", "1 when the link's administrative status is up.")
    out.extend(f"sitivmon_link_admin_up{{{lab}}} {int(rt.admin_up)}\n" for rt, lab in keyed if rt.admin_up is not None)
    _family(
        out, "sitivmon_link_speed_bytes", "gauge", "Link capacity in bytes per second (configured, else port speed)."
    )
    out.extend(
        f"sitivmon_link_speed_bytes{{{lab}}} {rt.capacity_bytes_per_s}\n"
        for rt, lab in keyed
        if rt.capacity_bytes_per_s
    )
    _family(out, "sitivmon_link_state_changes_total", "counter", "Operational state changes seen by polls and traps.")
    out.extend(f"sitivmon_link_state_changes_total{{{lab}}} {rt.state_changes}\n" for rt, lab in keyed)
    _family(
        out, "sitivmon_link_last_change_timestamp_seconds", "gauge", "When the link's state last changed (unix time)."
    )
    out.extend(
        f"sitivmon_link_last_change_timestamp_seconds{{{lab}}} {rt.last_change:.3f}\n"
        for rt, lab in keyed
        if rt.last_change is not None
    )
    _family(out, "sitivmon_link_maintenance", "gauge", "1 while the configuration marks the link under maintenance.")
    out.extend(f"sitivmon_link_maintenance{{{lab}}} {int(rt.link.maintenance)}\n" for rt, lab in keyed)
    _family(
        out,
        "sitivmon_counter_discontinuities_total",
        "counter",
        "Polls whose counters were reset, or clamped for exceeding capacity, on this link.",
    )
    out.extend(f"sitivmon_counter_discontinuities_total{{{lab}}} {rt.discontinuities}\n" for rt, lab in keyed)
    _family(out, "sitivmon_link_info", "gauge", "Link identity: the interface it resolved to on its target.")
    out.extend(cache.info(lab, rt.interface, rt.alias) for rt, lab in keyed)

    per_commune: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for commune in monitor.config.communes:
        per_commune[commune.id]
    for rt in links:
        acc = per_commune[rt.link.commune]
        acc[0] += rt.totals["receive_bytes"]
        acc[1] += rt.totals["transmit_bytes"]
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


def render(monitor: Monitor, cache: LabelCache, extra: Iterable[str] = ()) -> str:
    out: list[str] = []
    render_links(monitor, cache, out)
    render_targets(monitor, out)
    for handler in monitor.handlers:
        handler.render(out)
    out.extend(extra)
    return "".join(out)
