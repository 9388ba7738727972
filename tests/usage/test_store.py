"""The SQLite store: schema and migrations, chunk encoding, atomic flushes, restart state."""

from __future__ import annotations

import sqlite3
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitivmon.readings import Quantity, UsageKey
from sitivmon.usage import store as store_mod
from sitivmon.usage.backends import open_usage_store
from sitivmon.usage.buckets import PRESENT, SLOTS, Bucket, Chunk, column_totals
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.periods import month_range
from sitivmon.usage.port import StoreBusy, StoreIncompatible, StoreMissing
from sitivmon.usage.store import SCHEMA_VERSION, SqliteUsageStore

from .support import poll_link, record

K = UsageKey("venissieux", "l1", Quantity.TRAFFIC_IN)


def test_new_store_is_wal_and_at_the_current_schema(tmp_path: Path) -> None:
    with open_usage_store(UsageSettings(), tmp_path / "state") as s:
        assert isinstance(s, SqliteUsageStore)
        assert s.schema_version() == SCHEMA_VERSION == 3
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (tmp_path / "state" / "usage.sqlite3").exists()


def test_migrations_run_once_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "u.db"
    SqliteUsageStore(path).close()
    calls: list[int] = []

    def v2(db: sqlite3.Connection) -> None:
        calls.append(2)
        db.execute("ALTER TABLE series ADD COLUMN note TEXT")

    later = SCHEMA_VERSION + 1
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, v2])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", later)
    with SqliteUsageStore(path) as s:
        assert s.schema_version() == later
    with SqliteUsageStore(path) as s:
        assert s.schema_version() == later
    assert calls == [2]


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "u.db"
    SqliteUsageStore(path).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE series ADD COLUMN note TEXT")
        raise RuntimeError("boom")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, broken])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError):
        SqliteUsageStore(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    assert "note" not in [r[1] for r in db.execute("PRAGMA table_info(series)")]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    SqliteUsageStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99'")
    db.commit()
    db.close()
    with pytest.raises(StoreIncompatible, match="newer"):
        SqliteUsageStore(path)


def tiled(values: st.SearchStrategy[int]) -> st.SearchStrategy[list[int]]:
    """A full chunk column from a short pattern (full-size random lists are too big for hypothesis)."""
    return st.lists(values, min_size=1, max_size=9).map(lambda p: (p * SLOTS)[:SLOTS])


cols = st.one_of(st.integers(0, 2**40), tiled(st.integers(0, 2**63)), tiled(st.integers(0, 300)))


@settings(max_examples=60, deadline=None)
@given(v=cols, r=cols, e=cols, written=tiled(st.booleans().map(int)))
def test_chunk_encoding_round_trips(
    v: int | list[int], r: int | list[int], e: int | list[int], written: list[int]
) -> None:
    flags = [PRESENT if w else 0 for w in written]
    ch = Chunk([v, r, e, flags])
    back = Chunk.decode(ch.encode())
    for i in range(4):
        assert back._list(i) == Chunk([v, r, e, flags])._list(i)


def test_masked_constant_columns_are_compact_and_exact() -> None:
    flags = [PRESENT] * 100 + [0] * (SLOTS - 100)
    ch = Chunk([array("I", [7] * SLOTS), [5000] * 100 + [0] * (SLOTS - 100), [5000] * 100 + [0] * (SLOTS - 100), flags])
    blob = ch.encode()
    assert len(blob) < 1 + 9 + 9 + 9 + 1 + SLOTS + 10  # value constant, received/expected masked
    back = Chunk.decode(blob)
    assert back.slice(0, 100) == (7, 5000, 5000, PRESENT)
    _v, r, _e, f = back.slice(90, 110)
    assert list(r) == [5000] * 10 + [0] * 10 and list(f) == [PRESENT] * 10 + [0] * 10


@given(
    st.lists(st.lists(st.integers(0, 2**32 - 1), min_size=5, max_size=5), min_size=1, max_size=12),
    st.sampled_from("BHI"),
)
def test_column_totals_narrow_lanes_are_exact(arrays: list[list[int]], typecode: str) -> None:
    limit = {"B": 255, "H": 65535, "I": 2**32 - 1}[typecode]
    arrays = [[min(x, limit) for x in a] for a in arrays]
    columns: list[int | array[int]] = [array(typecode, a) for a in arrays]
    assert column_totals(columns, 5) == [sum(col) for col in zip(*arrays, strict=True)]


@given(
    st.lists(st.lists(st.integers(0, 2**64 - 1), min_size=7, max_size=7), min_size=1, max_size=12), st.integers(0, 1000)
)
def test_column_totals_big_integer_lanes_are_exact(arrays: list[list[int]], const: int) -> None:
    columns = [array("Q", a) for a in arrays] + [const]
    assert column_totals(columns, 7) == [sum(col) + const for col in zip(*arrays, strict=True)]


def test_write_is_atomic_with_baselines(tmp_path: Path) -> None:
    s = SqliteUsageStore(tmp_path / "u.db", busy_timeout_s=0.1)
    s.write({(K, 0): Bucket(10, readings=1)}, {(K, 300): Bucket(5, readings=1)}, {"l1": "state-1"})
    other = sqlite3.connect(tmp_path / "u.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    with pytest.raises(StoreBusy, match="locked"):
        s.write({(K, 300): Bucket(5, readings=1)}, {(K, 600): Bucket(1, readings=1)}, {"l1": "state-2"})
    other.execute("ROLLBACK")
    assert s.load_baselines() == {"l1": "state-1"}
    assert list(s.load_open_buckets()) == [(K, 300)]
    m = s.month_series(0, 900)[K]
    assert sum(v if isinstance(v, int) else sum(v) for _, v, _, _, _ in m.segments.values()) == 15


def test_open_buckets_are_replaced_and_closed_ones_added(tmp_path: Path) -> None:
    s = SqliteUsageStore(tmp_path / "u.db")
    s.write({}, {(K, 0): Bucket(3, readings=1)}, {})
    s.write({(K, 0): Bucket(4, readings=1)}, {(K, 300): Bucket(1, readings=1)}, {})
    s.write({(K, 0): Bucket(2, readings=1)}, {}, {})  # a late correction adds to the closed bucket
    assert s.load_open_buckets() == {}
    seg = s.month_series(0, 600)[K].segments[0]
    assert seg[1][0] == 6 and seg[2][0] == 2000


def test_month_series_reads_open_buckets_and_expected_links(tmp_path: Path) -> None:
    s = SqliteUsageStore(tmp_path / "u.db")
    m = month_range("2026-10")
    record(s, poll_link("venissieux", "l1", m.start - 283, m.start + 3000, 300, lambda t: int(t)))
    silent = UsageKey("corbas", "c1", Quantity.TRAFFIC_IN)
    data = s.month_series(m.start, m.end, [silent])
    assert data[silent].segments == {}
    total = sum(v if isinstance(v, int) else sum(v) for _, v, _, _, _ in data[K].segments.values())
    assert total == 2717  # the last poll at start+2717; the part of the first interval before the month is not in it


def test_read_only_store_does_not_create_or_write(tmp_path: Path) -> None:
    with pytest.raises(StoreMissing):
        SqliteUsageStore(tmp_path / "absent.db", read_only=True)
    assert not (tmp_path / "absent.db").exists()
