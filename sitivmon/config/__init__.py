"""The core configuration: typed data validated at load, every error reported with its place in the file.

Features add their own sections in the composition root (`sitivmon.app.config`), which is where the
full `SitivmonConfig` and `load_config` live.
"""

from sitivmon.config.loader import ConfigError
from sitivmon.config.model import CoreConfig

__all__ = ["ConfigError", "CoreConfig"]
