"""Links discovered from the ifAlias convention, as LibreNMS does for customer ports. Pure.

An interface whose ifAlias reads `Commune: Vénissieux [1G] {circuit-42}` belongs to that commune: the
commune is matched by id, name or INSEE code (accents, case and separators ignored), `[...]` is the
capacity (bits unless written with B: `1G`, `100Mbit`, `125MB`), `{...}` the circuit id and `(...)` a
free note. `Cust:` and `Customer:` are accepted for LibreNMS habits. Only targets with
`ifalias_parser: true` are parsed, and a link written in the config for the same interface (or with
the same id) wins over the alias.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sitivmon.config.communes import CommuneResolver
from sitivmon.config.model import CoreConfig, InterfaceSelector, Link, Target
from sitivmon.links.interfaces import InterfaceRow
from sitivmon.units import parse_capacity_bytes_per_second

_HEAD = re.compile(r"^\s*(?:commune|cust|customer)\s*:\s*(?P<rest>.*\S)\s*$", re.IGNORECASE)
_CAPACITY = re.compile(r"\[([^\]]*)\]")
_CIRCUIT = re.compile(r"\{([^}]*)\}")
_NOTE = re.compile(r"\(([^)]*)\)")
_SLUG = re.compile(r"[^a-z0-9_.-]+")

log = logging.getLogger(__name__)
# (target, ifIndex, alias, why) already logged: aliases are parsed at every poll, an operator's typo
# must be said once, not every 30 s. Bounded so that a device inventing aliases cannot grow it forever.
_told: set[tuple[str, int, str, str]] = set()
_TOLD_MAX = 10_000


def _ignore(target: str, row: InterfaceRow, why: str) -> None:
    key = (target, row.index, row.alias, why)
    if key in _told or len(_told) >= _TOLD_MAX:
        return
    _told.add(key)
    log.warning("target %s ifIndex %d: ifAlias %r ignored: %s", target, row.index, row.alias, why)


@dataclass(frozen=True, slots=True)
class AliasInfo:
    commune: str  # as written
    capacity: str | None
    circuit: str | None
    note: str | None


def parse_alias(alias: str) -> AliasInfo | None:
    """The parts of a conventional ifAlias; None when it does not follow the convention."""
    m = _HEAD.match(alias)
    if m is None:
        return None
    rest = m.group("rest")
    found: dict[str, str | None] = {}
    for key, pattern in (("capacity", _CAPACITY), ("circuit", _CIRCUIT), ("note", _NOTE)):
        hit = pattern.search(rest)
        found[key] = hit.group(1).strip() or None if hit else None
        rest = pattern.sub(" ", rest)
    name = " ".join(rest.split())
    if not name:
        return None
    return AliasInfo(name, found["capacity"], found["circuit"], found["note"])


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-.") or "if"


def _claimed(links: Iterable[Link], rows: Mapping[int, InterfaceRow]) -> set[int]:
    """ifIndexes already taken by a configured link of the target."""
    taken = set()
    for link in links:
        sel = link.interface
        for row in rows.values():
            hit = row.index == sel.index if sel.index is not None else getattr(row, sel.key) == sel.wanted
            if hit:
                taken.add(row.index)
    return taken


def links_from_aliases(config: CoreConfig, target: Target, rows: Mapping[int, InterfaceRow]) -> list[Link]:
    """Links for the target's interfaces whose ifAlias names a commune, minus those the config has."""
    if not target.ifalias_parser:
        return []
    configured = [link for link in config.links if link.target == target.name]
    taken = _claimed(configured, rows)
    ids = {link.id for link in config.links}
    resolver = CommuneResolver(config.communes)
    names = [r.name for r in rows.values() if r.name]
    out: list[Link] = []
    capacity: str | None
    for row in sorted(rows.values(), key=lambda r: r.index):
        if row.index in taken:
            continue
        info = parse_alias(row.alias)
        if info is None:
            continue
        commune = resolver.resolve(info.commune)
        if commune is None or commune == "shared":
            _ignore(target.name, row, f"no commune {info.commune!r}" if commune is None else "shared is no commune")
            continue
        unique_name = bool(row.name) and names.count(row.name) == 1
        selector = InterfaceSelector(name=row.name) if unique_name else InterfaceSelector(index=row.index)
        link_id = f"{target.name}.{_slug(row.name) if unique_name else f'if{row.index}'}"
        if link_id in ids:
            _ignore(target.name, row, f"link id {link_id!r} already exists")
            continue
        capacity = None
        if info.capacity:
            try:
                parse_capacity_bytes_per_second(info.capacity)
                capacity = info.capacity  # Link parses capacities itself (bits unless written B)
            except ValueError:
                capacity = None
                _ignore(target.name, row, f"capacity [{info.capacity}] unreadable (the link has none)")
        ids.add(link_id)
        out.append(
            Link.model_validate(
                {
                    "id": link_id, "commune": commune, "target": target.name, "interface": selector,
                    "capacity": capacity, "circuit": info.circuit, "description": row.alias,
                }
            )
        )
    return out
