"""Settings of the usage store; the lead adds `usage: UsageSettings = UsageSettings()` to the root config."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UsageSettings(BaseModel):
    """Defaults suit a small syndicate: a flush every 10 s costs a few kilobytes of WAL."""

    db_filename: str = "usage.sqlite3"
    flush_interval_s: float = Field(10.0, gt=0)
    busy_timeout_s: float = Field(5.0, ge=0)
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    max_queued_batches: int = Field(100_000, ge=1)
    live_refresh_s: float = Field(60.0, ge=0)
