"""Alert rules are checked and unit-tested with the real promtool (Debian `prometheus` package)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.support.procs import require_binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
TESTS = sorted((ROOT / "tests" / "rules").glob("*_test.yml"))
REQUIRED = {
    "SitivmonLinkDown", "SitivmonTargetDown", "SitivmonTargetStale", "SitivmonLinkFlapping",
    "SitivmonLinkErrors", "SitivmonLinkSaturated", "SitivmonUsageCoverageLow",
}  # fmt: skip


def _alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests() -> None:
    promtool = require_binary("promtool")
    assert TESTS, "no promtool test files"
    r = subprocess.run([promtool, "test", "rules", *map(str, TESTS)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mixin_conventions_and_runbooks_exist() -> None:
    alerts = _alerts()
    assert {str(a["alert"]) for a in alerts} >= REQUIRED
    for a in alerts:
        labels = a["labels"]
        ann = a["annotations"]
        assert isinstance(labels, dict) and isinstance(ann, dict)
        assert labels["severity"] in {"critical", "warning", "info"}, a["alert"]
        assert "{{" not in ann["summary"], f"{a['alert']}: summary must be static"
        assert "{{" in ann["description"], f"{a['alert']}: description should be templated"
        runbook = ROOT / str(ann["runbook_url"])
        assert runbook.is_file(), f"{a['alert']}: missing runbook {runbook}"
        assert re.search(rf"^# {a['alert']}\b", runbook.read_text(), re.M), f"{runbook} must be titled {a['alert']}"


def test_every_required_alert_is_unit_tested_including_a_silent_case() -> None:
    text = "\n".join(p.read_text() for p in TESTS)
    for name in REQUIRED:
        assert f"alertname: {name}\n        exp_alerts: []" in text, name
        assert f"alertname: {name}" in text
