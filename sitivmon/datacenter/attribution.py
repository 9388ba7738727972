"""Which commune a row belongs to. Pure: config in, commune id out (rules in datacenter.config;
commune names are matched as `sitivmon.config.communes` folds them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sitivmon.config.communes import CommuneResolver, fold
from sitivmon.config.model import SHARED, Commune
from sitivmon.datacenter.config import AttributionRule, AttributionSettings

UNATTRIBUTED = "unattributed"


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: AttributionRule
    index: int
    regex: re.Pattern[str] | None
    folded: str | None  # prefix or equals, folded

    def commune_for(self, name: str, folded_name: str, resolver: CommuneResolver) -> str | None:
        rule = self.rule
        if self.regex is not None:
            m = self.regex.search(name)
            if m is None:
                return None
            if rule.commune is not None:
                return rule.commune
            return resolver.resolve(m.group("commune") or "")
        assert self.folded is not None
        if rule.prefix is not None and fold(name, trim=False).startswith(self.folded):
            return rule.commune
        if rule.equals is not None and folded_name == self.folded:
            return rule.commune
        return None


@dataclass(frozen=True, slots=True)
class Attribution:
    commune: str
    rule: int | None  # index of the deciding rule in its resource's list; None: fallback


class Attributor:
    """Apply the rules of one configuration; built once per config, used on every poll."""

    def __init__(self, settings: AttributionSettings, communes: Sequence[Commune]) -> None:
        self.resolver = CommuneResolver(communes)
        self._rules: dict[str, list[_Compiled]] = {}
        for resource in type(settings).model_fields:
            compiled = []
            for i, rule in enumerate(settings.rules(resource)):
                matcher = rule.prefix if rule.prefix is not None else rule.equals
                compiled.append(
                    _Compiled(
                        rule, i, re.compile(rule.match) if rule.match is not None else None,
                        fold(matcher, trim=rule.prefix is None) if matcher is not None else None,
                    )
                )
            self._rules[resource] = compiled

    def attribute(self, resource: str, target: str, name: str, target_commune: str = SHARED) -> Attribution:
        """First matching rule wins; else the target's commune, or `unattributed` on a shared target."""
        folded = fold(name)
        for compiled in self._rules.get(resource, ()):
            if compiled.rule.targets and target not in compiled.rule.targets:
                continue
            commune = compiled.commune_for(name, folded, self.resolver)
            if commune is not None:
                return Attribution(commune, compiled.index)
        if target_commune != SHARED:
            return Attribution(target_commune, None)
        return Attribution(UNATTRIBUTED, None)
