"""The usage store port's contract (`sitivmon.usage.port`), run against every backend.

Each test gets `usage_store`, opened through the real factory (`open_usage_store`) on a backend of
`BACKENDS`. A new backend adds one entry: its settings, a store it cannot reach, a way for another
writer to hold it, and a way to damage one stored chunk; every test below then runs on it too.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage.backends import open_usage_store
from sitivmon.usage.buckets import CHUNK_S, PRESENT, Bucket, Col
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.periods import BUCKET_S, month_range
from sitivmon.usage.port import (
    CorruptChunk,
    SeriesMonth,
    StoreBusy,
    StoreError,
    StoreMissing,
    StoreUnavailable,
    UsageStorePort,
)
from sitivmon.usage.postgres import WRITE_LOCK, PostgresUsageStore
from sitivmon.usage.store import SqliteUsageStore
from tests.support.procs import free_port

K = UsageKey("venissieux", "l1", Quantity.TRAFFIC_IN)
G = UsageKey("givors", "dc-1", Quantity.STORAGE_BYTES)
SILENT = UsageKey("corbas", "c1", Quantity.TRAFFIC_OUT)
M = month_range("2026-10", "UTC")
T0 = (M.start // CHUNK_S + 1) * CHUNK_S  # a week boundary inside the month: a series spans two chunks


@dataclass(frozen=True)
class Backend:
    """How the contract reaches one backend."""

    settings: UsageSettings
    state_dir: Path
    unreachable: tuple[UsageSettings, Path]
    """A configuration whose store cannot be opened (open raises StoreUnavailable)."""
    held: Callable[[], contextlib.AbstractContextManager[None]]
    """Another writer holds the store while inside."""
    corrupt: Callable[[UsageKey, int], None]
    """Damage the stored chunk of a series' week (unix seconds // CHUNK_S), as bad storage would."""


def sqlite_backend(tmp_path: Path, _request: pytest.FixtureRequest) -> Backend:
    settings = UsageSettings(busy_timeout_s=0.1)
    state = tmp_path / "state"
    path = state / settings.db_filename
    (tmp_path / "a-file").write_text("not a directory")

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()

    def corrupt(key: UsageKey, week: int) -> None:
        with SqliteUsageStore(path) as store:
            store.compact()  # closed buckets still pending (`compact_every`) into their chunk first
        db = sqlite3.connect(path, isolation_level=None)
        changed = db.execute(
            "UPDATE chunk SET crc = crc + 1 WHERE week = ? AND series_id ="
            " (SELECT id FROM series WHERE commune = ? AND subject = ? AND quantity = ?)",
            (week, key.commune, key.subject, key.quantity.value),
        ).rowcount
        db.close()
        assert changed == 1

    return Backend(settings, state, (settings, tmp_path / "a-file" / "state"), held, corrupt)


def postgresql_backend(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    """A fresh database per test on the session's real server (tests/support/postgres.py)."""
    dsn: str = request.getfixturevalue("postgres_dsn")
    settings = UsageSettings.model_validate({"store": "postgresql", "dsn": dsn, "busy_timeout_s": 0.1})
    server = urllib.parse.urlsplit(dsn)
    refused = dsn.replace(f":{server.port}/", f":{free_port()}/")
    unreachable = UsageSettings.model_validate({"store": "postgresql", "dsn": refused})

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        with psycopg.connect(dsn) as other:  # a transaction is open until the block ends
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield

    def corrupt(key: UsageKey, week: int) -> None:
        with PostgresUsageStore(SecretStr(dsn)) as store:
            store.compact()  # closed buckets still pending (`compact_every`) into their chunk first
        with psycopg.connect(dsn, autocommit=True) as db:
            changed = db.execute(
                "UPDATE chunk SET crc = crc + 1 WHERE week = %s AND series_id ="
                " (SELECT id FROM series WHERE commune = %s AND subject = %s AND quantity = %s)",
                (week, key.commune, key.subject, key.quantity.value),
            ).rowcount
        assert changed == 1

    return Backend(settings, tmp_path / "state", (unreachable, tmp_path / "state"), held, corrupt)


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Backend]] = {
    "sqlite": sqlite_backend,
    "postgresql": postgresql_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    make: Callable[[Path, pytest.FixtureRequest], Backend] = BACKENDS[request.param]
    return make(tmp_path, request)


@pytest.fixture
def usage_store(backend: Backend) -> Iterator[UsageStorePort]:
    with open_usage_store(backend.settings, backend.state_dir) as store:
        yield store


def reopened(backend: Backend, *, read_only: bool = False) -> UsageStorePort:
    """A second store object on the same data: what a restart, a report or a live refresh opens."""
    return open_usage_store(backend.settings, backend.state_dir, read_only=read_only)


def _at(col: Col, i: int) -> int:
    return col if isinstance(col, int) else col[i]


def slots(sm: SeriesMonth) -> dict[int, tuple[int, int, int, int]]:
    """Written buckets by start time: (value, received_milli, expected_milli, flags)."""
    out = {}
    for offset, (length, v, r, e, f) in sm.segments.items():
        for i in range(length):
            if _at(f, i) & PRESENT:
                out[sm.start + (offset + i) * BUCKET_S] = (_at(v, i), _at(r, i), _at(e, i), _at(f, i))
    return out


def gauge(value: int, readings: int = 1) -> Bucket:
    return Bucket(value, readings=readings, expected_milli=1000)


def test_flush_round_trip_closed_and_open(usage_store: UsageStorePort) -> None:
    closed = {(K, T0 - BUCKET_S): gauge(7), (K, T0): gauge(2**49), (G, T0): gauge(3, readings=2)}
    usage_store.write(closed, {(K, T0 + BUCKET_S): gauge(5)}, {"l1": "state-1"})
    data = usage_store.month_series(M.start, M.end)
    assert set(data) == {K, G}
    assert slots(data[K]) == {
        T0 - BUCKET_S: (7, 1000, 1000, PRESENT),
        T0: (2**49, 1000, 1000, PRESENT),
        T0 + BUCKET_S: (5, 1000, 1000, PRESENT),  # the open bucket, overlaid
    }
    assert slots(data[G]) == {T0: (3, 2000, 1000, PRESENT)}
    assert all(sm.start == M.start and sm.n == (M.end - M.start) // BUCKET_S for sm in data.values())


def test_closed_buckets_add_up_across_flushes(usage_store: UsageStorePort) -> None:
    usage_store.write({(K, T0): gauge(10)}, {}, {})
    usage_store.write({(K, T0): gauge(5)}, {}, {})  # a late correction adds, never replaces
    assert slots(usage_store.month_series(T0, T0 + BUCKET_S)[K]) == {T0: (15, 2000, 1000, PRESENT)}


def test_open_buckets_are_replaced_as_a_set_and_survive_a_restart(
    backend: Backend, usage_store: UsageStorePort
) -> None:
    usage_store.write({}, {(K, T0): gauge(1), (G, T0): gauge(2)}, {})
    usage_store.write({}, {(K, T0 + BUCKET_S): Bucket(4, covered_us=123, readings=0, expected_milli=500)}, {})
    with reopened(backend) as again:
        assert again.load_open_buckets() == {(K, T0 + BUCKET_S): Bucket(4, 123, 0, 500, PRESENT)}
        assert slots(again.month_series(T0, T0 + 2 * BUCKET_S)[K]) == {
            T0 + BUCKET_S: (4, round(123 * 500 / 300e6), 500, PRESENT)
        }


def test_baselines_are_upserted_by_subject_and_survive_a_restart(backend: Backend, usage_store: UsageStorePort) -> None:
    assert usage_store.load_baselines() == {}
    usage_store.write({}, {}, {"l1": "a", "l2": "b"})
    usage_store.write({}, {}, {"l1": "c"})
    with reopened(backend) as again:
        assert again.load_baselines() == {"l1": "c", "l2": "b"}


def test_month_view_lists_known_and_expected_series_and_keeps_to_the_range(usage_store: UsageStorePort) -> None:
    usage_store.write({(K, M.start - BUCKET_S): gauge(9), (K, M.end): gauge(9), (G, M.start): gauge(1)}, {}, {})
    data = usage_store.month_series(M.start, M.end, [SILENT])
    assert set(data) == {K, G, SILENT}
    assert data[SILENT].segments == {} and slots(data[K]) == {}  # K's buckets are outside the month
    assert slots(data[G]) == {M.start: (1, 1000, 1000, PRESENT)}


def test_read_only_store_reads_what_was_committed_and_never_writes(
    backend: Backend, usage_store: UsageStorePort
) -> None:
    usage_store.write({(K, T0): gauge(1)}, {}, {"l1": "a"})
    with reopened(backend, read_only=True) as ro:
        assert slots(ro.month_series(T0, T0 + BUCKET_S)[K]) == {T0: (1, 1000, 1000, PRESENT)}
        assert ro.load_baselines() == {"l1": "a"}
        with pytest.raises(StoreError):
            ro.write({(K, T0): gauge(1)}, {}, {})
    assert slots(usage_store.month_series(T0, T0 + BUCKET_S)[K]) == {T0: (1, 1000, 1000, PRESENT)}


def test_read_only_open_of_a_store_never_created_is_store_missing(backend: Backend) -> None:
    with pytest.raises(StoreMissing):
        reopened(backend, read_only=True)
    with open_usage_store(backend.settings, backend.state_dir, connect=False) as lazy:
        assert not lazy.is_open  # nothing created either
    with pytest.raises(StoreMissing):
        reopened(backend, read_only=True)


def test_lifecycle_open_close_reopen_check(backend: Backend) -> None:
    store = open_usage_store(backend.settings, backend.state_dir, connect=False)
    assert not store.is_open
    store.open()
    assert store.is_open and store.check() is None
    store.write({}, {}, {"l1": "a"})
    store.reopen()
    assert store.is_open and store.load_baselines() == {"l1": "a"}
    store.close()
    store.close()  # idempotent
    assert not store.is_open
    store.open()
    assert store.load_baselines() == {"l1": "a"}
    store.close()


def test_a_store_that_cannot_be_reached_is_store_unavailable(backend: Backend) -> None:
    settings, state_dir = backend.unreachable
    with pytest.raises(StoreUnavailable):
        open_usage_store(settings, state_dir)
    lazy = open_usage_store(settings, state_dir, connect=False)
    with pytest.raises(StoreUnavailable):
        lazy.open()
    assert not lazy.is_open


def test_a_store_held_by_another_writer_is_store_busy_and_nothing_is_written(
    backend: Backend, usage_store: UsageStorePort
) -> None:
    usage_store.write({(K, T0): gauge(1)}, {(K, T0 + BUCKET_S): gauge(1)}, {"l1": "a"})
    with backend.held(), pytest.raises(StoreBusy):
        usage_store.write({(K, T0): gauge(1)}, {(K, T0 + 2 * BUCKET_S): gauge(1)}, {"l1": "b"})
    assert usage_store.load_baselines() == {"l1": "a"}  # the flush is all or nothing
    assert usage_store.load_open_buckets() == {(K, T0 + BUCKET_S): gauge(1)}
    usage_store.write({(K, T0): gauge(1)}, {}, {"l1": "b"})  # the same store goes on once released
    assert slots(usage_store.month_series(T0, T0 + BUCKET_S)[K]) == {T0: (2, 2000, 1000, PRESENT)}


def test_a_corrupt_chunk_is_never_read_and_the_writer_sets_it_aside(
    backend: Backend, usage_store: UsageStorePort
) -> None:
    week = T0 // CHUNK_S
    usage_store.write({(K, T0): gauge(10), (G, T0): gauge(1)}, {}, {})
    backend.corrupt(K, week)
    with reopened(backend, read_only=True) as ro, pytest.raises(CorruptChunk) as info:
        ro.month_series(M.start, M.end)
    assert info.value.key == K and info.value.week == week
    assert "venissieux/l1/traffic_in" in str(info.value)
    # A backend may merge closed buckets into their week later than the write that got them (SQLite:
    # `compact_every`); the writer finds the damage when it does, and within the hour.
    written = {}
    for i in range(1, 13):
        found = usage_store.write({(K, T0 + i * BUCKET_S): gauge(3)}, {}, {})
        written[T0 + i * BUCKET_S] = (3, 1000, 1000, PRESENT)
        if found:
            break
    assert [(bad.key, bad.week) for bad in found] == [(K, week)]
    assert week == (T0 + 12 * BUCKET_S) // CHUNK_S
    data = usage_store.month_series(M.start, M.end)  # the week restarts from what was pending
    assert slots(data[K]) == written
    assert slots(data[G]) == {T0: (1, 1000, 1000, PRESENT)}
