"""Shared fixtures: the eight communes, the October 2026 usage document, a root config on disk."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sitivmon.allocation.config import AllocationConfig, load_allocation
from sitivmon.allocation.engine import UsageDocument, load_usage_json, parse_usage
from sitivmon.config.model import Commune

HERE = Path(__file__).parent
REPO = HERE.parents[1]
DATA = HERE / "data"
GOLDEN = HERE / "golden"
USAGE_FILE = DATA / "usage-2026-10.json"
EXAMPLE_ALLOCATION = REPO / "config" / "allocation.yaml"

# Same as ../shared/communes.csv, written out so that the tests do not depend on the checkout's neighbours.
COMMUNES = [
    Commune(id="givors", name="Givors", insee="69091"),
    Commune(id="grigny", name="Grigny", insee="69096"),
    Commune(id="pierre-benite", name="Pierre-Bénite", insee="69152"),
    Commune(id="rive-de-gier", name="Rive-de-Gier", insee="42186"),
    Commune(id="vaulx-en-velin", name="Vaulx-en-Velin", insee="69256"),
    Commune(id="venissieux", name="Vénissieux", insee="69259"),
    Commune(id="corbas", name="Corbas", insee="69273"),
    Commune(id="saint-chamond", name="Saint-Chamond", insee="42207"),
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
