"""Built-in and user profiles: shipped examples load, bad profiles are located `check` errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from sitivmon.app.config import ConfigError
from sitivmon.config.profiles import profile_table
from sitivmon.profiles import BUILTIN_PROFILES
from sitivmon.profiles.user import load_profile_file
from tests.datacenter.conftest import make_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "config" / "profiles").glob("*.yaml"))


def test_builtin_profiles() -> None:
    assert set(BUILTIN_PROFILES) >= {"interfaces", "host_resources", "ucd", "entity_sensors"}
    for p in BUILTIN_PROFILES.values():
        assert p.columns or p.scalars
        names = [c.name for c in p.columns]
        assert len(names) == len(set(names)), p.name


def test_examples_load() -> None:
    assert [p.name for p in EXAMPLES] == ["apc_pdu_outlets.yaml", "vm_inventory.yaml"]
    loaded = {}
    for path in EXAMPLES:
        loaded.update(load_profile_file(path))
    assert loaded["apc_pdu_outlets"].resource == "outlet"
    assert {c.measure for c in loaded["apc_pdu_outlets"].columns} >= {"name", "power_watts", "energy_joules"}
    assert {c.measure for c in loaded["vm_inventory"].columns} >= {"name", "vcpus", "memory_bytes", "power_state"}


def test_profile_files_relative_to_the_config() -> None:
    config = make_config(
        "profile_files: [profiles/apc_pdu_outlets.yaml]\n"
        "targets: [{name: pdu-1, address: 127.0.0.1, credentials: lab, profiles: [apc_pdu_outlets]}]\n",
        REPO / "config",
    )
    table = profile_table(config, REPO / "config")
    assert table["apc_pdu_outlets"].columns[0].name == "apc_pdu_outlets:rPDU2OutletMeteredStatusName"


def test_scalars_only_profile_compiles_with_its_scale() -> None:
    config = make_config(
        "profiles:\n  site:\n    scalars: [{name: volts, oid: .1.3.6.1.4.1.99.1.0, type: gauge, scale: 0.1}]\n"
    )
    (scalar,) = profile_table(config)["site"].scalars
    assert (scalar.name, scalar.oid, scalar.kind, scalar.scale) == ("site:volts", "1.3.6.1.4.1.99.1.0", "gauge",
                                                                    Decimal("0.1"))


def _errors(body: str, base: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        make_config(body, base)
    return [str(i) for i in info.value.issues]


GOOD_COLUMN = "{name: n, oid: 1.3.6.1.4.1.9.1.1, type: info, measure: name}"


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("columns: [{name: n, oid: 1.3.6.x.1, type: gauge}]",
         "profiles.p.columns[0].oid: <value> is not a numeric OID"),
        ("columns: [{name: n, oid: 1.3.6.1, type: number}]", "profiles.p.columns[0].type: Input should be"),
        ("columns: [{name: n, oid: 1.3.6.1, type: gauge, scale: abc}]",
         "profiles.p.columns[0].scale: scale <value> is not a number"),
        ("columns: [{name: n, oid: 1.3.6.1, type: gauge, measure: energy_joules}]",
         "profiles.p.columns[0].measure: measure <value> needs type 'counter', not 'gauge'"),
        (f"columns: [{GOOD_COLUMN}]\n    lookups: [{{label: x, column: nope}}]",
         "profiles.p.lookups[0].column: unknown column <value>"),
        (f"columns: [{GOOD_COLUMN}, {GOOD_COLUMN}]", "profiles.p.columns[1].name: duplicate column <value>"),
        (f"columns: [{GOOD_COLUMN}]\n    colour: red", "profiles.p.colour: unknown key"),
        ("description: nothing", "profiles.p: a profile needs at least one column or scalar"),
        ("scalars: [{name: s, oid: 1.3.6.1.2.1.1.5.0, type: info, scale: 10}]",
         "profiles.p.scalars[0].scale: a info scalar cannot be scaled"),
        ("scalars: [{name: s, oid: 1.3.6.1.2.1.1.5.0, type: gauge}, {name: s, oid: 1.3.6.1.2.1.1.6.0, type: counter}]",
         "profiles.p.scalars[1].name: duplicate scalar <value>"),
    ],
)
def test_bad_inline_profile_is_located(profile: str, expected: str) -> None:
    errors = _errors(f"profiles:\n  p:\n    {profile}\n")
    assert any(e.startswith(expected) for e in errors), errors


def test_bad_profile_file_is_located(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("pdu:\n  columns:\n    - {name: power, oid: 1.3.6.1.4.1.318..7, type: gauge}\n")
    errors = _errors("profile_files: [bad.yaml, missing.yaml]\n", tmp_path)
    assert errors[0].startswith("profile_files[0].pdu.columns[0].oid: '1.3.6.1.4.1.318..7' is not a numeric OID")
    assert errors[1].startswith("profile_files[1]: missing.yaml: cannot read")


def test_unknown_profile_and_builtin_clash() -> None:
    errors = _errors(
        f"profiles:\n  ucd:\n    columns: [{GOOD_COLUMN}]\n"
        "targets: [{name: h, address: 127.0.0.1, credentials: lab, profiles: [host_resources, hr_typo]}]\n"
    )
    assert any(e.startswith("profiles.ucd: 'ucd' is a built-in profile name") for e in errors), errors
    assert any(e.startswith("targets[0].profiles[1]: unknown profile <value>") for e in errors), errors


def test_bad_attribution_rules_are_located() -> None:
    errors = _errors(
        "attribution:\n"
        "  storage:\n"
        "    - {match: '/srv/(?P<commune>[a-z'}\n"
        "    - {match: '^/srv/x'}\n"
    )
    assert any(e.startswith("attribution.storage[0].match: invalid regular expression") for e in errors), errors
    assert any(e.startswith("attribution.storage[1]: give 'commune', or a 'match' regex") for e in errors), errors


def test_attribution_references_are_located() -> None:
    errors = _errors(
        "targets: [{name: h, address: 127.0.0.1, credentials: lab}]\n"
        "attribution:\n"
        "  storage:\n"
        "    - {match: '/srv/(?P<commune>[a-z]+)'}\n"
        "    - {match: '^/srv/x', commune: shared}\n"
        "    - {prefix: /a, commune: lyon}\n"
        "    - {prefix: /b, commune: givors, targets: [nope]}\n"
        "  vm: {VEN-: venisieux}\n"
    )
    assert len(errors) == 3, errors
    assert any(e.startswith("attribution.storage[2].commune: unknown commune <value>") for e in errors), errors
    assert any(e.startswith("attribution.storage[3].targets[0]: unknown target <value>") for e in errors), errors
    assert any(e.startswith("attribution.vm[0].commune: unknown commune <value>") for e in errors), errors
