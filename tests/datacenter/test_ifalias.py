"""Links from the ifAlias convention: parsing, commune matching, config links winning."""

from __future__ import annotations

import pytest

from sitivmon.links.ifalias import AliasInfo, links_from_aliases, parse_alias
from sitivmon.links.interfaces import InterfaceRow
from tests.datacenter.conftest import make_config


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("Commune: Vénissieux [1G] {circuit-42}", AliasInfo("Vénissieux", "1G", "circuit-42", None)),
        ("commune:venissieux", AliasInfo("venissieux", None, None, None)),
        ("Cust: Givors {FT-0042} [100Mbit] (backup)", AliasInfo("Givors", "100Mbit", "FT-0042", "backup")),
        ("COMMUNE :  Pierre Bénite  [10Gbit]", AliasInfo("Pierre Bénite", "10Gbit", None, None)),
        ("Customer: 69273 {c-1}", AliasInfo("69273", None, "c-1", None)),
        ("uplink to core", None),
        ("Commune: [1G]", None),
        ("", None),
    ],
)
def test_parse_alias(alias: str, expected: AliasInfo | None) -> None:
    assert parse_alias(alias) == expected


def _row(index: int, name: str, alias: str) -> InterfaceRow:
    return InterfaceRow(index, name, alias, name, 1, 1, None, None, None)


CONFIG = """
targets:
  - {name: core-1, address: 127.0.0.1, credentials: lab, ifalias_parser: true}
  - {name: core-2, address: 127.0.0.2, credentials: lab}
links:
  - {id: givors-fibre, commune: givors, target: core-1, interface: {name: ge-0/0/2}, capacity: 10Gbit}
"""

ROWS = {
    1: _row(1, "ge-0/0/1", "Commune: Vénissieux [1G] {circuit-42}"),
    2: _row(2, "ge-0/0/2", "Commune: Givors [100M] {old-circuit}"),  # configured: config wins
    3: _row(3, "ge-0/0/3", "Commune: Lyon [1G]"),  # not a member: ignored
    4: _row(4, "ge-0/0/4", "Cust: 69152 (Pierre-Bénite mairie)"),
    5: _row(5, "ge-0/0/5", "uplink"),
    6: _row(6, "ae0", "Commune: SAINT CHAMOND [2x10G]"),  # capacity unreadable: link without it
}


def test_links_from_aliases() -> None:
    config = make_config(CONFIG)
    links = links_from_aliases(config, config.targets[0], ROWS)
    got = {(lk.id, lk.commune, lk.interface.describe(), lk.capacity, lk.circuit) for lk in links}
    assert got == {
        ("core-1.ge-0-0-1", "venissieux", "name=ge-0/0/1", 125_000_000, "circuit-42"),
        ("core-1.ge-0-0-4", "pierre-benite", "name=ge-0/0/4", None, None),
        ("core-1.ae0", "saint-chamond", "name=ae0", None, None),
    }
    assert all(lk.target == "core-1" for lk in links)


def test_parser_is_opt_in() -> None:
    config = make_config(CONFIG)
    assert links_from_aliases(config, config.targets[1], ROWS) == []


def test_duplicate_names_fall_back_to_index() -> None:
    config = make_config(CONFIG)
    rows = {7: _row(7, "", "Commune: Corbas"), 8: _row(8, "x", "Commune: Grigny"), 9: _row(9, "x", "")}
    links = links_from_aliases(config, config.targets[0], rows)
    assert [(lk.id, lk.interface.describe()) for lk in links] == [("core-1.if7", "index=7"), ("core-1.if8", "index=8")]
