"""Durable usage store: one SQLite file (WAL) under `state_dir`, versioned schema with migrations.

Why SQLite: embedded, no server to install, and a transaction makes "these buckets and the counter
baselines that produced them" atomic, which is what makes a restart (even SIGKILL) exact: after a
crash the daemon resumes from the baselines of the last committed flush, so the first delta after the
restart covers the downtime *and* whatever had not been flushed, neither lost nor counted twice.

Tables (schema version 1):

- `series`: (commune, subject, quantity) -> id.
- `chunk`: closed buckets, one row per series and week (unix seconds // 604800), blob encoded by `buckets.Chunk`.
  A bucket is written here once it has closed (a later reading of the same series arrived after
  its end); a late correction (e.g. the interval spanning a downtime) is added to it, never replaces it.
- `open_bucket`: the still-open buckets of each series, with their exact accumulators. They are
  rewritten at every flush (a few rows per series) so that partial five-minute contributions are as
  durable as the baselines stored with them. Kept apart from `chunk` so that closed data is written once.
- `baseline`: the poller's opaque counter states by subject.
- `meta`: schema version.

Schema version 2 adds `chunk.crc` (CRC-32 of the blob) and `chunk_corrupt`. Every chunk written since
carries its checksum; rows written by version 1 have NULL and are read as before. A blob whose
checksum fails, or that does not decode, is never turned into figures: readers raise `CorruptChunk`
naming the series and the week's bucket range; the writer, which must go on recording, moves the
row to `chunk_corrupt` (kept for inspection) and starts that week afresh, so the lost slots read as
missing and lower coverage.

The file under the path is watched (`check_file`, before each flush): a database deleted under the
running daemon is rebuilt at its path from the still-open handle (nothing is lost: SQLite keeps the
unlinked inode readable), a file replaced by another one is adopted; both are logged and counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sitivmon.readings import Quantity, UsageKey

from .buckets import CHUNK_S, SLOTS, Bucket, Chunk, Col
from .periods import BUCKET_S, utc_iso

log = logging.getLogger(__name__)

DB_FILENAME = "usage.sqlite3"


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run statements one by one: `executescript` would commit and break the migration's transaction."""
    for stmt in sql.split(";"):
        if stmt.strip():
            db.execute(stmt)


def _v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            commune TEXT NOT NULL,
            subject TEXT NOT NULL,
            quantity TEXT NOT NULL,
            UNIQUE (commune, subject, quantity)
        );
        CREATE TABLE chunk (
            id INTEGER PRIMARY KEY,
            week INTEGER NOT NULL,          -- unix seconds // 604800 (weeks start Thursday 00:00 UTC)
            series_id INTEGER NOT NULL REFERENCES series(id),
            data BLOB NOT NULL
        );
        CREATE UNIQUE INDEX chunk_week_series ON chunk (week, series_id);
        CREATE TABLE open_bucket (
            series_id INTEGER NOT NULL REFERENCES series(id),
            start INTEGER NOT NULL,
            value INTEGER NOT NULL,
            covered_us INTEGER NOT NULL,
            readings INTEGER NOT NULL,
            expected_milli INTEGER NOT NULL,
            flags INTEGER NOT NULL,
            PRIMARY KEY (series_id, start)
        ) WITHOUT ROWID;
        CREATE TABLE baseline (
            subject TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            updated REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    )


def _v2(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        ALTER TABLE chunk ADD COLUMN crc INTEGER;
        CREATE TABLE chunk_corrupt (
            week INTEGER NOT NULL,
            series_id INTEGER NOT NULL,
            data BLOB NOT NULL,
            crc INTEGER,
            found REAL NOT NULL,
            reason TEXT NOT NULL
        );
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2]
"""Ordered migrations; migration i brings the schema from version i to i+1. Append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)


BucketMap = Mapping[tuple[UsageKey, int], Bucket]


def checksum(blob: bytes) -> int:
    """What `chunk.crc` holds for a blob (CRC-32: catches random and burst corruption of a row)."""
    return zlib.crc32(blob)


class CorruptChunk(sqlite3.DatabaseError):
    """A stored chunk fails its checksum or does not decode; `where` names the series and the range.

    A `sqlite3.DatabaseError`, so that every reader that already refuses a damaged database
    (live gauges, the API) refuses this too instead of computing figures from it.
    """

    def __init__(self, path: Path, key: UsageKey | None, week: int, reason: str) -> None:
        series = f"{key.commune}/{key.subject}/{key.quantity.value}" if key else "unknown series"
        self.key, self.week, self.reason = key, week, reason
        self.where = f"{series} buckets {utc_iso(week * CHUNK_S)}..{utc_iso((week + 1) * CHUNK_S)}"
        super().__init__(f"{path}: corrupt usage chunk ({reason}) for {self.where}")


def _decode_checked(path: Path, key: UsageKey | None, week: int, data: bytes, crc: int | None) -> Chunk:
    if crc is not None and checksum(data) != crc:
        raise CorruptChunk(path, key, week, "checksum mismatch")
    try:
        ch = Chunk.decode(data)
        for i in range(4):  # materialise now: a short or inconsistent blob fails here, not later
            col = ch.cols[i]
            if not isinstance(col, int) and len(col) != SLOTS:
                raise ValueError(f"column {i} has {len(col)} slots")
    except (ValueError, IndexError, KeyError, struct.error, TypeError) as exc:
        raise CorruptChunk(path, key, week, f"undecodable: {exc}") from exc
    return ch


@dataclass(slots=True)
class SeriesMonth:
    """One series' buckets over [start, end): chunk-aligned segments, columns as `Col`.

    `segments` maps the offset (in buckets from `start`) to (length, value, received_milli,
    expected_milli, flags). Slots not covered by any segment were never written (missing).
    """

    key: UsageKey
    start: int
    n: int
    segments: dict[int, tuple[int, Col, Col, Col, Col]] = field(default_factory=dict)


class UsageStore:
    """Synchronous store; the recorder calls `write` from a worker thread, one connection per store."""

    def __init__(
        self, path: Path, *, busy_timeout_s: float = 5.0, read_only: bool = False, connect: bool = True
    ) -> None:
        """`connect=False` defers opening (and its errors) to `open()`: the daemon starts without a
        usable store and retries, see `UsageRecorder`."""
        self.path = Path(path)
        self.read_only = read_only
        self._busy_timeout_s = busy_timeout_s
        self._series: dict[UsageKey, int] = {}
        self._db: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self.quarantined: list[CorruptChunk] = []  # chunks set aside by `write`, for the caller to count
        if connect:
            self._connect()

    @classmethod
    def in_dir(
        cls, state_dir: Path, filename: str = DB_FILENAME, *, busy_timeout_s: float = 5.0, connect: bool = True
    ) -> UsageStore:
        """The daemon's store: `<state_dir>/<filename>`, created (and migrated) if needed."""
        if connect:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
        return cls(Path(state_dir) / filename, busy_timeout_s=busy_timeout_s, connect=connect)

    # -- connection -------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def open(self) -> None:
        """Open (creating the directory and the file, migrating) if not open; raises on failure."""
        if self._db is None:
            if not self.read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connect()

    def _connect(self) -> None:
        if self.read_only:
            db = sqlite3.connect(
                f"file:{self.path}?mode=ro",
                uri=True,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            if not self.read_only:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # money depends on it: a commit survives power loss
            self._db = db
            if not self.read_only:
                self.migrate()
        except BaseException:
            self._db = None
            with contextlib.suppress(sqlite3.Error):
                db.close()
            raise
        self._identity = self._stat_identity()
        self._series = {}

    def _stat_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def reconnect(self) -> None:
        """Drop and reopen the connection (after an I/O error the old handle may be unusable)."""
        self.close()
        self._connect()

    def check_file(self) -> str | None:
        """None while the open connection is the file at `path`; else `deleted` or `replaced`.

        SQLite keeps writing to an unlinked file without a word, and a restart would then find an
        empty store: the recorder calls this before each flush and repairs (`rebuild_at_path`).
        """
        if self._db is None or self._identity is None or str(self.path) == ":memory:":
            return None
        now = self._stat_identity()
        if now is None:
            return "deleted"
        if now != self._identity:
            return "replaced"
        return None

    def rebuild_at_path(self) -> None:
        """The file was deleted under the open connection: copy what that connection still sees (the
        unlinked inode, write-ahead log included) to a new file at `path`, then reopen it."""
        old = self.db
        self.path.parent.mkdir(parents=True, exist_ok=True)  # `rm -r state_dir` too
        tmp = self.path.with_name(self.path.name + ".rebuilding")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        new = sqlite3.connect(tmp, isolation_level=None)
        try:
            old.backup(new)
            new.execute("PRAGMA journal_mode=DELETE")
        finally:
            new.close()
        self.close()  # the last connection: checkpoints into the unlinked inode, removes its -wal/-shm
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(self.path) + suffix).unlink()
        os.replace(tmp, self.path)
        self._connect()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._connect()
        assert self._db is not None
        return self._db

    def close(self) -> None:
        self._identity = None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __enter__(self) -> UsageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        db = self.db
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is None:
            return 0
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction; refuse a schema newer than this code."""
        db = self.db
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this sitivmon")
        while version < SCHEMA_VERSION:
            db.execute("BEGIN IMMEDIATE")
            try:
                if self.schema_version() == version:  # another process may have migrated meanwhile
                    MIGRATIONS[version](db)
                    db.execute(
                        "INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (str(version + 1),),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            version = self.schema_version()
        return version

    # -- series -----------------------------------------------------------------------------------------

    def _series_id(self, key: UsageKey) -> int:
        sid = self._series.get(key)
        if sid is None:
            db = self.db
            db.execute(
                "INSERT OR IGNORE INTO series(commune, subject, quantity) VALUES (?, ?, ?)",
                (key.commune, key.subject, key.quantity.value),
            )
            row = db.execute(
                "SELECT id FROM series WHERE commune=? AND subject=? AND quantity=?",
                (key.commune, key.subject, key.quantity.value),
            ).fetchone()
            sid = int(row[0])
            self._series[key] = sid
        return sid

    def series(self) -> dict[int, UsageKey]:
        rows = self.db.execute("SELECT id, commune, subject, quantity FROM series").fetchall()
        return {int(i): UsageKey(c, s, Quantity(q)) for i, c, s, q in rows}

    # -- write ------------------------------------------------------------------------------------------

    def write(
        self,
        closed: BucketMap,
        open_buckets: BucketMap,
        baselines: Mapping[str, str],
        *,
        now: float | None = None,
    ) -> None:
        """Persist one flush atomically: closed buckets (added into their week chunks), the complete
        current set of open buckets (replacing the previous set) and the counter baselines.

        Raises sqlite3.Error (locked, disk full, read-only...) with nothing written; the caller keeps
        its data and retries.
        """
        db = self.db
        stamp = time.time() if now is None else now
        db.execute("BEGIN IMMEDIATE")
        try:
            by_chunk: dict[tuple[int, int], list[tuple[int, Bucket]]] = defaultdict(list)
            keys: dict[int, UsageKey] = {}
            for (key, start), b in closed.items():
                sid = self._series_id(key)
                keys[sid] = key
                by_chunk[(sid, start // CHUNK_S)].append((start, b))
            quarantined: list[CorruptChunk] = []
            for (sid, day), items in by_chunk.items():
                row = db.execute("SELECT data, crc FROM chunk WHERE week=? AND series_id=?", (day, sid)).fetchone()
                ch = Chunk()
                if row:
                    try:
                        ch = _decode_checked(self.path, keys.get(sid), day, row[0], row[1])
                    except CorruptChunk as bad:
                        db.execute(
                            "INSERT INTO chunk_corrupt(week, series_id, data, crc, found, reason)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (day, sid, row[0], row[1], stamp, bad.reason),
                        )
                        quarantined.append(bad)
                for start, b in items:
                    ch.merge((start % CHUNK_S) // BUCKET_S, b.value, b.received_milli, b.expected_milli, b.flags)
                blob = ch.encode()
                db.execute(
                    "INSERT INTO chunk(week, series_id, data, crc) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(week, series_id) DO UPDATE SET data=excluded.data, crc=excluded.crc",
                    (day, sid, blob, checksum(blob)),
                )
            db.execute("DELETE FROM open_bucket")
            db.executemany(
                "INSERT INTO open_bucket(series_id, start, value, covered_us, readings, expected_milli,"
                " flags) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (self._series_id(k), s, b.value, b.covered_us, b.readings, b.expected_milli, b.flags)
                    for (k, s), b in open_buckets.items()
                ],
            )
            db.executemany(
                "INSERT INTO baseline(subject, state, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(subject) DO UPDATE SET state=excluded.state, updated=excluded.updated",
                [(s, v, stamp) for s, v in baselines.items()],
            )
            db.execute("COMMIT")
            self.quarantined.extend(quarantined)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._series = {}  # ids inserted in the rolled back transaction are gone
            raise

    def import_chunks(self, items: Iterable[tuple[UsageKey, int, Chunk]]) -> None:
        """Bulk load whole weeks of closed buckets (benchmarks, imports), replacing existing ones."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO chunk(week, series_id, data, crc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(week, series_id) DO UPDATE SET data=excluded.data, crc=excluded.crc",
                ((day, self._series_id(key), blob, checksum(blob)) for key, day, blob in
                 ((k, d, ch.encode()) for k, d, ch in items)),
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._series = {}
            raise

    # -- read -------------------------------------------------------------------------------------------

    def load_baselines(self) -> dict[str, str]:
        """Counter states committed with the last flush, by subject (seed for the poller's normaliser)."""
        return {s: v for s, v in self.db.execute("SELECT subject, state FROM baseline")}

    def load_open_buckets(self) -> dict[tuple[UsageKey, int], Bucket]:
        """The open buckets of the last flush, to continue accumulating them after a restart."""
        ids = self.series()
        out: dict[tuple[UsageKey, int], Bucket] = {}
        for sid, start, value, cov, readings, exp, flags in self.db.execute(
            "SELECT series_id, start, value, covered_us, readings, expected_milli, flags FROM open_bucket"
        ):
            out[(ids[sid], int(start))] = Bucket(value, cov, readings, exp, flags)
        return out

    def month_series(self, start: int, end: int, keys: Iterable[UsageKey] = ()) -> dict[UsageKey, SeriesMonth]:
        """All series with their buckets in [start, end) (closed chunks overlaid with open buckets).

        Every known series is returned, with no segments when it has no data in the range, and so are
        `keys` not yet in the store, so that a configured but silent link shows up with coverage 0.
        """
        db = self.db
        db.execute("BEGIN")  # one snapshot for chunks and open buckets
        try:
            ids = self.series()
            day_lo, day_hi = start // CHUNK_S, (end - 1) // CHUNK_S
            chunks: dict[tuple[int, int], Chunk] = {}
            has_crc = self.schema_version() >= 2  # a read-only reader may face a store not yet migrated
            for sid, day, data, crc in db.execute(
                f"SELECT series_id, week, data, {'crc' if has_crc else 'NULL'} FROM chunk"
                " WHERE week BETWEEN ? AND ?",
                (day_lo, day_hi),
            ):
                chunks[(sid, day)] = _decode_checked(self.path, ids.get(sid), day, data, crc)
            for sid, bstart, value, cov, readings, exp, flags in db.execute(
                "SELECT series_id, start, value, covered_us, readings, expected_milli, flags"
                " FROM open_bucket WHERE start >= ? AND start < ?",
                (start, end),
            ):
                ob = Bucket(value, cov, readings, exp, flags)
                ch = chunks.setdefault((sid, bstart // CHUNK_S), Chunk())
                ch.merge((bstart % CHUNK_S) // BUCKET_S, ob.value, ob.received_milli, ob.expected_milli, ob.flags)
        finally:
            db.execute("COMMIT")
        out = {k: SeriesMonth(k, start, (end - start) // BUCKET_S) for k in ids.values()}
        for k in keys:
            out.setdefault(k, SeriesMonth(k, start, (end - start) // BUCKET_S))
        for (sid, day), ch in chunks.items():
            day_start = day * CHUNK_S
            a = max(0, (start - day_start) // BUCKET_S)
            b = min(SLOTS, (end - day_start) // BUCKET_S)
            if a >= b:
                continue
            offset = (day_start + a * BUCKET_S - start) // BUCKET_S
            v, r, e, f = ch.slice(a, b)
            out[ids[sid]].segments[offset] = (b - a, v, r, e, f)
        return out

    def size_bytes(self) -> int:
        """Database plus WAL on disk."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total
