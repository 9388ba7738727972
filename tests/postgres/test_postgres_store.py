"""The PostgreSQL usage store on a real server: schema and migrations, equal answers to SQLite, the
port's errors, and the DSN kept secret. (The port's contract, shared with SQLite, is in
tests/usage/test_store_contract.py, run against both backends.)"""

from __future__ import annotations

import logging
import random
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage import postgres as pg_mod
from sitivmon.usage.buckets import CHUNK_S, PRESENT, Bucket
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.port import (
    CorruptChunk,
    SeriesMonth,
    StoreBusy,
    StoreError,
    StoreIncompatible,
    StoreMissing,
    StoreUnavailable,
    UsageStorePort,
)
from sitivmon.usage.postgres import SCHEMA_VERSION, WRITE_LOCK, PostgresUsageStore
from sitivmon.usage.store import SqliteUsageStore
from tests.support.postgres import PostgresServer

K = UsageKey("venissieux", "l1", Quantity.TRAFFIC_IN)
K2 = UsageKey("givors", "l2", Quantity.TRAFFIC_OUT)
_M = month_range("2026-01", "UTC")
MONTH = (_M.start, _M.end)


def store(dsn: str, **kw: float | bool) -> PostgresUsageStore:
    return PostgresUsageStore(SecretStr(dsn), **kw)  # type: ignore[arg-type]


@pytest.fixture
def pgs(postgres_dsn: str) -> Iterator[PostgresUsageStore]:
    with store(postgres_dsn) as s:
        yield s


def expand(sm: SeriesMonth) -> dict[int, tuple[list[int], ...]]:
    """Segments with every column as a list (a backend may keep a constant as an int)."""
    out: dict[int, tuple[list[int], ...]] = {}
    for off, (n, *cols) in sm.segments.items():
        out[off] = tuple([c] * n if isinstance(c, int) else list(c) for c in cols)
    return out


def same_months(a: dict[UsageKey, SeriesMonth], b: dict[UsageKey, SeriesMonth]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k].start, a[k].n) == (b[k].start, b[k].n), k
        assert expand(a[k]) == expand(b[k]), k


# -- schema ------------------------------------------------------------------------------------------------


def test_a_new_database_gets_the_current_schema_once(postgres_dsn: str) -> None:
    with store(postgres_dsn) as s:
        assert s.schema_version() == SCHEMA_VERSION == 4
        tables = {r[0] for r in s.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {
            "schema_version",
            "series",
            "chunk",
            "chunk_corrupt",
            "open_bucket",
            "closed_bucket",
            "baseline",
        } <= tables
    with store(postgres_dsn) as s:  # reopening migrates nothing
        assert s.schema_version() == SCHEMA_VERSION


def test_daemons_starting_together_migrate_once(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    v1 = pg_mod.MIGRATIONS[0]

    def counted(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        calls.append(1)
        v1(conn)

    monkeypatch.setattr(pg_mod, "MIGRATIONS", [counted])
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            store(postgres_dsn).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert calls == [1]


def test_a_later_migration_runs_once_and_a_failing_one_leaves_the_version(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(postgres_dsn).close()

    def broken(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute("ALTER TABLE series ADD COLUMN note text")
        raise RuntimeError("boom")

    current = len(pg_mod.MIGRATIONS)
    monkeypatch.setattr(pg_mod, "MIGRATIONS", [*pg_mod.MIGRATIONS, broken])
    monkeypatch.setattr(pg_mod, "SCHEMA_VERSION", current + 1)
    with pytest.raises(RuntimeError, match="boom"):
        store(postgres_dsn)
    monkeypatch.setattr(pg_mod, "MIGRATIONS", pg_mod.MIGRATIONS[:current])
    monkeypatch.setattr(pg_mod, "SCHEMA_VERSION", current)
    with store(postgres_dsn) as s:
        assert s.schema_version() == current
        cols = {
            r[0]
            for r in s.conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'series'")
        }
        assert "note" not in cols  # rolled back with the version


def test_a_newer_schema_is_refused_by_writers_and_readers(postgres_dsn: str) -> None:
    with store(postgres_dsn) as s:
        s.conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'usage'")
    with pytest.raises(StoreIncompatible, match="99"):
        store(postgres_dsn)
    with pytest.raises(StoreIncompatible, match="99"):
        store(postgres_dsn, read_only=True)


def test_reading_a_database_never_written_is_missing(postgres_server: PostgresServer, postgres_dsn: str) -> None:
    with pytest.raises(StoreMissing):
        store(postgres_dsn, read_only=True)
    for read_only in (True, False):  # sitivmon never creates a database: an installation to finish
        with pytest.raises(StoreUnavailable, match="no_such_db") as info:
            store(postgres_server.dsn("no_such_db"), read_only=read_only)
        assert not isinstance(info.value, StoreMissing)
    with store(postgres_dsn, read_only=True, connect=False) as s, pytest.raises(StoreMissing):
        s.open()  # and nothing created by a reader
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)


def test_tables_of_another_application_are_incompatible(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE series (id int, name text)")
    with pytest.raises(StoreIncompatible):
        store(postgres_dsn)


# -- what is stored ----------------------------------------------------------------------------------------


def test_a_flush_round_trips(pgs: PostgresUsageStore) -> None:
    start, end = MONTH
    closed = {(K, start): Bucket(10, 0, 0, 5000, PRESENT), (K, start + BUCKET_S): Bucket(2**40, 0, 0, 5000, 1)}
    open_b = {(K, start + 2 * BUCKET_S): Bucket(7, 123_456, 0, 5000, PRESENT)}
    assert pgs.write(closed, open_b, {"t/1": "state-a"}, now=1.0) == []
    assert pgs.load_baselines() == {"t/1": "state-a"}
    assert pgs.load_open_buckets() == open_b
    month = pgs.month_series(start, end, keys=[K2])
    assert set(month) == {K, K2}
    assert month[K2].segments == {}
    [off] = month[K].segments
    cols = expand(month[K])[off]
    slot0 = (start - off * BUCKET_S) // BUCKET_S - start // BUCKET_S
    assert slot0 == -off
    assert cols[0][:3] == [10, 2**40, 7]
    assert cols[3][:4] == [PRESENT, PRESENT | 1, PRESENT, 0]
    # closed buckets add up, open buckets are replaced as a set, baselines upserted
    pgs.write({(K, start): Bucket(5, 0, 0, 5000, PRESENT)}, {}, {"t/1": "state-b", "t/2": "x"}, now=2.0)
    assert pgs.load_open_buckets() == {}
    assert pgs.load_baselines() == {"t/1": "state-b", "t/2": "x"}
    assert expand(pgs.month_series(start, end)[K])[off][0][:3] == [15, 2**40, 0]


Flush = tuple[dict[tuple[UsageKey, int], Bucket], dict[tuple[UsageKey, int], Bucket], dict[str, str]]


def random_flushes(seed: int, n: int) -> list[Flush]:
    rng = random.Random(seed)
    keys = [
        UsageKey(c, f"l{i}", q)
        for c in ("givors", "corbas")
        for i in range(3)
        for q in (Quantity.TRAFFIC_IN, Quantity.LINK_UP, Quantity.VCPUS)
    ]
    start, end = MONTH
    out = []
    for _ in range(n):
        closed = {}
        for _ in range(rng.randrange(1, 40)):
            t = start - CHUNK_S + rng.randrange((end - start + 2 * CHUNK_S) // BUCKET_S) * BUCKET_S  # weeks around
            closed[(rng.choice(keys), t)] = Bucket(
                rng.choice([0, 1, rng.randrange(2**33), rng.randrange(2**62)]),
                0,
                rng.randrange(3),
                rng.choice([0, 5000, 3333]),
                PRESENT | rng.randrange(16),
            )
        open_b = {
            (rng.choice(keys), end - BUCKET_S * rng.randrange(1, 4)): Bucket(
                rng.randrange(10**9), rng.randrange(300_000_000), rng.randrange(5), 5000, PRESENT | rng.randrange(16)
            )
            for _ in range(rng.randrange(5))
        }
        out.append((closed, open_b, {f"t/{rng.randrange(5)}": str(rng.random())}))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_flushes_give_the_same_answers_as_sqlite(pgs: PostgresUsageStore, tmp_path: Path, seed: int) -> None:
    start, end = MONTH
    with SqliteUsageStore(tmp_path / "u.sqlite3") as lite:
        stores: list[UsageStorePort] = [lite, pgs]
        for closed, open_b, base in random_flushes(seed, 25):
            for s in stores:
                s.write(closed, open_b, base, now=5.0)
        for a, b in [(start, end), (start - CHUNK_S, start + 3 * BUCKET_S), (start + 7, end + CHUNK_S)]:
            a -= a % BUCKET_S
            extra = [UsageKey("grigny", "silent", Quantity.TRAFFIC_IN)]
            same_months(lite.month_series(a, b, extra), pgs.month_series(a, b, extra))
        assert lite.load_open_buckets() == pgs.load_open_buckets()
        assert lite.load_baselines() == pgs.load_baselines()


def test_a_reader_sees_one_snapshot_and_cannot_write(pgs: PostgresUsageStore, postgres_dsn: str) -> None:
    start, end = MONTH
    pgs.write({(K, start): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {})
    with store(postgres_dsn, read_only=True) as r:
        assert expand(r.month_series(start, end)[K])[0][0][0] == 1
        with pytest.raises(StoreUnavailable, match="read-only"):
            r.write({}, {}, {})
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the server itself refuses writes
            r.conn.execute("DELETE FROM baseline")


# -- corruption --------------------------------------------------------------------------------------------


def test_a_chunk_failing_its_checksum_is_refused_by_readers_and_set_aside_by_the_writer(
    pgs: PostgresUsageStore,
) -> None:
    start, end = MONTH
    pgs.write({(K, start): Bucket(10, 0, 0, 5000, PRESENT)}, {}, {})
    pgs.conn.execute("UPDATE chunk SET data = overlay(data placing '\\xff'::bytea from 12 for 1)")
    with pytest.raises(CorruptChunk) as info:
        pgs.month_series(start, end)
    assert "checksum mismatch" in str(info.value) and info.value.key == K
    assert info.value.where.startswith("venissieux/l1/traffic_in buckets ")
    bad = pgs.write({(K, start + BUCKET_S): Bucket(3, 0, 0, 5000, PRESENT)}, {}, {})
    assert [b.key for b in bad] == [K]
    assert pgs.conn.execute("SELECT count(*), min(reason) FROM chunk_corrupt").fetchone() == (1, "checksum mismatch")
    cols = expand(pgs.month_series(start, end)[K])[0]
    assert cols[0][:2] == [0, 3] and cols[3][:2] == [0, PRESENT]  # the lost slot reads as missing


def test_an_undecodable_chunk_with_a_good_checksum_is_corrupt(pgs: PostgresUsageStore) -> None:
    start, end = MONTH
    pgs.write({(K, start): Bucket(10, 0, 0, 5000, PRESENT)}, {}, {})
    blob = b"\x01Q" + b"\x00" * 10
    pgs.conn.execute("UPDATE chunk SET data = %s, crc = %s", (blob, pg_mod.checksum(blob)))
    with pytest.raises(CorruptChunk, match="undecodable"):
        pgs.month_series(start, end)


# -- errors and availability -------------------------------------------------------------------------------


def test_a_writer_waiting_for_another_is_busy(pgs: PostgresUsageStore, postgres_dsn: str) -> None:
    with store(postgres_dsn, busy_timeout_s=0.2) as other, psycopg.connect(postgres_dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # held until holder's transaction ends
        with pytest.raises(StoreBusy, match="55P03"):
            other.write({(K, MONTH[0]): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {"s": "1"})
        holder.rollback()
        other.write({(K, MONTH[0]): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {"s": "1"})  # same connection, now free
    assert pgs.load_baselines() == {"s": "1"}


def test_a_failed_write_commits_nothing(pgs: PostgresUsageStore) -> None:
    start, _ = MONTH
    pgs.write({(K, start): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {"a": "1"})
    with pytest.raises(StoreError):  # 2**70 does not fit the open bucket's bigint: the whole flush fails
        pgs.write({(K2, start): Bucket(5, 0, 0, 5000, PRESENT)}, {(K, start + BUCKET_S): Bucket(2**70)}, {"a": "2"})
    assert pgs.load_baselines() == {"a": "1"}
    assert set(pgs.month_series(*MONTH)) == {K}
    pgs.write({(K2, start): Bucket(5, 0, 0, 5000, PRESENT)}, {}, {"a": "3"})  # series ids were not kept
    assert set(pgs.month_series(*MONTH)) == {K, K2}


def test_server_down_is_unavailable_then_the_store_recovers(postgres_server: PostgresServer, postgres_dsn: str) -> None:
    start, _ = MONTH
    s = store(postgres_dsn)
    s.write({(K, start): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {"a": "1"})
    postgres_server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            s.write({(K, start): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {"a": "2"})
        with pytest.raises(StoreUnavailable):
            s.check()
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
            store(postgres_dsn)
        assert not s.is_open
    finally:
        postgres_server.start()
    assert s.check() is None  # reconnects
    s.write({(K, start): Bucket(1, 0, 0, 5000, PRESENT)}, {}, {"a": "3"})
    assert s.load_baselines() == {"a": "3"}
    assert expand(s.month_series(*MONTH)[K])[0][0][0] == 2
    s.close()


def test_connection_refused_is_unavailable(postgres_server: PostgresServer) -> None:
    from tests.support.procs import free_port

    dsn = postgres_server.dsn().replace(f":{postgres_server.port}/", f":{free_port()}/")
    with pytest.raises(StoreUnavailable, match="refused"):
        store(dsn)
    s = store(dsn, connect=False)
    assert not s.is_open
    with pytest.raises(StoreUnavailable):
        s.open()


# -- the DSN is a secret -----------------------------------------------------------------------------------


def _all_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.args)


def test_the_password_never_shows_in_errors_logs_or_reprs(
    postgres_server: PostgresServer, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = postgres_server.password
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    bad_password = postgres_dsn.replace(password, "Wr0ng-" + password[::-1])
    from tests.support.procs import free_port

    cases = [
        bad_password,  # authentication failed
        postgres_dsn.replace(f":{postgres_server.port}/", f":{free_port()}/"),  # refused
        postgres_server.dsn("no_such_db"),  # no database
        f"host=127.0.0.1 password={password} port={postgres_server.port} bogus",  # unparsable (libpq quotes it)
        f"host=127.0.0.1 port={postgres_server.port} user=sitivmon password='{password}' dbname=nothere",
    ]
    for dsn in cases:
        with pytest.raises(StoreError) as info:
            store(dsn)
        seen.append(_all_text(info.value))
        assert info.value.__cause__ is None
    with store(postgres_dsn) as s:
        seen.append(repr(s) + s.location)
        postgres_server.stop()
        try:
            with pytest.raises(StoreError) as info2:
                s.write({(K, MONTH[0]): Bucket(1)}, {}, {})
            seen.append(_all_text(info2.value))
        finally:
            postgres_server.start()
    seen.append(caplog.text)
    text = "\n".join(seen)
    for secret in (password, "Wr0ng-" + password[::-1], password[::-1]):
        assert secret not in text
    assert f"postgresql://127.0.0.1:{postgres_server.port}/" in text  # the location is named


def test_a_password_with_url_escapes_is_scrubbed(postgres_server: PostgresServer) -> None:
    s = store(f"postgresql://sitivmon:p%40ss%2Fw0rd@127.0.0.1:{postgres_server.port}/x", connect=False)
    assert s._scrub("saw p@ss/w0rd and p%40ss%2Fw0rd") == "saw *** and ***"
    assert "p@ss" not in s.location and "w0rd" not in repr(s)


def test_connection_settings_default_and_the_dsn_wins(postgres_dsn: str) -> None:
    with store(postgres_dsn) as s:
        assert s.conn.execute("SHOW application_name").fetchone() == ("sitivmon",)
        assert s.conn.info.get_parameters().get("keepalives_idle") == "30"
    with store(postgres_dsn + "?application_name=shard-2&keepalives_idle=5") as s:
        assert s.conn.execute("SHOW application_name").fetchone() == ("shard-2",)
        assert s.conn.info.get_parameters().get("keepalives_idle") == "5"
