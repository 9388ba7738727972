"""Where a usage store backend is chosen: the one factory every caller uses.

The daemon (the recorder's store), the live gauges, `sitivmon usage` and the reports all open the
store here, from the `usage:` settings and the state directory, so that a backend is added in one
place: a value of `UsageSettings.store`, a branch below, and the contract tests' parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path

from sitivmon.filestamp import file_stamp

from .config import UsageSettings
from .port import UsageStorePort
from .postgres import PostgresUsageStore, postgres_change_stamp
from .store import COMPACT_EVERY, SqliteUsageStore

UsageStoreFactory = Callable[[], UsageStorePort]
"""Opens a fresh read-only store each call (the live gauges open one per refresh, then close it)."""


def open_usage_store(
    settings: UsageSettings,
    state_dir: Path,
    *,
    read_only: bool = False,
    connect: bool = True,
    writer: str = "",
    replica: str = "",
) -> UsageStorePort:
    """The configured usage store.

    `read_only`: never creates, migrates or writes (reports, live gauges); a store never created
    raises `StoreMissing`. `connect=False`: nothing is opened before `open()` (the daemon starts
    without a usable store and the recorder retries). `writer`: this daemon's shard among several writing
    one PostgreSQL store (SQLite has one writer); `replica`: this daemon's name in a replica pair of
    that shard. Raises the port's exceptions.
    """
    if settings.store == "sqlite":
        return SqliteUsageStore(
            Path(state_dir) / settings.db_filename,
            busy_timeout_s=settings.busy_timeout_s,
            read_only=read_only,
            connect=connect,
            compact_every=COMPACT_EVERY,
        )
    if settings.store == "postgresql":
        assert settings.dsn is not None  # UsageSettings refuses postgresql without a DSN
        return PostgresUsageStore(
            settings.dsn,
            busy_timeout_s=settings.busy_timeout_s,
            read_only=read_only,
            connect=connect,
            writer=writer,
            replica=replica,
            compact_every=COMPACT_EVERY,
        )
    raise AssertionError(f"unknown usage store backend {settings.store!r}")  # pragma: no cover (Literal)


def usage_reader_factory(settings: UsageSettings, state_dir: Path) -> UsageStoreFactory:
    """A factory of read-only stores, for readers that open one per use (the live gauges)."""
    return lambda: open_usage_store(settings, state_dir, read_only=True)


def usage_change_stamp(settings: UsageSettings, state_dir: Path) -> Hashable:
    """A cheap value that changes whenever the store's content may have changed, without opening it
    (the report cache's key). SQLite: the identity, size and mtime of the file and its WAL (every
    commit goes to the WAL first)."""
    if settings.store == "sqlite":
        path = Path(state_dir) / settings.db_filename
        return tuple(file_stamp(p) for p in (path, path.with_name(path.name + "-wal")))
    if settings.store == "postgresql":
        assert settings.dsn is not None
        return postgres_change_stamp(settings.dsn)
    raise AssertionError(f"unknown usage store backend {settings.store!r}")  # pragma: no cover (Literal)
