"""Typed configuration, validated at load: every error is reported with its place in the file."""

from sitivmon.config.loader import ConfigError, load_config, parse_config
from sitivmon.config.model import SitivmonConfig

__all__ = ["ConfigError", "SitivmonConfig", "load_config", "parse_config"]
