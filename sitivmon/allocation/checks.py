"""Allocation's and the reports API's cross-checks against the core configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sitivmon.allocation.config import ApiConfig, check_allocation, check_api
from sitivmon.config.crossref import Problem, located
from sitivmon.config.model import CoreConfig


def allocation_problems(allocation: Path | None, api: ApiConfig, core: CoreConfig) -> Iterator[Problem]:
    """API token scopes must name communes; the allocation file (when given) must validate against them."""
    for text in check_api(api, core.communes):
        yield located(text)
    if allocation is not None:
        for text in check_allocation(allocation, core.communes):
            yield ("allocation",), text
