"""Shared fixtures: the eight communes, the October 2026 usage document, a root config on disk."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sitivmon.allocation.config import AllocationConfig, KnownCommune, load_allocation
from sitivmon.allocation.engine import UsageDocument, load_usage_json, parse_usage

HERE = Path(__file__).parent
REPO = HERE.parents[1]
DATA = HERE / "data"
GOLDEN = HERE / "golden"
USAGE_FILE = DATA / "usage-2026-10.json"
EXAMPLE_ALLOCATION = REPO / "config" / "allocation.yaml"

# Same as ../shared/communes.csv, written out so that the tests do not depend on the checkout's neighbours.
COMMUNES = [
    KnownCommune("givors", "Givors", "69091"),
    KnownCommune("grigny", "Grigny", "69096"),
    KnownCommune("pierre-benite", "Pierre-Bénite", "69152"),
    KnownCommune("rive-de-gier", "Rive-de-Gier", "42186"),
    KnownCommune("vaulx-en-velin", "Vaulx-en-Velin", "69256"),
    KnownCommune("venissieux", "Vénissieux", "69259"),
    KnownCommune("corbas", "Corbas", "69273"),
    KnownCommune("saint-chamond", "Saint-Chamond", "42207"),
]


def usage_data() -> Any:
    return load_usage_json(USAGE_FILE.read_bytes())


@pytest.fixture
def usage_doc() -> UsageDocument:
    return parse_usage(usage_data(), COMMUNES, month="2026-10", timezone="Europe/Paris")


@pytest.fixture
def example_allocation() -> AllocationConfig:
    return load_allocation(EXAMPLE_ALLOCATION, COMMUNES)


@pytest.fixture
def root_config(tmp_path: Path) -> Path:
    """A root config beside a copy of the example allocation file, state in tmp_path/var."""
    shutil.copy(EXAMPLE_ALLOCATION, tmp_path / "allocation.yaml")
    text = {
        "state_dir": "var",
        "timezone": "Europe/Paris",
        "communes": [{"id": c.id, "name": c.name, "insee": c.insee} for c in COMMUNES],
        "allocation": "allocation.yaml",
    }
    path = tmp_path / "sitivmon.yaml"
    path.write_text(yaml.safe_dump(text, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
