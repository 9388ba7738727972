"""The recorder's error boundary and the store's defences, with the real recorder, store and SQLite:
absurd device values (issue 10, symptom 1), a database deleted under the daemon (issue 11, item 8)
and corrupted chunk blobs (issue 11, item 10)."""

from __future__ import annotations

import logging
import math
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sitivmon.readings import CounterInterval, Flag, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.indicators import usage_document
from sitivmon.usage.periods import month_range
from sitivmon.usage.port import CorruptChunk
from sitivmon.usage.recorder import UsageRecorder, vet_batch
from sitivmon.usage.store import SqliteUsageStore
from tests.support import agents

from .support import communes, link_keys, pick, poll_link, record

M = month_range("2026-10")
T0 = M.start + 1000
V, G = "venissieux", "givors"
KIN = UsageKey(V, "l1", Quantity.TRAFFIC_IN)
KUP = UsageKey(V, "l1", Quantity.LINK_UP)
KCPU = UsageKey(V, "vm1", Quantity.VCPUS)
UNKNOWN = frozenset({Flag.UNKNOWN})


def settings() -> UsageSettings:
    return UsageSettings(flush_interval_s=0.05, busy_timeout_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)


def counter(t: float) -> int:
    return int((t - M.start) * 1000)


def doc(path: Path, *links: tuple[str, str]) -> dict[str, object]:
    keys = [k for c, link in links for k in link_keys(c, link)]
    with SqliteUsageStore(path, read_only=True) as s:
        return usage_document(s, communes(), M, keys)


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


# --- vetting: what enters the accumulator ----------------------------------------------------------------


def batch(counters: tuple[CounterInterval, ...] = (), gauges: tuple[GaugeReading, ...] = ()) -> PollBatch:
    return PollBatch("dev", T0 + 60, 60.0, counters, gauges, {"l1": "x"})


@pytest.mark.parametrize(
    ("counter_in", "kept_delta", "kept_flags", "reason"),
    [
        (CounterInterval(KIN, T0, T0 + 60, 12_345), 12_345, frozenset(), None),
        (CounterInterval(KIN, T0, T0 + 60, 0), 0, frozenset(), None),
        (CounterInterval(KIN, T0, T0 + 60, 2**64 - 1), 0, frozenset({Flag.UNKNOWN}), "usage_delta_implausible"),
        (CounterInterval(KIN, T0, T0 + 60, 2**63), 0, frozenset({Flag.UNKNOWN}), "usage_delta_implausible"),
        (CounterInterval(KIN, T0, T0 + 60, -5), 0, frozenset({Flag.UNKNOWN}), "usage_delta_negative"),
        (CounterInterval(KIN, T0, T0 + 60, 1.5), 0, frozenset({Flag.UNKNOWN}), "usage_delta_not_integer"),  # type: ignore[arg-type]
        # 10 Tbit/s for a minute is beyond MAX_RATE; 100 Gbit/s over a day-long gap is not
        (CounterInterval(KIN, T0, T0 + 60, 1_250_000_000_000 * 60), 0, UNKNOWN, "usage_delta_implausible"),
        (CounterInterval(KIN, T0, T0 + 86_400, 12_500_000_000 * 86_400), 12_500_000_000 * 86_400, frozenset(), None),
        (CounterInterval(KIN, T0, math.inf, 5), None, None, "usage_bad_time"),
        (CounterInterval(KIN, math.nan, T0, 5), None, None, "usage_bad_time"),
        (CounterInterval(KIN, T0 + 60, T0, 5), None, None, "usage_bad_time"),
        (CounterInterval(KIN, -1.0, T0, 5), None, None, "usage_bad_time"),
    ],
)
def test_vet_counter_table(
    counter_in: CounterInterval, kept_delta: int | None, kept_flags: frozenset[Flag] | None, reason: str | None
) -> None:
    out, anomalies = vet_batch(batch(counters=(counter_in,)))
    assert [a.reason for a in anomalies] == ([reason] if reason else [])
    if kept_delta is None:
        assert out.counters == ()
    else:
        (c,) = out.counters
        assert (c.delta, c.flags, c.start, c.end) == (kept_delta, kept_flags, counter_in.start, counter_in.end)
    assert out.baselines == {"l1": "x"}  # the baseline always advances


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (KUP, 1.0, None),
        (KCPU, 4.0, None),
        (KUP, math.nan, "usage_gauge_not_finite"),
        (KUP, math.inf, "usage_gauge_not_finite"),
        (KUP, -math.inf, "usage_gauge_not_finite"),
        (KUP, 1e300, "usage_gauge_implausible"),
        (KCPU, 2.0**50, "usage_gauge_implausible"),  # times 1000 for milli-vCPUs
        (KUP, float(2**52), None),
    ],
)
def test_vet_gauge_table(key: UsageKey, value: float, reason: str | None) -> None:
    out, anomalies = vet_batch(batch(gauges=(GaugeReading(key, T0 + 60, value),)))
    assert [a.reason for a in anomalies] == ([reason] if reason else [])
    assert len(out.gauges) == (0 if reason else 1)


async def test_one_absurd_value_keeps_every_other_commune_and_the_writer(tmp_path: Path) -> None:
    """Before: the flush raised OverflowError (not a database error) and the writer task died with
    every commune's pending buckets; the same delta failed again after a restart."""
    path = tmp_path / "u.db"
    reg = CollectorRegistry()
    good = list(poll_link(G, "g1", T0, T0 + 3000, 60, counter))
    bad_key = UsageKey(V, "l1", Quantity.TRAFFIC_IN)
    async with UsageRecorder(SqliteUsageStore(path), reg, settings()) as rec:
        for b in good[:25]:
            rec.submit(b)
        rec.submit(
            PollBatch(
                "odd",
                T0 + 1500,
                60.0,
                (CounterInterval(bad_key, T0 + 1440, T0 + 1500, 2**64 - 1),),
                (GaugeReading(UsageKey(V, "l1", Quantity.LINK_UP), T0 + 1500, math.nan),),
                {"l1": "after-the-bad-value"},
            )
        )
        for b in good[25:]:
            rec.submit(b)
        assert await rec.flush()
        assert sample(reg, "sitivmon_usage_rejected_values_total", target="odd", reason="usage_delta_implausible") == 1
        assert sample(reg, "sitivmon_usage_rejected_values_total", target="odd", reason="usage_gauge_not_finite") == 1
        assert sample(reg, "sitivmon_usage_pending_batches") == 0
    d = doc(path, (G, "g1"), (V, "l1"))
    assert pick(d, G, "traffic_volume", "in")["value"] == counter(good[-1].at) - counter(T0)
    vin = pick(d, V, "traffic_volume", "in")
    assert vin["value"] == 0 and vin["detail"]["flagged_buckets"].get("unknown", 0) >= 1
    with SqliteUsageStore(path) as s:  # the baseline moved past the value: a restart does not meet it again
        assert s.load_baselines()["l1"] == "after-the-bad-value"


# --- a database deleted under the running recorder --------------------------------------------------------


@pytest.mark.parametrize("removed", [("u.db", "u.db-wal", "u.db-shm"), ("u.db",)])
async def test_deleted_database_is_rebuilt_at_its_path_with_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, removed: tuple[str, ...]
) -> None:
    """Before: writes went on into the unlinked inode, nothing was logged or counted, the path stayed
    empty and a restart (or any reader) found nothing."""
    path = tmp_path / "u.db"
    reg = CollectorRegistry()
    batches = list(poll_link(V, "l1", T0, T0 + 6000, 60, counter))
    async with UsageRecorder(SqliteUsageStore(path), reg, settings()) as rec:
        for b in batches[:50]:
            rec.submit(b)
        assert await rec.flush()
        for name in removed:
            os.unlink(tmp_path / name)  # `rm usage.sqlite3*` (or the main file only) while the daemon runs
        for b in batches[50:]:
            rec.submit(b)
        with caplog.at_level(logging.ERROR, logger="sitivmon.usage.recorder"):
            assert await rec.flush()
        assert path.exists()
        assert sample(reg, "sitivmon_usage_store_file_events_total", event="deleted") == 1
        assert any("DELETED" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
        assert await rec.flush()  # the next flush finds the file it wrote: no second event
        assert sample(reg, "sitivmon_usage_store_file_events_total", event="deleted") == 1
    d = doc(path, (V, "l1"))
    assert pick(d, V, "traffic_volume", "in")["value"] == counter(batches[-1].at) - counter(T0)
    with SqliteUsageStore(path) as s:
        assert s.load_baselines() == batches[-1].baselines


# --- corrupted chunk blobs -------------------------------------------------------------------------------


def closed_week(tmp_path: Path) -> Path:
    """A store with closed buckets for venissieux/l1 (several chunk rows)."""
    path = tmp_path / "u.db"
    with SqliteUsageStore(path) as s:
        record(s, poll_link(V, "l1", T0, T0 + 20_000, 60, counter))
    return path


def corrupt_one_blob(path: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    sid = db.execute("SELECT id FROM series WHERE subject='l1' AND quantity='traffic_in'").fetchone()[0]
    week, data = db.execute("SELECT week, data FROM chunk WHERE series_id=? ORDER BY week DESC", (sid,)).fetchone()
    blob = bytearray(data)
    for _ in range(8):  # random bytes in the middle of the value column
        blob[rng.randrange(20, len(blob))] = rng.randrange(256)
    db.execute("UPDATE chunk SET data=? WHERE week=? AND series_id=?", (bytes(blob), week, sid))
    db.commit()
    db.close()


def test_corrupt_chunk_is_refused_with_its_location(tmp_path: Path) -> None:
    """Before: random bytes in a blob were decoded into figures (1.05e22 bytes for a commune)."""
    path = closed_week(tmp_path)
    corrupt_one_blob(path)
    with pytest.raises(CorruptChunk) as info, SqliteUsageStore(path, read_only=True) as s:
        usage_document(s, communes(), M, link_keys(V, "l1"))
    msg = str(info.value)
    assert "venissieux/l1/traffic_in" in msg and "checksum" in msg and str(path) in msg
    assert "2026-" in msg  # the week's bucket range


def test_rows_written_without_a_checksum_are_still_read(tmp_path: Path) -> None:
    """Schema 1 rows (crc NULL) keep their figures after the migration."""
    path = closed_week(tmp_path)
    expected = pick(doc(path, (V, "l1")), V, "traffic_volume", "in")["value"]
    db = sqlite3.connect(path)
    db.execute("UPDATE chunk SET crc=NULL")
    db.commit()
    db.close()
    assert pick(doc(path, (V, "l1")), V, "traffic_volume", "in")["value"] == expected


def test_version_1_store_migrates_and_keeps_reading(tmp_path: Path) -> None:
    path = closed_week(tmp_path)
    expected = pick(doc(path, (V, "l1")), V, "traffic_volume", "in")["value"]
    db = sqlite3.connect(path)  # make it a schema 1 file again, as an older sitivmon wrote it
    db.execute("DROP TABLE chunk_corrupt")
    db.execute("DROP TABLE closed_bucket")
    db.execute("ALTER TABLE chunk DROP COLUMN crc")
    db.execute("UPDATE meta SET value='1'")
    db.commit()
    db.close()
    assert pick(doc(path, (V, "l1")), V, "traffic_volume", "in")["value"] == expected  # read-only, unmigrated
    with SqliteUsageStore(path) as s:
        assert s.schema_version() == 3
    assert pick(doc(path, (V, "l1")), V, "traffic_volume", "in")["value"] == expected


async def test_writer_sets_a_corrupt_chunk_aside_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    reg = CollectorRegistry()
    batches = list(poll_link(V, "l1", T0, T0 + 20_000, 60, counter))
    async with UsageRecorder(SqliteUsageStore(path), reg, settings()) as rec:
        for b in batches[:200]:
            rec.submit(b)
        assert await rec.flush()
        corrupt_one_blob(path)
        for b in batches[200:]:
            rec.submit(b)
        assert await rec.flush()
        assert sample(reg, "sitivmon_usage_corrupt_chunks_total") == 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM chunk_corrupt").fetchone()[0] == 1
    db.close()
    vin = pick(doc(path, (V, "l1")), V, "traffic_volume", "in")  # no nonsense: only what is known
    assert 0 < vin["value"] <= counter(batches[-1].at) - counter(T0)



def test_usage_command_refuses_a_corrupt_chunk_with_its_location(tmp_path: Path) -> None:
    """Before: the command printed figures computed from the random bytes."""
    state = tmp_path / "state"
    state.mkdir()
    path = closed_week(tmp_path)
    os.replace(path, state / "usage.sqlite3")
    corrupt_one_blob(state / "usage.sqlite3")
    config = agents.write_config(tmp_path / "sitivmon.yaml", agents.base_config(state))
    r = subprocess.run(
        [sys.executable, "-m", "sitivmon", "usage", "--config", str(config), "--month", "2026-10"],
        capture_output=True,
        text=True,
        cwd=agents.REPO,
        env=agents._clean_env(None),
        timeout=60,
    )
    assert r.returncode == 1, (r.stdout[-500:], r.stderr[-2000:])
    assert "venissieux/l1/traffic_in" in r.stderr and "checksum" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


# --- a store that cannot be opened --------------------------------------------------------------------


def malformed(path: Path) -> None:
    """A real store whose b-tree pages were overwritten: the header still says SQLite."""
    with SqliteUsageStore(path) as s:
        record(s, poll_link(V, "l1", T0, T0 + 20_000, 60, counter))
        s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(random.Random(3).randbytes(path.stat().st_size - 4096))


@pytest.mark.parametrize("damage", ["garbage", "malformed"])
async def test_store_that_cannot_be_opened_buffers_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """Before: SqliteUsageStore(...) raised at start (the daemon died with a traceback naming no file)."""
    path = tmp_path / "u.db"
    if damage == "garbage":
        path.write_bytes(random.Random(5).randbytes(65536))
    else:
        malformed(path)
    reg = CollectorRegistry()
    batches = list(poll_link(G, "g1", T0, T0 + 3000, 60, counter))
    with caplog.at_level(logging.ERROR, logger="sitivmon.usage.recorder"):
        rec = UsageRecorder(SqliteUsageStore(path, connect=False), reg, settings())
    assert [r for r in caplog.records if str(path) in r.getMessage() and "cannot be opened" in r.getMessage()]
    assert sample(reg, "sitivmon_usage_store_up") == 0
    assert rec.load_baselines() == {}
    async with rec:
        for b in batches[:20]:
            rec.submit(b)
        assert not await rec.flush()
        assert sample(reg, "sitivmon_usage_pending_batches") == 20
        assert sample(reg, "sitivmon_usage_store_up") == 0
        os.replace(path, tmp_path / "u.db.bad")  # the operator moves it aside
        for b in batches[20:]:
            rec.submit(b)
        assert await rec.flush()
        assert sample(reg, "sitivmon_usage_store_up") == 1
        assert sample(reg, "sitivmon_usage_pending_batches") == 0
    assert pick(doc(path, (G, "g1")), G, "traffic_volume", "in")["value"] == counter(batches[-1].at) - counter(T0)


async def test_buffer_is_bounded_while_the_store_is_away(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    path.write_bytes(b"not a database" * 100)
    reg = CollectorRegistry()
    s = UsageSettings(flush_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.2, max_queued_batches=30)
    async with UsageRecorder(SqliteUsageStore(path, connect=False), reg, s) as rec:
        for b in list(poll_link(G, "g1", T0, T0 + 6000, 60, counter)):
            rec.submit(b)
            await rec.flush()  # folded into memory, not committed
        assert sample(reg, "sitivmon_usage_pending_batches") == 30
        assert sample(reg, "sitivmon_usage_dropped_batches_total") == 100 - 30
