"""Pure helpers over dashboards and rule files: list queries, substitute Grafana variables, find metric names.

Why here and pure: the lint tests, the metric-existence test and the live Prometheus test all need the
same three things (every query of every panel, the query with its variables replaced, the metric
names it reads). Keeping them free of I/O beyond reading the repository's files makes them testable
without Prometheus; the real PromQL parser (promtool) is used by the tests that need one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
RULE_FILES = (ROOT / "deploy/prometheus/alerts.yml", ROOT / "deploy/prometheus/recording.yml")

# Values used for Grafana's built-in interval variables when a query must become plain PromQL.
BUILTIN_DEFAULTS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL query of one panel, located for error messages."""

    dashboard: str  # file name
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} panel {self.panel_id} '{self.panel_title}' query {self.ref_id}"


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def panel_queries(name: str, dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    out = []
    for p in iter_panels(dashboard):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append(PanelQuery(name, int(p.get("id", 0)), str(p.get("title", "")), t["refId"], t["expr"]))
    return out


def all_panel_queries(directory: Path = DASHBOARD_DIR) -> list[PanelQuery]:
    return [q for name, d in load_dashboards(directory).items() for q in panel_queries(name, d)]


def template_variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard.get("templating", {}).get("list", []))


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>[A-Za-z_]\w*)\s*\)\s*$")


def variable_query(var: Mapping[str, Any]) -> str:
    q = var.get("query", "")
    return str(q.get("query", "") if isinstance(q, Mapping) else q)


def parse_label_values(query: str) -> tuple[str | None, str]:
    """Split `label_values(selector, label)` into its selector (None when absent) and label."""
    m = LABEL_VALUES.match(query)
    if m is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group("selector"), m.group("label")


def rule_expressions(path: Path) -> list[tuple[str, str]]:
    """(rule name, expr) of every alerting and recording rule in a Prometheus rule file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for group in doc.get("groups", []) or []:
        for rule in group.get("rules", []) or []:
            out.append((str(rule.get("record") or rule.get("alert")), str(rule["expr"])))
    return out


def recorded_names(path: Path) -> set[str]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {r["record"] for g in doc.get("groups", []) or [] for r in g.get("rules", []) or [] if "record" in r}


# --- Variable substitution --------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$\{(?P<braced>[A-Za-z_][\w.]*)(?::(?P<fmt>[A-Za-z]+))?\}"
    r"|\[\[(?P<bracket>[A-Za-z_][\w.]*)(?::(?P<fmt2>[A-Za-z]+))?\]\]"
    r"|\$(?P<plain>[A-Za-z_]\w*)"
)
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


def regex_escape(value: str) -> str:
    """Escape like Grafana's Prometheus datasource does for multi-value variables (PromQL string level)."""
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)


def substitute_variables(
    expr: str,
    values: Mapping[str, str | Sequence[str]],
    builtins: Mapping[str, str] | None = None,
) -> str:
    """Replace Grafana variables in a panel query as Grafana would before sending it to Prometheus.

    `values` maps a variable name to one value (used verbatim, as Grafana does for a single-value
    variable) or to a list of values (a multi-value or "All" selection: each value regex-escaped and
    joined as `(a|b)`, a single-element list gives the escaped value alone). Grafana's interval
    built-ins ($__rate_interval...) take `builtins` or BUILTIN_DEFAULTS. An unknown variable raises
    KeyError, so a typo in a dashboard is caught rather than sent to Prometheus.
    """
    known = {**BUILTIN_DEFAULTS, **(builtins or {})}

    def replace(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("bracket") or m.group("plain")
        fmt = m.group("fmt") or m.group("fmt2")
        if name in values:
            v = values[name]
            if isinstance(v, str):
                return regex_escape(v) if fmt == "regex" else v
            items = [regex_escape(x) for x in v]
            return items[0] if len(items) == 1 else "(" + "|".join(items) + ")"
        if name in known:
            return known[name]
        raise KeyError(f"variable ${name} has no value in {expr!r}")

    return _VARIABLE.sub(replace, expr)


# --- Metric name extraction -------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\[\[[^\]]*\]\]|\$\w+)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<lbrace>\{) | (?P<rbrace>\}) | (?P<lbracket>\[) | (?P<rbracket>\])
  | (?P<lparen>\() | (?P<rparen>\))
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,@])
    """,
    re.VERBOSE,
)
# Words that are never metric names where a metric name could stand.
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2", "start", "end",
}  # fmt: skip
# Words followed by a parenthesised list of label names, not expressions.
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot tokenize PromQL at {pos}: {expr[pos : pos + 20]!r} in {expr!r}")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            out.append((kind, m.group()))
        pos = m.end()
    return out


def metric_names(expr: str) -> set[str]:
    """Names of the metrics an expression reads: selectors `name{...}`, `name[...]`, bare `name`.

    Function and aggregation names (an identifier followed by `(`), keywords, label names inside
    `{...}` and `by/on/...(...)` lists, strings, durations and Grafana variables are skipped.
    `{__name__="x"}` counts as reading `x`.
    """
    toks = _tokens(expr)
    names: set[str] = set()
    i = 0
    depth_brace = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if kind == "lbrace":
            depth_brace += 1
            # {__name__="metric"} selects by name.
            j = i + 1
            while j < len(toks) and toks[j][0] != "rbrace":
                if toks[j] == ("ident", "__name__") and j + 2 < len(toks) and toks[j + 1] == ("op", "="):
                    names.add(toks[j + 2][1][1:-1])
                j += 1
            i = j
            continue
        if kind == "rbrace":
            depth_brace -= 1
        elif kind == "lbracket":
            while i < len(toks) and toks[i][0] != "rbracket":
                i += 1
        elif kind == "ident" and depth_brace == 0:
            low = text.lower()
            if low in _LABEL_LIST_KEYWORDS and nxt[0] == "lparen":
                while i < len(toks) and toks[i][0] != "rparen":
                    i += 1
            elif low in _KEYWORDS or nxt[0] == "lparen" or (nxt[0] == "ident" and nxt[1] in ("by", "without")):
                pass  # keyword, function call, or aggregation written `sum by (...) (...)`
            else:
                names.add(text)
        i += 1
    return names
