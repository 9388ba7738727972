"""Usage accounting: a restart-safe bucket store and monthly usage indicators per commune.

The store is a port (`port.UsageStorePort`), opened by `backends.open_usage_store`; SQLite is its
implementation in `store`.
"""

from .backends import open_usage_store
from .config import UsageSettings
from .indicators import usage_document
from .periods import month_range
from .port import UsageStorePort
from .recorder import UsageRecorder

__all__ = ["UsageRecorder", "UsageSettings", "UsageStorePort", "month_range", "open_usage_store", "usage_document"]
