"""Load the YAML file, apply `SITIVMON_*` environment overrides, validate, and locate every error.

Errors are reported as `links[3].commune: unknown commune 'venisieux' (line 42)`: the path in the
document as an operator reads it, plus the line when the key exists in the file. Values are never
echoed, so a malformed secret cannot leak through an error message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sitivmon.config.crossref import cross_check
from sitivmon.config.locations import format_loc
from sitivmon.config.model import SitivmonConfig

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    loc: Loc
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = format_loc(self.loc) or "<root>"
        suffix = f" (line {self.line})" if self.line else ""
        return f"{where}: {self.message}{suffix}"


class ConfigError(Exception):
    """All the problems of one config file, each located."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(f"{source}: {len(issues)} error(s)\n" + "\n".join(str(i) for i in issues))


def _line_map(node: yaml.Node, loc: Loc = ()) -> Iterator[tuple[Loc, int]]:
    yield loc, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            yield (*loc, name), key.start_mark.line + 1
            yield from _line_map(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _line_map(item, (*loc, i))


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


def _pydantic_issues(exc: ValidationError, lines: dict[Loc, int]) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        issues.append(ConfigIssue(loc, message, _nearest_line(loc, lines)))
    return issues


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines and cut > 0:
            return lines[loc[:cut]]
    return None


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> SitivmonConfig:
    """Validate a YAML document; raise ConfigError listing every located problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(source, [ConfigIssue((), f"YAML syntax: {problem}", line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue((), "the file must be a mapping of settings", 1)])
    lines = dict(_line_map(node)) if node is not None else {}
    try:
        overrides = env_overrides()
    except ValidationError as exc:
        issues = [
            ConfigIssue(("env", "SITIVMON_" + "__".join(str(p) for p in e["loc"]).upper()), e["msg"])
            for e in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigError(source, issues) from None
    data = _merge(data, overrides)
    if base_dir is not None:
        for key in ("state_dir", "allocation"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str((base_dir / data[key]).resolve())
        if isinstance(data.get("profile_files"), list):
            data["profile_files"] = [
                p if not isinstance(p, str) or Path(p).is_absolute() else str((base_dir / p).resolve())
                for p in data["profile_files"]
            ]
    try:
        config = SitivmonConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _pydantic_issues(exc, lines)) from None
    problems = [ConfigIssue(loc, msg, _nearest_line(loc, lines)) for loc, msg in cross_check(config, base_dir)]
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path) -> SitivmonConfig:
    """Read and validate a config file. Relative paths inside it are relative to the file's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue((), f"cannot read: {exc.strerror}")]) from None
    return parse_config(text, str(path), path.resolve().parent)
