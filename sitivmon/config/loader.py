"""Load the YAML file, apply `SITIVMON_*` environment overrides, validate, and locate every error.

Errors are reported as `links[3].commune: unknown commune <value> (line 42)`: the path in the
document as an operator reads it, plus the line when the key exists in the file. Values written in
the file are never echoed (see `redact`), so a secret pasted into the wrong field cannot leak
through an error message.

The document is bounded before anything walks it: its size, and what its aliases expand to (a
1.3 KB "billion laughs" of nine levels of nine aliases would otherwise expand to 9^9 nodes in the
line-location walk and in validation). Duplicate keys are errors: YAML would keep the last one
silently (a second credential of the same name replacing the first).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sitivmon.config.crossref import Problem
from sitivmon.config.model import CoreConfig
from sitivmon.yamlread import (
    MAX_DOCUMENT_BYTES,
    ConfigIssue,
    DocumentRefused,
    Loc,
    read_yaml,
)


class ConfigError(Exception):
    """All the problems of one config file, each located."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(f"{source}: {len(issues)} error(s)\n" + "\n".join(str(i) for i in issues))


REDACTED = "<value>"


# --- values never echoed ---------------------------------------------------------------------------

_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_MEASUREMENT = re.compile(r"^-?[0-9][0-9.]{0,15}\s?(ms|s|m|h|d|[kKMGT]?(bit|bps|B)?(/s)?)?$")
_TOKEN = re.compile(r"(?<![\w.:/@-])[\w.:/@+-]+(?![\w.:/@-])")


def _leaves(value: Any, out: set[str], budget: int = 200) -> set[str]:
    """String forms of the scalars in `value` (bounded: a message needs only the first ones)."""
    stack = [value]
    while stack and len(out) < budget:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            text = str(item)
            if text:
                out.add(text)
    return out


@dataclass(slots=True)
class Written:
    """What was written where an error points: `values` is the field's own value (echoes of it or of
    a part of it are removed), `within` the scalars of the block around it (a quoted one is removed:
    a mapping's or a list's message quotes its members whole)."""

    values: set[str]
    within: set[str]

    @classmethod
    def at(cls, data: Any, loc: Loc, *inputs: Any) -> Written:
        values: set[str] = set()
        within: set[str] = set()
        node, found = _value_at(data, loc)
        for item in (*inputs, node):
            if isinstance(item, dict | list | tuple):
                _leaves(item, within)
            else:
                _leaves(item, values)
        if not found:  # the section normalised its shape (a shorthand): what is around it was written
            _leaves(node, within)
        return cls(values, within)


def redact(message: str, written: Written) -> str:
    """`message` with every echo of what was written replaced by `<value>`.

    Validators (pydantic's and the sections') often quote what they refuse ("invalid capacity
    '10Gb'", "'x' is not an IP address", "unknown commune 'x'"); a secret pasted into the wrong
    field would then reach the terminal, CI logs and the reload answer. Quoted text goes when it is
    part of the field's value or the whole of a value around it; a bare word when it is the whole
    value, unless it is a plain measurement (`90s`, `70000`: figures a rule compares, never a
    secret's shape)."""
    texts = [v for v in written.values if v]
    if not texts and not written.within:
        return message

    def quoted(m: re.Match[str]) -> str:
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        hit = inner and (inner in written.within or any(inner in t for t in texts))
        return REDACTED if hit else m.group(0)

    whole = {t for t in texts if not _MEASUREMENT.match(t)}

    def bare(m: re.Match[str]) -> str:
        return REDACTED if m.group(0) in whole else m.group(0)

    return _TOKEN.sub(bare, _QUOTED.sub(quoted, message))


def _value_at(data: Any, loc: Loc) -> tuple[Any, bool]:
    """The value at `loc`, or the deepest one on its way and False when `loc` is not in the file."""
    node = data
    for part in loc:
        found = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not found:
            return node if node is not data else None, False
        node = node[part]
    return node, True


class _EnvOverrides(BaseSettings):
    """Reads `SITIVMON_LISTEN`, `SITIVMON_POLL__INTERVAL`, ... for the top-level settings."""

    model_config = SettingsConfigDict(env_prefix="SITIVMON_", env_nested_delimiter="__", extra="ignore")

    listen: str | None = None
    state_dir: str | None = None
    timezone: str | None = None
    poll: dict[str, Any] | None = None
    log: dict[str, Any] | None = None


def env_overrides() -> dict[str, Any]:
    return _EnvOverrides().model_dump(exclude_none=True)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _pydantic_issues(exc: ValidationError, lines: dict[Loc, int], data: Any) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        written = Written.at(data, loc, err.get("input"))
        issues.append(ConfigIssue(loc, redact(message, written), _nearest_line(loc, lines)))
    return issues


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines and cut > 0:
            return lines[loc[:cut]]
    return None


C = TypeVar("C", bound=CoreConfig)
CrossCheck = Callable[[C, Path | None], Iterable[Problem]]

RELATIVE_PATHS = ("state_dir",)
"""Top-level keys holding a path, resolved against the config file's folder (features add theirs)."""


def parse_document(
    text: str,
    model: type[C],
    cross_check: CrossCheck[C],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    relative_paths: Iterable[str] = RELATIVE_PATHS,
) -> C:
    """Validate a YAML document as `model`, then its references with `cross_check`; raise ConfigError
    listing every located problem. The composition root binds the full model and all cross-checks."""
    try:
        data, lines = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(source, [ConfigIssue((), f"YAML syntax: {problem}", line)]) from None
    except DocumentRefused as exc:
        raise ConfigError(source, exc.issues) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue((), "the file must be a mapping of settings", 1)])
    try:
        overrides = env_overrides()
    except ValidationError as exc:
        issues = [
            ConfigIssue(
                ("env", "SITIVMON_" + "__".join(str(p) for p in e["loc"]).upper()),
                redact(e["msg"], Written.at({}, (), e.get("input"))),
            )
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError(source, issues) from None
    data = _merge(data, overrides)
    if base_dir is not None:
        for key in relative_paths:
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str((base_dir / data[key]).resolve())
        if isinstance(data.get("profile_files"), list):
            data["profile_files"] = [
                p if not isinstance(p, str) or Path(p).is_absolute() else str((base_dir / p).resolve())
                for p in data["profile_files"]
            ]
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _pydantic_issues(exc, lines, data)) from None
    problems = [
        ConfigIssue(loc, redact(msg, Written.at(data, loc)), _nearest_line(loc, lines))
        for loc, msg in cross_check(config, base_dir)
    ]
    if problems:
        raise ConfigError(source, problems)
    return config


def read_document(path: Path) -> str:
    """A config file's text, refused early when it is larger than any config could be."""
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            limit = MAX_DOCUMENT_BYTES // (1024 * 1024)
            raise ConfigError(str(path), [ConfigIssue((), f"the file is larger than {limit} MiB")])
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue((), f"cannot read: {exc.strerror}")]) from None
