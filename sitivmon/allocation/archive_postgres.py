"""Closed months on PostgreSQL: `ReportArchivePort` with the SQLite archive's guarantees, in the server.

Why in the database itself: finance must be able to prove what it imported, so a stored revision
must not change even through a bug in sitivmon or a hand-typed `UPDATE`. Triggers refuse UPDATE,
DELETE and TRUNCATE of `report_revision` for every session (the role that owns the table could drop
them: they guard against mistakes, as SQLite's do, not against the database's administrator).

Revisions are byte for byte those of the SQLite archive: the numbering, the JSON bytes and the diff
come from `archive.next_revision`. Two daemons closing the same month at once are serialised by a
transaction-scoped advisory lock on the month, so they cannot both become revision N (and the
primary key would refuse the second anyway).

The schema is versioned in the usage store's `schema_version` table under component `reports`
(`sitivmon.usage.postgres.migrate_component`). Errors are the usage store port's exceptions, with
the DSN's secrets scrubbed, as in `sitivmon.usage.postgres`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from pydantic import SecretStr

from sitivmon.allocation.archive import CloseOutcome, Revision, check_ended, next_revision, parse_month_label
from sitivmon.allocation.report import sha256_bytes
from sitivmon.usage.port import StoreIncompatible
from sitivmon.usage.postgres import describe_dsn, migrate_component, scrubber, translate

COMPONENT = "reports"
CLOSE_LOCK = 0x5174_7603
"""First key of the per-month advisory lock taken by `close` (the second is the month's hash)."""


def _v1(conn: psycopg.Connection[TupleRow]) -> None:
    conn.execute(
        """
        CREATE TABLE report_revision (
            month text NOT NULL CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
            revision integer NOT NULL CHECK (revision >= 1),
            sha256 text NOT NULL,
            content bytea NOT NULL,
            diff text,
            closed_at text NOT NULL,
            PRIMARY KEY (month, revision)
        );
        CREATE FUNCTION report_revision_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'closed report revisions are immutable (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END;
        $$;
        CREATE TRIGGER report_revision_no_update BEFORE UPDATE OR DELETE ON report_revision
            FOR EACH ROW EXECUTE FUNCTION report_revision_immutable();
        CREATE TRIGGER report_revision_no_truncate BEFORE TRUNCATE ON report_revision
            FOR EACH STATEMENT EXECUTE FUNCTION report_revision_immutable();
        """
    )


MIGRATIONS = [_v1]
"""Ordered migrations of the archive; append, never edit."""

_SELECT = "SELECT month, revision, sha256, content, diff, closed_at FROM report_revision"


def _revision(row: TupleRow) -> Revision:
    month, revision, sha, content, diff, closed_at = row
    if not (isinstance(month, str) and isinstance(revision, int) and isinstance(sha, str)
            and isinstance(content, bytes) and isinstance(closed_at, str) and (diff is None or isinstance(diff, str))):
        raise StoreIncompatible(f"report_revision row of unexpected types: {[type(c).__name__ for c in row]}")
    return Revision(month=month, revision=revision, sha256=sha, content=content,
                    diff=json.loads(diff) if diff else None, closed_at=closed_at)


class PostgresReportArchive:
    """`ReportArchivePort` on a PostgreSQL database (a connection per call: closes are rare)."""

    def __init__(self, dsn: SecretStr, *, connect_timeout_s: float = 10.0) -> None:
        """Connects on first use (a daemon starts while the server is away), creating and migrating
        the archive's table then; every call raises the usage port's exceptions."""
        self._dsn = dsn
        self.location, secrets = describe_dsn(dsn)
        self._scrub = scrubber(secrets)
        self._connect_timeout_s = connect_timeout_s
        self._migrated = False

    def __repr__(self) -> str:
        return f"PostgresReportArchive({self.location!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[TupleRow]]:
        err = None
        try:
            with psycopg.connect(
                self._dsn.get_secret_value(), autocommit=True, connect_timeout=max(1, round(self._connect_timeout_s))
            ) as conn:
                if not self._migrated:
                    migrate_component(conn, COMPONENT, MIGRATIONS, self.location)
                    self._migrated = True
                yield conn
        except psycopg.Error as exc:
            err = translate(self.location, exc, self._scrub)
        if err is not None:
            raise err  # outside the handler: the driver's exception (its connection holds the DSN) is not chained

    def revisions(self, month: str) -> list[Revision]:
        parse_month_label(month)
        with self._connect() as conn:
            rows = conn.execute(_SELECT + " WHERE month = %s ORDER BY revision", (month,)).fetchall()
        return [_revision(r) for r in rows]

    def latest(self, month: str) -> Revision | None:
        parse_month_label(month)
        with self._connect() as conn:
            row = conn.execute(_SELECT + " WHERE month = %s ORDER BY revision DESC LIMIT 1", (month,)).fetchone()
        return _revision(row) if row else None

    def close(self, fresh: dict[str, Any], *, now: datetime | None = None) -> CloseOutcome:
        month = parse_month_label(fresh["header"]["month"])
        instant = (now or datetime.now(UTC)).astimezone(UTC)
        check_ended(fresh["header"], instant)
        closed_at = instant.strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (CLOSE_LOCK, month))
            row = conn.execute(_SELECT + " WHERE month = %s ORDER BY revision DESC LIMIT 1", (month,)).fetchone()
            previous = _revision(row) if row else None
            new = next_revision(previous, fresh, closed_at)
            if new is None:
                assert previous is not None
                return CloseOutcome(revision=previous, created=False)
            number, content, diff = new
            sha = sha256_bytes(content)
            conn.execute(
                "INSERT INTO report_revision (month, revision, sha256, content, diff, closed_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (month, number, sha, content, json.dumps(diff, ensure_ascii=False) if diff else None, closed_at),
            )
        return CloseOutcome(
            revision=Revision(
                month=month, revision=number, sha256=sha, content=content, diff=diff, closed_at=closed_at
            ),
            created=True,
        )


    def import_revisions(self, revisions: Iterable[Revision]) -> int:
        """Copy another archive's revisions verbatim, in one transaction (`sitivmon store migrate`):
        the same months, numbers, bytes, hashes, diffs and closing times. A revision already here
        (same month and number) refuses the whole copy: history is never overwritten."""
        rows = [
            (r.month, r.revision, r.sha256, r.content, json.dumps(r.diff, ensure_ascii=False) if r.diff else None,
             r.closed_at)
            for r in revisions
        ]
        for r in rows:
            parse_month_label(r[0])
        with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO report_revision (month, revision, sha256, content, diff, closed_at)"
                " VALUES (%s, %s, %s, %b, %s, %s)",
                rows,
            )
        return len(rows)
