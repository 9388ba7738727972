"""The allocation file: the example loads; every bad input is a located error."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from sitivmon.allocation.config import (
    AllocationConfigError,
    ApiConfig,
    check_allocation,
    check_api,
    load_allocation,
    parse_allocation,
)

from .conftest import COMMUNES, EXAMPLE_ALLOCATION

EQUAL = {c.id: "12.5%" for c in COMMUNES}


def errors_of(doc: dict[str, Any] | str) -> list[str]:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True)
    with pytest.raises(AllocationConfigError) as exc:
        parse_allocation(text, COMMUNES, source="alloc.yaml")
    return exc.value.errors


def doc(**projects_and_keys: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "keys": {"equal": EQUAL},
        "projects": [{"name": "P", "budget": "100.00", "basis": "key:equal"}],
    }
    base.update(projects_and_keys)
    return base


def test_example_file_is_valid_and_exact() -> None:
    config = load_allocation(EXAMPLE_ALLOCATION, COMMUNES)
    assert check_allocation(EXAMPLE_ALLOCATION, COMMUNES) == []
    assert set(config.keys) == {"population", "equal"}
    assert sum(config.keys["population"].shares.values()) == 1
    assert config.keys["population"].shares["venissieux"] == Decimal("0.3034")
    assert config.keys["equal"].shares["corbas"] == Decimal("0.125")  # a YAML float, read as Decimal
    bases = {str(p.basis) for p in config.projects}
    assert {"key:population", "key:equal", "usage:traffic_volume", "usage:traffic_p95"} <= bases
    rhone = next(p for p in config.projects if p.name == "Vidéoprotection Rhône")
    assert rhone.communes == ("givors", "grigny", "pierre-benite", "vaulx-en-velin", "venissieux", "corbas")
    virt = next(p for p in config.projects if p.name == "Virtualisation")
    assert virt.min_coverage == Decimal("0.90")


def test_decimal_shares_that_floats_would_break_still_sum_to_100() -> None:
    # 0.1 + 0.2 + 0.7 is not 1.0 in binary floating point.
    config = parse_allocation(
        "keys:\n  k:\n    givors: 0.1\n    grigny: 0.2\n    corbas: 0.7\nprojects: []\n", COMMUNES
    )
    assert sum(config.keys["k"].shares.values()) == 1


def test_key_not_summing_to_100_is_located() -> None:
    bad = dict(EQUAL, givors="12.49%")
    assert errors_of(doc(keys={"population": bad})) == [
        "keys.population: shares sum to 99.99 %, not exactly 100 %",
        "projects[0].basis: unknown key 'equal' (defined: population)",
    ]


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ({"givors": "50%", "lyon": "50%"}, "keys.k.lyon: unknown commune 'lyon'"),
        (
            {"givors": 12.5, "grigny": "87.5%"},
            "keys.k.givors: share 12.5 is more than 1: write 12.5% for a percentage",
        ),
        ({"givors": "half", "grigny": "50%"}, "keys.k.givors: 'half' is not a share"),
        ({"givors": -0.5, "grigny": 1.5}, "keys.k.givors: share must be a non-negative number, got -0.5"),
        ({}, "keys.k: a key needs at least one commune"),
    ],
)
def test_bad_key_shares(shares: dict[str, Any], expected: str) -> None:
    errs = errors_of(doc(keys={"k": shares, "equal": EQUAL}))
    assert any(e.startswith(expected) for e in errs), errs


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ({"budget": "-5.00"}, "projects[0].budget: must not be negative, got -5.00"),
        ({"budget": "10.001"}, "projects[0].budget: amount 10.001 has more than two decimals"),
        ({"budget": "dix euros"}, "projects[0].budget: Input should be a valid decimal"),
        ({"basis": "usage:trafic", "fallback": "equal"}, "projects[0].basis: unknown indicator 'trafic'"),
        (
            {"basis": "usage:traffic_volume:up", "fallback": "equal"},
            "projects[0].basis: direction 'up' is not valid",
        ),
        ({"basis": "usage:storage:in", "fallback": "equal"}, "projects[0].basis: storage has no direction"),
        ({"basis": "usage:availability", "fallback": "equal"}, "projects[0].basis: availability is a ratio"),
        ({"basis": "population"}, "projects[0].basis: 'population': basis must be key:<name> or usage:"),
        ({"basis": "key:population"}, "projects[0].basis: unknown key 'population' (defined: equal)"),
        ({"basis": "usage:energy"}, "projects[0].fallback: a usage basis needs a fallback key"),
        ({"basis": "usage:energy", "fallback": "pop"}, "projects[0].fallback: unknown key 'pop'"),
        ({"fallback": "equal"}, "projects[0].fallback: only a usage basis falls back"),
        ({"communes": ["givors", "lyon"]}, "projects[0].communes[1]: unknown commune 'lyon'"),
        ({"communes": ["givors", "givors"]}, "projects[0].communes[1]: 'givors' is listed twice"),
        ({"communes": []}, "projects[0].communes: an empty list leaves nobody to pay"),
        ({"min_coverage": "1.5", "basis": "usage:energy", "fallback": "equal"}, "projects[0].min_coverage"),
        ({"colour": "blue"}, "projects[0].colour: Extra inputs are not permitted"),
    ],
)
def test_bad_projects_are_located(project: dict[str, Any], expected: str) -> None:
    p = {"name": "P", "budget": "100.00", "basis": "key:equal", **project}
    errs = errors_of(doc(projects=[p]))
    assert any(e.startswith(expected) for e in errs), errs


def test_project_communes_must_be_covered_by_its_keys() -> None:
    keys = {"equal": EQUAL, "two": {"givors": "50%", "grigny": "50%"}, "zero": {"givors": 0, "corbas": 1}}
    projects = [
        {"name": "A", "budget": "1", "basis": "key:two", "communes": ["givors", "corbas"]},
        {"name": "B", "budget": "1", "basis": "usage:energy", "fallback": "two"},
        {"name": "C", "budget": "1", "basis": "key:zero", "communes": ["givors"]},
        {"name": "A", "budget": "1", "basis": "key:two"},
    ]
    errs = errors_of(doc(keys=keys, projects=projects))
    assert "projects[0].basis: key 'two' has no share for corbas" in errs
    assert any(e.startswith("projects[1].fallback: key 'two' has no share for pierre-benite") for e in errs)
    assert "projects[2].basis: key 'zero' gives these communes a total share of 0" in errs
    assert "projects[3].name: 'A' is already projects[0]" in errs


def test_key_project_defaults_to_the_key_communes() -> None:
    config = parse_allocation(
        yaml.safe_dump(
            doc(
                keys={"two": {"givors": "50%", "grigny": "50%"}},
                projects=[{"name": "P", "budget": "1", "basis": "key:two"}],
            )
        ),
        COMMUNES,
    )
    assert config.projects[0].communes == ("givors", "grigny")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "alloc.yaml"
    path.write_text("keys: [unclosed\n")
    assert check_allocation(path, COMMUNES)[0].startswith(f"{path}: line ")
    missing = tmp_path / "missing.yaml"
    assert check_allocation(missing, COMMUNES)[0].startswith(f"{missing}: cannot read")
    path.write_text("projects:\n  - name: P\n    budget: '1'\n")
    assert check_allocation(path, COMMUNES) == [f"{path}: projects[0]: give exactly one of basis or parts"]


def test_api_tokens_are_hashed_and_checked() -> None:
    api = ApiConfig.model_validate(
        {
            "tokens": [
                {"name": "finance", "scope": "syndicate", "token": "s3cret-finance-token"},
                {"name": "venissieux", "scope": "venissieux", "token_sha256": "ab" * 32},
                {"name": "lyon", "scope": "lyon", "token_sha256": "cd" * 32},
            ]
        }
    )
    assert check_api(api, COMMUNES) == ["api.tokens[2].scope: unknown commune 'lyon' (or 'syndicate')"]
    assert "s3cret" not in repr(api)
    with pytest.raises(ValueError, match="exactly one of token or token_sha256"):
        ApiConfig.model_validate({"tokens": [{"name": "x", "scope": "syndicate"}]})
    with pytest.raises(ValueError, match="at least 16"):
        ApiConfig.model_validate({"tokens": [{"name": "x", "scope": "syndicate", "token": "short"}]})


# Issue 10 item 15: Decimal's 28-digit context rounded these silently (a key "summing" to 100 %, a
# 30-digit budget turned into other cents). Each is now refused with its location, or computed exactly.
HALF_AND_A_BIT = "0.5000000000000000000000000000001"  # 31 decimals: 0.5 + this = 1 at 28 digits


@pytest.mark.parametrize(
    ("keys", "projects", "expected"),
    [
        (
            {"k": {"givors": "0.500000000000000000000000000001", "grigny": "0.5"}},
            [],
            "keys.k: shares sum to 100.0000000000000000000000000001 %, not exactly 100 %",
        ),
        ({"k": {"givors": HALF_AND_A_BIT, "grigny": "0.5"}}, [], "keys.k.givors: share"),
        (
            {"k": {"givors": "33.3333333333333333333333333333333%", "grigny": "0.5"}},
            [],
            "keys.k.givors: share 0.333333333333333333333333333333333 has more than 30 decimals",
        ),
        (
            {"equal": EQUAL},
            [{"name": "P", "budget": "12345678901234567890123456789.01", "basis": "key:equal"}],
            "projects[0].budget: amount 12345678901234567890123456789.01 is above the largest budget",
        ),
        (
            {"equal": EQUAL},
            [{"name": "P", "budget": "1e999999999", "basis": "key:equal"}],
            "projects[0].budget: amount 1E+999999999 is above the largest budget",
        ),
    ],
)
def test_absurd_precision_is_refused_not_rounded(
    keys: dict[str, Any], projects: list[dict[str, Any]], expected: str
) -> None:
    errs = errors_of({"keys": keys, "projects": projects})
    assert any(e.startswith(expected) for e in errs), errs


@pytest.mark.parametrize(
    ("shares", "budget", "cents"),
    [
        (
            {"givors": "0.333333333333333333333333333333", "grigny": "0.666666666666666666666666666667"},
            "9999999999999.99",
            999999999999999,
        ),
        ({"givors": "33.3333333333333333333333333333%", "grigny": "66.6666666666666666666666666667%"}, "0.01", 1),
        ({"givors": "0.000000000000000000000000000001", "grigny": "0.999999999999999999999999999999"}, "100.00", 10000),
    ],
)
def test_long_exact_values_within_the_bounds_stay_exact(shares: dict[str, str], budget: str, cents: int) -> None:
    config = parse_allocation(
        yaml.safe_dump({"keys": {"k": shares}, "projects": [{"name": "P", "budget": budget, "basis": "key:k"}]}),
        COMMUNES,
    )
    assert sum(map(Fraction, config.keys["k"].shares.values())) == 1  # the exact sum, checked independently
    assert config.projects[0].budget_cents == cents
