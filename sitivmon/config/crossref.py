"""References between the core sections, checked after each section is valid on its own.

Features check their own sections against the core ones (`sitivmon.traps.config.trap_problems`,
`sitivmon.allocation.config.allocation_problems`, ...); the composition root runs them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from sitivmon.config.model import SHARED, CoreConfig
from sitivmon.config.profiles import profile_problems_of, profile_table
from sitivmon.profiles.user import profile_problems

Problem = tuple[tuple[str | int, ...], str]
"""A problem's place in the document (`("links", 3, "commune")`) and what is wrong there."""

# Ids with a meaning of their own: `shared` targets, the `unattributed` rows of datacenter attribution,
# and the `syndicate` scope of API tokens (sitivmon.allocation.api.SYNDICATE), which a commune of that
# id would turn into a syndicate-wide view of every commune's data.
RESERVED_COMMUNE_IDS = frozenset({SHARED, "unattributed", "syndicate"})
_RESERVED = (
    "this id is reserved: it names a scope of its own (shared targets, unattributed rows, the "
    "syndicate-wide API token scope)"
)


def _duplicates(values: list[str]) -> set[str]:
    return {v for v, n in Counter(values).items() if n > 1}


def located(text: str) -> Problem:
    """Split `section.key[2]: message` (as other areas report) into a location and a message."""
    loc, _, message = text.partition(": ")
    parts = loc.replace("[", ".").replace("]", "").split(".")
    return tuple(int(p) if p.isdigit() else p for p in parts if p), message


def core_problems(config: CoreConfig, base_dir: Path | None = None) -> Iterator[Problem]:
    communes = config.commune_by_id()
    targets = config.target_by_name()
    for field, values in (
        ("communes", [c.id for c in config.communes]),
        ("targets", [t.name for t in config.targets]),
        ("links", [link.id for link in config.links]),
    ):
        dup = _duplicates(values)
        for i, v in enumerate(values):
            if v in dup:
                yield (field, i, "id" if field != "targets" else "name"), f"duplicate {v!r}"
    dup_insee = _duplicates([c.insee for c in config.communes])
    for i, c in enumerate(config.communes):
        if c.insee in dup_insee:
            yield ("communes", i, "insee"), f"duplicate INSEE code {c.insee!r}"
        if c.id in RESERVED_COMMUNE_IDS:
            yield ("communes", i, "id"), _RESERVED
    for name, user_profile in config.profiles.items():
        yield from ((("profiles", name, *loc), msg) for loc, msg in profile_problems(user_profile))
    yield from profile_problems_of(config, base_dir)
    known_profiles = set(profile_table(config, base_dir))
    for i, t in enumerate(config.targets):
        if t.credentials not in config.credentials:
            yield ("targets", i, "credentials"), f"unknown credentials {t.credentials!r}"
        if t.commune != SHARED and t.commune not in communes:
            yield ("targets", i, "commune"), f"unknown commune {t.commune!r} (or 'shared')"
        for j, p in enumerate(t.profiles):
            if p not in known_profiles:
                yield ("targets", i, "profiles", j), f"unknown profile {p!r}"
        try:
            config.poll_settings(t)
        except ValidationError:
            merged_timeout = t.poll.timeout or config.poll.timeout
            merged_interval = t.poll.interval or config.poll.interval
            yield (
                ("targets", i, "poll", "timeout"),
                f"timeout ({merged_timeout:g}s) must not exceed the target's interval ({merged_interval:g}s)",
            )
    for i, link in enumerate(config.links):
        if link.commune not in communes:
            yield ("links", i, "commune"), f"unknown commune {link.commune!r}"
        target = targets.get(link.target)
        if target is None:
            yield ("links", i, "target"), f"unknown target {link.target!r}"
        elif "interfaces" not in target.profiles:
            yield ("links", i, "target"), f"target {link.target!r} does not poll the 'interfaces' profile"
