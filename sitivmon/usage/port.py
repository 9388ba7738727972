"""The usage store port: what the recorder, the reports and the live gauges need from a store backend.

Why a port: the recorder (one writer, in the daemon), the month reports (`sitivmon usage`, `sitivmon
report`, the HTTP API) and the month-to-date gauges must not know which database holds the buckets.
A backend (SQLite today, `sitivmon.usage.store`; PostgreSQL next) implements `UsageStorePort`, is
built by `sitivmon.usage.backends.open_usage_store`, and reports its trouble only as the exceptions
below, so that callers never match a driver's exception types or message texts.

What a backend must guarantee (the contract tests in `tests/usage/test_store_contract.py` check it):

- `write` is atomic: the closed buckets, the open buckets and the counter baselines of one flush are
  all committed or none is. This is what makes a restart exact (module doc of `sitivmon.usage.store`).
- Closed buckets are *added* into what is stored (a late correction adds to a bucket, never replaces
  it), and so are spans, bucket for bucket as if they were closed buckets; open buckets are
  *replaced* as a set at each flush; baselines are upserted by subject.
- `month_series` reads one consistent snapshot (closed and open buckets together) and returns every
  known series plus the requested keys, with no segments where there is no data.
- A stored chunk that fails its checksum or does not decode is never turned into figures: readers
  raise `CorruptChunk`; `write`, which must go on recording, sets it aside and returns it.
- Errors: `StoreUnavailable` (cannot open, reach or write now: I/O, disk full, read-only, connection
  lost), `StoreBusy` (held by another writer: retry, the connection is sound), `StoreMissing` (a
  read-only open of a store that was never created), `StoreCorrupt` (damaged data), `StoreIncompatible`
  (a schema newer than this code, or not a usage store). Messages name the store by `location` and
  never carry a secret (a password in a connection string).
- Threads: a store object is used by one thread at a time (the recorder hands it to worker threads
  one flush at a time); backends must allow the call to come from any thread.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from sitivmon.readings import UsageKey

from .buckets import CHUNK_S, Bucket, Col, Span
from .periods import utc_iso

BucketKey = tuple[UsageKey, int]
"""A bucket's series and start (unix seconds, aligned on `periods.BUCKET_S`)."""

BucketMap = Mapping[BucketKey, Bucket]


# -- errors ------------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Anything a usage store backend reports. The message names the store (`location`), never a secret."""


class StoreUnavailable(StoreError):
    """The store cannot be opened, reached or written now (I/O error, disk full, read-only file,
    permissions, connection lost). Nothing of the failed operation was committed; the recorder keeps
    its data, reopens the store (`reopen`) and retries."""


class StoreBusy(StoreUnavailable):
    """Another writer holds the store (a lock wait timed out). The connection itself is sound: retry
    without reopening (reopening a busy store only adds work)."""


class StoreMissing(StoreUnavailable):
    """A read-only open found no store at all: nothing was ever recorded there. Reports read it as a
    month without data; the live gauges as an error once they have seen the store exist."""


class StoreCorrupt(StoreError):
    """Stored data is damaged (a malformed database, a chunk that fails its checksum). Figures are
    never computed from it."""


class StoreIncompatible(StoreError):
    """The store's schema is newer than this sitivmon, or the store is not a usage store at all."""


class CorruptChunk(StoreCorrupt):
    """A stored chunk fails its checksum or does not decode; `where` names the series and the week.

    Raised by readers (a report must not use it); returned by `write` when the writer set the chunk
    aside to go on recording (the caller logs and counts it).
    """

    def __init__(self, location: str, key: UsageKey | None, week: int, reason: str) -> None:
        series = f"{key.commune}/{key.subject}/{key.quantity.value}" if key else "unknown series"
        self.key, self.week, self.reason = key, week, reason
        self.where = f"{series} buckets {utc_iso(week * CHUNK_S)}..{utc_iso((week + 1) * CHUNK_S)}"
        super().__init__(f"{location}: corrupt usage chunk ({reason}) for {self.where}")


# -- values ------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class StoreIncident:
    """Something found (and repaired) by `check`: the store under the running daemon is not the one
    it opened. The recorder logs `message` as an error and counts `event`."""

    event: str
    """Label of `sitivmon_usage_store_file_events_total`: `deleted` or `replaced` (SQLite)."""
    message: str
    """What happened, what was done about it, what the operator should find out."""


# -- the port ----------------------------------------------------------------------------------------------


class UsageReader(Protocol):
    """The read-only view: what reports and live gauges need (`indicators.usage_document`, `lead_in`)."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (a file path; a database name without credentials)."""
        ...

    def month_series(self, start: int, end: int, keys: Iterable[UsageKey] = ()) -> dict[UsageKey, SeriesMonth]:
        """Every series with its buckets in [start, end), closed chunks overlaid with open buckets,
        read in one snapshot. Every known series is returned (no segments when it has no data in the
        range), and so are `keys` not yet in the store, so that a configured but silent link shows
        with coverage 0. Raises `CorruptChunk` rather than compute from a damaged chunk."""
        ...

    def close(self) -> None:
        """Release the connection; idempotent. A closed store may be opened again (`open`)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None: ...


class UsageStorePort(UsageReader, Protocol):
    """A usage store: the recorder's writer side plus the read-only view.

    Built by `sitivmon.usage.backends.open_usage_store`; with `connect=False` nothing is opened until
    `open`, so that the daemon starts without a usable store and the recorder retries.
    """

    @property
    def is_open(self) -> bool:
        """True while connected (after `open`, until `close` or a failed `reopen`)."""
        ...

    def open(self) -> None:
        """Connect (creating and migrating the store if it is writable and new) unless connected.
        Raises `StoreUnavailable`, `StoreCorrupt` or `StoreIncompatible`; the store stays closed."""
        ...

    def reopen(self) -> None:
        """Drop the connection and connect again: after a failure the old connection may be unusable
        (an I/O error, a file that was read-only). Raises like `open`."""
        ...

    def check(self) -> StoreIncident | None:
        """Before each flush: is the open store still the one at its location? Repairs what it can
        (SQLite: a file deleted under the daemon is rebuilt from the open handle, a replaced file is
        adopted) and says what it found; None when all is well. Raises `StoreUnavailable` when the
        repair fails."""
        ...

    def write(
        self,
        closed: BucketMap,
        open_buckets: BucketMap,
        baselines: Mapping[str, str],
        *,
        now: float | None = None,
        spans: Sequence[Span] = (),
    ) -> list[CorruptChunk]:
        """Persist one flush atomically: `closed` buckets added into what is stored, the complete
        current set of `open_buckets` (replacing the previous set) and the counter `baselines`
        (opaque states by subject, stamped `now`, default the clock).

        `spans` (long unobserved intervals, `buckets.Span`) are added like the closed buckets they
        stand for, run by run into their week chunks, never expanded into buckets all at once: what
        is stored and read is what writing each of their buckets in `closed` would give.

        Returns the stored chunks found corrupt and set aside (the week restarts from `closed`).
        Raises `StoreBusy`/`StoreUnavailable`/... with nothing written: the caller keeps its data
        and retries.
        """
        ...

    def month_series_batches(
        self, start: int, end: int, keys: Iterable[UsageKey] = (), *, batch: int = 1000
    ) -> Generator[dict[UsageKey, SeriesMonth], None, None]:
        """What `month_series` returns, in pieces of about `batch` series read in one snapshot: every
        series (and every key of `keys` not in the store) in exactly one piece. Why: a caller that
        folds the month series by series (the month-to-date gauges, issue 15) then holds one piece of
        decoded weeks at a time instead of every series of the month. A backend may yield fewer,
        larger pieces (all of it in one: correct, only not bounded in memory). The caller exhausts
        or closes the iterator before closing the store."""
        ...

    def week_stamps(self, start: int, end: int) -> dict[int, bytes]:
        """A stamp for each week (unix seconds // `CHUNK_S`) overlapping [start, end): a digest of
        everything stored for that week (its chunks, pending closed and open buckets, every replica's),
        read in one snapshot. Equal stamps mean the week reads the same; any write that changes what
        `month_series` gives for it (a bucket added, a late correction, a chunk rewritten by compaction)
        changes its stamp. Why: the month-to-date refresh keeps its scans of a week while the stamp
        stays (issue 15: re-reading unchanged weeks was most of a refresh's CPU). A stamp is only
        compared with another one of the same store; what it is made of is the backend's business."""
        ...

    def load_baselines(self) -> dict[str, str]:
        """Counter states committed with the last flush, by subject (seed for the poller's normaliser)."""
        ...

    def load_open_buckets(self) -> dict[BucketKey, Bucket]:
        """The open buckets of the last flush, to go on accumulating them after a restart."""
        ...
