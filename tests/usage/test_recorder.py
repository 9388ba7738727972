"""The recorder: non-blocking submit, periodic atomic flushes, retries while the database is locked."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from sitivmon.readings import PollBatch
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.indicators import usage_document
from sitivmon.usage.periods import month_range
from sitivmon.usage.recorder import UsageRecorder
from sitivmon.usage.store import SqliteUsageStore

from .support import communes, link_keys, pick, poll_link

V = "venissieux"
FAST = UsageSettings(flush_interval_s=0.05, busy_timeout_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
M = month_range("2026-10")


def counter(t: float) -> int:
    return int((t - M.start) * 1000) + int((t - M.start) ** 2) // 7


def volume(path: Path) -> int:
    with SqliteUsageStore(path, read_only=True) as s:
        doc = usage_document(s, communes(), M, link_keys(V, "l1"))
    value = pick(doc, V, "traffic_volume", "in")["value"]
    assert isinstance(value, int)
    return value


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


async def test_batches_are_committed_with_their_baselines(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    reg = CollectorRegistry()
    batches = list(poll_link(V, "l1", M.start + 1000, M.start + 5000, 60, counter))
    async with UsageRecorder(SqliteUsageStore(path), reg, FAST) as rec:
        for b in batches:
            rec.submit(b)
        assert await rec.flush()
        assert sample(reg, "sitivmon_usage_pending_batches") == 0
        assert sample(reg, "sitivmon_usage_last_write_timestamp_seconds") > time.time() - 60
        # each committed flush is timed (bench/capacity_bench.py reports them)
        assert sample(reg, "sitivmon_usage_flush_seconds_count") >= 1
        assert 0 < sample(reg, "sitivmon_usage_flush_seconds_sum") < 60
    assert volume(path) == counter(batches[-1].at) - counter(M.start + 1000)
    with SqliteUsageStore(path) as s:
        assert s.load_baselines() == batches[-1].baselines


async def test_restart_continues_open_buckets_without_double_counting(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    batches = list(poll_link(V, "l1", M.start + 1000, M.start + 9000, 70, counter))
    half = len(batches) // 2
    async with UsageRecorder(SqliteUsageStore(path), CollectorRegistry(), FAST) as rec:
        for b in batches[:half]:
            rec.submit(b)
    async with UsageRecorder(SqliteUsageStore(path), CollectorRegistry(), FAST) as rec:
        assert rec.load_baselines() == batches[half - 1].baselines
        for b in batches[half:]:
            rec.submit(b)
    assert volume(path) == counter(batches[-1].at) - counter(M.start + 1000)


async def test_locked_database_keeps_polling_and_catches_up(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    reg = CollectorRegistry()
    batches = list(poll_link(V, "l1", M.start + 1000, M.start + 20000, 60, counter))
    async with UsageRecorder(SqliteUsageStore(path, busy_timeout_s=0.05), reg, FAST) as rec:
        for b in batches[:50]:
            rec.submit(b)
        assert await rec.flush()
        committed = rec.load_baselines()
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the database
        slowest = 0.0
        for b in batches[50:200]:
            t = time.perf_counter()
            rec.submit(b)  # the poller is never held up
            slowest = max(slowest, time.perf_counter() - t)
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.3)
        assert slowest < 0.01
        assert sample(reg, "sitivmon_usage_write_errors_total", error="StoreBusy") >= 1
        assert sample(reg, "sitivmon_usage_pending_batches") == 150
        locker.execute("ROLLBACK")
        locker.close()
        with SqliteUsageStore(path, read_only=True) as ro:
            assert ro.load_baselines() == committed  # nothing half-written
        for b in batches[200:]:
            rec.submit(b)
        for _ in range(200):  # the writer retries with backoff and catches up
            if not sample(reg, "sitivmon_usage_pending_batches"):
                break
            await asyncio.sleep(0.05)
        assert sample(reg, "sitivmon_usage_pending_batches") == 0
    assert volume(path) == counter(batches[-1].at) - counter(M.start + 1000)


async def test_queue_bound_drops_and_counts(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    rec = UsageRecorder(SqliteUsageStore(tmp_path / "u.db"), reg, UsageSettings(max_queued_batches=3))
    for i in range(5):
        rec.submit(PollBatch("t", float(i), 60.0))  # the writer is not running: the queue fills
    assert sample(reg, "sitivmon_usage_dropped_batches_total") == 2
    assert sample(reg, "sitivmon_usage_pending_batches") == 3
