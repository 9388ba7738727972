"""Automatic report closing by the global leader (`leader.close_reports`): last month is closed once it
is over and the grace has passed, once; a month already closed is left to humans. A real daemon
(SQLite store, so it holds every role), the example allocation file, the real report archive."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sitivmon.allocation.archive import open_report_archive
from sitivmon.app.config import ConfigError, load_config
from sitivmon.app.daemon import Daemon
from sitivmon.leader.election import Role
from tests.support import agents
from tests.support.procs import free_port


def daemon(tmp_path: Path, **leader: object) -> Daemon:
    shutil.copy(agents.REPO / "config" / "allocation.yaml", tmp_path / "allocation.yaml")
    doc = agents.base_config(tmp_path / "state", leader=dict(leader), allocation="allocation.yaml")
    path = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    return Daemon(path, load_config(path), listen=f"127.0.0.1:{free_port()}", registry=CollectorRegistry())


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_last_month_is_closed_once_after_the_grace(tmp_path: Path) -> None:
    d = daemon(tmp_path, close_reports=True, close_grace_s=3600)
    assert asyncio.run(d.elector.step()) == {Role.SHARD, Role.GLOBAL}  # one daemon: every role
    # October ends at 2026-11-01T00:00 in Paris, 2026-10-31T23:00Z; the grace runs to midnight UTC.
    assert d._close_last_month(ts("2026-10-31T23:30:00+00:00")) is None
    assert d._close_last_month(ts("2026-11-01T00:00:01+00:00")) == "2026-10"
    revisions = open_report_archive(tmp_path / "state").revisions("2026-10")
    assert [r.revision for r in revisions] == [1]
    assert revisions[0].report["header"]["closed_at"] == "2026-11-01T00:00:01Z"
    assert d._close_last_month(ts("2026-11-02T00:00:00+00:00")) is None  # closed: left to humans
    assert len(open_report_archive(tmp_path / "state").revisions("2026-10")) == 1


def test_closing_needs_an_allocation_file(tmp_path: Path) -> None:
    doc = agents.base_config(tmp_path / "state", leader={"close_reports": True})
    path = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    with pytest.raises(ConfigError, match="closing reports needs an allocation file"):
        load_config(path)


def test_elections_through_postgresql_need_the_postgresql_store(tmp_path: Path) -> None:
    doc = agents.base_config(tmp_path / "state", leader={"election": "postgresql"})
    path = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    with pytest.raises(ConfigError, match="need the PostgreSQL usage store"):
        load_config(path)
