"""The pure helpers the lint and live tests rely on: metric name extraction and variable substitution."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dashboards.promql import (
    all_panel_queries,
    metric_names,
    parse_label_values,
    regex_escape,
    substitute_variables,
)
from tests.support.procs import require_binary


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sitivmon_link_up", {"sitivmon_link_up"}),
        ('sitivmon_link_up{commune="givors", link=~"a|b"}', {"sitivmon_link_up"}),
        ("sum by (commune) (rate(a_total[5m])) * 8", {"a_total"}),
        ("sum(rate(a_total[5m])) by (commune, link)", {"a_total"}),
        ("sum without (commune) (b)", {"b"}),
        ("count((up == 0) and on (link, target) (admin == 1)) or vector(0)", {"up", "admin"}),
        ("a / ignoring (commune) group_left sum without (commune) (a)", {"a"}),
        ("a * on (x) group_left (alias, interface) info", {"a", "info"}),
        ("topk(5, rate(x_total[$__rate_interval]))", {"x_total"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("time() - last_success_seconds", {"last_success_seconds"}),
        ("rate(c_total[5m] offset 1h) > bool 0", {"c_total"}),
        ("max_over_time(m[1h:5m])", {"m"}),
        ('{__name__="by_name", x="y"}', {"by_name"}),
        ("instance:rec:rate5m / 1e3", {"instance:rec:rate5m"}),
        ("# a comment\nfoo + Inf - NaN", {"foo"}),
        ('sum(x{a="sum(y)"})', {"x"}),
        ('m{commune=~"${commune:regex}"} and [[legacy]] > $threshold', {"m"}),
        ("histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_metric_names_of_every_dashboard_query_are_sitivmon_metrics() -> None:
    """sitivmon's own series, or series recorded from them (`level:sitivmon_...:operation`)."""
    for q in all_panel_queries():
        found = metric_names(q.expr)
        assert found and all(n.split(":")[1 if ":" in n else 0].startswith("sitivmon_") for n in found), (
            q.where,
            found,
        )


def test_extracted_names_agree_with_prometheus_parser(tmp_path: Path) -> None:
    """Cross-check with promtool: an expression where every extracted name is replaced by a
    fixed other metric still parses, and one where a function name is replaced does not."""
    promtool = require_binary("promtool")
    expr = "sum by (commune) (rate(sitivmon_link_receive_bytes_total[1m])) / sum(sitivmon_link_speed_bytes)"
    renamed = expr
    for n in metric_names(expr):
        renamed = renamed.replace(n, "renamed_metric")
    bad = expr.replace("rate(", "renamed_metric(")
    rules = [{"record": "t:ok", "expr": renamed}, {"record": "t:bad", "expr": bad}]
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert '"t:ok"' not in out
    assert '"t:bad"' in out


def test_substitute_single_value_and_builtins() -> None:
    expr = 'rate(m_total{commune="$commune"}[$__rate_interval]) and on () x{l="${link}"}'
    assert substitute_variables(expr, {"commune": "givors", "link": "givors-fibre"}) == (
        'rate(m_total{commune="givors"}[1m]) and on () x{l="givors-fibre"}'
    )


def test_substitute_builtin_overrides() -> None:
    assert substitute_variables("rate(m[$__rate_interval])", {}, {"__rate_interval": "2m"}) == "rate(m[2m])"


def test_substitute_multi_value_as_regex_alternation() -> None:
    expr = 'm{commune=~"$commune"}'
    assert substitute_variables(expr, {"commune": ["givors", "rive-de-gier"]}) == 'm{commune=~"(givors|rive-de-gier)"}'
    assert substitute_variables(expr, {"commune": ["a.b"]}) == 'm{commune=~"a\\\\.b"}'


def test_substitute_all_syntaxes_and_regex_format() -> None:
    values = {"v": "x.y"}
    assert substitute_variables("$v ${v} [[v]] ${v:regex}", values) == "x.y x.y x.y x\\\\.y"


def test_substitute_unknown_variable_raises() -> None:
    with pytest.raises(KeyError, match="commune"):
        substitute_variables('m{commune="$commune"}', {})


def test_variable_is_not_confused_with_a_longer_name() -> None:
    assert substitute_variables("$link $links", {"link": "a", "links": "b"}) == "a b"


def test_regex_escape() -> None:
    assert regex_escape("a+b(c)") == "a\\\\+b\\\\(c\\\\)"


def test_parse_label_values() -> None:
    assert parse_label_values('label_values(m{commune=~"$commune"}, link)') == ('m{commune=~"$commune"}', "link")
    assert parse_label_values("label_values(commune)") == (None, "commune")
    with pytest.raises(ValueError):
        parse_label_values("query_result(m)")
