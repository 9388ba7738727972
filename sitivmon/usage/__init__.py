"""Usage accounting: a restart-safe bucket store and monthly usage indicators per commune."""

from .config import UsageSettings
from .indicators import usage_document
from .periods import month_range
from .recorder import UsageRecorder
from .store import UsageStore

__all__ = ["UsageRecorder", "UsageSettings", "UsageStore", "month_range", "usage_document"]
