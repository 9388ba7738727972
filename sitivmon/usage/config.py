"""Settings of the usage store; the lead adds `usage: UsageSettings = UsageSettings()` to the root config."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field


class UsageSettings(BaseModel):
    """Defaults suit a small syndicate: a flush every 10 s costs a few kilobytes of WAL."""

    db_filename: str = "usage.sqlite3"
    flush_interval_s: Annotated[float, Field(gt=0)] = 10.0
    busy_timeout_s: Annotated[float, Field(ge=0)] = 5.0
    retry_initial_s: Annotated[float, Field(gt=0)] = 1.0
    retry_max_s: Annotated[float, Field(gt=0)] = 60.0
    max_queued_batches: Annotated[int, Field(ge=1)] = 100_000
    live_refresh_s: Annotated[float, Field(ge=0)] = 60.0
