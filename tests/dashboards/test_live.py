"""Dashboards and rules against the real thing: sitivmon's real /metrics, scraped by a real Prometheus.

The daemon is the `running_daemon` fixture (conftest.py here): a sitivmon daemon polling a real
snmpd, with its usage store, trap receiver and MQTT publisher on, yielding its /metrics URL.

1. Every metric name read by a dashboard, an alert or a recording rule exists in sitivmon's output.
2. Every panel query, with its variables substituted by values Prometheus really has, runs in a real
   Prometheus that scraped that daemon (with alerts.yml and recording.yml loaded), and returns
   success with data.
3. The container's HEALTHCHECK command succeeds against the real daemon.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.dashboards.promql import (
    RULE_FILES,
    PanelQuery,
    all_panel_queries,
    load_dashboards,
    metric_names,
    parse_label_values,
    recorded_names,
    rule_expressions,
    substitute_variables,
    template_variables,
    variable_query,
)
from tests.support.procs import free_port, managed, require_binary, wait_tcp

# Series Prometheus makes itself, which rules may read without sitivmon exporting them.
PROMETHEUS_MADE = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
SCRAPE_INTERVAL_S = 1
# $__rate_interval in Grafana is max(4 x scrape interval, $__interval + scrape interval): with a 1 s
# scrape, 15 s covers enough samples for rate() while the test waits only that long.
BUILTINS = {"__rate_interval": "15s", "__interval": "1s", "__range": "1m"}
QUERIES = all_panel_queries()
DASHBOARDS = load_dashboards()
READ_RECORDED = sorted({n for q in QUERIES for n in metric_names(q.expr) if ":" in n})


def http_get(url: str, params: dict[str, str] | list[tuple[str, str]] | None = None) -> Any:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read().decode()
    return json.loads(body) if body.lstrip().startswith("{") else body


def exported_metric_names(metrics_url: str) -> set[str]:
    """Sample names in an exposition (counters appear with _total, histograms with _bucket...)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def used_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is read, over dashboards and rule files; recorded names left out."""
    recorded: set[str] = set()
    for path in RULE_FILES:
        if path.exists():
            recorded |= recorded_names(path)
    used: dict[str, set[str]] = {}
    for q in QUERIES:
        for n in metric_names(q.expr):
            used.setdefault(n, set()).add(q.where)
    for name, d in DASHBOARDS.items():
        for var in template_variables(d):
            if var["type"] == "query":
                selector, _ = parse_label_values(variable_query(var))
                for n in metric_names(substitute_variables(selector or "", {"commune": ".+"})):
                    used.setdefault(n, set()).add(f"{name} variable {var['name']}")
    for path in RULE_FILES:
        if path.exists():
            for rule, expr in rule_expressions(path):
                for n in metric_names(expr):
                    used.setdefault(n, set()).add(f"{path.name} {rule}")
    return {n: w for n, w in used.items() if n not in recorded and n not in PROMETHEUS_MADE}


def test_every_metric_used_exists_in_sitivmon_output(running_daemon: str) -> None:
    exported = exported_metric_names(running_daemon)
    missing = {n: sorted(w) for n, w in used_metric_names().items() if n not in exported}
    assert not missing, "read but not exported by sitivmon:\n" + yaml.safe_dump(missing)


# --- A real Prometheus scraping the real daemon ----------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(running_daemon: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a Prometheus that has scraped the daemon for long enough to compute rates."""
    binary = require_binary("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(running_daemon)
    rule_files = [str(p) for p in RULE_FILES if p.exists()]
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": "sitivmon",
                "metrics_path": target.path or "/metrics",
                "static_configs": [{"targets": [target.netloc]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with managed(argv, work / "prometheus.log") as proc:
        wait_tcp("127.0.0.1", port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the HTTP port opens before the TSDB is ready (503 until then)
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        while time.monotonic() < deadline:
            r = http_get(f"{base}/api/v1/query", {"query": 'count_over_time(up{job="sitivmon"}[1m]) >= 16'})
            if (
                r["data"]["result"]
                and http_get(f"{base}/api/v1/query", {"query": 'up{job="sitivmon"}'})["data"]["result"][0]["value"][1]
                == "1"
            ):
                break
            time.sleep(1)
        else:
            pytest.fail(f"Prometheus did not scrape sitivmon successfully:\n{proc.output()}")
        # Panels read recorded series too; recording.yml's groups run once a minute, the first run at
        # an offset Prometheus picks within that minute.
        deadline = time.monotonic() + 130
        while time.monotonic() < deadline:
            if all(http_get(f"{base}/api/v1/query", {"query": name})["data"]["result"] for name in READ_RECORDED):
                break
            time.sleep(2)
        else:
            pytest.fail(f"recording rules produced no {READ_RECORDED}:\n{proc.output()}")
        yield base


def variable_values(base: str, dashboard: dict[str, Any]) -> dict[str, str | list[str]]:
    """Resolve the dashboard's variables in order, as Grafana does, from Prometheus' label values."""
    values: dict[str, str | list[str]] = {}
    for var in template_variables(dashboard):
        if var["type"] != "query":
            continue
        selector, label = parse_label_values(variable_query(var))
        params = [("match[]", substitute_variables(selector, values))] if selector else []
        found = http_get(f"{base}/api/v1/label/{label}/values", params)["data"]
        assert found, f"variable {var['name']}: no values for {variable_query(var)}"
        values[var["name"]] = list(found) if var.get("multi") else found[0]
    return values


@pytest.mark.parametrize("q", QUERIES, ids=lambda q: f"{q.dashboard}:{q.panel_id}:{q.ref_id}")
def test_panel_query_returns_data_from_real_prometheus(q: PanelQuery, prometheus: str) -> None:
    values = variable_values(prometheus, DASHBOARDS[q.dashboard])
    expr = substitute_variables(q.expr, values, BUILTINS)
    r = http_get(f"{prometheus}/api/v1/query", {"query": expr})
    assert r["status"] == "success", f"{q.where}: {r}"
    assert r["data"]["result"], f"{q.where}: no data for {expr}"


def test_container_healthcheck_succeeds_against_the_daemon(running_daemon: str) -> None:
    from tests.deploy.test_container import healthcheck_argv

    port = urllib.parse.urlsplit(running_daemon).port
    argv = healthcheck_argv(port)
    r = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_used_metric_names_cover_dashboards_and_rules() -> None:
    """Pure part, runs now: the inventory the live test compares is complete and non-trivial."""
    used = used_metric_names()
    assert "sitivmon_link_receive_bytes_total" in used
    assert "sitivmon_usage_month_to_date" in used
    assert not any(":" in n for n in used), "recorded names must be left out"
    assert all(Path(p).name.endswith(".yml") for p in RULE_FILES)
