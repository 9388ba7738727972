"""Generate sitivmon's Grafana dashboards (the JSON files beside this script).

Why a generator: five dashboards share one datasource variable, one commune variable, the same
panel conventions (unit, description, `${datasource}`, `$__rate_interval`) and the same link
metrics. Writing them once in Python keeps those conventions in one place; the JSON files are
what Grafana provisions and what is committed. `tests/dashboards/test_lint.py` fails when the
committed JSON differs from this script's output.

Replica pairs (docs/scale.md): a shard's two daemons are scraped under one `instance` with
`replica="a"|"b"`, so every raw series exists twice. Every query reads raw series through `one()`
(`max without (replica)`, rates deduplicated after rate()) exactly as deploy/prometheus's rules do,
and month-to-date figures, which every daemon computes from the shared store, through `store_wide()`.
Current totals (stat panels) read the recording rules; graphs read raw series with $__rate_interval
so that they follow the zoom. tests/dashboards/test_replicas.py proves the figures with two
replicas, one and none.

Usage: python dashboards/generate.py            (rewrites dashboards/*.json)
       python dashboards/generate.py --check    (exit 1 when a JSON file is stale)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
Json = dict[str, Any]

# --- Template variables -------------------------------------------------------------------------


def datasource_var() -> Json:
    """The one datasource variable: dashboards never hard-code a datasource UID."""
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(name: str, label: str, query: str, *, multi: bool = False) -> Json:
    """A label_values() variable, refreshed on time range change (template-on-time-change-reload)."""
    var: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": query,
        "current": {},
        "hide": 0,
        "includeAll": multi,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if multi:
        var["allValue"] = ".+"
    return var


COMMUNE_ONE = query_var("commune", "Commune", "label_values(sitivmon_link_info, commune)")
COMMUNE_MANY = query_var("commune", "Communes", "label_values(sitivmon_link_info, commune)", multi=True)
# Datacenter series are attributed to communes, to `shared` or to `unattributed`: offer all of them.
DC_COMMUNES = query_var("commune", "Communes", "label_values(sitivmon_commune_storage_used_bytes, commune)", multi=True)
LINK_COMMUNE = query_var("commune", "Commune", "label_values(sitivmon_link_info, commune)", multi=True)
LINK = query_var("link", "Link", 'label_values(sitivmon_link_info{commune=~"$commune"}, link)')

# --- Panels ---------------------------------------------------------------------------------------


def target(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False, table: bool = False) -> Json:
    t: Json = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if table:
        t["format"] = "table"
    return t


def targets(*specs: tuple[str, str], instant: bool = False, table: bool = False) -> list[Json]:
    return [
        target(expr, legend, chr(ord("A") + i), instant=instant, table=table) for i, (expr, legend) in enumerate(specs)
    ]


UP_DOWN_MAPPINGS: list[Json] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]


def panel(
    kind: str,
    title: str,
    description: str,
    unit: str,
    tgts: list[Json],
    *,
    w: int = 12,
    h: int = 8,
    overrides: list[Json] | None = None,
    mappings: list[Json] | None = None,
    thresholds: list[Json] | None = None,
    options: Json | None = None,
    transformations: list[Json] | None = None,
    custom: Json | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Json:
    defaults: Json = {
        "unit": unit,
        "mappings": mappings or [],
        "thresholds": {
            "mode": "absolute",
            "steps": thresholds or [{"color": "green", "value": None}],
        },
        "color": {"mode": "thresholds" if kind in ("stat", "gauge", "bargauge") else "palette-classic"},
    }
    if custom:
        defaults["custom"] = custom
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": tgts,
        "gridPos": {"w": w, "h": h},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def stat(title: str, description: str, unit: str, expr: str, **kw: Any) -> Json:
    kw.setdefault("w", 6)
    kw.setdefault("h", 4)
    kw.setdefault(
        "options",
        {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        },
    )
    return panel("stat", title, description, unit, [target(expr, "__auto", instant=False)], **kw)


def timeseries(title: str, description: str, unit: str, *specs: tuple[str, str], **kw: Any) -> Json:
    kw.setdefault(
        "options",
        {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )
    kw.setdefault("custom", {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never"})
    return panel("timeseries", title, description, unit, targets(*specs), **kw)


def table(
    title: str,
    description: str,
    unit: str,
    specs: list[tuple[str, str, str]],
    *,
    hide: tuple[str, ...] = ("Time", "job", "instance", "__name__"),
    w: int = 24,
    h: int = 10,
    mappings: list[Json] | None = None,
    extra_overrides: list[Json] | None = None,
    links: list[Json] | None = None,
) -> Json:
    """Instant queries merged into one row per series; specs are (expr, column title, unit)."""
    tgts = [target(expr, "__auto", chr(ord("A") + i), instant=True, table=True) for i, (expr, _, _) in enumerate(specs)]
    overrides: list[Json] = []
    for i, (_, col, col_unit) in enumerate(specs):
        ref = chr(ord("A") + i)
        field = "Value" if len(specs) == 1 else f"Value #{ref}"
        props: list[Json] = [{"id": "unit", "value": col_unit}, {"id": "displayName", "value": col}]
        overrides.append({"matcher": {"id": "byName", "options": field}, "properties": props})
    if links:
        for link in links:
            overrides.append(
                {
                    "matcher": {"id": "byName", "options": link["field"]},
                    "properties": [{"id": "links", "value": [link["link"]]}],
                }
            )
    overrides.extend(extra_overrides or [])
    transformations: list[Json] = []
    if len(specs) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append(
        {
            "id": "organize",
            "options": {"excludeByName": dict.fromkeys(hide, True), "indexByName": {}, "renameByName": {}},
        }
    )
    return panel(
        "table",
        title,
        description,
        unit,
        tgts,
        w=w,
        h=h,
        overrides=overrides,
        mappings=mappings,
        transformations=transformations,
        options={
            "showHeader": True,
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "fields": ""},
        },
    )


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def layout(panels: list[Json]) -> list[Json]:
    """Place panels left to right, wrapping at 24 columns; rows start a new line. Ids follow order."""
    x = y = line_h = 0
    for pid, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y, line_h = 0, y + line_h, 0
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        p["id"] = pid
        x += w
        line_h = max(line_h, h)
        if p["type"] == "row":
            x, y, line_h = 0, y + h, 0
    return panels


def dashboard(uid: str, title: str, description: str, variables: list[Json], panels: list[Json]) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["sitivmon"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": ["sitivmon"],
                "asDropdown": True,
                "title": "sitivmon",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_var(), *variables]},
        "panels": layout(panels),
    }


def commune_link(field: str = "commune") -> Json:
    return {
        "field": field,
        "link": {
            "title": "Commune dashboard",
            "url": (
                "/d/sitivmon-commune/sitivmon-commune?${datasource:queryparam}&"
                "var-commune=${__value.raw}&${__url_time_range}"
            ),
        },
    }


def link_link(field: str = "link") -> Json:
    return {
        "field": field,
        "link": {
            "title": "Link detail",
            "url": (
                "/d/sitivmon-link/sitivmon-link-detail?${datasource:queryparam}&var-link=${__value.raw}&"
                "${__url_time_range}"
            ),
        },
    }


RATE = "$__rate_interval"


def one(expr: str) -> str:
    """One replica's value per series, as deploy/prometheus/recording.yml and alerts.yml read raw series.

    Why: a replica pair is scraped under one `instance` with `replica="a"|"b"`; both export the same
    links, so any sum over raw series would double. `max` (not `sum`, not `avg`) keeps the value of the
    replica that saw the most, which for counters' rates is the one that did not miss polls. Rates are
    deduplicated after rate() (`one("rate(x[..])")`): the two replicas' counters restart separately and
    must not be merged into one series before rate() sees them. Without the label it is a no-op.
    """
    return f"max without (replica) ({expr})"


def store_wide(expr: str) -> str:
    """One value of a figure every daemon computes from the whole shared store (month-to-date gauges).

    Why more than `one()`: with sharding, every shard (a different `instance`) exports the month-to-date
    figures of every commune from the shared store (docs/sharding.md), so they repeat across shards as
    well as across replicas. With one daemon it is a no-op.
    """
    return f"max without (instance, shard, replica) ({expr})"


THRESH_COVERAGE: list[Json] = [
    {"color": "red", "value": None},
    {"color": "orange", "value": 0.9},
    {"color": "green", "value": 0.99},
]
THRESH_UTIL: list[Json] = [
    {"color": "green", "value": None},
    {"color": "orange", "value": 0.7},
    {"color": "red", "value": 0.9},
]
THRESH_BAD_IF_ANY: list[Json] = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
NEG_Y_TRANSMIT = [
    {
        "matcher": {"id": "byFrameRefID", "options": "B"},
        "properties": [{"id": "custom.transform", "value": "negative-Y"}],
    }
]

# --- 1. Overview ----------------------------------------------------------------------------------


def overview() -> Json:
    panels = [
        row("Targets and links"),
        stat(
            "Targets down",
            "SNMP targets whose last poll failed (sitivmon_target_up == 0). Zero is normal.",
            "none",
            "count(max without (replica) (sitivmon_target_up) == 0) or vector(0)",
            thresholds=THRESH_BAD_IF_ANY,
        ),
        stat(
            "Links down",
            "Links administratively up but operationally down: a cut, not a planned shutdown.",
            "none",
            "sum(commune:sitivmon_links_down:count) or vector(0)",
            thresholds=THRESH_BAD_IF_ANY,
        ),
        stat(
            "Syndicate traffic in",
            "Traffic received by all communes together, in bits per second.",
            "bps",
            "sum(commune:sitivmon_commune_receive_bits:rate5m)",
        ),
        stat(
            "Syndicate traffic out",
            "Traffic sent by all communes together, in bits per second.",
            "bps",
            "sum(commune:sitivmon_commune_transmit_bits:rate5m)",
        ),
        table(
            "Links at a glance",
            "Every link of every commune: operational state, traffic in bits per second from the commune's "
            "point of view, utilisation of the link's capacity and errors per second. Click a commune or a "
            "link for its dashboard.",
            "bps",
            [
                (one("sitivmon_link_up"), "State", "none"),
                (f"max without (replica) (rate(sitivmon_link_receive_bytes_total[{RATE}])) * 8", "Received", "bps"),
                (f"max without (replica) (rate(sitivmon_link_transmit_bytes_total[{RATE}])) * 8", "Sent", "bps"),
                (
                    f"max without (replica) (rate(sitivmon_link_receive_bytes_total[{RATE}])) / "
                    + one("sitivmon_link_speed_bytes"),
                    "In / capacity",
                    "percentunit",
                ),
                (
                    f"max without (replica) (rate(sitivmon_link_receive_errors_total[{RATE}])) + "
                    f"max without (replica) (rate(sitivmon_link_transmit_errors_total[{RATE}]))",
                    "Errors",
                    "pps",
                ),
            ],
            h=12,
            mappings=UP_DOWN_MAPPINGS,
            links=[commune_link(), link_link()],
        ),
        row("Traffic and errors per commune"),
        timeseries(
            "Traffic per commune",
            "Bits per second per commune: received above the axis, sent below.",
            "bps",
            (
                f"sum by (commune) (max without (replica) (rate(sitivmon_commune_receive_bytes_total[{RATE}]))) * 8",
                "{{commune}} in",
            ),
            (
                f"sum by (commune) (max without (replica) (rate(sitivmon_commune_transmit_bytes_total[{RATE}]))) * 8",
                "{{commune}} out",
            ),
            overrides=NEG_Y_TRANSMIT,
        ),
        timeseries(
            "Errors and discards per commune",
            "Packets per second lost to interface errors or discards on the commune's links, both directions.",
            "pps",
            (
                f"sum by (commune) (max without (replica) (rate(sitivmon_link_receive_errors_total[{RATE}])) "
                f"+ max without (replica) (rate(sitivmon_link_transmit_errors_total[{RATE}])))",
                "{{commune}} errors",
            ),
            (
                f"sum by (commune) (max without (replica) (rate(sitivmon_link_receive_discards_total[{RATE}])) "
                f"+ max without (replica) (rate(sitivmon_link_transmit_discards_total[{RATE}])))",
                "{{commune}} discards",
            ),
        ),
        row("Polling"),
        table(
            "Targets",
            "Every SNMP target: state of the last poll, its duration, the time since the last successful "
            "poll "
            "and the configured interval.",
            "s",
            [
                (one("sitivmon_target_up"), "State", "none"),
                (one("sitivmon_target_poll_duration_seconds"), "Poll duration", "s"),
                ("time() - " + one("sitivmon_target_last_success_timestamp_seconds"), "Since last success", "s"),
                (one("sitivmon_target_poll_interval_seconds"), "Interval", "s"),
            ],
            w=12,
            mappings=UP_DOWN_MAPPINGS,
        ),
        timeseries(
            "Poll errors per target",
            "Failed polls per second by target (timeouts, authentication, unreachable...). Zero when all "
            "polls succeed.",
            "cps",
            (
                f"sum by (target) ({one(f'rate(sitivmon_poll_errors_total[{RATE}])')}) "
                f"or sum by (target) (0 * {one('sitivmon_target_up')})",
                "{{target}}",
            ),
        ),
        stat(
            "sitivmon version",
            "Version of the running sitivmon daemon (sitivmon_build_info).",
            "none",
            "sitivmon_build_info",
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^version$/", "values": False},
                "colorMode": "none",
                "graphMode": "none",
                "textMode": "value",
            },
        ),
    ]
    return dashboard(
        "sitivmon-overview",
        "sitivmon / Overview",
        "Every commune and its links at a glance: state, traffic, errors, and SNMP targets down.",
        [],
        panels,
    )


# --- 2. Commune -----------------------------------------------------------------------------------

C = '{commune="$commune"}'


def commune() -> Json:
    panels = [
        row("Links"),
        stat(
            "Received",
            "Traffic received by the commune over all its links, in bits per second.",
            "bps",
            f"sum(commune:sitivmon_commune_receive_bits:rate5m{C})",
        ),
        stat(
            "Sent",
            "Traffic sent by the commune over all its links, in bits per second.",
            "bps",
            f"sum(commune:sitivmon_commune_transmit_bits:rate5m{C})",
        ),
        stat(
            "Links up",
            "Share of the commune's links that are operationally up.",
            "percentunit",
            f"sum({one('sitivmon_link_up' + C)}) / count({one('sitivmon_link_up' + C)})",
            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
        ),
        stat(
            "Usage coverage",
            "Lowest month-to-date coverage of the commune's usage indicators: the share of the month for "
            "which "
            "sitivmon has samples. Below 100 %, figures are estimated on partial data.",
            "percentunit",
            f"min({store_wide('sitivmon_usage_month_to_date_coverage_ratio' + C)})",
            thresholds=THRESH_COVERAGE,
        ),
        table(
            "Links of the commune",
            "Each link: interface, alias, state, capacity, and current traffic in bits per second.",
            "bps",
            [
                (one(f"sitivmon_link_info{C}"), "Info", "none"),
                (one(f"sitivmon_link_up{C}"), "State", "none"),
                (one(f"sitivmon_link_speed_bytes{C}") + " * 8", "Capacity", "bps"),
                (f"max without (replica) (rate(sitivmon_link_receive_bytes_total{C}[{RATE}])) * 8", "Received", "bps"),
                (f"max without (replica) (rate(sitivmon_link_transmit_bytes_total{C}[{RATE}])) * 8", "Sent", "bps"),
            ],
            hide=("Time", "job", "instance", "__name__", "Value #A"),
            mappings=UP_DOWN_MAPPINGS,
            links=[link_link()],
        ),
        timeseries(
            "Traffic per link",
            "Bits per second on each of the commune's links: received above the axis, sent below.",
            "bps",
            (
                f"sum by (link) (max without (replica) (rate(sitivmon_link_receive_bytes_total{C}[{RATE}]))) * 8",
                "{{link}} in",
            ),
            (
                f"sum by (link) (max without (replica) (rate(sitivmon_link_transmit_bytes_total{C}[{RATE}]))) * 8",
                "{{link}} out",
            ),
            overrides=NEG_Y_TRANSMIT,
            w=24,
        ),
        row("Month to date"),
        table(
            "Month-to-date usage",
            "Usage indicators of the commune since the first day of the month (the unit is in the unit column).",
            "none",
            [(store_wide(f"sitivmon_usage_month_to_date{C}"), "Month to date", "none")],
            w=12,
        ),
        table(
            "Month-to-date coverage",
            "Share of the month covered by samples, per indicator and direction.",
            "percentunit",
            [(store_wide(f"sitivmon_usage_month_to_date_coverage_ratio{C}"), "Coverage", "percentunit")],
            w=12,
        ),
        row("Datacenter share"),
        stat(
            "Storage share",
            "The commune's share of the storage used in the syndicate's datacenter.",
            "percentunit",
            f"sum({one('sitivmon_commune_storage_used_bytes' + C)}) "
            f"/ sum({one('sitivmon_commune_storage_used_bytes')})",
            w=8,
        ),
        stat(
            "Power share",
            "The commune's share of the power drawn in the datacenter.",
            "percentunit",
            f"sum({one('sitivmon_commune_power_watts' + C)}) / sum({one('sitivmon_commune_power_watts')})",
            w=8,
        ),
        stat(
            "vCPU share",
            "The commune's share of the virtual CPUs allocated in the datacenter.",
            "percentunit",
            f"sum({one('sitivmon_commune_vcpus' + C)}) / sum({one('sitivmon_commune_vcpus')})",
            w=8,
        ),
        timeseries(
            "Storage used",
            "Bytes of datacenter storage attributed to the commune.",
            "bytes",
            (f"sum({one('sitivmon_commune_storage_used_bytes' + C)})", "storage"),
            w=8,
        ),
        timeseries(
            "Power",
            "Watts drawn by the datacenter outlets attributed to the commune.",
            "watt",
            (f"sum({one('sitivmon_commune_power_watts' + C)})", "power"),
            w=8,
        ),
        timeseries(
            "vCPUs",
            "Virtual CPUs of the commune's virtual machines.",
            "none",
            (f"sum({one('sitivmon_commune_vcpus' + C)})", "vCPUs"),
            w=8,
        ),
    ]
    return dashboard(
        "sitivmon-commune",
        "sitivmon / Commune",
        "One commune: its links, month-to-date usage and coverage, and its share of the datacenter.",
        [COMMUNE_ONE],
        panels,
    )


# --- 3. Link detail -------------------------------------------------------------------------------

L = '{link="$link"}'


def link_detail() -> Json:
    panels = [
        stat(
            "State",
            "Operational state of the link (ifOperStatus).",
            "none",
            f"max({one('sitivmon_link_up' + L)})",
            mappings=UP_DOWN_MAPPINGS,
            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
        ),
        stat(
            "Capacity",
            "Capacity of the link (ifHighSpeed), in bits per second.",
            "bps",
            f"max({one('sitivmon_link_speed_bytes' + L)}) * 8",
        ),
        panel(
            "stat",
            "Utilisation",
            "Received and sent rates divided by the link's capacity.",
            "percentunit",
            targets(
                (
                    f"max({one(f'rate(sitivmon_link_receive_bytes_total{L}[{RATE}])')} "
                    f"/ {one('sitivmon_link_speed_bytes' + L)})",
                    "in",
                ),
                (
                    f"max({one(f'rate(sitivmon_link_transmit_bytes_total{L}[{RATE}])')} "
                    f"/ {one('sitivmon_link_speed_bytes' + L)})",
                    "out",
                ),
            ),
            thresholds=THRESH_UTIL,
            w=6,
            h=4,
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value",
                "graphMode": "area",
                "textMode": "value_and_name",
            },
        ),
        stat(
            "Last state change",
            "When the link last changed state (ifLastChange, as a wall-clock time).",
            "dateTimeFromNow",
            f"max({one('sitivmon_link_last_change_timestamp_seconds' + L)}) * 1000",
        ),
        timeseries(
            "Traffic against capacity",
            "Bits per second received and sent by the commune on this link, with the link's capacity.",
            "bps",
            (f"sum(max without (replica) (rate(sitivmon_link_receive_bytes_total{L}[{RATE}]))) * 8", "received"),
            (f"sum(max without (replica) (rate(sitivmon_link_transmit_bytes_total{L}[{RATE}]))) * 8", "sent"),
            (f"max({one('sitivmon_link_speed_bytes' + L)}) * 8", "capacity"),
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "capacity"},
                    "properties": [
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                        {"id": "custom.fillOpacity", "value": 0},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                    ],
                }
            ],
            w=24,
            h=10,
        ),
        timeseries(
            "Packets",
            "Packets per second received and sent on the link.",
            "pps",
            (f"sum(max without (replica) (rate(sitivmon_link_receive_packets_total{L}[{RATE}])))", "received"),
            (f"sum(max without (replica) (rate(sitivmon_link_transmit_packets_total{L}[{RATE}])))", "sent"),
            w=8,
        ),
        timeseries(
            "Errors",
            "Packets per second with errors (ifInErrors / ifOutErrors).",
            "pps",
            (f"sum(max without (replica) (rate(sitivmon_link_receive_errors_total{L}[{RATE}])))", "received"),
            (f"sum(max without (replica) (rate(sitivmon_link_transmit_errors_total{L}[{RATE}])))", "sent"),
            w=8,
        ),
        timeseries(
            "Discards",
            "Packets per second discarded without error, usually for lack of buffers (ifInDiscards / ifOutDiscards).",
            "pps",
            (f"sum(max without (replica) (rate(sitivmon_link_receive_discards_total{L}[{RATE}])))", "received"),
            (f"sum(max without (replica) (rate(sitivmon_link_transmit_discards_total{L}[{RATE}])))", "sent"),
            w=8,
        ),
        panel(
            "state-timeline",
            "State history",
            "Operational and administrative state over time.",
            "none",
            targets(
                (f"max({one('sitivmon_link_up' + L)})", "operational"),
                (f"max({one('sitivmon_link_admin_up' + L)})", "administrative"),
            ),
            mappings=UP_DOWN_MAPPINGS,
            w=12,
            options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.9},
        ),
        timeseries(
            "State changes",
            "State changes seen on the link per interval, and counter discontinuities "
            "(device reboots or counter resets, which sitivmon does not count as traffic).",
            "none",
            (f"sum(max without (replica) (increase(sitivmon_link_state_changes_total{L}[{RATE}])))", "state changes"),
            (
                f"sum({one(f'increase(sitivmon_counter_discontinuities_total{L}[{RATE}])')}) or vector(0)",
                "discontinuities",
            ),
            custom={"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1, "showPoints": "never"},
            w=12,
        ),
    ]
    return dashboard(
        "sitivmon-link",
        "sitivmon / Link detail",
        "One link: traffic in bits per second against capacity, packets, errors, discards and state changes.",
        [LINK_COMMUNE, LINK],
        panels,
    )


# --- 4. Datacenter --------------------------------------------------------------------------------

M = '{commune=~"$commune"}'


def datacenter() -> Json:
    panels = [
        row("Per commune"),
        timeseries(
            "Storage used per commune",
            "Bytes of datacenter storage attributed to each commune.",
            "bytes",
            (f"sum by (commune) ({one('sitivmon_commune_storage_used_bytes' + M)})", "{{commune}}"),
            w=8,
        ),
        timeseries(
            "Power per commune",
            "Watts drawn by the outlets attributed to each commune.",
            "watt",
            (f"sum by (commune) ({one('sitivmon_commune_power_watts' + M)})", "{{commune}}"),
            w=8,
        ),
        timeseries(
            "vCPUs per commune",
            "Virtual CPUs of each commune's virtual machines.",
            "none",
            (f"sum by (commune) ({one('sitivmon_commune_vcpus' + M)})", "{{commune}}"),
            w=8,
        ),
        row("Hosts and storage"),
        table(
            "Hosts",
            "Each host: CPU load and memory used.",
            "percentunit",
            [
                (one(f"sitivmon_host_cpu_load_ratio{M}"), "CPU load", "percentunit"),
                (one(f"sitivmon_host_memory_used_bytes{M}"), "Memory used", "bytes"),
            ],
            w=12,
        ),
        table(
            "Storage",
            "Each storage area of each host: used bytes, size and fill ratio.",
            "bytes",
            [
                (one(f"sitivmon_host_storage_used_bytes{M}"), "Used", "bytes"),
                (one(f"sitivmon_host_storage_size_bytes{M}"), "Size", "bytes"),
                (
                    one(f"sitivmon_host_storage_used_bytes{M}") + " / " + one(f"sitivmon_host_storage_size_bytes{M}"),
                    "Fill",
                    "percentunit",
                ),
            ],
            w=12,
        ),
        row("Power"),
        timeseries(
            "Power per outlet",
            "Watts drawn on each PDU outlet.",
            "watt",
            (one(f"sitivmon_power_watts{M}"), "{{target}} {{outlet}}"),
        ),
        timeseries(
            "Energy per interval",
            "Energy consumed per outlet per interval, in joules.",
            "joule",
            (
                f"sum by (target, outlet) (max without (replica) (increase(sitivmon_energy_joules_total{M}[{RATE}])))",
                "{{target}} {{outlet}}",
            ),
        ),
        row("Virtual machines"),
        table(
            "Virtual machines",
            "Each VM: the commune it is attributed to, its vCPUs and memory.",
            "none",
            [
                (one(f"sitivmon_vm_vcpus{M}"), "vCPUs", "none"),
                (one(f"sitivmon_vm_memory_bytes{M}"), "Memory", "bytes"),
            ],
            w=16,
        ),
        stat(
            "Unattributed series",
            "Storage areas, outlets or VMs that no commune is attributed to: their usage is not allocated "
            "to any commune until the configuration names one.",
            "none",
            "sum(max without (replica) (sitivmon_unattributed_series)) or vector(0)",
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}],
            w=8,
            h=5,
        ),
        table(
            "Unattributed usage by kind",
            "Count of unattributed series by target and kind (storage, outlet, vm).",
            "none",
            [("sum by (target, kind) (max without (replica) (sitivmon_unattributed_series))", "Series", "none")],
            w=8,
            h=5,
        ),
    ]
    return dashboard(
        "sitivmon-datacenter",
        "sitivmon / Datacenter",
        "Datacenter hosts, storage, power and virtual machines per commune, and usage not yet attributed.",
        [DC_COMMUNES],
        panels,
    )


# --- 5. Usage and allocation ----------------------------------------------------------------------


def usage() -> Json:
    panels = [
        panel(
            "bargauge",
            "Coverage per commune",
            "Lowest month-to-date coverage per commune: the share of the month with samples. Below 100 %, "
            "the "
            "allocation relies on partial data.",
            "percentunit",
            [
                target(
                    f"min by (commune) ({store_wide('sitivmon_usage_month_to_date_coverage_ratio' + M)})",
                    "{{commune}}",
                    instant=True,
                )
            ],
            thresholds=THRESH_COVERAGE,
            minimum=0,
            maximum=1,
            options={
                "orientation": "horizontal",
                "displayMode": "gradient",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
            w=8,
            h=10,
        ),
        table(
            "Month-to-date indicators",
            "Every usage indicator of every commune since the first day of the month; the unit is in the unit column.",
            "none",
            [(store_wide(f"sitivmon_usage_month_to_date{M}"), "Month to date", "none")],
            w=16,
            h=10,
            links=[commune_link()],
        ),
        table(
            "Share of each indicator",
            "Each commune's share of the syndicate total for each indicator: the basis of the cost allocation.",
            "percentunit",
            [
                (
                    store_wide(f"sitivmon_usage_month_to_date{M}")
                    + " / ignoring (commune) group_left sum without (commune) ("
                    + store_wide("sitivmon_usage_month_to_date")
                    + ")",
                    "Share",
                    "percentunit",
                )
            ],
            w=12,
        ),
        table(
            "Coverage per indicator",
            "Month-to-date coverage per commune, indicator and direction.",
            "percentunit",
            [(store_wide(f"sitivmon_usage_month_to_date_coverage_ratio{M}"), "Coverage", "percentunit")],
            w=12,
        ),
        timeseries(
            "Month-to-date progress",
            "How each indicator accumulates through the month (in its own unit, see the table above).",
            "none",
            (
                f"sum by (commune, indicator, direction) ({store_wide('sitivmon_usage_month_to_date' + M)})",
                "{{commune}} {{indicator}} {{direction}}",
            ),
            w=24,
        ),
    ]
    return dashboard(
        "sitivmon-usage",
        "sitivmon / Usage and allocation",
        "Month-to-date usage indicators per commune with their coverage, the basis of the cost allocation.",
        [COMMUNE_MANY],
        panels,
    )


DASHBOARDS = {
    "overview.json": overview,
    "commune.json": commune,
    "link-detail.json": link_detail,
    "datacenter.json": datacenter,
    "usage.json": usage,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed JSON file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards (run python dashboards/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
