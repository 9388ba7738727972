"""The rules of grafana/dashboard-linter, as pytest tests over dashboards/*.json.

Why pytest rather than the linter binary: the linter is a Go tool that is not packaged for Debian;
its rules are simple enough to restate here, and "valid PromQL" is checked with Prometheus' own
parser (promtool), which is. Rules that do not fit sitivmon are listed in EXEMPTED with the reason,
as the linter's `.lint` exclusions would.

Rule names follow the linter's. Some are stricter than the linter on purpose (the issue asks for it):
units on every panel type, and $__rate_interval in increase() too, not only in rate()/irate().
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards.promql import (
    DASHBOARD_DIR,
    ROOT,
    RULE_FILES,
    PanelQuery,
    all_panel_queries,
    iter_panels,
    load_dashboards,
    metric_names,
    parse_label_values,
    recorded_names,
    substitute_variables,
    template_variables,
    variable_query,
)
from tests.support.procs import require_binary

EXEMPTED = {
    "template-job-rule": "sitivmon is one scrape job; communes, links and targets are labels, not jobs.",
    "template-instance-rule": "same: the commune and link variables select, not the scrape instance.",
    "target-job-rule": "no job matcher: one sitivmon job per Prometheus.",
    "target-instance-rule": "no instance matcher: one sitivmon instance per Prometheus.",
}

EXPECTED_DASHBOARDS = {
    "overview.json": "sitivmon-overview",
    "commune.json": "sitivmon-commune",
    "link-detail.json": "sitivmon-link",
    "datacenter.json": "sitivmon-datacenter",
    "usage.json": "sitivmon-usage",
}

# The metric contract announced for sitivmon's /metrics (see the issue). The live test in
# test_live.py checks the dashboards against the real output; this one catches typos without a daemon.
CONTRACT_METRICS = {
    *(
        f"sitivmon_link_{d}_{k}_total"
        for d in ("receive", "transmit")
        for k in ("bytes", "packets", "errors", "discards")
    ),
    "sitivmon_link_up",
    "sitivmon_link_admin_up",
    "sitivmon_link_speed_bytes",
    "sitivmon_link_state_changes_total",
    "sitivmon_link_last_change_timestamp_seconds",
    "sitivmon_link_info",
    "sitivmon_commune_receive_bytes_total",
    "sitivmon_commune_transmit_bytes_total",
    "sitivmon_counter_discontinuities_total",
    "sitivmon_target_up",
    "sitivmon_target_poll_duration_seconds",
    "sitivmon_target_last_success_timestamp_seconds",
    "sitivmon_target_poll_interval_seconds",
    "sitivmon_poll_errors_total",
    "sitivmon_build_info",
    "sitivmon_host_storage_used_bytes",
    "sitivmon_host_storage_size_bytes",
    "sitivmon_host_cpu_load_ratio",
    "sitivmon_host_memory_used_bytes",
    "sitivmon_energy_joules_total",
    "sitivmon_power_watts",
    "sitivmon_vm_vcpus",
    "sitivmon_vm_memory_bytes",
    "sitivmon_commune_storage_used_bytes",
    "sitivmon_commune_power_watts",
    "sitivmon_commune_vcpus",
    "sitivmon_unattributed_series",
    "sitivmon_usage_month_to_date",
    "sitivmon_usage_month_to_date_coverage_ratio",
}

# Units Grafana knows (packages/grafana-data/src/valueFormats/categories.ts), the ones a sitivmon
# panel can plausibly need; a unit outside this list is a typo or needs adding here deliberately.
VALID_UNITS = {
    "none", "short", "percent", "percentunit", "string",
    "bytes", "decbytes", "bits", "decbits", "kbytes", "mbytes", "gbytes", "tbytes",
    "pps", "binBps", "Bps", "binbps", "bps", "KBs", "Kbits", "MBs", "Mbits", "GBs", "Gbits",
    "dateTimeAsIso", "dateTimeAsLocal", "dateTimeFromNow", "dateTimeAsSystem",
    "watt", "kwatt", "watth", "kwatth", "joule", "voltamp", "amp", "volt",
    "celsius", "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurations", "dtdurationms", "dthms",
    "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm",
    "bool", "bool_yes_no", "bool_on_off", "currencyEUR",
}  # fmt: skip

RATE_FUNCS = ("rate", "irate", "increase")
DASHBOARDS = load_dashboards()
QUERIES = all_panel_queries()


def panels_of(name: str) -> list[dict[str, Any]]:
    return [p for p in iter_panels(DASHBOARDS[name]) if p.get("type") != "row"]


def default_values(dashboard: dict[str, Any]) -> dict[str, str | list[str]]:
    """Plausible values for the dashboard's variables, to turn its queries into plain PromQL."""
    values: dict[str, str | list[str]] = {}
    for var in template_variables(dashboard):
        if var["type"] == "datasource":
            continue
        values[var["name"]] = ["givors", "saint-chamond"] if var.get("multi") else "givors"
    return values


def substituted(q: PanelQuery) -> str:
    return substitute_variables(q.expr, default_values(DASHBOARDS[q.dashboard]))


def qid(q: PanelQuery) -> str:
    return f"{q.dashboard}:{q.panel_id}:{q.ref_id}"


# --- Dashboard set and structure --------------------------------------------------------------------


def test_the_five_dashboards_exist_with_stable_uids() -> None:
    assert {n: d["uid"] for n, d in DASHBOARDS.items()} == EXPECTED_DASHBOARDS


def test_committed_json_is_the_generator_output() -> None:
    r = subprocess.run([sys.executable, str(DASHBOARD_DIR / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_schema_version_recent_and_ready_for_provisioning(name: str) -> None:
    d = DASHBOARDS[name]
    assert d["schemaVersion"] >= 36, "schemaVersion 36+ (Grafana 9+) is needed for datasource refs by uid"
    assert "id" not in d or d["id"] is None, "a provisioned dashboard must not carry a database id"
    assert d["title"].startswith("sitivmon / ")
    assert d.get("description")
    assert "sitivmon" in d["tags"]


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_panel_ids_unique_and_grid_within_24_columns(name: str) -> None:
    panels = list(iter_panels(DASHBOARDS[name]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]


# --- template-* rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_template_datasource_rule(name: str) -> None:
    ds = [v for v in template_variables(DASHBOARDS[name]) if v["type"] == "datasource"]
    assert len(ds) == 1, "exactly one datasource variable"
    assert ds[0]["name"] == "datasource"
    assert ds[0]["label"] == "Data source"
    assert ds[0]["query"] == "prometheus"


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_template_on_time_change_reload_rule(name: str) -> None:
    for var in template_variables(DASHBOARDS[name]):
        if var["type"] == "query":
            assert var["refresh"] == 2, f"variable {var['name']} must refresh on time range change"
            assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_template_uneditable_rule(name: str) -> None:
    assert DASHBOARDS[name]["editable"] is False, "provisioned dashboards are changed in git, not in the UI"


def test_commune_and_link_variables_are_fed_by_label_values() -> None:
    expected = {
        "commune.json": {"commune"},
        "link-detail.json": {"commune", "link"},
        "datacenter.json": {"commune"},
        "usage.json": {"commune"},
        "overview.json": set(),
    }
    for name, wanted in expected.items():
        query_vars = {v["name"]: v for v in template_variables(DASHBOARDS[name]) if v["type"] == "query"}
        assert set(query_vars) == wanted, name
        for var_name, var in query_vars.items():
            selector, label = parse_label_values(variable_query(var))
            assert label == var_name
            assert selector is not None and metric_names(substitute_variables(selector, {"commune": ".+"})) <= (
                CONTRACT_METRICS
            )


# --- panel-* rules -----------------------------------------------------------------------------------


def walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}.{k}", k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_panel_datasource_rule_and_no_hard_coded_uid(name: str) -> None:
    for p in panels_of(name):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    # Anywhere in the file: a datasource is the variable, or Grafana's own (built-in annotations).
    for where, key, value in walk(DASHBOARDS[name]):
        if key == "datasource" and not where.startswith(".templating"):
            assert isinstance(value, dict), f"{where}: datasource given by name"
            assert value.get("uid") in ("${datasource}", "-- Grafana --"), f"{where}: hard-coded uid {value}"


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_panel_title_description_rule(name: str) -> None:
    for p in iter_panels(DASHBOARDS[name]):
        assert p.get("title", "").strip(), p
        if p["type"] != "row":
            assert len(p.get("description", "").strip()) >= 20, f"panel '{p['title']}' needs a description"


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_panel_units_rule_on_every_panel(name: str) -> None:
    for p in panels_of(name):
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit in VALID_UNITS, f"panel '{p['title']}' has no or invalid unit {unit!r}"
        for o in p["fieldConfig"].get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in VALID_UNITS, f"panel '{p['title']}' override unit {prop['value']!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED_DASHBOARDS))
def test_panel_no_targets_rule(name: str) -> None:
    for p in panels_of(name):
        assert p.get("targets"), f"panel '{p['title']}' has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


# --- target-* rules ----------------------------------------------------------------------------------

_RANGE = re.compile(r"\[([^\]]*)\]")


@pytest.mark.parametrize("q", QUERIES, ids=qid)
def test_target_rate_interval_rule(q: PanelQuery) -> None:
    """Every range selector is [$__rate_interval], and rate/irate/increase take nothing else."""
    ranges = _RANGE.findall(q.expr)
    assert all(r == "$__rate_interval" for r in ranges), f"{q.where}: {ranges}"
    calls = len(re.findall(r"\b(?:" + "|".join(RATE_FUNCS) + r")\s*\(", q.expr))
    assert calls <= len(ranges), f"{q.where}: rate-like call without a range: {q.expr}"


@pytest.mark.parametrize("q", QUERIES, ids=qid)
def test_target_counter_agg_rule(q: PanelQuery) -> None:
    """A counter (_total) is only read through rate/irate/increase, never as a raw value."""
    for name in metric_names(q.expr):
        if not name.endswith("_total"):
            continue
        raw = len(re.findall(rf"\b{re.escape(name)}\b", q.expr))
        wrapped = len(
            re.findall(rf"\b(?:{'|'.join(RATE_FUNCS)})\(\s*{re.escape(name)}\s*(?:\{{[^}}]*\}})?\s*\[", q.expr)
        )
        assert raw == wrapped, f"{q.where}: counter {name} used without rate/increase"


@pytest.mark.parametrize("q", QUERIES, ids=qid)
def test_target_variables_are_defined(q: PanelQuery) -> None:
    substituted(q)  # raises KeyError on an undefined variable


RECORDED = set().union(*(recorded_names(p) for p in RULE_FILES))


@pytest.mark.parametrize("q", QUERIES, ids=qid)
def test_target_reads_only_contract_metrics(q: PanelQuery) -> None:
    """sitivmon's own metrics, or what deploy/prometheus's rules record from them."""
    names = metric_names(q.expr)
    assert names, f"{q.where}: reads no metric"
    assert names <= CONTRACT_METRICS | RECORDED, f"{q.where}: unknown metrics {names - CONTRACT_METRICS - RECORDED}"


# --- Replica pairs: every raw series read through `max without (replica)`, as the rules do -------------

# Per-process facts, one per daemon on purpose (two replicas may run two versions during an upgrade).
PER_REPLICA = {"sitivmon_build_info": "the version of each running daemon, both shown during an upgrade"}
_DEDUP = re.compile(r"max without \((?P<labels>[^)]*)\) \(")


def _dedup_spans(expr: str) -> list[tuple[int, int]]:
    """Character spans of the arguments of every `max without (..., replica, ...) (...)` in expr."""
    spans = []
    for m in _DEDUP.finditer(expr):
        if "replica" not in (label.strip() for label in m.group("labels").split(",")):
            continue
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        spans.append((m.end(), i - 1))
    return spans


def raw_reads_outside_dedup(expr: str) -> list[str]:
    """Raw sitivmon series an expression reads outside a replica deduplication (recorded ones are deduplicated)."""
    spans = _dedup_spans(expr)
    bad = []
    for name in sorted(metric_names(expr) - RECORDED - PER_REPLICA.keys()):
        for m in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr):
            if not any(a <= m.start() < b for a, b in spans):
                bad.append(name)
    return bad


@pytest.mark.parametrize("q", QUERIES, ids=qid)
def test_target_deduplicates_replicas(q: PanelQuery) -> None:
    """With a replica pair, a raw series appears twice (replica="a"|"b"): a sum over it would double.

    Every raw read sits inside `max without (replica)`, and a counter's rate() is taken inside it
    (the counter rule above keeps counters directly in rate(); a subquery would break the interval rule).
    Exact figures with two replicas, one and none: tests/dashboards/test_replicas.py.
    """
    assert not raw_reads_outside_dedup(q.expr), f"{q.where}: {raw_reads_outside_dedup(q.expr)} read raw: {q.expr}"
    assert not re.search(r"\b(?:rate|irate|increase)\(\s*max\b", q.expr), f"{q.where}: dedupe after rate()"


def test_dedup_rule_has_teeth() -> None:
    assert raw_reads_outside_dedup("sum by (commune) (rate(sitivmon_commune_receive_bytes_total[5m]))")
    assert raw_reads_outside_dedup("max without (instance) (sitivmon_link_up)")
    assert raw_reads_outside_dedup("max without (replica) (sitivmon_link_up) / sitivmon_link_speed_bytes")
    assert not raw_reads_outside_dedup("sum(max without (replica) (rate(sitivmon_link_up[5m]))) * 8")
    assert not raw_reads_outside_dedup("max without (instance, shard, replica) (sitivmon_usage_month_to_date)")
    assert not raw_reads_outside_dedup("sum(commune:sitivmon_commune_receive_bits:rate5m)")
    assert PER_REPLICA and all(PER_REPLICA.values())


# --- target-promql-rule and template-label-promql-rule, with Prometheus' own parser ---------------


def _promql_items() -> list[tuple[str, str, str]]:
    """(id, where, expr) of every panel query and variable selector, substituted."""
    items = [(qid(q), q.where, substituted(q)) for q in QUERIES]
    for name, d in DASHBOARDS.items():
        values = default_values(d)
        for var in template_variables(d):
            if var["type"] == "query":
                selector, _ = parse_label_values(variable_query(var))
                if selector:
                    sid = f"{name}:var:{var['name']}"
                    items.append((sid, f"{name} variable {var['name']}", substitute_variables(selector, values)))
    return items


PROMQL_ITEMS = _promql_items()


@pytest.fixture(scope="module")
def promtool_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run `promtool check rules` once over every expression; map item id -> its parse error."""
    promtool = require_binary("promtool")
    rules = [{"record": f"lint:item_{i}", "expr": expr} for i, (_, _, expr) in enumerate(PROMQL_ITEMS)]
    path: Path = tmp_path_factory.mktemp("promql") / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    errors: dict[str, str] = {}
    for line in (r.stdout + r.stderr).splitlines():
        m = re.search(r'"lint:item_(\d+)": (.*)$', line)
        if m:
            errors[PROMQL_ITEMS[int(m.group(1))][0]] = m.group(2)
    if r.returncode != 0:
        assert errors, f"promtool failed without naming a rule:\n{r.stdout}\n{r.stderr}"
    else:
        assert f"SUCCESS: {len(rules)} rules found" in r.stdout, r.stdout
    return errors


@pytest.mark.parametrize("item", PROMQL_ITEMS, ids=[i[0] for i in PROMQL_ITEMS])
def test_target_promql_rule(item: tuple[str, str, str], promtool_errors: dict[str, str]) -> None:
    item_id, where, expr = item
    assert item_id not in promtool_errors, f"{where}: {promtool_errors[item_id]}\n{expr}"


def test_promtool_rejects_invalid_promql(tmp_path: Path) -> None:
    """The check above has teeth: the same promtool call fails on a broken expression."""
    promtool = require_binary("promtool")
    path = tmp_path / "bad.yml"
    bad = {"record": "lint:bad", "expr": "sum(rate(sitivmon_link_receive_bytes_total[1m])"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [bad]}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode != 0
    assert '"lint:bad": could not parse expression' in r.stdout + r.stderr


def test_exemptions_are_explained() -> None:
    assert all(reason.strip() for reason in EXEMPTED.values())
    assert ROOT.joinpath("dashboards").is_dir()
