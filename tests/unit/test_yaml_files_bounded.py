"""Every YAML file sitivmon reads is bounded like the main config: the allocation file and profile files
refuse an alias bomb in bounded time, and a duplicated key, each as a located error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sitivmon.allocation.config import AllocationConfigError, parse_allocation
from sitivmon.profiles.user import ProfileFileError, load_profile_file
from tests.allocation.conftest import COMMUNES

from .test_config_hostile import alias_bomb


def test_allocation_file_alias_bomb_is_refused_fast() -> None:
    started = time.monotonic()
    with pytest.raises(AllocationConfigError) as exc:
        parse_allocation(alias_bomb(), COMMUNES, source="alloc.yaml")
    assert time.monotonic() - started < 5
    assert "aliases expand the document beyond" in str(exc.value)


def test_allocation_file_duplicate_key_is_located() -> None:
    text = "keys:\n  equal:\n    givors: 50%\n    givors: 50%\nprojects: []\n"
    with pytest.raises(AllocationConfigError) as exc:
        parse_allocation(text, COMMUNES, source="alloc.yaml")
    assert "keys.equal.givors: duplicate key (first at line 3)" in str(exc.value)
    assert "(line 4)" in str(exc.value)


def test_allocation_file_still_reads_floats_as_decimals() -> None:
    text = "keys:\n  k:\n    givors: 0.125\n    grigny: 0.875\nprojects: [{name: P, budget: 1.10, basis: 'key:k'}]\n"
    config = parse_allocation(text, COMMUNES)
    assert str(config.keys["k"].shares["givors"]) == "0.125" and config.projects[0].budget_cents == 110


def test_profile_file_alias_bomb_and_duplicate_key(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    started = time.monotonic()
    with pytest.raises(ProfileFileError) as exc:
        load_profile_file(bomb)
    assert time.monotonic() - started < 5 and "aliases expand" in str(exc.value)
    dup = tmp_path / "dup.yaml"
    dup.write_text("p:\n  columns: []\n  columns: []\n")
    with pytest.raises(ProfileFileError) as exc:
        load_profile_file(dup)
    assert "duplicate key" in str(exc.value)
