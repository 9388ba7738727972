"""Dashboards keep their figures with two replicas, one survivor or one daemon: Prometheus' own engine says so.

Why promtool's rule unit tests: they run the real PromQL engine (the one Prometheus serves queries
with) over input series we choose, and evaluate deploy/prometheus/recording.yml's rules as Prometheus
would, so the panels that read recorded series are tested through the real rules. A scraping server
would make the same point with timing noise and no exact figures.

The same world is written three ways: shard-1 as a replica pair (`instance="shard-1"`, `replica="a"|"b"`,
their counters started at different times), as a pair whose replica b died at minute 3, and as one
daemon without the label; shard-2 is one daemon. One commune (ambert) has links on both shards, so
sums across shards must still add up while replicas must not. Every representative panel query, taken
from the committed JSON with its Grafana variables substituted, must give the same exact figures in
all three. A control runs naive queries (no deduplication) through the same harness and must fail.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.dashboards.promql import ROOT, iter_panels, load_dashboards, substitute_variables
from tests.support.procs import require_binary

RECORDING = ROOT / "deploy/prometheus/recording.yml"
DASHBOARDS = load_dashboards()
MINUTES = 10  # samples at 0..10 min; every query is evaluated at 10 min over [5m]
VARIABLES: dict[str, str | list[str]] = {"commune": "ambert", "link": "ambert-fibre"}
MULTI_VARIABLES: dict[str, str | list[str]] = {"commune": ["ambert", "olliergues"], "link": "ambert-fibre"}
BUILTINS = {"__rate_interval": "5m"}
Labels = Mapping[str, str]


@dataclass(frozen=True)
class Series:
    """A series one daemon exports: a counter growing by `per_minute`, or a constant gauge."""

    metric: str
    labels: Labels
    value: float = 0.0
    per_minute: float | None = None


def _shard1() -> list[Series]:
    """What a daemon of shard-1 exports: commune ambert's fibre link, its router down."""
    link = {"commune": "ambert", "link": "ambert-fibre", "target": "rtr-ambert"}
    return [
        Series("sitivmon_link_receive_bytes_total", link, per_minute=6000),  # 100 B/s
        Series("sitivmon_link_transmit_bytes_total", link, per_minute=3000),
        Series("sitivmon_link_up", link, 0),
        Series("sitivmon_link_admin_up", link, 1),
        Series("sitivmon_link_speed_bytes", link, 125_000_000),
        Series("sitivmon_commune_receive_bytes_total", {"commune": "ambert"}, per_minute=6000),
        Series("sitivmon_commune_transmit_bytes_total", {"commune": "ambert"}, per_minute=3000),
        Series("sitivmon_target_up", {"target": "rtr-ambert"}, 0),
        Series("sitivmon_commune_storage_used_bytes", {"commune": "ambert"}, 300),
        Series("sitivmon_energy_joules_total", {"commune": "ambert", "target": "pdu-1", "outlet": "1"}, per_minute=60),
        *_month_to_date(),
    ]


def _shard2() -> list[Series]:
    """Shard-2, one daemon: ambert's radio link and olliergues' fibre, both up."""
    radio = {"commune": "ambert", "link": "ambert-radio", "target": "rtr-ambert-radio"}
    fibre = {"commune": "olliergues", "link": "olliergues-fibre", "target": "rtr-olliergues"}
    out = [
        Series("sitivmon_link_receive_bytes_total", radio, per_minute=1500),  # 25 B/s
        Series("sitivmon_link_receive_bytes_total", fibre, per_minute=12000),  # 200 B/s
        Series("sitivmon_commune_receive_bytes_total", {"commune": "ambert"}, per_minute=1500),
        Series("sitivmon_commune_receive_bytes_total", {"commune": "olliergues"}, per_minute=12000),
        Series("sitivmon_commune_transmit_bytes_total", {"commune": "ambert"}, per_minute=600),
        Series("sitivmon_commune_transmit_bytes_total", {"commune": "olliergues"}, per_minute=6000),
        Series("sitivmon_target_up", {"target": "rtr-ambert-radio"}, 1),
        Series("sitivmon_target_up", {"target": "rtr-olliergues"}, 1),
        Series("sitivmon_commune_storage_used_bytes", {"commune": "olliergues"}, 100),
        *_month_to_date(),
    ]
    for link in (radio, fibre):
        out += [
            Series("sitivmon_link_up", link, 1),
            Series("sitivmon_link_admin_up", link, 1),
            Series("sitivmon_link_speed_bytes", link, 125_000_000),
        ]
    return out


def _month_to_date() -> list[Series]:
    """Month-to-date figures come from the shared store: every daemon of every shard exports all of them."""
    return [
        Series(
            "sitivmon_usage_month_to_date",
            {"commune": c, "indicator": "traffic_volume", "direction": "in", "unit": "byte"},
            v,
        )
        for c, v in (("ambert", 1000), ("olliergues", 3000))
    ]


# Scenario -> shard-1's daemons as (replica label or None, minutes it exported before dying or None).
SCENARIOS: dict[str, list[tuple[str | None, int | None]]] = {
    "two replicas": [("a", None), ("b", None)],
    "replica b died at minute 3": [("a", None), ("b", 3)],
    "one daemon, no replica label": [(None, None)],
}


def _values(s: Series, start: float, died_at: int | None) -> str:
    alive = MINUTES if died_at is None else died_at
    text = f"{s.value:g}x{alive}" if s.per_minute is None else f"{start:g}+{s.per_minute:g}x{alive}"
    return text if died_at is None else f"{text} _x{MINUTES - died_at}"


def _selector(metric: str, labels: Labels) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{body}}}"


def input_series(scenario: str) -> list[dict[str, str]]:
    out = []
    for i, (replica, died_at) in enumerate(SCENARIOS[scenario]):
        daemon = {"job": "sitivmon", "instance": "shard-1"} | ({"replica": replica} if replica else {})
        for s in _shard1():
            # Each replica counts from its own start: their counters never agree, only their rates do.
            out.append({"series": _selector(s.metric, {**s.labels, **daemon}), "values": _values(s, i * 5e6, died_at)})
    for s in _shard2():
        labels = {**s.labels, "job": "sitivmon", "instance": "shard-2"}
        out.append({"series": _selector(s.metric, labels), "values": _values(s, 0, None)})
    return out


def panel_expr(dashboard: str, title: str, ref: str = "A") -> str:
    """A panel's query as committed in dashboards/*.json, its variables substituted as Grafana would."""
    for p in iter_panels(DASHBOARDS[dashboard]):
        if p.get("title") == title:
            for t in p.get("targets", []):
                if t["refId"] == ref:
                    multi = any(
                        v.get("multi") and v["name"] == "commune" for v in DASHBOARDS[dashboard]["templating"]["list"]
                    )
                    return substitute_variables(t["expr"], MULTI_VARIABLES if multi else VARIABLES, BUILTINS)
    raise KeyError(f"{dashboard}: no panel {title!r} with query {ref}")


JOB = {"job": "sitivmon"}
FIBRE = {"commune": "ambert", "link": "ambert-fibre", "target": "rtr-ambert", **JOB, "instance": "shard-1"}
RADIO = {"commune": "ambert", "link": "ambert-radio", "target": "rtr-ambert-radio", **JOB, "instance": "shard-2"}
OLLIERGUES = {
    "commune": "olliergues",
    "link": "olliergues-fibre",
    "target": "rtr-olliergues",
    **JOB,
    "instance": "shard-2",
}
MTD = {"indicator": "traffic_volume", "direction": "in"}

# (dashboard, panel title, query ref) -> expected samples (labels, value) at 10 min, whatever the scenario.
# Bits per second: ambert 100 B/s on shard-1 + 25 B/s on shard-2, olliergues 200 B/s.
EXPECTED: dict[tuple[str, str, str], list[tuple[Labels, float]]] = {
    ("overview.json", "Syndicate traffic in", "A"): [({}, (100 + 25 + 200) * 8)],
    ("overview.json", "Traffic per commune", "A"): [({"commune": "ambert"}, 1000), ({"commune": "olliergues"}, 1600)],
    ("overview.json", "Links down", "A"): [({}, 1)],
    ("overview.json", "Targets down", "A"): [({}, 1)],
    ("overview.json", "Links at a glance", "B"): [(FIBRE, 800), (RADIO, 200), (OLLIERGUES, 1600)],
    ("commune.json", "Received", "A"): [({}, 1000)],
    ("commune.json", "Links up", "A"): [({}, 0.5)],
    ("commune.json", "Traffic per link", "A"): [({"link": "ambert-fibre"}, 800), ({"link": "ambert-radio"}, 200)],
    ("commune.json", "Storage share", "A"): [({}, 0.75)],
    ("link-detail.json", "Traffic against capacity", "A"): [({}, 800)],
    ("link-detail.json", "Traffic against capacity", "C"): [({}, 1e9)],
    ("datacenter.json", "Storage used per commune", "A"): [
        ({"commune": "ambert"}, 300),
        ({"commune": "olliergues"}, 100),
    ],
    ("datacenter.json", "Energy per interval", "A"): [({"target": "pdu-1", "outlet": "1"}, 300)],
    ("usage.json", "Month-to-date progress", "A"): [
        ({"commune": "ambert", **MTD}, 1000),
        ({"commune": "olliergues", **MTD}, 3000),
    ],
    ("usage.json", "Share of each indicator", "A"): [
        ({"commune": "ambert", **MTD, "unit": "byte", "job": "sitivmon"}, 0.25),
        ({"commune": "olliergues", **MTD, "unit": "byte", "job": "sitivmon"}, 0.75),
    ],
}


def _labels(labels: Labels) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def promtool_test(tmp: Path, scenario: str, queries: Sequence[tuple[str, list[tuple[Labels, float]]]]) -> str:
    """Write and run one promtool unit test; return promtool's output, or '' when every query matched."""
    promtool = require_binary("promtool")
    doc = {
        "rule_files": [str(RECORDING)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": scenario,
                "interval": "1m",
                "input_series": input_series(scenario),
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": f"{MINUTES}m",
                        "exp_samples": [{"labels": _labels(lbl), "value": v} for lbl, v in samples],
                    }
                    for expr, samples in queries
                ],
            }
        ],
    }
    path = tmp / "dashboards_test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    return "" if r.returncode == 0 else r.stdout + r.stderr


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_panels_give_the_same_figures_with_two_replicas_one_survivor_or_one_daemon(
    scenario: str, tmp_path: Path
) -> None:
    queries = [(panel_expr(*key), samples) for key, samples in EXPECTED.items()]
    failure = promtool_test(tmp_path, scenario, queries)
    assert not failure, failure


# What the dashboards read before replicas existed: raw sums. Through the same harness they double.
NAIVE = [
    (
        "sum by (commune) (rate(sitivmon_commune_receive_bytes_total[5m])) * 8",
        EXPECTED[("overview.json", "Traffic per commune", "A")],
    ),
    (
        'sum by (link) (rate(sitivmon_link_receive_bytes_total{commune="ambert"}[5m])) * 8',
        EXPECTED[("commune.json", "Traffic per link", "A")],
    ),
]


def test_the_harness_catches_doubled_sums(tmp_path: Path) -> None:
    """The test above can fail: queries without deduplication are refused with the doubled figures."""
    failure = promtool_test(tmp_path, "two replicas", NAIVE)
    assert failure, "naive sums over two replicas passed: the harness proves nothing"
    # ambert: 2 x 800 + 200 instead of 1000; its fibre link: 2 x 800 instead of 800.
    assert '{commune="ambert"} 1.8E+03' in failure and '{link="ambert-fibre"} 1.6E+03' in failure, failure
    assert promtool_test(tmp_path, "one daemon, no replica label", NAIVE) == ""


def test_every_panel_in_the_expectations_exists() -> None:
    """A renamed panel must not silently drop out of the replica test."""
    for key in EXPECTED:
        assert panel_expr(*key)
