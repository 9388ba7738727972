"""Settings of the usage store (`usage:` in the root config)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sitivmon.config.secrets import Secret


class UsageSettings(BaseModel):
    """Defaults chosen on the poll benchmark (bench/README.md).

    A flush rewrites every open bucket and counter baseline, so its cost follows the number of
    series, not the traffic: every 30 s keeps it small, and loses nothing on a crash (the baselines
    committed with the data make the first delta after a restart cover the time since). Month-to-date
    gauges only change when a five-minute bucket closes: refreshing them more often than that is work
    for nothing.
    """

    model_config = ConfigDict(extra="forbid")

    store: Literal["sqlite", "postgresql"] = "sqlite"
    """The backend behind the usage store port (`sitivmon.usage.backends.open_usage_store`)."""
    dsn: Secret | None = None
    """PostgreSQL: the libpq connection string (URI or key=value), a secret (`${ENV}`, `file:/path`)."""
    db_filename: str = "usage.sqlite3"
    """SQLite: the file under `state_dir`."""
    flush_interval_s: Annotated[float, Field(gt=0)] = 30.0
    busy_timeout_s: Annotated[float, Field(ge=0)] = 5.0
    retry_initial_s: Annotated[float, Field(gt=0)] = 1.0
    retry_max_s: Annotated[float, Field(gt=0)] = 60.0
    max_queued_batches: Annotated[int, Field(ge=1)] = 100_000
    live_refresh_s: Annotated[float, Field(ge=0)] = 300.0

    @model_validator(mode="after")
    def _dsn_goes_with_postgresql(self) -> Self:
        """A DSN without `store: postgresql` would silently record into SQLite: refuse both mistakes,
        and a DSN that libpq cannot parse (said without quoting it)."""
        if self.store == "postgresql" and self.dsn is None:
            raise ValueError("dsn is required when store is postgresql")
        if self.dsn is not None:
            try:
                conninfo_to_dict(self.dsn.get_secret_value())
            except psycopg.Error:  # its message quotes the part it choked on: maybe the password
                raise ValueError("dsn is not a libpq connection string (URI or key=value pairs)") from None
        if self.store != "postgresql" and self.dsn is not None:
            raise ValueError(f"dsn is set but store is {self.store} (set store: postgresql)")
        return self
