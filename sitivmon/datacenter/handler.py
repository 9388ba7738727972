"""The datacenter `PollHandler`: rows -> attributed metrics, usage records and energy counters.

Each poll of a target rebuilds that target's metric lines once (labels escaped there), so a scrape is
a join of prepared strings; per-commune sums are added up at scrape time from per-target partial sums.
State that must survive (energy baselines) is handed to the usage store as `Contribution.baselines`
and restored with `seed_baselines` after a restart.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sitivmon.config.model import SHARED, CoreConfig, Target
from sitivmon.config.profiles import profile_table
from sitivmon.contracts import Contribution
from sitivmon.datacenter.attribution import UNATTRIBUTED, Attributor
from sitivmon.datacenter.config import AttributionSettings
from sitivmon.datacenter.energy import EnergyBaseline, EnergyStep, from_counter, from_power
from sitivmon.datacenter.rows import HostFigures, Row, extract
from sitivmon.engine.poll import TargetPoll
from sitivmon.exposition import escape
from sitivmon.profiles.model import Column, Kind, Profile, Scalar
from sitivmon.readings import CounterInterval, GaugeReading, Quantity, UsageKey

log = logging.getLogger("sitivmon.datacenter")

# name -> (type, help). Families listed here render in this order; others (user columns) after.
FAMILIES: dict[str, tuple[str, str]] = {
    "sitivmon_host_storage_size_bytes": ("gauge", "Size of a host storage area (filesystem, RAM, swap)."),
    "sitivmon_host_storage_used_bytes": ("gauge", "Used bytes of a host storage area."),
    "sitivmon_host_cpu_load_ratio": ("gauge", "Processor load over the last minute (hrProcessorLoad), 0 to 1."),
    "sitivmon_host_load_average": ("gauge", "UCD load average by period."),
    "sitivmon_host_memory_total_bytes": ("gauge", "Physical memory of the host."),
    "sitivmon_host_memory_used_bytes": ("gauge", "Physical memory used, without buffers and cache."),
    "sitivmon_host_uptime_seconds": ("gauge", "Time since the host booted (hrSystemUptime)."),
    "sitivmon_host_processes": ("gauge", "Processes running on the host."),
    "sitivmon_power_watts": ("gauge", "Power drawn by an outlet or a power supply (consumption)."),
    "sitivmon_sensor_watts": (
        "gauge", "Power measured by a sensor that is not a power supply's (optical level, module or chassis draw): "
        "never counted as consumption.",
    ),
    "sitivmon_energy_joules_total": (
        "counter", "Energy since the daemon started: the device's energy counter, else power integrated over time.",
    ),
    "sitivmon_temperature_celsius": ("gauge", "Temperature measured by a sensor."),
    "sitivmon_current_amperes": ("gauge", "Electric current measured by a sensor."),
    "sitivmon_vm_vcpus": ("gauge", "vCPUs allocated to a virtual machine."),
    "sitivmon_vm_memory_bytes": ("gauge", "Memory allocated to a virtual machine."),
    "sitivmon_vm_power_state": ("gauge", "1 for the virtual machine's current power state."),
    "sitivmon_unattributed_series": (
        "gauge", "Rows of a target that no attribution rule matched (reported with commune 'unattributed').",
    ),
}
COMMUNE_FAMILIES: dict[str, tuple[str, str]] = {
    "sitivmon_commune_storage_used_bytes": ("gauge", "Storage used by the commune, all hosts."),
    "sitivmon_commune_storage_size_bytes": ("gauge", "Size of the storage areas attributed to the commune."),
    "sitivmon_commune_power_watts": ("gauge", "Power drawn by the commune's outlets and power supplies."),
    "sitivmon_commune_energy_joules_total": ("counter", "Energy attributed to the commune since the daemon started."),
    "sitivmon_commune_vcpus": ("gauge", "vCPUs allocated to the commune's virtual machines."),
    "sitivmon_commune_memory_bytes": ("gauge", "Memory allocated to the commune's virtual machines."),
}
_GAUGE_MEASURES = {
    "power_watts": "sitivmon_power_watts",
    "sensor_watts": "sitivmon_sensor_watts",
    "temperature_celsius": "sitivmon_temperature_celsius",
    "current_amperes": "sitivmon_current_amperes",
    "storage_size_bytes": "sitivmon_host_storage_size_bytes",
    "storage_used_bytes": "sitivmon_host_storage_used_bytes",
}
_USAGE = {
    "storage_used_bytes": Quantity.STORAGE_BYTES,
    "vcpus": Quantity.VCPUS,
    "memory_bytes": Quantity.MEMORY_BYTES,
}
_COMMUNE_SUMS = {
    "storage_used_bytes": "sitivmon_commune_storage_used_bytes",
    "storage_size_bytes": "sitivmon_commune_storage_size_bytes",
    "power_watts": "sitivmon_commune_power_watts",
    "vcpus": "sitivmon_commune_vcpus",
    "memory_bytes": "sitivmon_commune_memory_bytes",
}
_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_HELP_BREAKS = re.compile(r"[\x00-\x1f\x7f]+")
USER_HELP = "Value of a user profile."
_NON_METRIC = re.compile(r"[^a-zA-Z0-9_]")


def num(value: Decimal | int | float) -> str:
    """Prometheus text for a number: integers exactly (bytes can exceed a float's 2**53 only in
    theory, but joules totals must not print as 1.2e+09), fractions as floats."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    return repr(float(value))


def metric_name(*parts: str) -> str:
    return "_".join(_NON_METRIC.sub("_", _SNAKE.sub("_", p)).lower() for p in parts if p)


def column_family(profile: str, column: str, kind: Kind) -> str:
    """Metric name of a user profile's numeric column or scalar: `sitivmon_<profile>_<name>` in snake
    case, `_total` for counters. Columns and scalars share it, so a value moved from a one-row table
    to a scalar keeps its name."""
    return metric_name("sitivmon", profile, column) + ("_total" if kind is Kind.COUNTER else "")


def user_help(profiles: Mapping[str, Profile]) -> dict[str, str]:
    """HELP text of user-profile families from the profiles' `help:` (one line: a line break would end
    the HELP line and start a bogus one); the first profile to name a family gives its text."""
    out: dict[str, str] = {}
    for p in profiles.values():
        if p.family != "table":
            continue
        short = len(p.name) + 1
        items: list[Column | Scalar] = [*p.columns, *p.scalars]
        for item in items:
            if item.help and item.kind in (Kind.GAUGE, Kind.COUNTER):
                text = _HELP_BREAKS.sub(" ", item.help).strip().replace("\\", "\\\\")
                out.setdefault(column_family(p.name, item.name[short:], item.kind), text)
    return out


def subject_id(target: str, resource: str, name: str) -> str:
    """Stable id of a resource for the usage store: `<target>/<resource>/<name>` (never a link id,
    which cannot contain '/')."""
    return f"{target}/{resource}/{name}"


def _labels(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


@dataclass(slots=True)
class TargetView:
    """Prepared lines of one target's last successful poll, by family, and its per-commune sums."""

    lines: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    sums: dict[str, dict[str, Decimal]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Decimal)))
    rows: list[tuple[Row, str]] = field(default_factory=list)  # (row, commune), for tests and the API


class DatacenterHandler:
    """PollHandler for host_resources, ucd, entity_sensors and user table profiles."""

    def __init__(
        self, config: CoreConfig, attribution: AttributionSettings, *, base_dir: Path | None = None
    ) -> None:
        self.base_dir = base_dir
        self.attribution = attribution
        self.views: dict[str, TargetView] = {}
        self.energy: dict[str, EnergyBaseline] = {}
        self.energy_totals: dict[str, int] = defaultdict(int)
        self.commune_energy: dict[str, int] = defaultdict(int)
        self.config = config
        self.profiles: dict[str, Profile] = {}
        self.help: dict[str, str] = {}
        self.attributor = Attributor(attribution, config.communes)
        self.reconfigure(config)

    def set_attribution(self, attribution: AttributionSettings) -> None:
        """Adopt reloaded attribution rules; they apply from the next `reconfigure` (the composition
        root calls both on a reload, rules first)."""
        self.attribution = attribution

    def reconfigure(self, config: CoreConfig) -> None:
        self.config = config
        self.profiles = profile_table(config, self.base_dir)
        self.help = user_help(self.profiles)
        self.attributor = Attributor(self.attribution, config.communes)
        names = {t.name for t in config.targets}
        for gone in set(self.views) - names:
            del self.views[gone]

    def seed_baselines(self, baselines: Mapping[str, str]) -> int:
        """Restore energy baselines persisted by the usage store (subjects `<target>/<kind>/<name>`)."""
        seeded = 0
        for subject, text in baselines.items():
            if "/" not in subject:
                continue  # a link's baseline
            try:
                self.energy[subject] = EnergyBaseline.from_json(text)
            except (ValueError, KeyError, TypeError, ArithmeticError):
                log.warning("ignoring unreadable energy baseline for %s", subject)
                continue
            seeded += 1
        return seeded

    def profiles_of(self, target: Target) -> list[Profile]:
        return [
            self.profiles[p] for p in target.profiles if p in self.profiles and self.profiles[p].family != "interfaces"
        ]

    def on_poll(self, target: Target, poll: TargetPoll) -> Contribution:
        profiles = self.profiles_of(target)
        if not profiles or not poll.ok:
            return Contribution()
        rows, figures = extract(profiles, poll.tables, poll.scalars)
        interval = self.config.poll_settings(target).interval
        view = TargetView()
        gauges: list[GaugeReading] = []
        counters: list[CounterInterval] = []
        baselines: dict[str, str] = {}
        unattributed: dict[str, int] = {}
        tname = target.name
        for row in rows:
            if row.attributable:
                commune = self.attributor.attribute(row.resource, tname, row.name, target.commune).commune
                unattributed[row.resource] = unattributed.get(row.resource, 0) + (commune == UNATTRIBUTED)
            else:
                commune = target.commune
            view.rows.append((row, commune))
            base = [("target", tname), (row.resource, row.name), ("commune", commune)]
            lab = _labels(base)
            subject = subject_id(tname, row.resource, row.name)
            for measure, value in row.measures.items():
                family = _GAUGE_MEASURES.get(measure) or metric_name("sitivmon", row.resource, measure)
                view.lines[family].append(f"{family}{{{lab}}} {num(value)}\n")
                if row.attributable and measure in _COMMUNE_SUMS:
                    view.sums[_COMMUNE_SUMS[measure]][commune] += value
                quantity = _USAGE.get(measure)
                if quantity is not None and row.attributable:
                    gauges.append(GaugeReading(UsageKey(commune, subject, quantity), poll.at, float(value)))
            if row.state is not None:
                family = metric_name("sitivmon", row.resource, "power_state")
                view.lines[family].append(f'{family}{{{lab},state="{escape(row.state)}"}} 1\n')
            step = self._energy_step(subject, row, poll.at, interval)
            if step is not None:
                self.energy[subject] = step.baseline
                baselines[subject] = step.baseline.to_json()
                self.energy_totals[subject] += step.joules
                self.commune_energy[commune] += step.joules
                if step.start is not None:
                    counters.append(
                        CounterInterval(
                            UsageKey(commune, subject, Quantity.ENERGY_JOULES), step.start, poll.at, step.joules,
                            step.flags,
                        )
                    )
                view.lines["sitivmon_energy_joules_total"].append(
                    f"sitivmon_energy_joules_total{{{lab}}} {self.energy_totals[subject]}\n"
                )
            if row.extra:
                extra_lab = _labels([*base, *row.labels])
                for column, kind, value in row.extra:
                    family = column_family(row.profile, column, kind)
                    view.lines[family].append(f"{family}{{{extra_lab}}} {num(value)}\n")
        self._host_lines(view, target, figures)
        for resource, count in sorted(unattributed.items()):
            view.lines["sitivmon_unattributed_series"].append(
                f"sitivmon_unattributed_series{{{_labels([('target', tname), ('resource', resource)])}}} {count}\n"
            )
        self.views[tname] = view
        return Contribution(tuple(counters), tuple(gauges), baselines, tuple(figures.anomalies))

    def _energy_step(self, subject: str, row: Row, at: float, interval: float) -> EnergyStep | None:
        prev = self.energy.get(subject)
        if row.raw_energy is not None:
            return from_counter(prev, row.raw_energy, row.energy_scale or Decimal(1), at, interval)
        watts = row.measures.get("power_watts")
        if watts is not None:
            return from_power(prev, watts, at, interval)
        return None

    @staticmethod
    def _host_lines(view: TargetView, target: Target, fig: HostFigures) -> None:
        lab = _labels([("target", target.name), ("commune", target.commune)])
        lines = view.lines
        for cpu, load in sorted(fig.cpu_load.items()):
            lines["sitivmon_host_cpu_load_ratio"].append(
                f'sitivmon_host_cpu_load_ratio{{{lab},cpu="{escape(cpu)}"}} {num(load)}\n'
            )
        for period, load in sorted(fig.load_average.items()):
            lines["sitivmon_host_load_average"].append(
                f'sitivmon_host_load_average{{{lab},period="{escape(period)}"}} {num(load)}\n'
            )
        for family, value in (
            ("sitivmon_host_memory_total_bytes", fig.memory_total_bytes),
            ("sitivmon_host_memory_used_bytes", fig.memory_used_bytes),
            ("sitivmon_host_uptime_seconds", fig.uptime_seconds),
            ("sitivmon_host_processes", fig.processes),
        ):
            if value is not None:
                lines[family].append(f"{family}{{{lab}}} {num(value)}\n")
        for scalar in fig.scalars:
            family = column_family(scalar.profile, scalar.name, scalar.kind)
            lines[family].append(f"{family}{{{lab}}} {num(scalar.value)}\n")

    def commune_sums(self) -> dict[str, dict[str, Decimal]]:
        """Per-commune figures: every configured commune (0 when it uses nothing), shared, unattributed."""
        base = [c.id for c in self.config.communes] + [SHARED, UNATTRIBUTED]
        out: dict[str, dict[str, Decimal]] = {name: dict.fromkeys(base, Decimal(0)) for name in _COMMUNE_SUMS.values()}
        for view in self.views.values():
            for family, per in view.sums.items():
                for commune, value in per.items():
                    out[family][commune] = out[family].get(commune, Decimal(0)) + value
        energy = dict.fromkeys(base, Decimal(0))
        for commune, joules in self.commune_energy.items():
            energy[commune] = energy.get(commune, Decimal(0)) + joules
        out["sitivmon_commune_energy_joules_total"] = energy
        return out

    def render(self, out: list[str]) -> None:
        views = list(self.views.values())
        present: set[str] = set()
        for view in views:
            present.update(f for f, lines in view.lines.items() if lines)
        ordered = [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))
        for family in ordered:
            kind, help_text = FAMILIES.get(family) or (
                "counter" if family.endswith("_total") else "gauge", self.help.get(family, USER_HELP)
            )
            out.append(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n")
            for view in views:
                out.extend(view.lines.get(family, ()))
        sums = self.commune_sums()
        for family, (kind, help_text) in COMMUNE_FAMILIES.items():
            out.append(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n")
            out.extend(
                f'{family}{{commune="{escape(commune)}"}} {num(value)}\n'
                for commune, value in sorted(sums[family].items())
            )
