"""`sitivmon store migrate --from sqlite:PATH --to postgresql:DSN [--config FILE]`.

Moves an installation's usage history from its SQLite store to an empty PostgreSQL database without
changing one figure, and proves it:

1. The copy is verbatim (`PostgresUsageStore.import_history`): every series, every chunk blob with
   its stored CRC, the quarantined chunks, the open buckets and the counter baselines, read in one
   SQLite snapshot and written in one PostgreSQL transaction (all or nothing).
2. Then both stores are read back and compared: a digest of every chunk (series, week, bytes, CRC),
   the open buckets and the baselines must be equal.
3. The closed months' report archive beside the store (`reports.sqlite` in the same state
   directory) is copied verbatim too, and every month's revisions read back equal: a closed month's
   `sitivmon report` is its frozen revision.
4. With `--config`, the `sitivmon usage` document of every month holding data is computed from both
   stores (the config's communes, links and timezone) and must be equal.

Stop the daemon first (or accept that what it flushes to SQLite after the snapshot is not copied);
then set `usage.store: postgresql` and `usage.dsn`, and start it: it resumes from the copied
baselines and open buckets, as after any restart.

The DSN is a secret: write `postgresql:${ENV_VAR}` or `postgresql:file:/path` (as in the config), so
that it is not on the command line for `ps` to show; it never appears in what this command prints.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from sitivmon.allocation.archive import ARCHIVE_FILE, ReportArchive
from sitivmon.allocation.archive_postgres import PostgresReportArchive
from sitivmon.config.secrets import resolve_secret
from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, Bucket, Chunk
from sitivmon.usage.cli import InputsFor
from sitivmon.usage.periods import BUCKET_S
from sitivmon.usage.port import BucketKey, CorruptChunk, StoreError, UsageStorePort
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.service import build_document
from sitivmon.usage.store import SqliteUsageStore, checksum, decode_checked


@dataclass(frozen=True, slots=True)
class Copied:
    series: int
    chunks: int
    weeks: tuple[int, int] | None  # first and last week holding chunks


class MigrationError(Exception):
    """The migration was refused or does not prove equal; the message says which and where."""


def parse_endpoint(text: str, scheme: str) -> str:
    """`scheme:REST` -> REST (a path or a DSN); ValueError naming only the expected form."""
    prefix = f"{scheme}:"
    if not text.startswith(prefix) or len(text) == len(prefix):
        raise ValueError(f"expected {scheme}:...")
    return text[len(prefix) :]


def resolve_dsn(rest: str) -> SecretStr:
    """`${ENV}`, `file:/path` or the DSN itself, resolved as config secrets are (never echoed)."""
    resolved = resolve_secret(rest)
    assert isinstance(resolved, SecretStr)
    return resolved


# -- reading the SQLite store -------------------------------------------------------------------------------


class SqliteHistory:
    """The SQLite store's raw rows, read in one snapshot (a read transaction held until `close`)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise MigrationError(f"{path}: no SQLite usage store there")
        self.path = path
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        self.db.execute("BEGIN")  # every read below sees the same snapshot (WAL: writers go on)
        self.version = int(self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        self.keys = {
            int(i): UsageKey(c, s, Quantity(q))
            for i, c, s, q in self.db.execute("SELECT id, commune, subject, quantity FROM series")
        }

    def close(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()

    def _pending(self) -> dict[tuple[int, int], list[tuple[int, int, int, int, int]]]:
        """Closed buckets not yet merged into their week's chunk (schema 3: the daemon merges a twelfth
        of the series at each close), by (series, week)."""
        out: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = defaultdict(list)
        if self.version >= 3:
            rows = self.db.execute(
                "SELECT series_id, start, value, received_milli, expected_milli, flags FROM closed_bucket"
            )
            for sid, start, value, rec, exp, flags in rows:
                out[(int(sid), int(start) // CHUNK_S)].append((int(start), int(value), int(rec), int(exp), int(flags)))
        return out

    def chunks(self) -> Iterator[tuple[UsageKey, int, bytes, int | None]]:
        """Every week chunk, with the pending closed buckets merged in as the store would merge them:
        copied verbatim otherwise, so that nothing recorded stays behind in the SQLite file."""
        pending = self._pending()
        crc = "crc" if self.version >= 2 else "NULL"
        for sid, week, data, c in self.db.execute(f"SELECT series_id, week, data, {crc} FROM chunk ORDER BY week"):
            key, items = self.keys[int(sid)], pending.pop((int(sid), int(week)), None)
            if items is None:
                yield key, int(week), bytes(data), None if c is None else int(c)
                continue
            try:
                chunk = decode_checked(str(self.path), key, int(week), bytes(data), None if c is None else int(c))
            except CorruptChunk as bad:
                raise MigrationError(
                    f"{bad}: it has closed buckets waiting to be merged; run the daemon once (it sets the chunk"
                    " aside and keeps the buckets), then migrate"
                ) from None
            yield (key, int(week), *_merged(chunk, items))
        for (sid, week), items in sorted(pending.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            yield (self.keys[sid], week, *_merged(Chunk(), items))

    def corrupt(self) -> list[tuple[UsageKey, int, bytes, int | None, float, str]]:
        if self.version < 2:
            return []
        return [
            (self.keys[int(sid)], int(week), bytes(data), None if c is None else int(c), float(found), str(reason))
            for week, sid, data, c, found, reason in self.db.execute(
                "SELECT week, series_id, data, crc, found, reason FROM chunk_corrupt"
            )
        ]

    def open_buckets(self) -> dict[BucketKey, Bucket]:
        return {
            (self.keys[int(sid)], int(start)): Bucket(int(v), int(cov), int(n), int(exp), int(f))
            for sid, start, v, cov, n, exp, f in self.db.execute(
                "SELECT series_id, start, value, covered_us, readings, expected_milli, flags FROM open_bucket"
            )
        }

    def baselines(self) -> list[tuple[str, str, float]]:
        rows = self.db.execute("SELECT subject, state, updated FROM baseline")
        return [(str(s), str(v), float(u)) for s, v, u in rows]

    def weeks(self) -> tuple[int, int] | None:
        weeks = [w for _, w in self._pending()]
        lo, hi = self.db.execute("SELECT min(week), max(week) FROM chunk").fetchone()
        weeks += [] if lo is None else [int(lo), int(hi)]
        return (min(weeks), max(weeks)) if weeks else None


def _merged(chunk: Chunk, items: list[tuple[int, int, int, int, int]]) -> tuple[bytes, int]:
    """The chunk with closed buckets added (as `SqliteUsageStore` merges them), encoded, and its CRC."""
    for start, value, rec, exp, flags in items:
        chunk.merge((start % CHUNK_S) // BUCKET_S, value, rec, exp, flags)
    blob = chunk.encode()
    return blob, checksum(blob)


# -- proof ------------------------------------------------------------------------------------------------


def history_digest(
    chunks: Iterator[tuple[UsageKey, int, bytes, int | None]],
    open_buckets: dict[BucketKey, Bucket],
    baselines: list[tuple[str, str, float]],
) -> str:
    """SHA-256 over every chunk (in series and week order), open bucket and baseline of a store."""
    h = hashlib.sha256()
    rows = sorted(
        ((k.commune, k.subject, k.quantity.value, w, hashlib.sha256(d).hexdigest(), c) for k, w, d, c in chunks)
    )
    for row in rows:
        h.update(repr(row).encode())
    for (k, start), b in sorted(
        open_buckets.items(), key=lambda kv: (kv[0][0].commune, kv[0][0].subject, kv[0][0].quantity.value, kv[0][1])
    ):
        h.update(repr((k.commune, k.subject, k.quantity.value, start, b)).encode())
    for row3 in sorted(baselines):
        h.update(repr(row3).encode())
    return h.hexdigest()


def postgres_chunks(store: PostgresUsageStore) -> Iterator[tuple[UsageKey, int, bytes, int | None]]:
    keys = store.series()
    with store.conn.cursor(binary=True) as cur:
        cur.execute("SELECT series_id, week, data, crc FROM chunk")
        for sid, week, data, crc in cur:
            yield keys[int(sid)], int(week), bytes(data), None if crc is None else int(crc)


def postgres_baselines(store: PostgresUsageStore) -> list[tuple[str, str, float]]:
    rows = store.conn.execute("SELECT subject, state, updated FROM baseline")
    return [(str(s), str(v), float(u)) for s, v, u in rows]


def months_between(weeks: tuple[int, int], timezone: str) -> list[str]:
    """Every month label (in `timezone`) that a chunk of weeks[0]..weeks[1] may hold data of."""
    tz = ZoneInfo(timezone)
    first = datetime.fromtimestamp(weeks[0] * CHUNK_S, UTC).astimezone(tz)
    last = datetime.fromtimestamp((weeks[1] + 1) * CHUNK_S - 1, UTC).astimezone(tz)
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def migrate(source: Path, dsn: SecretStr, *, say: Callable[[str], None] = lambda s: None) -> Copied:
    """Copy and prove the usage history (steps 1 and 2 of the module doc); raises MigrationError or the
    port's errors."""
    history = SqliteHistory(source)
    try:
        with PostgresUsageStore(dsn) as dst:
            say(f"copying {source} (schema v{history.version}, {len(history.keys)} series) to {dst.location}")
            started = time.monotonic()
            open_b = history.open_buckets()
            baselines = history.baselines()
            n = dst.import_history(history.keys.values(), history.chunks(), history.corrupt(), open_b, baselines)
            say(
                f"copied {n} chunks, {len(open_b)} open buckets, {len(baselines)} baselines"
                f" in {time.monotonic() - started:.1f}s"
            )
            before = history_digest(history.chunks(), open_b, baselines)
            after = history_digest(postgres_chunks(dst), dst.load_open_buckets(), postgres_baselines(dst))
            if before != after:
                raise MigrationError(f"{dst.location}: the copy differs from {source} (digest {after} != {before})")
            say(f"history digest equal on both stores: {before}")
            return Copied(len(history.keys), n, history.weeks())
    finally:
        history.close()


def migrate_archive(path: Path, dsn: SecretStr, *, say: Callable[[str], None] = lambda s: None) -> int:
    """Copy the closed months' report revisions of the SQLite archive at `path` (if there is one)
    verbatim into the PostgreSQL archive, then read both back and require them equal: a closed
    month's `sitivmon report` is its frozen revision, so equal revisions are equal reports."""
    if not path.is_file():
        say(f"no report archive at {path}: no closed month to copy")
        return 0
    lite = ReportArchive(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        months = [str(m) for (m,) in db.execute("SELECT DISTINCT month FROM revisions ORDER BY month")]
    finally:
        db.close()
    revisions = [r for m in months for r in lite.revisions(m)]
    pg = PostgresReportArchive(dsn)
    n = pg.import_revisions(revisions)
    differ = [m for m in months if pg.revisions(m) != lite.revisions(m)]
    if differ:
        raise MigrationError(f"{pg.location}: the report archive differs from {path} for {', '.join(differ)}")
    say(f"copied {n} report revisions of {len(months)} closed months from {path}, identical on both stores")
    return n


def compare_documents(
    a: Callable[[], UsageStorePort],
    b: Callable[[], UsageStorePort],
    inputs_for: InputsFor,
    config: Path,
    months: list[str],
) -> list[str]:
    """Months whose `sitivmon usage` document differs between the stores (empty: all equal)."""
    inputs = inputs_for(config)
    now = time.time()
    differ = []
    for month in months:
        docs = [build_document(f, inputs.communes, inputs.timezone, inputs.links, month, now=now) for f in (a, b)]
        if docs[0] != docs[1]:
            differ.append(month)
    return differ


def run(args: argparse.Namespace, inputs_for: InputsFor) -> int:
    def say(text: str) -> None:
        print(text, file=sys.stderr)

    try:
        source = Path(parse_endpoint(args.source, "sqlite"))
    except ValueError as exc:
        print(f"--from: {exc}", file=sys.stderr)
        return 2
    try:
        uri = args.target.startswith(("postgresql://", "postgres://"))  # a URI DSN names its scheme itself
        dsn = resolve_dsn(args.target if uri else parse_endpoint(args.target, "postgresql"))
    except ValueError as exc:  # resolve_secret names the variable or file, never a value
        print(f"--to: {exc}", file=sys.stderr)
        return 2
    try:
        copied = migrate(source, dsn, say=say)
        migrate_archive(source.parent / ARCHIVE_FILE, dsn, say=say)
        if args.config is not None and copied.weeks is not None:
            months = months_between(copied.weeks, inputs_for(args.config).timezone)

            def lite() -> UsageStorePort:
                return SqliteUsageStore(source, read_only=True)

            def pg() -> UsageStorePort:
                return PostgresUsageStore(dsn, read_only=True)

            differ = compare_documents(lite, pg, inputs_for, args.config, months)
            if differ:
                raise MigrationError(f"`sitivmon usage` differs between the stores for {', '.join(differ)}")
            say(f"`sitivmon usage` identical on both stores for {len(months)} months ({months[0]}..{months[-1]})")
    except (MigrationError, StoreError) as exc:
        print(f"store migrate: {exc}", file=sys.stderr)
        return 1
    print(f"migrated {copied.series} series, {copied.chunks} chunks: set usage.store: postgresql and usage.dsn")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *, inputs_for: InputsFor) -> None:
    """Add `store migrate`; `inputs_for` loads the root config for `--config` (the root CLI's)."""
    p = subparsers.add_parser("store", help="usage store maintenance")
    sub = p.add_subparsers(dest="store_command", required=True)
    m = sub.add_parser("migrate", help="copy the usage history from SQLite to PostgreSQL, and prove it equal")
    m.add_argument("--from", dest="source", required=True, help="sqlite:PATH of the usage store file")
    m.add_argument(
        "--to",
        dest="target",
        required=True,
        help="postgresql:DSN (or a postgresql:// URI) of an empty database; better postgresql:${ENV_VAR} or"
        " postgresql:file:/path, which keep the password off the command line",
    )
    m.add_argument("--config", type=Path, help="also compare `sitivmon usage` of every month with this config")
    m.set_defaults(func=lambda a: run(a, inputs_for))
