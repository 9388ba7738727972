"""Typed configuration, validated at load: every error is reported with its place in the file.

Names are imported lazily: the leaf modules (`secrets`, `locations`) are used by the sections that
the root model itself imports, and an eager import here would make that a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sitivmon.config.loader import ConfigError, load_config, parse_config
    from sitivmon.config.model import SitivmonConfig

__all__ = ["ConfigError", "SitivmonConfig", "load_config", "parse_config"]


def __getattr__(name: str) -> Any:
    if name in ("ConfigError", "load_config", "parse_config"):
        from sitivmon.config import loader

        return getattr(loader, name)
    if name == "SitivmonConfig":
        from sitivmon.config.model import SitivmonConfig

        return SitivmonConfig
    raise AttributeError(name)
