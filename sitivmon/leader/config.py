"""The `leader:` section: how daemons sharing a PostgreSQL store elect who runs what must run once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sitivmon.config.crossref import Problem
from sitivmon.usage.config import UsageSettings


class LeaderSettings(BaseModel):
    """Timings of the election (docs/leader.md states the failover times they give).

    - `interval_s`: a follower tries to take each role, and a leader checks it still holds it, this
      often.
    - `timeout_s`: an attempt or check that has not answered within it has failed: a leader steps
      down at once.
    - `server_timeout_s`: the PostgreSQL server closes the session of a leader it no longer hears
      from (TCP keepalives and user timeout set on that session), which frees its locks. It must
      exceed the longest a cut-off leader may still believe it leads (`interval_s + 2 * timeout_s`),
      so that two leaders never overlap.
    """

    model_config = ConfigDict(extra="forbid")

    election: Literal["auto", "always", "postgresql"] = "auto"
    """`always`: this daemon holds every role (one daemon). `postgresql`: elect through the usage
    store's database. `auto`: `postgresql` when the store is PostgreSQL and this daemon is a shard
    or a replica, else `always`."""
    interval_s: float = Field(default=2.0, gt=0, le=60)
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    server_timeout_s: int = Field(default=10, ge=3, le=600)
    close_reports: bool = False
    """The global leader closes the previous month's report (`sitivmon report close`) once the month
    is over and `close_grace_s` has passed, if it was never closed. Needs `allocation`."""
    close_grace_s: float = Field(default=3600.0, ge=0)
    """Wait after the month's end, so that the last buckets of every daemon are flushed."""

    @model_validator(mode="after")
    def _server_outlasts_a_cut_off_leader(self) -> Self:
        bound = self.interval_s + 2 * self.timeout_s
        if self.server_timeout_s <= bound:
            raise ValueError(
                f"server_timeout_s ({self.server_timeout_s}) must exceed interval_s + 2 * timeout_s ({bound:g}): "
                "a leader cut off from the database must step down before the server frees its role"
            )
        return self

    def elects_through_postgresql(self, usage: UsageSettings, *, sharded: bool, replica: bool) -> bool:
        if self.election == "auto":
            return usage.store == "postgresql" and (sharded or replica)
        return self.election == "postgresql"


def leader_problems(settings: LeaderSettings, usage: UsageSettings, *, allocation: bool) -> Iterator[Problem]:
    if settings.election == "postgresql" and usage.store != "postgresql":
        yield (("leader", "election"), "elections through the database need the PostgreSQL usage store (usage.store)")
    if settings.close_reports and not allocation:
        yield (("leader", "close_reports"), "closing reports needs an allocation file (allocation: ...)")
