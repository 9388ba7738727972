"""The store survives SIGKILL mid-way (exact volume, downtime flagged) and a failing disk.

A real subprocess writes through the real recorder into a real SQLite file; the test kills it with
SIGKILL at arbitrary moments (often in the middle of a flush), restarts it, and checks that the
month's volume equals the counter's increase over the whole run, to the byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from sitivmon.usage.indicators import usage_document
from sitivmon.usage.periods import month_range
from sitivmon.usage.store import SqliteUsageStore

from .durable_writer import SIM_T0, SPEED, counter
from .support import communes, link_keys, pick

ROOT = Path(__file__).resolve().parents[2]


def start(db: Path, origin: float, until: float, first: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.usage.durable_writer",
            str(db),
            "--origin",
            str(origin),
            "--until",
            str(until),
            "--first",
            str(first),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def month_doc(db: Path) -> dict[str, object]:
    with SqliteUsageStore(db, read_only=True) as s:
        return usage_document(s, communes(), month_range("2026-10"), link_keys("venissieux", "l1"))


@pytest.mark.slow
def test_sigkill_mid_way_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    db, first = tmp_path / "usage.sqlite3", tmp_path / "first.json"
    origin = time.time()
    until = SIM_T0 + 7.0 * SPEED  # seven real seconds of simulated polling
    for kill_after in (1.23, 1.07, 0.91):  # three SIGKILLs, at moments unrelated to the flush period
        p = start(db, origin, until, first)
        time.sleep(kill_after)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert p.returncode == -signal.SIGKILL
        time.sleep(0.4)  # down for 4 simulated minutes
    p = start(db, origin, until, first)
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    with SqliteUsageStore(db, read_only=True) as s:
        last_t, last_c = json.loads(s.load_baselines()["l1"])
    first_t, first_c = json.loads(first.read_text())
    doc = month_doc(db)
    vin = pick(doc, "venissieux", "traffic_volume", "in")  # type: ignore[arg-type]
    assert vin["value"] == last_c - first_c == counter(last_t) - counter(first_t)
    reasons = {r for g in vin["gaps"] for r in g["reasons"]}
    assert "gap" in reasons  # the downtimes are flagged
    spans = [g for g in vin["gaps"] if "gap" in g["reasons"]]
    # three downtimes of >= 4 simulated minutes each (plus start-up time); close ones merge into one run
    assert spans and sum(g["buckets"] for g in spans) >= 3


@pytest.mark.slow
def test_disk_write_failures_are_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write to the database fail (EFBIG) for a while, like a full disk."""
    db, first = tmp_path / "usage.sqlite3", tmp_path / "first.json"
    origin = time.time()
    until = SIM_T0 + 4.0 * SPEED
    p = start(db, origin, until, first, "--fsize-fail", "10", "25")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] >= 1  # the failures were seen and counted
    assert report["pending"] == 0  # and everything was written after the disk came back
    with SqliteUsageStore(db, read_only=True) as s:
        _, last_c = json.loads(s.load_baselines()["l1"])
    _, first_c = json.loads(first.read_text())
    vin = pick(month_doc(db), "venissieux", "traffic_volume", "in")  # type: ignore[arg-type]
    assert vin["value"] == last_c - first_c
    assert vin["gaps"] == [] or all("gap" not in g["reasons"] for g in vin["gaps"])
    assert Decimal(vin["coverage"]) > 0
