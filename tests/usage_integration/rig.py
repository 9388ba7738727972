"""What the usage integration tests share, built on the project's rigs (tests/support/agents.py, the
`netns_snmp` and `start_daemon` fixtures of tests/conftest.py): the truth (kernel byte counters of the
agent-side veth), the measured (the month's `traffic_volume` printed by the real `sitivmon usage`
command), and the waits that make comparing them exact instead of approximately right.

Why exactness is possible: the lab's data link carries nothing but what the test sends (IPv6 off, no
other address on it), and snmpd's interface cache is off, so a poll reads the kernel's counters as
they are. A poll read a given kernel state for sure when the kernel did not move across two whole
polls; a flush committed that poll for sure when it is the second flush to complete after the poll
was seen (the first may have taken its snapshot just before).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sitivmon.agents.netns import DataLink, Lab
from tests.support import agents
from tests.support.procs import require_binary

TARGET = "agent"
COMMUNE_LINK = "givors-eth1"  # side=commune on eth1: eth1 receives = givors receives (`in`)
CORE_LINK = "grigny-eth1-core"  # side=core on the same eth1: eth1 transmits = grigny receives (`in`)
TIMEZONE = "Europe/Paris"  # the configuration's default, which base_config keeps
DB = "usage.sqlite3"

WRITE_ERRORS = "sitivmon_usage_write_errors_total"
PENDING = "sitivmon_usage_pending_batches"
LAST_WRITE = "sitivmon_usage_last_write_timestamp_seconds"


def usage_config(state_dir: Path, agent: agents.NetnsAgent, **usage: Any) -> dict[str, Any]:
    """The daemon polling the lab's snmpd every second (no jitter), both orientations on eth1, and the
    usage recorder flushing every 0.5 s unless `usage` says otherwise; the live gauges recomputed at
    every scrape so that they can be compared with the command."""
    settings: dict[str, Any] = {"flush_interval_s": 0.5, "live_refresh_s": 0, **usage}
    doc = agents.base_config(state_dir, usage=settings)
    agents.add_target(doc, TARGET, agent.address, "v2c", {"version": "2c", "community": agent.agent.community})
    agents.add_link(doc, COMMUNE_LINK, "givors", TARGET, name="eth1", side="commune")
    agents.add_link(doc, CORE_LINK, "grigny", TARGET, name="eth1", side="core")
    return doc


# --- metrics ------------------------------------------------------------------------------------------


def total(m: agents.Metrics, name: str) -> float:
    """Sum of a family's samples over all label sets (0 when absent)."""
    return sum(m.series(name).values())


def last_write(m: agents.Metrics) -> float:
    return m.value(LAST_WRITE) or 0.0


def pending(m: agents.Metrics) -> float:
    return m.value(PENDING) or 0.0


def first_poll(daemon: agents.DaemonProcess) -> agents.Metrics:
    return daemon.wait_for(
        lambda m: m.value("sitivmon_target_up", target=TARGET) == 1 and daemon.last_success(TARGET, m) > 0,
        "the first successful poll",
        timeout=15,
    )


def wait_flushes(daemon: agents.DaemonProcess, count: int = 2, timeout: float = 15.0) -> agents.Metrics:
    """Wait for `count` flushes to complete after now. Everything submitted before this call is then
    committed: the second flush took its snapshot after the first had completed, that is after now
    (polls submit their batch in the same event-loop step that updates their /metrics)."""
    m = daemon.metrics()
    after = time.time()
    for i in range(count):

        def flushed(m: agents.Metrics, a: float = after) -> bool:
            return last_write(m) > a

        m = daemon.wait_for(flushed, f"usage flush {i + 1}/{count} after {after:.3f}", timeout)
        after = last_write(m)
    return m


def settle(lab: Lab, daemon: agents.DaemonProcess, link: str = "eth1", attempts: int = 20) -> tuple[int, int]:
    """The kernel's (rx, tx) of `link` once it stopped moving, read by the daemon's latest poll."""
    for _ in range(attempts):
        k = lab.kernel_bytes(link)
        daemon.wait_polls(TARGET, 2)
        if lab.kernel_bytes(link) == k:
            return k
    raise AssertionError(f"{link} never went quiet")


def quiet_baseline(lab: Lab, daemon: agents.DaemonProcess, before: tuple[int, int], link: str = "eth1") -> None:
    """Check that the daemon's first poll (the usage baseline) read `before`, the kernel's counters
    taken before the daemon started: they have not moved since, across the first poll and the next."""
    first_poll(daemon)
    daemon.wait_polls(TARGET, 1)
    now = lab.kernel_bytes(link)
    assert now == before, (
        f"{link} moved before any traffic was sent ({before} -> {now}): the baseline is unknown, the link is not quiet"
    )


# --- traffic ------------------------------------------------------------------------------------------


def burst(lab: Lab, link: DataLink, n: int = 1) -> None:
    """Traffic both ways: the peer sends to the agent (eth1 rx; the closed port also makes the agent
    answer ICMP, some eth1 tx), and the agent sends to the peer (eth1 tx)."""
    for i in range(n):
        lab.send_udp(link, 1000 + 37 * i, 40, to_agent=True)
        lab.send_udp(link, 600 + 11 * i, 25, to_agent=False)


@dataclass
class Traffic:
    """Bursts in a background thread until stopped: traffic that does not care what the daemon does."""

    lab: Lab
    link: DataLink
    pause_s: float = 0.05
    bursts: int = 0
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                burst(self.lab, self.link)
                self.bursts += 1
                self._stop.wait(self.pause_s)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.error is not None:
            raise AssertionError(f"sending traffic failed: {self.error}") from self.error
        assert self.bursts > 0, "no traffic was sent"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


# --- the command --------------------------------------------------------------------------------------


def month_label(t: float) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(TIMEZONE)).strftime("%Y-%m")


def usage_json(config: Path, month: str) -> dict[str, Any]:
    """`python -m sitivmon usage --config F --month M --format json`, parsed with Decimal floats."""
    r = subprocess.run(
        [sys.executable, "-m", "sitivmon", "usage", "--config", str(config), "--month", month, "--format", "json"],
        capture_output=True,
        text=True,
        cwd=agents.REPO,
        env=agents._clean_env(None),
        timeout=60,
    )
    assert r.returncode == 0, f"sitivmon usage exited {r.returncode}:\n{r.stderr}"
    doc: dict[str, Any] = json.loads(r.stdout, parse_float=Decimal)
    assert doc["month"] == month and doc["timezone"] == TIMEZONE, (doc["month"], doc["timezone"])
    return doc


def traffic_rows(doc: dict[str, Any], commune: str) -> dict[str, dict[str, Any]]:
    """The commune's traffic_volume rows of one month's document, by direction."""
    rows = {
        i["direction"]: i for i in doc["indicators"] if i["commune"] == commune and i["indicator"] == "traffic_volume"
    }
    assert set(rows) == {"in", "out"}, f"traffic_volume rows of {commune}: {sorted(rows)}"
    return rows


@dataclass(frozen=True, slots=True)
class Volumes:
    """Month-to-date traffic_volume per (commune, direction), summed over the months the test spanned
    (one, unless it ran across midnight at the end of a month), and each month's documents."""

    values: dict[tuple[str, str], int]
    docs: list[dict[str, Any]]

    def gaps(self, commune: str) -> list[dict[str, Any]]:
        return [g for d in self.docs for row in traffic_rows(d, commune).values() for g in row["gaps"]]

    def flagged(self, commune: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.docs:
            for row in traffic_rows(d, commune).values():
                for k, v in row["detail"].get("flagged_buckets", {}).items():
                    out[k] = out.get(k, 0) + v
        return out


def volumes(config: Path, since: float) -> Volumes:
    months = sorted({month_label(since), month_label(time.time())})
    docs = [usage_json(config, m) for m in months]
    values: dict[tuple[str, str], int] = {}
    for d in docs:
        for commune, _, _ in agents.COMMUNES:
            for direction, row in traffic_rows(d, commune).items():
                assert type(row["value"]) is int, f"traffic_volume must be a JSON integer: {row['value']!r}"
                assert row["unit"] == "bytes"
                values[(commune, direction)] = values.get((commune, direction), 0) + row["value"]
    return Volumes(values, docs)


def expected(k0: tuple[int, int], k1: tuple[int, int]) -> dict[tuple[str, str], int]:
    """What the volumes must be: eth1's kernel deltas in each link's orientation, 0 elsewhere."""
    rx, tx = k1[0] - k0[0], k1[1] - k0[1]
    out = {(c, d): 0 for c, _, _ in agents.COMMUNES for d in ("in", "out")}
    out |= {("givors", "in"): rx, ("givors", "out"): tx, ("grigny", "in"): tx, ("grigny", "out"): rx}
    return out


def exact_volumes(
    lab: Lab, daemon: agents.DaemonProcess, config: Path, since: float, attempts: int = 5
) -> tuple[tuple[int, int], Volumes]:
    """Kernel counters read by a committed poll, and the command's volumes read while the kernel still
    held them (a late ARP probe after the traffic would otherwise make the two disagree by its size)."""
    for _ in range(attempts):
        k = settle(lab, daemon)
        wait_flushes(daemon)
        v = volumes(config, since)
        if lab.kernel_bytes("eth1") == k:
            return k, v
    raise AssertionError("eth1 kept moving after the traffic stopped")


def live_volume(m: agents.Metrics, commune: str, direction: str) -> float | None:
    return m.value(
        "sitivmon_usage_month_to_date", commune=commune, indicator="traffic_volume", direction=direction, unit="bytes"
    )


# --- a database file that is really read-only for the running daemon -----------------------------------------


def chattr(flag: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True)


def immutable_blocks_open_writers(directory: Path) -> str | None:
    """None when `chattr +i` on this file system refuses writes through a descriptor opened before
    (ext4 does, EPERM), else why not."""
    probe = directory / ".immutable-probe"
    with open(probe, "ab", buffering=0) as f:
        r = chattr("+i", probe)
        if r.returncode != 0:
            probe.unlink()
            return f"chattr +i not supported here: {r.stderr.strip()}"
        try:
            f.write(b"x")
            reason: str | None = "chattr +i does not stop writes through an open descriptor here"
        except PermissionError:
            reason = None
        finally:
            chattr("-i", probe)
    probe.unlink()
    return reason


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def immutable_capable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a file system where `chattr +i` revokes write access from open descriptors:
    tmp_path itself when it is one (ext4), else a small ext4 image loop-mounted under tmp_path."""
    require_binary("chattr")
    here = tmp_path / "ro-state"
    here.mkdir()
    if immutable_blocks_open_writers(here) is None:
        yield here
        return
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            _skip_or_fail(f"{tool} needed for an ext4 loop mount (the file system of {tmp_path} ignores chattr +i)")
    image, mnt = tmp_path / "ext4.img", tmp_path / "ext4"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    r = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    if r.returncode == 0:
        r = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        _skip_or_fail(f"no ext4 loop mount here ({r.stderr.strip()}), and {tmp_path} ignores chattr +i")
    try:
        reason = immutable_blocks_open_writers(mnt)
        if reason is not None:
            _skip_or_fail(f"ext4 loop mount: {reason}")
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@contextlib.contextmanager
def read_only_database(state_dir: Path) -> Iterator[list[Path]]:
    """Make the store unwritable for everyone, root and descriptors already open included: mode 0444
    (what an operator would do; root ignores it) and the immutable attribute on the database file and
    its write-ahead log (in WAL mode a commit writes the log; the main file only at checkpoints). The
    shared-memory index is left alone: it is mmapped, and the daemon only reads through it for this.
    Undone on exit, whatever happened (pytest could not even delete an immutable file)."""
    files = [p for p in (state_dir / DB, state_dir / f"{DB}-wal") if p.exists()]
    assert state_dir / DB in files, f"no database in {state_dir}"
    modes = {p: p.stat().st_mode for p in files}
    try:
        for p in files:
            p.chmod(0o444)
        r = chattr("+i", *files)
        assert r.returncode == 0, r.stderr
        yield files
    finally:
        chattr("-i", *files)
        for p, mode in modes.items():
            p.chmod(mode)
