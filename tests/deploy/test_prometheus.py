"""deploy/prometheus/recording.yml: parsed by promtool and unit-tested with `promtool test rules`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.dashboards.promql import metric_names, recorded_names, rule_expressions
from tests.dashboards.test_lint import CONTRACT_METRICS
from tests.support.procs import require_binary

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "deploy/prometheus/recording.yml"
UNIT_TEST = Path(__file__).parent / "data/recording_test.yml"


def test_recording_rules_pass_promtool_check() -> None:
    promtool = require_binary("promtool")
    r = subprocess.run([promtool, "check", "rules", str(RECORDING)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rule_expressions(RECORDING))} rules found" in r.stdout


def test_recording_rules_unit_tests(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    test = tmp_path / "recording_test.yml"
    test.write_text(UNIT_TEST.read_text().replace("  - RULES", f"  - {RECORDING}"))
    r = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for name in recorded_names(RECORDING):
        level, metric, ops = name.split(":")
        assert level in ("link", "commune") and metric.startswith("sitivmon_") and ops, name


def test_every_recorded_name_is_unit_tested() -> None:
    assert recorded_names(RECORDING) <= metric_names_in_test()


def metric_names_in_test() -> set[str]:
    doc = yaml.safe_load(UNIT_TEST.read_text())
    return {n for t in doc["tests"] for e in t["promql_expr_test"] for n in metric_names(e["expr"])}


def test_recording_rules_read_only_contract_metrics() -> None:
    for name, expr in rule_expressions(RECORDING):
        assert metric_names(expr) <= CONTRACT_METRICS, name
