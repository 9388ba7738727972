"""Closed months: every revision of a month's report kept, content-addressed, never rewritten.

Finance must be able to prove what it imported. Each revision stores the exact JSON bytes, their SHA-256
and the diff against the previous revision.

`ReportArchivePort` is what the report service needs from an archive; `ReportArchive` is the SQLite
implementation (triggers refuse UPDATE and DELETE, so that even a bug here cannot overwrite history),
built by `open_report_archive`. Another backend implements the port with the same guarantees and
reuses `check_ended`, `diff_reports` and `next_revision` so that its revisions are byte for byte the same.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sitivmon.allocation.formats import render_json
from sitivmon.allocation.report import REVISION_FIELDS, sha256_bytes, substance
from sitivmon.filestamp import file_stamp
from sitivmon.usage.periods import parse_month

ARCHIVE_FILE = "reports.sqlite"


def parse_month_label(month: str) -> str:
    """Archive keys are month labels in their one spelling (`parse_month`); ValueError otherwise."""
    parse_month(month)
    return month


_SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
    month TEXT NOT NULL,
    revision INTEGER NOT NULL CHECK (revision >= 1),
    sha256 TEXT NOT NULL,
    content BLOB NOT NULL,
    diff TEXT,
    closed_at TEXT NOT NULL,
    PRIMARY KEY (month, revision)
);
CREATE TRIGGER IF NOT EXISTS revisions_no_update BEFORE UPDATE ON revisions
BEGIN SELECT RAISE(ABORT, 'closed report revisions are immutable'); END;
CREATE TRIGGER IF NOT EXISTS revisions_no_delete BEFORE DELETE ON revisions
BEGIN SELECT RAISE(ABORT, 'closed report revisions are immutable'); END;
"""


class MonthNotEnded(ValueError):
    """`report close` of a month that is not over in the configured timezone: its figures would grow."""


def check_ended(header: dict[str, Any], now: datetime) -> None:
    """Refuse to freeze a month before its end (the report's period, local midnight of the next 1st)."""
    end = datetime.fromisoformat(header["period"]["end_utc"])
    if now < end:
        raise MonthNotEnded(
            f"{header['month']} has not ended in {header['timezone']}: it ends at {header['period']['end']};"
            " a month can be closed once it is over (`sitivmon report` shows it as provisional until then)"
        )


@dataclass(frozen=True, slots=True)
class Revision:
    month: str
    revision: int
    sha256: str
    content: bytes
    diff: dict[str, Any] | None
    closed_at: str

    @property
    def report(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.content)
        return parsed


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    revision: Revision
    created: bool  # False when the recomputed report equals the latest revision


class ReportArchivePort(Protocol):
    """The revisions of closed months, as the report service reads and writes them.

    A backend guarantees: revisions of a month are numbered 1, 2, ... without gaps; a stored revision
    is never changed nor deleted; `close` is atomic (two concurrent closes cannot both become revision
    N). Month labels are validated (`parse_month_label`: ValueError) before anything is read.
    """

    def revisions(self, month: str) -> list[Revision]:
        """Every revision of `month`, oldest first (empty when the month was never closed)."""
        ...

    def latest(self, month: str) -> Revision | None:
        """The month's last revision, None when it was never closed."""
        ...

    def close(self, fresh: dict[str, Any], *, now: datetime | None = None) -> CloseOutcome:
        """Freeze `fresh` (a provisional report) as the month's next revision, unless its substance
        equals the latest one's. Raises `MonthNotEnded` for a month not over at `now`."""
        ...


def next_revision(
    previous: Revision | None, fresh: dict[str, Any], closed_at: str
) -> tuple[int, bytes, dict[str, Any] | None] | None:
    """(number, exact JSON bytes, diff) of the revision that closing `fresh` adds after `previous`,
    None when nothing changed. Shared by every backend: the bytes are what finance imports."""
    if previous is not None and substance(previous.report) == substance(fresh):
        return None
    number = previous.revision + 1 if previous else 1
    report = dict(fresh)
    report["header"] = {**fresh["header"], "status": "final", "revision": number, "closed_at": closed_at}
    diff = None
    if previous is not None:
        diff = diff_reports(previous.report, fresh)
        report["changes"] = {"previous_revision": previous.revision, "previous_sha256": previous.sha256, **diff}
    return number, render_json(report), diff


class ReportArchive:
    """`ReportArchivePort` on `state_dir/reports.sqlite` (a connection per call: closes are rare)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _row(row: tuple[Any, ...]) -> Revision:
        month, revision, sha, content, diff, closed_at = row
        return Revision(
            month=month,
            revision=revision,
            sha256=sha,
            content=bytes(content),
            diff=json.loads(diff) if diff else None,
            closed_at=closed_at,
        )

    def revisions(self, month: str) -> list[Revision]:
        parse_month_label(month)
        with self._connect() as db:
            rows = db.execute(
                "SELECT month, revision, sha256, content, diff, closed_at FROM revisions"
                " WHERE month = ? ORDER BY revision",
                (month,),
            ).fetchall()
        return [self._row(r) for r in rows]

    def latest(self, month: str) -> Revision | None:
        parse_month_label(month)
        with self._connect() as db:
            row = db.execute(
                "SELECT month, revision, sha256, content, diff, closed_at FROM revisions"
                " WHERE month = ? ORDER BY revision DESC LIMIT 1",
                (month,),
            ).fetchone()
        return self._row(row) if row else None

    def close(self, fresh: dict[str, Any], *, now: datetime | None = None) -> CloseOutcome:
        """The check and the insert run in one IMMEDIATE transaction so two concurrent closes cannot
        both become revision N."""
        month = parse_month_label(fresh["header"]["month"])
        instant = (now or datetime.now(UTC)).astimezone(UTC)
        check_ended(fresh["header"], instant)
        closed_at = instant.strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT month, revision, sha256, content, diff, closed_at FROM revisions"
                    " WHERE month = ? ORDER BY revision DESC LIMIT 1",
                    (month,),
                ).fetchone()
                previous = self._row(row) if row else None
                new = next_revision(previous, fresh, closed_at)
                if new is None:
                    assert previous is not None
                    db.execute("ROLLBACK")
                    return CloseOutcome(revision=previous, created=False)
                number, content, diff = new
                sha = sha256_bytes(content)
                db.execute(
                    "INSERT INTO revisions (month, revision, sha256, content, diff, closed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        month,
                        number,
                        sha,
                        content,
                        json.dumps(diff, ensure_ascii=False) if diff else None,
                        closed_at,
                    ),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return CloseOutcome(
            revision=Revision(
                month=month, revision=number, sha256=sha, content=content, diff=diff, closed_at=closed_at
            ),
            created=True,
        )


def open_report_archive(state_dir: Path) -> ReportArchivePort:
    """The report archive of a state directory (SQLite: `state_dir/reports.sqlite`, created if absent)."""
    return ReportArchive(state_dir / ARCHIVE_FILE)


def archive_change_stamp(state_dir: Path) -> Hashable:
    """A cheap value that changes whenever the archive may have changed, without opening it (the
    report cache's key): the identity, size and mtime of the file (and of a write-ahead log)."""
    path = state_dir / ARCHIVE_FILE
    return tuple(file_stamp(p) for p in (path, path.with_name(path.name + "-wal")))



def _index(rows: list[dict[str, Any]], *fields: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[f] for f in fields): r for r in rows}


def diff_reports(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from one report to the next, row by row, in terms finance can check."""
    old_s, new_s = substance(old), substance(new)
    old_h = {k: v for k, v in old["header"].items() if k not in REVISION_FIELDS}
    new_h = {k: v for k, v in new["header"].items() if k not in REVISION_FIELDS}
    header = {
        k: {"before": old_h.get(k), "after": new_h.get(k)}
        for k in sorted(set(old_h) | set(new_h))
        if old_h.get(k) != new_h.get(k)
    }
    allocations = []
    a_old = _index(old_s["allocations"], "project", "commune")
    a_new = _index(new_s["allocations"], "project", "commune")
    for key in list(a_old) + [k for k in a_new if k not in a_old]:
        before, after = a_old.get(key), a_new.get(key)
        if before == after:
            continue
        b = before["amount_cents"] if before else 0
        a = after["amount_cents"] if after else 0
        allocations.append(
            {
                "project": key[0],
                "commune": key[1],
                "before_cents": b,
                "after_cents": a,
                "delta_cents": a - b,
                "basis_before": before["basis"] if before else None,
                "basis_after": after["basis"] if after else None,
            }
        )
    indicators = []
    i_old = _index(old_s["indicators"], "commune", "indicator", "direction")
    i_new = _index(new_s["indicators"], "commune", "indicator", "direction")
    for key in list(i_old) + [k for k in i_new if k not in i_old]:
        before, after = i_old.get(key), i_new.get(key)
        if before == after:
            continue
        indicators.append(
            {
                "commune": key[0],
                "indicator": key[1],
                "direction": key[2],
                "value_before": before["value"] if before else None,
                "value_after": after["value"] if after else None,
                "coverage_before": before["coverage"] if before else None,
                "coverage_after": after["coverage"] if after else None,
            }
        )
    projects = [
        {"project": p["project"], "before": p_old, "after": p}
        for p in new_s["projects"]
        if (p_old := _index(old_s["projects"], "project").get((p["project"],))) != p
    ]
    projects += [
        {"project": p["project"], "before": p, "after": None}
        for p in old_s["projects"]
        if (p["project"],) not in _index(new_s["projects"], "project")
    ]
    return {"header": header, "allocations": allocations, "indicators": indicators, "projects": projects}
