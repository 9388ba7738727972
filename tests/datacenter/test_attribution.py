"""Attribution rules, table by table: accents, overlapping rules (first match wins), unattributed."""

from __future__ import annotations

import pytest

from sitivmon.config.communes import CommuneResolver, fold
from sitivmon.datacenter.attribution import UNATTRIBUTED, Attributor
from tests.datacenter.conftest import make_config

RULES = """
targets:
  - {name: san-1, address: 127.0.0.1, credentials: lab, profiles: [host_resources]}
  - {name: san-2, address: 127.0.0.2, credentials: lab, profiles: [host_resources]}
  - {name: ven-srv, address: 127.0.0.3, credentials: lab, profiles: [host_resources], commune: venissieux}
attribution:
  storage:
    - {equals: /, commune: shared}
    - {match: '^/srv/archives', commune: givors}              # before the general rule: it wins
    - {match: '^/srv/(?P<commune>[^/]+)'}
    - {prefix: /data/corbas, commune: corbas, targets: [san-2]}
  vm:
    VEN-: venissieux
    GIV-: givors
    VENI: corbas                                              # never reached for VEN-...: order matters
  outlet:
    - {match: '(?i)^outlet (?P<commune>.+)$'}
    - {prefix: "Pierre Bénite", commune: pierre-benite}
"""


@pytest.fixture(scope="module")
def attributor() -> Attributor:
    config = make_config(RULES)
    return Attributor(config.attribution, config.communes)


@pytest.mark.parametrize(
    ("resource", "target", "name", "commune", "rule"),
    [
        ("storage", "san-1", "/", "shared", 0),
        ("storage", "san-1", "/srv/venissieux", "venissieux", 2),
        ("storage", "san-1", "/srv/venissieux/www", "venissieux", 2),
        ("storage", "san-1", "/srv/Vénissieux", "venissieux", 2),  # group value folded: accents, case
        ("storage", "san-1", "/srv/VENISSIEUX", "venissieux", 2),
        ("storage", "san-1", "/srv/69259", "venissieux", 2),  # INSEE code
        ("storage", "san-1", "/srv/pierre benite", "pierre-benite", 2),  # space for hyphen
        ("storage", "san-1", "/srv/archives", "givors", 1),  # overlapping: the earlier rule wins
        ("storage", "san-1", "/srv/lyon", UNATTRIBUTED, None),  # group names no commune: next rules
        ("storage", "san-1", "/home", UNATTRIBUTED, None),
        ("storage", "san-2", "/data/corbas/ged", "corbas", 3),  # rule restricted to san-2
        ("storage", "san-1", "/data/corbas/ged", UNATTRIBUTED, None),
        ("storage", "ven-srv", "/home", "venissieux", None),  # dedicated target: its commune
        ("storage", "ven-srv", "/srv/givors", "givors", 2),  # an explicit rule still decides
        ("vm", "san-1", "VEN-web-01", "venissieux", 0),
        ("vm", "san-1", "ven-db", "venissieux", 0),  # prefix compared case-insensitively
        ("vm", "san-1", "VENI-x", "corbas", 2),
        ("vm", "san-1", "GIV-etat-civil", "givors", 1),
        ("vm", "san-1", "test-vm", UNATTRIBUTED, None),
        ("outlet", "san-1", "Outlet Saint-Chamond", "saint-chamond", 0),
        ("outlet", "san-1", "outlet SAINT CHAMOND", "saint-chamond", 0),
        ("outlet", "san-1", "Pierre-Benite baie 2", "pierre-benite", 1),  # accent-insensitive prefix
        ("outlet", "san-1", "spare", UNATTRIBUTED, None),
        ("sensor", "san-1", "PSU1", UNATTRIBUTED, None),  # no rules for sensors
    ],
)
def test_rules(attributor: Attributor, resource: str, target: str, name: str, commune: str, rule: int | None) -> None:
    config_commune = "venissieux" if target == "ven-srv" else "shared"
    got = attributor.attribute(resource, target, name, config_commune)
    assert (got.commune, got.rule) == (commune, rule)


@pytest.mark.parametrize(
    ("text", "folded"),
    [("Pierre-Bénite", "pierre-benite"), ("VÉNISSIEUX", "venissieux"), ("Rive de  Gier", "rive-de-gier"),
     ("Saint_Chamond", "saint-chamond"), ("l’Arbresle", "l-arbresle")],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_resolver_by_id_name_insee() -> None:
    config = make_config("")
    r = CommuneResolver(config.communes)
    assert [r.resolve(x) for x in ("corbas", "Corbas", "69273", "CÒRBAS", "lyon", "Shared")] == [
        "corbas", "corbas", "corbas", "corbas", None, "shared",
    ]
