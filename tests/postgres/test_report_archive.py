"""The report archive on PostgreSQL: the same revisions as the SQLite archive, byte for byte, and
closed months that the database itself refuses to change."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from sitivmon.allocation.archive import MonthNotEnded, ReportArchive
from sitivmon.allocation.archive_postgres import PostgresReportArchive
from sitivmon.usage.port import StoreUnavailable
from tests.support.postgres import PostgresServer

NOW = datetime(2026, 11, 5, 9, 30, tzinfo=UTC)


def fresh(month: str = "2026-10", storage_cents: int = 12_345, note: str = "") -> dict[str, Any]:
    """A provisional report as the report service makes it (the fields the archive reads)."""
    return {
        "header": {
            "month": month, "timezone": "Europe/Paris", "status": "provisional", "revision": 0,
            "period": {"start": f"{month}-01T00:00:00+02:00", "end": "2026-11-01T00:00:00+01:00",
                       "end_utc": "2026-10-31T23:00:00+00:00"},
            "sitivmon_version": "0.1.0", "config_sha256": "c" * 64 + note,
        },
        "allocations": [
            {"project": "Stockage mutualisé", "commune": "venissieux", "amount_cents": storage_cents,
             "basis": "usage:storage"},
            {"project": "Stockage mutualisé", "commune": "givors", "amount_cents": 100_000 - storage_cents,
             "basis": "usage:storage"},
        ],
        "indicators": [{"commune": "venissieux", "indicator": "storage", "direction": None,
                        "value": storage_cents * 7, "coverage": "1.000000"}],
        "projects": [{"project": "Stockage mutualisé", "total_cents": 100_000}],
    }


@pytest.fixture
def archive(postgres_dsn: str) -> PostgresReportArchive:
    return PostgresReportArchive(SecretStr(postgres_dsn))


def test_revisions_are_the_sqlite_archives_byte_for_byte(archive: PostgresReportArchive, tmp_path: Path) -> None:
    lite = ReportArchive(tmp_path / "reports.sqlite")
    for a in (lite, archive):
        first = a.close(fresh(), now=NOW)
        assert first.created and first.revision.revision == 1
        same = a.close(fresh(note="-edited"), now=NOW)  # provenance only: not a new revision
        assert not same.created and same.revision.revision == 1
        second = a.close(fresh(storage_cents=20_000), now=NOW)
        assert second.created and second.revision.revision == 2
        assert second.revision.diff is not None and second.revision.diff["allocations"]
    assert lite.revisions("2026-10") == archive.revisions("2026-10")
    assert lite.latest("2026-10") == archive.latest("2026-10")
    assert archive.latest("2026-09") is None and archive.revisions("2026-09") == []


def test_the_database_refuses_to_change_a_closed_month(archive: PostgresReportArchive, postgres_dsn: str) -> None:
    archive.close(fresh(), now=NOW)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for sql in ("UPDATE report_revision SET content = '\\x00'", "DELETE FROM report_revision",
                    "TRUNCATE report_revision"):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
                conn.execute(sql)
        conn.execute("INSERT INTO report_revision VALUES ('2026-09', 1, 's', '\\x01', NULL, 'now')")  # adding is fine
    assert [r.revision for r in archive.revisions("2026-10")] == [1]
    assert PostgresReportArchive(SecretStr(postgres_dsn)).latest("2026-10") == archive.latest("2026-10")  # reopened


def test_months_not_over_and_bad_labels_are_refused(archive: PostgresReportArchive) -> None:
    with pytest.raises(MonthNotEnded):
        archive.close(fresh(), now=datetime(2026, 10, 31, 22, 59, tzinfo=UTC))
    for label in ("2026-1", "2026-13", "26-10", "2026-10-01"):
        with pytest.raises(ValueError):
            archive.latest(label)
    assert archive.revisions("2026-10") == []


def test_concurrent_closes_number_revisions_without_gaps(postgres_dsn: str) -> None:
    archives = [PostgresReportArchive(SecretStr(postgres_dsn)) for _ in range(4)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def close(i: int) -> None:
        barrier.wait()
        try:
            archives[i].close(fresh(storage_cents=1000 * (i + 1)), now=NOW)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=close, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r.revision for r in archives[0].revisions("2026-10")] == [1, 2, 3, 4]


def test_server_down_is_unavailable_without_the_password(
    postgres_server: PostgresServer, archive: PostgresReportArchive
) -> None:
    postgres_server.stop()
    try:
        with pytest.raises(StoreUnavailable) as info:
            archive.latest("2026-10")
    finally:
        postgres_server.start()
    assert postgres_server.password not in str(info.value) and info.value.__cause__ is None
    assert info.value.__context__ is None
    assert archive.location in str(info.value)
