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

Schema version 3 adds `closed_bucket`: closed buckets not yet merged into their week's chunk. Merging
a bucket into its chunk decodes, merges and re-encodes the whole week row (about 1.5 ms); at 20,000
links every five-minute close did that 60,000 times in one flush (89 s, issue 15). With
`compact_every=k` (the daemon's store uses 12) a closed bucket is only added into its
`closed_bucket` row, and a series' pending rows are merged into its chunks when one of its closed
buckets falls on its turn (bucket number + series id divisible by k): each close compacts a k-th of
the series, each series about once an hour, so chunk rewrites drop k-fold and are spread. Readers
overlay the pending rows on the chunks (like open buckets); merging is additive (values and
received samples add, expected takes the max, flags OR), so the figures are the same whatever is
still pending. `compact_every=1` (the default) merges at once, as before.

Spans (`buckets.Span`, a long GAP/UNKNOWN interval kept whole by the recorder, issue 15) need no
table: `write` merges each straight into its week chunks, run by run (`merge_runs`), and counts it
for compaction as its buckets would have (a span of `compact_every` buckets or more always makes its
series compact; a shorter one is written as its buckets' pending rows). The rows stored are then
those the buckets would have left, byte for byte (tests/usage/test_gap_spans.py).

Schema version 2 adds `chunk.crc` (CRC-32 of the blob) and `chunk_corrupt`. Every chunk written since
carries its checksum; rows written by version 1 have NULL and are read as before. A blob whose
checksum fails, or that does not decode, is never turned into figures: readers raise `CorruptChunk`
naming the series and the week's bucket range; the writer, which must go on recording, moves the
row to `chunk_corrupt` (kept for inspection) and starts that week afresh, so the lost slots read as
missing and lower coverage.

The file under the path is watched (`check`, before each flush): a database deleted under the
running daemon is rebuilt at its path from the still-open handle (nothing is lost: SQLite keeps the
unlinked inode readable), a file replaced by another one is adopted; both are logged and counted.

This is the SQLite implementation of `sitivmon.usage.port.UsageStorePort`: every `sqlite3.Error` and
`OSError` leaves it as a port exception (`translate`), so that no caller matches SQLite's messages.
Built by `sitivmon.usage.backends.open_usage_store`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import struct
import sys
import time
import zlib
from array import array
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from sitivmon.readings import Quantity, UsageKey

from .buckets import CHUNK_S, PRESENT, SLOTS, Bucket, Chunk, Span, received_milli
from .periods import BUCKET_S
from .port import (
    BucketKey,
    BucketMap,
    CorruptChunk,
    SeriesMonth,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreIncident,
    StoreIncompatible,
    StoreMissing,
    StoreUnavailable,
)

log = logging.getLogger(__name__)


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


def _v3(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE closed_bucket (
            series_id INTEGER NOT NULL REFERENCES series(id),
            start INTEGER NOT NULL,
            value INTEGER NOT NULL,
            received_milli INTEGER NOT NULL,
            expected_milli INTEGER NOT NULL,
            flags INTEGER NOT NULL,
            PRIMARY KEY (series_id, start)
        ) WITHOUT ROWID;
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
"""Ordered migrations; migration i brings the schema from version i to i+1. Append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)


COMPACT_EVERY = 12
"""`compact_every` of the configured store (`backends.open_usage_store`): each series' closed buckets
go into their week's chunk about once an hour (see the module doc)."""


def compaction_due(start: int, sid: int, every: int) -> bool:
    """Whether a closed bucket starting at `start` makes series `sid` merge its pending closed buckets
    into their chunks now (see the module doc): each close, a `every`-th of the series, by id, so that
    every series is merged about once per `every` closes. Shared by both stores."""
    return (start // BUCKET_S + sid) % every == 0


def span_due(span: Span, sid: int, every: int) -> bool:
    """Whether one of the span's buckets would make its series compact (`compaction_due` of any of
    them): always when it covers `every` buckets or more. Shared by both stores."""
    n = (span.end - span.start) // BUCKET_S
    return n >= every or (-(span.start // BUCKET_S + sid)) % every < n


def span_bucket_rows(span: Span) -> Iterator[tuple[int, int, int, int, int]]:
    """The span as the pending rows (start, value, received, expected, flags) its buckets would be:
    for a span too short to make its series compact (fewer than `compact_every` buckets)."""
    for b, n, part in span.runs:
        for i in range(n):
            yield (b + i * BUCKET_S, part, 0, span.expected_milli, span.flags | PRESENT)


Runs = dict[tuple[int, int], list[tuple[int, int, int, int, int]]]
"""Spans cut by (series id, week): (first slot, end slot, value, expected, flags) for `merge_runs`."""


def add_span_runs(runs: Runs, sid: int, span: Span) -> None:
    """Cut `span` (series `sid`) at week boundaries into `runs`: a few tuples per week, not buckets."""
    for week, pieces in span.weeks().items():
        runs[(sid, week)].extend((a, b, part, span.expected_milli, span.flags) for a, b, part in pieces)


def merge_runs(ch: Chunk, items: Iterable[tuple[int, int, int, int, int]]) -> Chunk:
    """Merge a week's span runs (first slot, end slot, value, expected, flags) into its chunk `ch`:
    the same as merging each of their buckets (no received samples: spans are unobserved time)."""
    for a, b, value, exp, flags in items:
        ch.add_run(a, b, value, 0, exp, flags)
    return ch


def pending_row(b: Bucket) -> tuple[int, int, int, int]:
    """(value, received_milli, expected_milli, flags) of a closed bucket as it waits, not yet merged,
    in `closed_bucket`: flagged PRESENT (written), as `Chunk.merge` would. Pending rows of one bucket
    add up as merging does: values and received add, expected takes the max, flags OR."""
    return (b.value, b.received_milli, b.expected_milli, b.flags | PRESENT)


def merge_buckets(ch: Chunk, items: Iterable[tuple[int, int, int, int, int]]) -> Chunk:
    """Merge (start, value, received_milli, expected_milli, flags) buckets into their week's chunk `ch`
    (the slot is the bucket's place in the week); returns `ch`. Shared by both stores' writers and readers."""
    ch.merge_all([((start % CHUNK_S) // BUCKET_S, value, rec, exp, flags) for start, value, rec, exp, flags in items])
    return ch


def checksum(blob: bytes) -> int:
    """What `chunk.crc` holds for a blob (CRC-32: catches random and burst corruption of a row)."""
    return zlib.crc32(blob)


_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_CORRUPT = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def translate(location: str, exc: sqlite3.Error | OSError) -> StoreError:
    """The port exception for an SQLite (or file system) error, by SQLite's result code, not its text.

    Busy/locked: `StoreBusy` (retry, keep the connection). A malformed file or not a database:
    `StoreCorrupt`. Any other operational failure (I/O, disk full, read-only, cannot open) and any
    OSError: `StoreUnavailable` (reopen, retry). The rest (integrity, misuse) are bugs: `StoreError`.
    """
    text = f"{location}: {exc}"
    if isinstance(exc, OSError):
        return StoreUnavailable(text)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _BUSY:
        return StoreBusy(text)
    if primary in _CORRUPT:
        return StoreCorrupt(text)
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(text)
    return StoreError(text)


@contextlib.contextmanager
def _port_errors(location: str) -> Iterator[None]:
    """Let only port exceptions out (a migration's own bug, not SQLite's, passes unchanged)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise translate(location, exc) from exc


def decode_checked(location: str, key: UsageKey | None, week: int, data: bytes, crc: int | None) -> Chunk:
    if crc is not None and checksum(data) != crc:
        raise CorruptChunk(location, key, week, "checksum mismatch")
    try:
        ch = Chunk.decode(data)
        for i in range(4):  # materialise now: a short or inconsistent blob fails here, not later
            col = ch.cols[i]
            if not isinstance(col, int) and len(col) != SLOTS:
                raise ValueError(f"column {i} has {len(col)} slots")
    except (ValueError, IndexError, KeyError, struct.error, TypeError) as exc:
        raise CorruptChunk(location, key, week, f"undecodable: {exc}") from exc
    return ch


def place_chunk(sm: SeriesMonth, day: int, ch: Chunk, start: int, end: int) -> None:
    """Put the slice of week `day`'s chunk that falls in [start, end) into the series' segments."""
    day_start = day * CHUNK_S
    a = max(0, (start - day_start) // BUCKET_S)
    b = min(SLOTS, (end - day_start) // BUCKET_S)
    if a < b:
        v, r, e, f = ch.slice(a, b)
        sm.segments[(day_start + a * BUCKET_S - start) // BUCKET_S] = (b - a, v, r, e, f)


def place_merged(
    sm: SeriesMonth, day: int, ch: Chunk, items: Sequence[tuple[int, int, int, int, int]], start: int, end: int
) -> None:
    """`ch.merge_all(items)` then `place_chunk`: the same segment, the pending and open buckets merged
    into the slice only (`Chunk.merged_slice`) when they all fall in it, the chunk left as it is then."""
    day_start = day * CHUNK_S
    a = max(0, (start - day_start) // BUCKET_S)
    b = min(SLOTS, (end - day_start) // BUCKET_S)
    cols = ch.merged_slice(a, b, items) if a < b else None
    if cols is None:
        ch.merge_all(items)
        place_chunk(sm, day, ch, start, end)
    else:
        sm.segments[(day_start + a * BUCKET_S - start) // BUCKET_S] = (b - a, *cols)


class SqliteUsageStore:
    """`UsageStorePort` on one SQLite file; the recorder calls `write` from a worker thread, one
    connection per store. Besides the port: `db`, `schema_version`, `migrate`, `series`,
    `import_chunks` and `size_bytes`, for tests, benchmarks and maintenance."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = 5.0,
        read_only: bool = False,
        connect: bool = True,
        compact_every: int = 1,
    ) -> None:
        """`connect=False` defers opening (and its errors) to `open()`: the daemon starts without a
        usable store and retries, see `UsageRecorder`. `read_only`: never creates, migrates or writes
        (a missing file is `StoreMissing`, a schema this code cannot read `StoreIncompatible`).
        `compact_every`: see the module doc (1: every closed bucket goes into its chunk at once)."""
        if compact_every < 1:
            raise ValueError(f"compact_every must be at least 1, got {compact_every}")
        self.compact_every = compact_every
        self.path = Path(path)
        self.read_only = read_only
        self._busy_timeout_s = busy_timeout_s
        self._series: dict[UsageKey, int] = {}
        self._db: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        if connect:
            self.open()

    @property
    def location(self) -> str:
        return str(self.path)

    # -- connection -------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def open(self) -> None:
        """Open (creating the directory and the file, migrating) if not open; raises on failure."""
        if self._db is None:
            with _port_errors(self.location):
                if not self.read_only:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._connect()

    def _connect(self) -> None:
        if self.read_only:
            if str(self.path) != ":memory:" and not self.path.exists():
                raise StoreMissing(f"{self.location}: no usage store (nothing recorded yet)")
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
            if self.read_only:
                version = self.schema_version()  # older versions stay readable
                if not 1 <= version <= SCHEMA_VERSION:
                    raise StoreIncompatible(f"{self.location}: schema version {version}, expected {SCHEMA_VERSION}")
            else:
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

    def reopen(self) -> None:
        """Drop and reopen the connection (after an I/O error the old handle may be unusable)."""
        self.close()
        self.open()

    def _file_problem(self) -> str | None:
        """None while the open connection is the file at `path`; else `deleted` or `replaced`."""
        if self._db is None or self._identity is None or str(self.path) == ":memory:":
            return None
        now = self._stat_identity()
        if now is None:
            return "deleted"
        if now != self._identity:
            return "replaced"
        return None

    def check(self) -> StoreIncident | None:
        """SQLite keeps writing to an unlinked file without a word, and a restart would then find an
        empty store: before each flush, rebuild a deleted file from the open handle, adopt a replaced one."""
        problem = self._file_problem()
        if problem == "deleted":
            with _port_errors(self.location):
                self._rebuild_at_path()
            return StoreIncident(
                "deleted",
                f"usage store {self.location} was DELETED under the running daemon: rebuilt at its path "
                "from the open handle (nothing lost); find out who removed it",
            )
        if problem == "replaced":
            self.reopen()
            return StoreIncident(
                "replaced",
                f"usage store {self.location} was REPLACED by another file under the running daemon: "
                "adopted the new file; what the old one held after its last copy is not in it",
            )
        return None

    def _rebuild_at_path(self) -> None:
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
        """The connection (opened on first use): SQLite-specific, for tests and maintenance."""
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    def close(self) -> None:
        self._identity = None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __enter__(self) -> SqliteUsageStore:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
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
            raise StoreIncompatible(f"{self.path}: schema version {version} is newer than this sitivmon")
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

    def _key_of(self, sid: int) -> UsageKey | None:
        return next((k for k, i in self._series.items() if i == sid), None)

    def series(self) -> dict[int, UsageKey]:
        """Every series by its row id."""
        with _port_errors(self.location):
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
        spans: Sequence[Span] = (),
    ) -> list[CorruptChunk]:
        """Persist one flush in one IMMEDIATE transaction (see the port); a chunk that fails its
        checksum is moved to `chunk_corrupt` and returned."""
        if self.read_only:
            raise StoreUnavailable(f"{self.location}: opened read-only")
        with _port_errors(self.location):
            return self._write(closed, open_buckets, baselines, time.time() if now is None else now, spans)

    def _write(
        self,
        closed: BucketMap,
        open_buckets: BucketMap,
        baselines: Mapping[str, str],
        stamp: float,
        spans: Sequence[Span] = (),
    ) -> list[CorruptChunk]:
        """Spans go straight into their chunks, run by run (`merge_runs`), and make their series
        compact as their buckets would have (a span of `compact_every` buckets or more always does):
        chunks and pending rows end as the buckets would have left them. A span too short for that
        is written as the pending rows of its buckets."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            by_chunk: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = defaultdict(list)
            runs: Runs = defaultdict(list)
            keys: dict[int, UsageKey] = {}
            k = self.compact_every
            if k == 1:
                for (key, start), b in closed.items():
                    sid = self._series_id(key)
                    keys[sid] = key
                    by_chunk[(sid, start // CHUNK_S)].append(
                        (start, b.value, b.received_milli, b.expected_milli, b.flags)
                    )
                for sp in spans:
                    sid = self._series_id(sp.key)
                    keys[sid] = sp.key
                    add_span_runs(runs, sid, sp)
            else:
                pending = []
                due: set[int] = set()
                for (key, start), b in closed.items():
                    sid = self._series_id(key)
                    keys[sid] = key
                    pending.append((sid, start, *pending_row(b)))
                    if compaction_due(start, sid, k):
                        due.add(sid)
                for sp in spans:
                    sid = self._series_id(sp.key)
                    keys[sid] = sp.key
                    if span_due(sp, sid, k):
                        add_span_runs(runs, sid, sp)
                        due.add(sid)
                    else:
                        pending.extend((sid, *row) for row in span_bucket_rows(sp))
                db.executemany(
                    "INSERT INTO closed_bucket(series_id, start, value, received_milli, expected_milli, flags)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(series_id, start) DO UPDATE SET"
                    " value=value+excluded.value, received_milli=received_milli+excluded.received_milli,"
                    " expected_milli=max(expected_milli, excluded.expected_milli), flags=flags|excluded.flags",
                    pending,
                )
                self._take_pending(sorted(due), by_chunk)
            quarantined = self._merge_chunks(by_chunk, keys, stamp, runs)
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
            return quarantined
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._series = {}  # ids inserted in the rolled back transaction are gone
            raise

    def _take_pending(
        self, sids: Iterable[int], by_chunk: dict[tuple[int, int], list[tuple[int, int, int, int, int]]]
    ) -> None:
        """Move the pending closed buckets of `sids` into `by_chunk` (to be merged into their chunks)."""
        db = self.db
        for sid in sids:
            for start, value, rec, exp, flags in db.execute(
                "SELECT start, value, received_milli, expected_milli, flags FROM closed_bucket WHERE series_id=?",
                (sid,),
            ).fetchall():
                by_chunk[(sid, start // CHUNK_S)].append((start, value, rec, exp, flags))
            db.execute("DELETE FROM closed_bucket WHERE series_id=?", (sid,))

    def _merge_chunks(
        self,
        by_chunk: Mapping[tuple[int, int], list[tuple[int, int, int, int, int]]],
        keys: Mapping[int, UsageKey],
        stamp: float,
        runs: Runs | None = None,
    ) -> list[CorruptChunk]:
        """Merge buckets and span runs into their week chunks (decode, merge, encode, upsert), one
        chunk at a time; a chunk that fails its checksum is moved to `chunk_corrupt` and its week
        restarts from these buckets."""
        db = self.db
        quarantined: list[CorruptChunk] = []
        runs = runs or {}
        for sid, day in dict.fromkeys([*by_chunk, *runs]):
            row = db.execute("SELECT data, crc FROM chunk WHERE week=? AND series_id=?", (day, sid)).fetchone()
            ch = Chunk()
            if row:
                try:
                    ch = decode_checked(self.location, keys.get(sid) or self._key_of(sid), day, row[0], row[1])
                except CorruptChunk as bad:
                    db.execute(
                        "INSERT INTO chunk_corrupt(week, series_id, data, crc, found, reason)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (day, sid, row[0], row[1], stamp, bad.reason),
                    )
                    quarantined.append(bad)
            merge_buckets(ch, by_chunk.get((sid, day), ()))
            blob = merge_runs(ch, runs.get((sid, day), ())).encode()
            db.execute(
                "INSERT INTO chunk(week, series_id, data, crc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(week, series_id) DO UPDATE SET data=excluded.data, crc=excluded.crc",
                (day, sid, blob, checksum(blob)),
            )
        return quarantined

    def compact(self) -> list[CorruptChunk]:
        """Merge every pending closed bucket into its chunk now (maintenance, tests); what `write`
        does a k-th of the series at a time. Returns the chunks set aside as corrupt."""
        if self.read_only:
            raise StoreUnavailable(f"{self.location}: opened read-only")
        with _port_errors(self.location):
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                by_chunk: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = defaultdict(list)
                sids = [int(r[0]) for r in db.execute("SELECT DISTINCT series_id FROM closed_bucket")]
                self._take_pending(sids, by_chunk)
                found = self._merge_chunks(by_chunk, self.series(), time.time())
                db.execute("COMMIT")
                return found
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

    def import_chunks(self, items: Iterable[tuple[UsageKey, int, Chunk]]) -> None:
        """Bulk load whole weeks of closed buckets (benchmarks, imports), replacing existing ones."""
        with _port_errors(self.location):
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = [
                    (day, self._series_id(key), blob, checksum(blob))
                    for key, day, blob in ((k, d, ch.encode()) for k, d, ch in items)
                ]
                db.executemany(
                    "INSERT INTO chunk(week, series_id, data, crc) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(week, series_id) DO UPDATE SET data=excluded.data, crc=excluded.crc",
                    rows,
                )
                db.executemany(  # the replaced weeks' pending buckets go with them
                    "DELETE FROM closed_bucket WHERE series_id=? AND start >= ? AND start < ?",
                    [(sid, day * CHUNK_S, (day + 1) * CHUNK_S) for day, sid, _b, _c in rows],
                )
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                self._series = {}
                raise

    # -- read -------------------------------------------------------------------------------------------

    def load_baselines(self) -> dict[str, str]:
        with _port_errors(self.location):
            return {s: v for s, v in self.db.execute("SELECT subject, state FROM baseline")}

    def load_open_buckets(self) -> dict[BucketKey, Bucket]:
        ids = self.series()
        out: dict[BucketKey, Bucket] = {}
        with _port_errors(self.location):
            for sid, start, value, cov, readings, exp, flags in self.db.execute(
                "SELECT series_id, start, value, covered_us, readings, expected_milli, flags FROM open_bucket"
            ):
                out[(ids[sid], int(start))] = Bucket(value, cov, readings, exp, flags)
        return out

    def month_series(self, start: int, end: int, keys: Iterable[UsageKey] = ()) -> dict[UsageKey, SeriesMonth]:
        """See the port: `month_series_batches` in one piece."""
        out: dict[UsageKey, SeriesMonth] = {}
        for piece in self.month_series_batches(start, end, keys, batch=sys.maxsize):
            out.update(piece)
        return out

    def month_series_batches(
        self, start: int, end: int, keys: Iterable[UsageKey] = (), *, batch: int = 1000
    ) -> Generator[dict[UsageKey, SeriesMonth], None, None]:
        """See the port. Pieces are runs of `batch` series ids, read in one transaction (one snapshot)
        held until the last piece: each piece reads its chunks (index `chunk_week_series`) and its
        pending and open buckets (primary keys by series) by id range. Chunks are decoded one at a
        time and only their slice in [start, end) is kept: holding every decoded week and its slice at
        once doubled the month-to-date refresh's peak (issue 15). The pending closed and open buckets
        are merged into each chunk as it is decoded, in the order they always were."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        n = (end - start) // BUCKET_S
        known: set[UsageKey] = set()
        location = self.location  # (a property making a string: once, not per chunk)
        with _port_errors(location):
            db = self.db
            db.execute("BEGIN")  # one snapshot for chunks, pending and open buckets of every piece
            try:
                ids = self.series()
                known.update(ids.values())
                sids = sorted(ids)
                version = self.schema_version()
                has_crc = version >= 2  # a read-only reader may face a store not yet migrated
                for i in range(0, len(sids), batch):
                    part = sids[i : i + batch]
                    lo, hi = part[0], part[-1]
                    out = {ids[sid]: SeriesMonth(ids[sid], start, n) for sid in part}
                    overlays = self._overlays(start, end, version, lo, hi)
                    for sid, day, data, crc in db.execute(
                        f"SELECT series_id, week, data, {'crc' if has_crc else 'NULL'} FROM chunk"
                        " WHERE week BETWEEN ? AND ? AND series_id BETWEEN ? AND ?",
                        (start // CHUNK_S, (end - 1) // CHUNK_S, lo, hi),
                    ):
                        ch = decode_checked(location, ids.get(sid), day, data, crc)
                        place_merged(out[ids[sid]], day, ch, overlays.pop((sid, day), ()), start, end)
                    for (sid, day), items in overlays.items():  # weeks with no chunk yet
                        place_merged(out[ids[sid]], day, Chunk(), items, start, end)
                    del overlays
                    yield out
            finally:
                db.execute("COMMIT")
        extra = [k for k in dict.fromkeys(keys) if k not in known]
        for i in range(0, len(extra), batch):
            yield {k: SeriesMonth(k, start, n) for k in extra[i : i + batch]}

    def _overlays(
        self, start: int, end: int, version: int, lo: int, hi: int
    ) -> dict[tuple[int, int], list[tuple[int, int, int, int, int]]]:
        """Buckets in [start, end) of series ids [lo, hi] not in their chunk, by (series, week): the
        pending closed ones (schema 3), then the open ones, each as (slot, value, received, expected, flags)."""
        db = self.db
        by: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = defaultdict(list)
        if version >= 3:
            for sid, bstart, value, rec, exp, flags in db.execute(
                "SELECT series_id, start, value, received_milli, expected_milli, flags"
                " FROM closed_bucket WHERE series_id BETWEEN ? AND ? AND start >= ? AND start < ?",
                (lo, hi, start, end),
            ):
                by[(sid, bstart // CHUNK_S)].append(((bstart % CHUNK_S) // BUCKET_S, value, rec, exp, flags))
        for sid, bstart, value, cov, readings, exp, flags in db.execute(
            "SELECT series_id, start, value, covered_us, readings, expected_milli, flags"
            " FROM open_bucket WHERE series_id BETWEEN ? AND ? AND start >= ? AND start < ?",
            (lo, hi, start, end),
        ):
            by[(sid, bstart // CHUNK_S)].append(
                ((bstart % CHUNK_S) // BUCKET_S, value, received_milli(cov, readings, exp), exp, flags)
            )
        return by

    def week_stamps(self, start: int, end: int) -> dict[int, bytes]:
        """See the port. A week's stamp digests its chunk rows (series, CRC and length of the blob: an
        upsert keeps a row's rowid, the CRC is what follows its content), then the content of its
        pending closed and open bucket rows (exact, and few outside the current week), read in one
        transaction. A version 1 row (no CRC) is stamped by its length until a write rewrites it
        (which sets its CRC, so changes the stamp)."""
        if end <= start:
            return {}
        lo, hi = start // CHUNK_S, (end - 1) // CHUNK_S
        parts: dict[int, list[array[int]]] = {w: [array("q"), array("q"), array("q")] for w in range(lo, hi + 1)}
        with _port_errors(self.location):
            db = self.db
            db.execute("BEGIN")  # one snapshot for the three tables
            try:
                version = self.schema_version()
                crc = "coalesce(crc, -1)" if version >= 2 else "-1"
                queries = [
                    (
                        f"SELECT week, series_id, {crc}, length(data) FROM chunk WHERE week BETWEEN ? AND ?"
                        " ORDER BY week, series_id",
                        (lo, hi),
                    ),
                    (
                        "SELECT start / ?, series_id, start, value, received_milli, expected_milli, flags"
                        " FROM closed_bucket WHERE start >= ? AND start < ? ORDER BY series_id, start",
                        (CHUNK_S, lo * CHUNK_S, (hi + 1) * CHUNK_S),
                    )
                    if version >= 3
                    else None,
                    (
                        "SELECT start / ?, series_id, start, value, covered_us, readings, expected_milli, flags"
                        " FROM open_bucket WHERE start >= ? AND start < ? ORDER BY series_id, start",
                        (CHUNK_S, lo * CHUNK_S, (hi + 1) * CHUNK_S),
                    ),
                ]
                for i, query in enumerate(queries):
                    if query is None:
                        continue
                    for row in db.execute(*query):
                        parts[row[0]][i].extend(row[1:])
            finally:
                db.execute("COMMIT")
        out = {}
        for week, arrays in parts.items():
            h = hashlib.blake2b(digest_size=16)
            for a in arrays:
                h.update(len(a).to_bytes(8, "little"))
                h.update(a.tobytes())
            out[week] = h.digest()
        return out

    def size_bytes(self) -> int:
        """Database plus WAL on disk."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total
