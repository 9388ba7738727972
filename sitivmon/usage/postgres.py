"""Usage store on PostgreSQL: the second implementation of `sitivmon.usage.port.UsageStorePort`.

Why PostgreSQL: several daemons (shards, replica pairs, issue 13) must write and read one store, on
a well-known server with its own backups and replication; SQLite stays the embedded default.

Why psycopg 3 (sync connection), not asyncpg: measured on the same server in one run by
`bench/pg_driver_bench.py` (figures in bench/README.md). Flush upserts are the same with both (within
4%); asyncpg fetches a month of blobs faster (106 against 152 ms for 2,000 series), which is 4% of
`month_series` (decoding the chunks in Python is the rest, the same for both). The port is synchronous
(the recorder writes from a worker thread; reports and live gauges read synchronously), which psycopg
serves directly while asyncpg would need an event loop per call. psycopg is fully typed (mypy strict).

Same data layout as the SQLite store (`sitivmon.usage.store`, whose docstring explains it): `series`,
`chunk` (one blob per series and week, `buckets.Chunk`, with its CRC-32), `chunk_corrupt`,
`open_bucket`, `baseline`. The schema is created and migrated by the store (`MIGRATIONS`, version
kept in `schema_version` under component `usage`), in transactions under an advisory lock, so that
several daemons starting at once migrate once.

Writes are serialised per database by a transaction-scoped advisory lock (`WRITE_LOCK`), the
equivalent of SQLite's `BEGIN IMMEDIATE`: a chunk is read, merged and rewritten in one transaction,
and two writers merging into the same week row must not lose each other's buckets. Waiting longer
than `busy_timeout_s` for it (PostgreSQL's `lock_timeout`) is `StoreBusy`.

Several writers (sharded pollers): each store is opened with its `writer` identity (the shard
index; '' for a daemon that is not sharded). The open buckets are the one part a flush replaces as a
set, so they are scoped by writer: a flush deletes and rewrites its own writer's rows only, and
`load_open_buckets` returns only them. Readers (`month_series`) add up every writer's open buckets
(a series moved between shards may have one in each: the bytes before and after the move).
Closed buckets merge additively into the shared chunk (of the writer's replica), and baselines are
shared by link within a replica (a link's new owner continues from the last committed one). The
lock stays database-wide: a moved series can have its old and new owner merging into the same chunk
row, and per-series advisory locks would take one lock per series per flush (tens of thousands,
beyond the default lock table).

Replica pairs (two daemons polling the same shard, schema v3): every row a daemon writes is marked
with its `replica` ('' without a pair). Each replica merges closed buckets into its own week chunk
rows, replaces its own (writer, replica) open buckets and upserts its own baselines (both replicas
read the same counters, but each from its own poll instants: a baseline only makes sense with the
buckets it produced). Readers merge per series and per 5-minute bucket by taking ONE replica's bucket,
the one that observed it best, never the sum (`sitivmon.usage.replicas`, which states the rule and
the exactness bound); within one replica, its shards' open buckets add up as above. The write lock
stays database-wide: the replicas of a pair write disjoint rows, but a shard's writers may not.

Pending closed buckets (schema v4), as on SQLite (`sitivmon.usage.store`'s module doc, schema 3):
merging a closed bucket into its week chunk reads, decodes, merges, re-encodes and rewrites the whole
week row, and at 20,000 links each five-minute close did it 60,000 times (99-224 s, bench/README.md).
With `compact_every=k` (the daemon's store uses `COMPACT_EVERY`, 12) a closed bucket is added into its
`closed_bucket` row (one upsert statement for the whole flush), and a series' pending rows are merged
into its chunks when one of its closed buckets falls on its turn (`store.compaction_due`): a k-th of
the series per close. Pending rows belong to a replica, like the chunks they are the unmerged part of,
not to a writer (`_v4`). Readers add each replica's pending rows and open buckets into that replica's
chunk before the replicas are merged, so every figure is the same whatever is still pending.

The DSN is a secret (it may carry a password): it is held as `SecretStr`, never logged, and every
message this module raises names the store by `location` (`postgresql://host:port/dbname`, no
credentials); driver messages are passed through `_scrub` and the driver exception is not chained.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from pydantic import SecretStr

from sitivmon.readings import Quantity, UsageKey

from .buckets import CHUNK_S, SLOTS, Bucket, Chunk, Span
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
from .replicas import merge_chunks
from .store import (
    Runs,
    add_span_runs,
    checksum,
    compaction_due,
    decode_checked,
    merge_buckets,
    merge_runs,
    pending_row,
    place_chunk,
    span_bucket_rows,
    span_due,
)

COMPONENT = "usage"
"""Row of `schema_version` that this store owns (the report archive keeps its own row)."""

MIGRATE_LOCK = 0x5174_7601
"""Advisory lock key held while migrating (any value: it only has to be the same for every daemon)."""
WRITE_LOCK = 0x5174_7602
"""Advisory lock key held by each write transaction (see the module doc)."""


def _v1(conn: psycopg.Connection[TupleRow]) -> None:
    conn.execute(
        """
        CREATE TABLE series (
            id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            commune text NOT NULL,
            subject text NOT NULL,
            quantity text NOT NULL,
            UNIQUE (commune, subject, quantity)
        );
        CREATE TABLE chunk (
            week integer NOT NULL,          -- unix seconds // 604800 (weeks start Thursday 00:00 UTC)
            series_id integer NOT NULL REFERENCES series(id),
            data bytea NOT NULL,
            crc bigint,                     -- CRC-32 of data; NULL only for rows copied from SQLite v1
            PRIMARY KEY (week, series_id)
        );
        CREATE TABLE chunk_corrupt (
            week integer NOT NULL,
            series_id integer NOT NULL,
            data bytea NOT NULL,
            crc bigint,
            found double precision NOT NULL,
            reason text NOT NULL
        );
        CREATE TABLE open_bucket (
            series_id integer NOT NULL REFERENCES series(id),
            start bigint NOT NULL,
            value bigint NOT NULL,
            covered_us bigint NOT NULL,
            readings bigint NOT NULL,
            expected_milli bigint NOT NULL,
            flags integer NOT NULL,
            PRIMARY KEY (series_id, start)
        );
        CREATE TABLE baseline (
            subject text PRIMARY KEY,
            state text NOT NULL,
            updated double precision NOT NULL
        );
        CREATE TABLE usage_change (           -- bumped by every write: the report cache's key
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            seq bigint NOT NULL
        );
        INSERT INTO usage_change(seq) VALUES (0);
        """
    )


def _v2(conn: psycopg.Connection[TupleRow]) -> None:
    """Open buckets scoped by writer (sharded pollers, docs/sharding.md): each flush replaces only its
    own writer's set, so shard A's flush no longer deletes shard B's open buckets. Rows written before
    belong to writer '' (a daemon that is not sharded)."""
    conn.execute(
        """
        ALTER TABLE open_bucket ADD COLUMN writer text NOT NULL DEFAULT '';
        ALTER TABLE open_bucket DROP CONSTRAINT open_bucket_pkey;
        ALTER TABLE open_bucket ADD PRIMARY KEY (writer, series_id, start);
        """
    )


def _v3(conn: psycopg.Connection[TupleRow]) -> None:
    """Rows marked by replica (replica pairs, module doc): each replica of a pair keeps its own week
    chunks, open buckets and counter baselines, and readers merge the replicas bucket by bucket
    (`sitivmon.usage.replicas`). Rows written before belong to replica '' (a daemon without a pair)."""
    conn.execute(
        """
        ALTER TABLE chunk ADD COLUMN replica text NOT NULL DEFAULT '';
        ALTER TABLE chunk DROP CONSTRAINT chunk_pkey;
        ALTER TABLE chunk ADD PRIMARY KEY (week, series_id, replica);
        ALTER TABLE chunk_corrupt ADD COLUMN replica text NOT NULL DEFAULT '';
        ALTER TABLE open_bucket ADD COLUMN replica text NOT NULL DEFAULT '';
        ALTER TABLE open_bucket DROP CONSTRAINT open_bucket_pkey;
        ALTER TABLE open_bucket ADD PRIMARY KEY (writer, replica, series_id, start);
        ALTER TABLE baseline ADD COLUMN replica text NOT NULL DEFAULT '';
        ALTER TABLE baseline DROP CONSTRAINT baseline_pkey;
        ALTER TABLE baseline ADD PRIMARY KEY (replica, subject);
        """
    )


def _v4(conn: psycopg.Connection[TupleRow]) -> None:
    """Closed buckets not yet merged into their week's chunk (`compact_every`, module doc), per replica
    like the chunks they are the unmerged part of. Not per writer: a series moved to another shard is
    merged by its new owner, pending rows of the old one included (per writer, they would wait for a
    writer that no longer closes the series' buckets)."""
    conn.execute(
        """
        CREATE TABLE closed_bucket (
            replica text NOT NULL,
            series_id integer NOT NULL REFERENCES series(id),
            start bigint NOT NULL,
            value bigint NOT NULL,
            received_milli bigint NOT NULL,
            expected_milli bigint NOT NULL,
            flags integer NOT NULL,
            PRIMARY KEY (series_id, start, replica)  -- readers and compaction go by series
        );
        """
    )


MIGRATIONS: list[Callable[[psycopg.Connection[TupleRow]], None]] = [_v1, _v2, _v3, _v4]
"""Ordered migrations; migration i brings the schema from version i to i+1. Append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)

_UPSERT_CHUNK = (
    "INSERT INTO chunk(week, series_id, replica, data, crc) VALUES (%s, %s, %s, %b, %s)"
    " ON CONFLICT (week, series_id, replica) DO UPDATE SET data = excluded.data, crc = excluded.crc"
)
"""One row per statement, sent with `executemany` (pipelined): measured faster than one statement over
`unnest` arrays, whose `bytea[]` psycopg sends as hex text unless told `%b` (bench/pg_driver_bench.py)."""


def _int(x: object) -> int:
    """A column the schema declares integer (the driver's rows are untyped)."""
    if not isinstance(x, int):
        raise StoreIncompatible(f"expected an integer column, got {type(x).__name__}")
    return x


def _opt_int(x: object) -> int | None:
    return None if x is None else _int(x)


def _str(x: object) -> str:
    if not isinstance(x, str):
        raise StoreIncompatible(f"expected a text column, got {type(x).__name__}")
    return x


def _bytes(x: object) -> bytes:
    if not isinstance(x, bytes | bytearray | memoryview):
        raise StoreIncompatible(f"expected a bytea column, got {type(x).__name__}")
    return bytes(x)


# -- errors ------------------------------------------------------------------------------------------------

_BUSY_STATES = frozenset({"55P03", "40001", "40P01"})  # lock_not_available, serialization, deadlock
_CORRUPT_STATES = frozenset({"XX001", "XX002"})  # data_corrupted, index_corrupted
_INCOMPATIBLE_CLASSES = ("42",)  # syntax error or access rule violation: undefined table/column...
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58", "25", "28", "3D")  # connection, resources, shutdown...


def translate(location: str, exc: psycopg.Error, scrub: Callable[[str], str]) -> StoreError:
    """The port exception for a driver error, by SQLSTATE (class, then code), not by its text.

    A connection that cannot be made or was lost (no SQLSTATE), a server shutting down, a disk full,
    a read-only server, a refused login: `StoreUnavailable`. A lock wait over `lock_timeout`, a
    serialisation failure or a deadlock: `StoreBusy`. Corrupted data: `StoreCorrupt`. Missing tables
    or columns, insufficient privilege: `StoreIncompatible` (42501 is `StoreUnavailable`: grants can be
    fixed while the daemon runs). The rest: `StoreError`.
    """
    state = exc.sqlstate or ""
    detail = " ".join(scrub(str(exc)).split())  # libpq's messages span lines
    text = f"{location}: {detail}" + (f" [SQLSTATE {state}]" if state else "")
    if state in _BUSY_STATES:
        return StoreBusy(text)
    if state in _CORRUPT_STATES:
        return StoreCorrupt(text)
    if state == "42501" or state.startswith(_UNAVAILABLE_CLASSES):
        return StoreUnavailable(text)
    if state.startswith(_INCOMPATIBLE_CLASSES):
        return StoreIncompatible(text)
    if not state and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(text)
    return StoreError(text)


def describe_dsn(dsn: SecretStr) -> tuple[str, list[str]]:
    """(location, secrets): where the DSN points, for messages, and the strings that must never be shown.

    A DSN that libpq cannot parse is refused with a message that quotes none of it (libpq's own
    message quotes the part it choked on, which may be the password).
    """
    raw = dsn.get_secret_value()
    try:
        parts = conninfo_to_dict(raw)
    except psycopg.Error:
        raise StoreUnavailable("postgresql: the usage store DSN is not a valid libpq connection string") from None
    host = str(parts.get("host") or parts.get("hostaddr") or "")
    port = str(parts.get("port") or "")
    dbname = str(parts.get("dbname") or parts.get("user") or "")
    netloc = f"{host}:{port}" if port else host
    location = f"postgresql://{netloc}/{dbname}"
    secrets = [raw]
    password = parts.get("password")
    if password:
        pw = str(password)
        secrets += [pw, urllib.parse.quote(pw, safe=""), urllib.parse.quote(pw)]
    return location, [s for s in secrets if s]


def scrubber(secrets: Sequence[str]) -> Callable[[str], str]:
    """A function that masks `secrets` (and any `password=...`) in a text before it leaves in a message."""
    ordered = sorted(secrets, key=len, reverse=True)  # the whole DSN before the password inside it

    def scrub(text: str) -> str:
        for s in ordered:
            text = text.replace(s, "***")
        return re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.IGNORECASE)

    return scrub


def component_version(conn: psycopg.Connection[TupleRow], component: str) -> int:
    """The version of `component`'s schema in this database, 0 when it has none."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT version FROM schema_version WHERE component = %s", (component,)).fetchone()
    return _int(found[0]) if found else 0


def migrate_component(
    conn: psycopg.Connection[TupleRow],
    component: str,
    migrations: Sequence[Callable[[psycopg.Connection[TupleRow]], None]],
    location: str,
) -> int:
    """Bring `component`'s schema to `len(migrations)`: each migration in its own transaction under
    `MIGRATE_LOCK` (several daemons starting at once migrate once; DDL is transactional, so a failing
    migration leaves the previous version whole). A newer version is `StoreIncompatible`.

    `conn` must be in autocommit mode (each step is an explicit transaction). Shared by the usage store
    and the report archive, each with its row in `schema_version`.
    """
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (component text PRIMARY KEY, version integer NOT NULL)"
            )
            version = component_version(conn, component)  # under the lock: another daemon may have migrated
            if version > len(migrations):
                raise StoreIncompatible(f"{location}: {component} schema version {version} is newer than this sitivmon")
            if version == len(migrations):
                return version
            migrations[version](conn)
            conn.execute(
                "INSERT INTO schema_version(component, version) VALUES (%s, %s)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, version + 1),
            )


def _connect_defaults(connect_timeout_s: float, application_name: str) -> dict[str, str | int]:
    """libpq settings the DSN may override. TCP keepalives: a server that vanishes without a reset (a
    cut network, a dead host) fails the write in about a minute instead of leaving the writer thread
    blocked for the system's two hours; the recorder keeps the batches and retries meanwhile."""
    return {
        "connect_timeout": max(1, round(connect_timeout_s)),
        "application_name": application_name,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
    }


class PostgresUsageStore:
    """`UsageStorePort` on a PostgreSQL database; one connection, used by one thread at a time.

    Besides the port: `schema_version`, `migrate`, `series`, `import_chunks`, `size_bytes`, for tests,
    benchmarks and `sitivmon store migrate`.
    """

    def __init__(
        self,
        dsn: SecretStr,
        *,
        busy_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        read_only: bool = False,
        connect: bool = True,
        application_name: str = "sitivmon",
        writer: str = "",
        replica: str = "",
        compact_every: int = 1,
    ) -> None:
        """`connect=False` defers connecting (and its errors) to `open()`. `read_only`: never creates,
        migrates or writes (a database without a usage schema is `StoreMissing`). `writer`: this
        daemon's identity among several writing the store (its shard index; see the module doc).
        `replica`: this daemon's name in a replica pair of its shard ('' without a pair).
        `compact_every`: see the module doc (1: every closed bucket goes into its chunk at once)."""
        if compact_every < 1:
            raise ValueError(f"compact_every must be at least 1, got {compact_every}")
        self.compact_every = compact_every
        self._dsn = dsn
        self._location, secrets = describe_dsn(dsn)
        self._scrub = scrubber(secrets)
        self.read_only = read_only
        self._busy_timeout_s = busy_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._application_name = application_name
        self.writer = writer
        self.replica = replica
        self._conn: psycopg.Connection[TupleRow] | None = None
        self._series: dict[UsageKey, int] = {}
        if connect:
            self.open()

    def __repr__(self) -> str:
        return f"PostgresUsageStore({self._location!r}, read_only={self.read_only})"

    @property
    def location(self) -> str:
        return self._location

    @contextlib.contextmanager
    def _port_errors(self) -> Iterator[None]:
        """Let only port exceptions out; the driver exception is not chained (its text is scrubbed
        into ours, and a traceback printed by a caller must not show an unscrubbed one)."""
        try:
            yield
        except psycopg.Error as exc:
            err = translate(self._location, exc, self._scrub)
        else:
            return
        raise err from None

    # -- connection -------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def open(self) -> None:
        """Connect (migrating a writable store) unless connected; raises port exceptions, stays closed."""
        if self.is_open:
            return
        self._conn = None
        self._series = {}
        with self._port_errors():
            # A database that does not exist is `StoreUnavailable`, for readers too: sitivmon never
            # creates databases, so it is an installation to finish, not a store with nothing recorded
            # (and libpq gives no SQLSTATE for it, only a possibly translated text).
            raw = self._dsn.get_secret_value()
            given = conninfo_to_dict(raw)
            defaults = _connect_defaults(self._connect_timeout_s, self._application_name)
            conninfo = make_conninfo(raw, **{k: v for k, v in defaults.items() if k not in given})
            conn = psycopg.connect(conninfo, autocommit=True)  # transactions are explicit (`conn.transaction()`)
            try:
                lock_ms = max(1, round(self._busy_timeout_s * 1000))  # 0 would mean: wait forever
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_ms}ms",))
                if self.read_only:
                    conn.execute("SET default_transaction_read_only = on")
                self._conn = conn
                if self.read_only:
                    version = self.schema_version()
                    if version == 0:
                        raise StoreMissing(f"{self._location}: no usage store in this database (nothing recorded yet)")
                    if version > SCHEMA_VERSION:
                        raise StoreIncompatible(
                            f"{self._location}: schema version {version}, this sitivmon reads up to {SCHEMA_VERSION}"
                        )
                else:
                    self.migrate()
            except BaseException:
                self._conn = None
                with contextlib.suppress(psycopg.Error):
                    conn.close()
                raise

    def reopen(self) -> None:
        self.close()
        self.open()

    def check(self) -> StoreIncident | None:
        """A server has no file to delete under us; a connection lost since the last flush is made
        again here (raising `StoreUnavailable` while the server is away)."""
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.reopen()
        return None

    @property
    def conn(self) -> psycopg.Connection[TupleRow]:
        """The connection (opened on first use), for tests and maintenance."""
        if not self.is_open:
            self.open()
        assert self._conn is not None
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def __enter__(self) -> PostgresUsageStore:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The usage schema's version in this database, 0 when it has none."""
        with self._port_errors():
            return component_version(self.conn, COMPONENT)

    def migrate(self) -> int:
        """Apply pending migrations (`migrate_component`); refuse a schema newer than this code."""
        with self._port_errors():
            return migrate_component(self.conn, COMPONENT, MIGRATIONS, self._location)

    # -- series -----------------------------------------------------------------------------------------

    def series(self) -> dict[int, UsageKey]:
        """Every series by its row id."""
        with self._port_errors():
            rows = self.conn.execute("SELECT id, commune, subject, quantity FROM series").fetchall()
        return {_int(i): UsageKey(_str(c), _str(s), Quantity(_str(q))) for i, c, s, q in rows}

    def _series_ids(self, keys: Iterable[UsageKey]) -> dict[UsageKey, int]:
        """Row ids of `keys`, inserting the new ones (inside the caller's transaction)."""
        missing = {k for k in keys if k not in self._series}
        if missing:
            ordered = sorted(missing, key=lambda k: (k.commune, k.subject, k.quantity.value))
            self.conn.execute(
                "INSERT INTO series(commune, subject, quantity)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                (
                    [k.commune for k in ordered],
                    [k.subject for k in ordered],
                    [k.quantity.value for k in ordered],
                ),
            )
            self._series = {k: i for i, k in self.series().items()}
        return self._series

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
        """Persist one flush in one transaction under `WRITE_LOCK` (see the port); a chunk that fails
        its checksum is moved to `chunk_corrupt` and returned."""
        if self.read_only:
            raise StoreUnavailable(f"{self._location}: opened read-only")
        stamp = time.time() if now is None else now
        try:
            with self._port_errors(), self.conn.transaction():
                return self._write(closed, open_buckets, baselines, stamp, spans)
        except BaseException:
            self._series = {}  # ids inserted in the rolled back transaction are gone
            raise

    def _write(
        self,
        closed: BucketMap,
        open_buckets: BucketMap,
        baselines: Mapping[str, str],
        stamp: float,
        spans: Sequence[Span] = (),
    ) -> list[CorruptChunk]:
        """Spans as on SQLite (`SqliteUsageStore._write`): into this replica's chunks run by run, their
        series compacted as their buckets would have made it; a short span as pending rows."""
        conn = self.conn
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        conn.execute("UPDATE usage_change SET seq = seq + 1")
        ids = self._series_ids({k for k, _ in closed} | {k for k, _ in open_buckets} | {sp.key for sp in spans})
        keys = {sid: k for k, sid in ids.items()}
        by_chunk: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = defaultdict(list)
        runs: Runs = defaultdict(list)
        k = self.compact_every
        if k == 1:
            for (key, start), b in closed.items():
                by_chunk[(ids[key], start // CHUNK_S)].append(
                    (start, b.value, b.received_milli, b.expected_milli, b.flags)
                )
            for sp in spans:
                add_span_runs(runs, ids[sp.key], sp)
        elif closed or spans:
            cols: tuple[list[int], ...] = ([], [], [], [], [], [])
            due: set[int] = set()
            for (key, start), b in closed.items():
                sid = ids[key]
                for col, x in zip(cols, (sid, start, *pending_row(b)), strict=True):
                    col.append(x)
                if compaction_due(start, sid, k):
                    due.add(sid)
            short: dict[tuple[int, int], list[int]] = {}  # short spans' buckets, merged: one row each
            for sp in spans:
                sid = ids[sp.key]
                if span_due(sp, sid, k):
                    add_span_runs(runs, sid, sp)
                    due.add(sid)
                    continue
                for start, value, rec, exp, flags in span_bucket_rows(sp):
                    row = short.setdefault((sid, start), [0, 0, 0, 0])
                    row[0] += value
                    row[1] += rec
                    row[2] = max(row[2], exp)
                    row[3] |= flags
            # one statement (arrays), not one per bucket: 60,000 rows at 20,000 links; a second one for
            # short spans, whose buckets may be some of the first's (a statement updates a row once)
            for rows in (cols, tuple(map(list, zip(*((*sk, *v) for sk, v in short.items()), strict=True)))):
                if rows and rows[0]:
                    conn.execute(
                        "INSERT INTO closed_bucket(replica, series_id, start, value, received_milli,"
                        " expected_milli, flags) SELECT %s, * FROM unnest(%s::integer[], %s::bigint[],"
                        " %s::bigint[], %s::bigint[], %s::bigint[], %s::integer[])"
                        " ON CONFLICT (replica, series_id, start) DO UPDATE SET"
                        " value = closed_bucket.value + excluded.value,"
                        " received_milli = closed_bucket.received_milli + excluded.received_milli,"
                        " expected_milli = greatest(closed_bucket.expected_milli, excluded.expected_milli),"
                        " flags = closed_bucket.flags | excluded.flags",
                        (self.replica, *rows),
                    )
            self._take_pending(sorted(due), by_chunk)
        quarantined = self._merge_chunks(by_chunk, keys, stamp, runs)
        conn.execute("DELETE FROM open_bucket WHERE writer = %s AND replica = %s", (self.writer, self.replica))
        if open_buckets:
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY open_bucket(writer, replica, series_id, start, value, covered_us, readings,"
                    " expected_milli, flags) FROM STDIN"
                ) as copy,
            ):
                w, r = self.writer, self.replica
                for (okey, s), b in open_buckets.items():
                    copy.write_row((w, r, ids[okey], s, b.value, b.covered_us, b.readings, b.expected_milli, b.flags))
        if baselines:
            subjects = list(baselines)
            conn.execute(
                "INSERT INTO baseline(replica, subject, state, updated)"
                " SELECT %s, s, v, %s FROM unnest(%s::text[], %s::text[]) AS b(s, v)"
                " ON CONFLICT (replica, subject) DO UPDATE SET state = excluded.state, updated = excluded.updated",
                (self.replica, stamp, subjects, [baselines[s] for s in subjects]),
            )
        return quarantined

    def _take_pending(
        self, sids: Sequence[int] | None, by_chunk: dict[tuple[int, int], list[tuple[int, int, int, int, int]]]
    ) -> None:
        """Move this replica's pending closed buckets of `sids` (None: of every series) into `by_chunk`,
        to be merged into their chunks in the same transaction (every writer's: see `_v4`)."""
        if sids is not None and not sids:
            return
        where = "" if sids is None else " AND series_id = ANY(%s)"
        params: tuple[object, ...] = (self.replica,) if sids is None else (self.replica, list(sids))
        rows = self.conn.execute(
            f"DELETE FROM closed_bucket WHERE replica = %s{where}"
            " RETURNING series_id, start, value, received_milli, expected_milli, flags",
            params,
        )
        for sid_, start_, value, rec, exp, flags in rows:
            start = _int(start_)
            by_chunk[(_int(sid_), start // CHUNK_S)].append((start, _int(value), _int(rec), _int(exp), _int(flags)))

    def _merge_chunks(
        self,
        by_chunk: Mapping[tuple[int, int], list[tuple[int, int, int, int, int]]],
        keys: Mapping[int, UsageKey],
        stamp: float,
        runs: Runs | None = None,
        *,
        batch: int = 2000,
    ) -> list[CorruptChunk]:
        """Merge buckets and span runs into this replica's week chunks (read, decode, merge, encode,
        upsert), `batch` chunks at a time: after a long gap every series has a chunk or two to
        rewrite, and holding all their blobs at once grew with the site (issue 15). A chunk that fails
        its checksum is moved to `chunk_corrupt` and its week restarts from these buckets."""
        runs = runs or {}
        targets = list(dict.fromkeys([*by_chunk, *runs]))
        quarantined: list[CorruptChunk] = []
        for i in range(0, len(targets), batch):
            quarantined += self._merge_chunk_batch(targets[i : i + batch], by_chunk, runs, keys, stamp)
        return quarantined

    def _merge_chunk_batch(
        self,
        targets: Sequence[tuple[int, int]],
        by_chunk: Mapping[tuple[int, int], list[tuple[int, int, int, int, int]]],
        runs: Runs,
        keys: Mapping[int, UsageKey],
        stamp: float,
    ) -> list[CorruptChunk]:
        conn = self.conn
        by_week: dict[int, list[int]] = defaultdict(list)
        for sid, week in targets:
            by_week[week].append(sid)
        stored: dict[tuple[int, int], tuple[bytes, int | None]] = {}
        with conn.cursor(binary=True) as cur:  # bytea in binary: no hex decoding (bench/pg_driver_bench.py)
            for week, sids in by_week.items():
                cur.execute(
                    "SELECT series_id, data, crc FROM chunk WHERE week = %s AND series_id = ANY(%s) AND replica = %s",
                    (week, sids, self.replica),
                )
                for sid, data, crc in cur:
                    stored[(_int(sid), week)] = (_bytes(data), _opt_int(crc))
        quarantined: list[CorruptChunk] = []
        rows: list[tuple[int, int, str, bytes, int]] = []
        for sid, week in targets:
            ch = Chunk()
            if (sid, week) in stored:
                data, crc = stored[(sid, week)]
                try:
                    ch = decode_checked(self._location, keys.get(sid), week, data, crc)
                except CorruptChunk as bad:
                    conn.execute(
                        "INSERT INTO chunk_corrupt(week, series_id, replica, data, crc, found, reason)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (week, sid, self.replica, data, crc, stamp, bad.reason),
                    )
                    quarantined.append(bad)
            merge_buckets(ch, by_chunk.get((sid, week), ()))
            blob = merge_runs(ch, runs.get((sid, week), ())).encode()
            rows.append((week, sid, self.replica, blob, checksum(blob)))
        if rows:
            with conn.cursor() as cur:
                cur.executemany(_UPSERT_CHUNK, rows)
        return quarantined

    def compact(self) -> list[CorruptChunk]:
        """Merge every pending closed bucket of this replica into its chunk now (maintenance, tests);
        what `write` does a k-th of the series at a time. Returns the chunks set aside as corrupt."""
        if self.read_only:
            raise StoreUnavailable(f"{self._location}: opened read-only")
        try:
            with self._port_errors(), self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                self.conn.execute("UPDATE usage_change SET seq = seq + 1")
                by_chunk: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = defaultdict(list)
                self._take_pending(None, by_chunk)
                return self._merge_chunks(by_chunk, self.series(), time.time())
        except BaseException:
            self._series = {}
            raise

    def import_history(
        self,
        series: Iterable[UsageKey],
        chunks: Iterable[tuple[UsageKey, int, bytes, int | None]],
        corrupt: Iterable[tuple[UsageKey, int, bytes, int | None, float, str]],
        open_buckets: Mapping[BucketKey, Bucket],
        baselines: Iterable[tuple[str, str, float]],
        *,
        batch: int = 500,
    ) -> int:
        """Copy another store's whole history into this one, verbatim and in one transaction
        (`sitivmon store migrate`): every series (a known series without data is still listed by
        `month_series`), chunk blobs with their stored CRC (NULL stays NULL, a damaged chunk
        stays damaged and is refused by readers here as it was there), the quarantined chunks, the
        open buckets and the baselines with their stamps. `chunks` is consumed in batches, so a large
        history is streamed, not held. Refuses a store that already holds usage. Returns the chunks
        copied."""
        if self.read_only:
            raise StoreUnavailable(f"{self._location}: opened read-only")
        copied = 0
        try:
            with self._port_errors(), self.conn.transaction():
                conn = self.conn
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                row = conn.execute("SELECT EXISTS (SELECT 1 FROM series) OR EXISTS (SELECT 1 FROM baseline)").fetchone()
                if row and row[0]:
                    raise StoreIncompatible(f"{self._location}: already holds usage; migrate into an empty store")
                conn.execute("UPDATE usage_change SET seq = seq + 1")
                self._series_ids(series)
                pending: list[tuple[UsageKey, int, bytes, int | None]] = []

                def flush() -> None:
                    ids = self._series_ids(k for k, _, _, _ in pending)
                    with conn.cursor() as cur:
                        cur.executemany(_UPSERT_CHUNK, [(w, ids[k], self.replica, b, crc) for k, w, b, crc in pending])
                    pending.clear()

                for item in chunks:
                    pending.append(item)
                    copied += 1
                    if len(pending) >= batch:
                        flush()
                flush()
                bad = list(corrupt)
                ids = self._series_ids([k for k, *_ in bad] + [k for k, _ in open_buckets])
                with conn.cursor() as cur:
                    r = self.replica
                    cur.executemany(
                        "INSERT INTO chunk_corrupt(week, series_id, replica, data, crc, found, reason)"
                        " VALUES (%s, %s, %s, %b, %s, %s, %s)",
                        [(w, ids[k], r, d, crc, found, reason) for k, w, d, crc, found, reason in bad],
                    )
                    cur.executemany(
                        "INSERT INTO open_bucket(writer, replica, series_id, start, value, covered_us, readings,"
                        " expected_milli, flags) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            (self.writer, r, ids[k], st, b.value, b.covered_us, b.readings, b.expected_milli, b.flags)
                            for (k, st), b in open_buckets.items()
                        ],
                    )
                    cur.executemany(
                        "INSERT INTO baseline(replica, subject, state, updated) VALUES (%s, %s, %s, %s)",
                        [(r, s, v, u) for s, v, u in baselines],
                    )
        except BaseException:
            self._series = {}
            raise
        return copied

    def import_chunks(self, items: Iterable[tuple[UsageKey, int, Chunk]]) -> None:
        """Bulk load whole weeks of closed buckets (benchmarks, imports), replacing existing ones."""
        if self.read_only:
            raise StoreUnavailable(f"{self._location}: opened read-only")
        rows = [(k, week, ch.encode()) for k, week, ch in items]
        try:
            with self._port_errors(), self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                self.conn.execute("UPDATE usage_change SET seq = seq + 1")
                ids = self._series_ids(k for k, _, _ in rows)
                with self.conn.cursor() as cur:
                    cur.executemany(_UPSERT_CHUNK, ((w, ids[k], self.replica, b, checksum(b)) for k, w, b in rows))
                self.conn.execute(  # the replaced weeks' pending buckets go with them
                    "DELETE FROM closed_bucket c USING unnest(%s::integer[], %s::bigint[]) AS r(sid, week)"
                    " WHERE c.replica = %s AND c.series_id = r.sid AND c.start >= r.week * %s"
                    " AND c.start < (r.week + 1) * %s",
                    ([ids[k] for k, _w, _b in rows], [w for _k, w, _b in rows], self.replica, CHUNK_S, CHUNK_S),
                )
        except BaseException:
            self._series = {}
            raise

    # -- read -------------------------------------------------------------------------------------------

    def load_baselines(self) -> dict[str, str]:
        """This replica's baselines (shared by its shards: a moved link continues from the last one).

        A replica without a baseline of its own for a subject gets the one of replica '' (the daemon
        without a pair that it replaces): turning one daemon into a pair continues every counter from
        where that daemon stopped instead of losing the bytes until each replica's first poll."""
        with self._port_errors():
            rows = self.conn.execute(
                "SELECT DISTINCT ON (subject) subject, state FROM baseline WHERE replica = %s OR replica = ''"
                " ORDER BY subject, replica = %s DESC",
                (self.replica, self.replica),
            )
            return {_str(s): _str(v) for s, v in rows}

    def load_open_buckets(self) -> dict[BucketKey, Bucket]:
        """This writer's and replica's open buckets (the set its next flush replaces)."""
        with self._port_errors(), self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            ids = self.series()
            rows = self.conn.execute(
                "SELECT series_id, start, value, covered_us, readings, expected_milli, flags FROM open_bucket"
                " WHERE writer = %s AND replica = %s",
                (self.writer, self.replica),
            ).fetchall()
        return {
            (ids[_int(sid)], _int(start)): Bucket(_int(value), _int(cov), _int(readings), _int(exp), _int(flags))
            for sid, start, value, cov, readings, exp, flags in rows
        }

    def month_series(self, start: int, end: int, keys: Iterable[UsageKey] = ()) -> dict[UsageKey, SeriesMonth]:
        """The port's read, replicas merged bucket by bucket (`sitivmon.usage.replicas`): each week of
        each series is one replica's bucket per slot, that replica's pending closed buckets and its
        shards' open buckets added in. `month_series_batches` in one piece."""
        out: dict[UsageKey, SeriesMonth] = {}
        for piece in self.month_series_batches(start, end, keys, batch=sys.maxsize):
            out.update(piece)
        return out

    def month_series_batches(
        self, start: int, end: int, keys: Iterable[UsageKey] = (), *, batch: int = 1000
    ) -> Generator[dict[UsageKey, SeriesMonth], None, None]:
        """See the port. Pieces are runs of `batch` series ids, read in one REPEATABLE READ transaction
        (one snapshot: a flush may commit between the pieces) held until the last piece; each piece
        reads its chunks, pending closed and open buckets by series id range, so memory is bounded by
        the piece, not the month (issue 15)."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        n = (end - start) // BUCKET_S
        known: set[UsageKey] = set()
        with self._port_errors():
            conn = self.conn
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                ids = self.series()
                known.update(ids.values())
                pending = component_version(conn, COMPONENT) >= 4  # a read-only reader may face a v3 store
                sids = sorted(ids)
                for i in range(0, len(sids), batch):
                    part = sids[i : i + batch]
                    out = {ids[sid]: SeriesMonth(ids[sid], start, n) for sid in part}
                    for (sid, day), ch in self._month_chunks(ids, start, end, part[0], part[-1], pending).items():
                        place_chunk(out[ids[sid]], day, ch, start, end)
                    yield out
        extra = [k for k in dict.fromkeys(keys) if k not in known]
        for i in range(0, len(extra), batch):
            yield {k: SeriesMonth(k, start, n) for k in extra[i : i + batch]}

    def _month_chunks(
        self, ids: Mapping[int, UsageKey], start: int, end: int, lo: int, hi: int, pending: bool
    ) -> dict[tuple[int, int], Chunk]:
        """Every (series, week) chunk of series ids [lo, hi] overlapping [start, end), pending closed
        and open buckets overlaid per replica, replicas merged; inside the caller's snapshot."""
        conn = self.conn
        by_replica: dict[tuple[int, int], dict[str, Chunk]] = defaultdict(dict)
        day_lo, day_hi = start // CHUNK_S, (end - 1) // CHUNK_S
        with conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT series_id, week, replica, data, crc FROM chunk"
                " WHERE week BETWEEN %s AND %s AND series_id BETWEEN %s AND %s",
                (day_lo, day_hi, lo, hi),
            )
            for sid_, day_, rep_, data, crc in cur:
                sid, day = _int(sid_), _int(day_)
                by_replica[(sid, day)][_str(rep_)] = decode_checked(
                    self._location, ids.get(sid), day, _bytes(data), _opt_int(crc)
                )
        if pending:
            for sid_, rep_, bstart_, value, rec, exp, flags in conn.execute(
                "SELECT series_id, replica, start, value, received_milli, expected_milli, flags"
                " FROM closed_bucket WHERE series_id BETWEEN %s AND %s AND start >= %s AND start < %s",
                (lo, hi, start, end),
            ):
                # Pending closed buckets: the part of the replica's chunk not merged yet (`compact_every`)
                bstart = _int(bstart_)
                ch = by_replica[(_int(sid_), bstart // CHUNK_S)].setdefault(_str(rep_), Chunk())
                merge_buckets(ch, [(bstart, _int(value), _int(rec), _int(exp), _int(flags))])
        for sid_, rep_, bstart_, value, cov, readings, exp, flags in conn.execute(
            "SELECT series_id, replica, start, value, covered_us, readings, expected_milli, flags"
            " FROM open_bucket WHERE series_id BETWEEN %s AND %s AND start >= %s AND start < %s",
            (lo, hi, start, end),
        ):
            # Shards of one replica add up (a moved series: the bytes before and after the move)
            bstart = _int(bstart_)
            ob = Bucket(_int(value), _int(cov), _int(readings), _int(exp), _int(flags))
            ch = by_replica[(_int(sid_), bstart // CHUNK_S)].setdefault(_str(rep_), Chunk())
            merge_buckets(ch, [(bstart, ob.value, ob.received_milli, ob.expected_milli, ob.flags)])
        chunks: dict[tuple[int, int], Chunk] = {}
        for (sid, day), found in by_replica.items():
            if len(found) == 1:  # one daemon, or one replica only this week
                (chunks[(sid, day)],) = found.values()
                continue
            key = ids.get(sid)
            bounds = ((t - day * CHUNK_S) // BUCKET_S for t in (start, end))  # no run straddles the read's bounds
            chunks[(sid, day)] = merge_chunks(
                [found[r] for r in sorted(found)],
                counter=key is not None and key.quantity.counter,
                cuts=[b for b in bounds if 0 < b < SLOTS],
            )
        return chunks

    def week_stamps(self, start: int, end: int) -> dict[int, bytes]:
        """See the port. Digested by the server, per week, in one REPEATABLE READ snapshot: the chunk
        rows of every replica by `xmin` (every update makes a new row version) and CRC, then the content
        of the pending closed and open bucket rows of every replica and writer (content, not `xmin`:
        each flush rewrites a writer's open buckets, mostly unchanged)."""
        if end <= start:
            return {}
        lo, hi = start // CHUNK_S, (end - 1) // CHUNK_S
        found: dict[int, list[str]] = {w: ["", "", ""] for w in range(lo, hi + 1)}
        rows = (lo * CHUNK_S, (hi + 1) * CHUNK_S)
        with self._port_errors():
            conn = self.conn
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                pending = component_version(conn, COMPONENT) >= 4  # a read-only reader may face a v3 store
                queries: list[tuple[str, tuple[int, ...]] | None] = [
                    (
                        "SELECT week, md5(string_agg(concat_ws(':', series_id, xmin, coalesce(crc, -1), replica), ','"
                        " ORDER BY series_id, replica)) FROM chunk WHERE week BETWEEN %s AND %s GROUP BY week",
                        (lo, hi),
                    ),
                    (
                        "SELECT start / %s, md5(string_agg(concat_ws(':', series_id, start, value, received_milli,"
                        " expected_milli, flags, replica), ',' ORDER BY series_id, start, replica))"
                        " FROM closed_bucket WHERE start >= %s AND start < %s GROUP BY 1",
                        (CHUNK_S, *rows),
                    )
                    if pending
                    else None,
                    (
                        "SELECT start / %s, md5(string_agg(concat_ws(':', series_id, start, value, covered_us,"
                        " readings, expected_milli, flags, replica, writer), ','"
                        " ORDER BY series_id, start, replica, writer))"
                        " FROM open_bucket WHERE start >= %s AND start < %s GROUP BY 1",
                        (CHUNK_S, *rows),
                    ),
                ]
                for i, query in enumerate(queries):
                    if query is not None:
                        for week, digest in conn.execute(query[0], query[1]):
                            found[_int(week)][i] = _str(digest)
        return {w: hashlib.blake2b("/".join(d).encode(), digest_size=16).digest() for w, d in found.items()}

    def size_bytes(self) -> int:
        """The usage tables and their indexes and TOAST on disk."""
        with self._port_errors():
            row = self.conn.execute(
                "SELECT sum(pg_total_relation_size(c))::bigint FROM unnest(ARRAY['series', 'chunk', 'chunk_corrupt',"
                " 'open_bucket', 'closed_bucket', 'baseline', 'usage_change']) AS t, to_regclass(t) AS c"
                " WHERE c IS NOT NULL"
            ).fetchone()
        return _int(row[0]) if row and row[0] is not None else 0


def postgres_change_stamp(dsn: SecretStr, *, connect_timeout_s: float = 2.0) -> Hashable:
    """A value that changes whenever the store's content may have changed (the report cache's key):
    the database's oid (a database dropped and made again is another one), the write counter that
    every `write` bumps, and the number of closed report revisions (the archive in the same database,
    `sitivmon.allocation.archive_postgres`: rows are only ever added). One short connection; called
    off the event loop (`ReportCache.get`).

    When the server cannot be asked, a fresh object: equal to no cached key, so the report is built
    (and fails, or not) rather than served stale.
    """
    try:
        with psycopg.connect(
            dsn.get_secret_value(), autocommit=True, connect_timeout=max(1, round(connect_timeout_s))
        ) as conn:
            row = conn.execute(
                "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), seq FROM usage_change"
            ).fetchone()
            archive = conn.execute("SELECT to_regclass('report_revision') IS NOT NULL").fetchone()
            revisions = (
                conn.execute("SELECT count(*) FROM report_revision").fetchone() if archive and archive[0] else None
            )
    except psycopg.Error:
        return object()
    if row is None:
        return object()
    return ("postgresql", _int(row[0]), _int(row[1]), _int(revisions[0]) if revisions else None)
