"""The `attribution:` section: which commune a row inside a shared host belongs to.

Rules are per resource kind (storage, vm, outlet, sensor, device) and tried in order: the first rule
that matches decides, so a specific rule goes before a general one. A rule matches a row's name by
`prefix`, `equals` (both compared accent- and case-insensitively) or `match` (a Python regex searched
in the name as written; a named group `commune` may supply the commune, itself matched by id, name or
INSEE code accent- and case-insensitively). A regex whose `commune` group names no known commune does
not match, and the next rule is tried. A row no rule matches is `unattributed` on a shared target, or
the target's own commune on a dedicated one.

A mapping instead of a list is the short form of a prefix map: `vm: {VEN-: venissieux}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from sitivmon.config.crossref import Problem
from sitivmon.config.model import SHARED, CoreConfig


def _prefix_map(value: Any) -> Any:
    if isinstance(value, dict):
        return [{"prefix": str(k), "commune": v} for k, v in value.items()]
    return value


class AttributionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str | None = None
    prefix: str | None = None
    equals: str | None = None
    commune: str | None = None  # a commune id or 'shared'; omitted: the regex's `commune` group
    targets: list[str] = Field(default_factory=list)  # only rows of these targets (empty: all)

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc.msg} at position {exc.pos}") from None
        return value

    @model_validator(mode="after")
    def _one_matcher(self) -> AttributionRule:
        given = [k for k in ("match", "prefix", "equals") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of match, prefix, equals")
        if self.commune is None and (self.match is None or "commune" not in re.compile(self.match).groupindex):
            raise ValueError("give 'commune', or a 'match' regex with a named group (?P<commune>...)")
        return self


Rules = Annotated[list[AttributionRule], BeforeValidator(_prefix_map)]


class AttributionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    storage: Rules = Field(default_factory=list)
    vm: Rules = Field(default_factory=list)
    outlet: Rules = Field(default_factory=list)
    sensor: Rules = Field(default_factory=list)
    device: Rules = Field(default_factory=list)

    def rules(self, resource: str) -> list[AttributionRule]:
        value = getattr(self, resource, None)
        return value if isinstance(value, list) else []


def attribution_problems(settings: AttributionSettings, core: CoreConfig) -> Iterator[Problem]:
    """Rules that name a commune or a target the core configuration does not have."""
    communes = core.commune_by_id()
    targets = core.target_by_name()
    for resource in type(settings).model_fields:
        for i, rule in enumerate(settings.rules(resource)):
            if rule.commune is not None and rule.commune != SHARED and rule.commune not in communes:
                yield ("attribution", resource, i, "commune"), f"unknown commune {rule.commune!r} (or 'shared')"
            for j, name in enumerate(rule.targets):
                if name not in targets:
                    yield ("attribution", resource, i, "targets", j), f"unknown target {name!r}"
