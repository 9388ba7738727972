"""The per-link fold, byte for byte: the same readings give the same /metrics page, usage batches,
baselines and buckets as the code before the per-link optimisations (issue 15).

A seeded history of polls of two targets exercises what the fast paths skip or reuse: texts and speeds
that stay, change and come as Latin-1, a float ifSpeed, ifIndex renumbering, renamed interfaces, HC
columns missing (32-bit fallback) and served as 2**64-1, 32-bit wraps, reboots, the clock stepping
back, ambiguous and unresolvable selectors, ifAlias discovery. Everything the fold produces is written
to a transcript, compared with `fold_transcript.txt`, which was written by the code before the change
(commit b9d3f38). Regenerate it only for an intended change of output:

    PYTHONPATH=. .venv/bin/python tests/unit/test_fold_transcript.py > tests/unit/fold_transcript.txt
"""

from __future__ import annotations

import hashlib
import logging
import random
import sys
from pathlib import Path
from typing import Any

from sitivmon.app.config import SitivmonConfig
from sitivmon.engine.poll import TargetPoll
from sitivmon.exposition import LabelCache, render
from sitivmon.monitor import Monitor
from sitivmon.readings import PollBatch
from sitivmon.usage.recorder import Accumulator

GOLDEN = Path(__file__).with_name("fold_transcript.txt")
T0 = 1_764_320_000.0
ROWS = 12


def config() -> SitivmonConfig:
    links: list[dict[str, Any]] = [
        {"id": f"n{i}", "commune": "givors", "target": "a", "interface": {"name": f"ge-{i}"}} for i in range(1, 7)
    ]
    links += [
        {"id": "core", "commune": "corbas", "target": "a", "interface": {"index": 7}, "side": "core",
         "capacity": "1Gbit"},
        {"id": "by-alias", "commune": "corbas", "target": "a", "interface": {"alias": "Vénissieux uplink"}},
        {"id": "by-descr", "commune": "givors", "target": "a", "interface": {"descr": "port 9"}},
        {"id": "missing", "commune": "givors", "target": "a", "interface": {"name": "nope"}},
        {"id": "twice", "commune": "givors", "target": "a", "interface": {"descr": "dup"}},
        {"id": "b1", "commune": "corbas", "target": "b", "interface": {"name": "ge-1"}, "capacity": "100Mbit"},
        {"id": "b2", "commune": "corbas", "target": "b", "interface": {"index": 2}},
    ]  # fmt: skip
    return SitivmonConfig.model_validate({
        "communes": [{"id": "givors", "name": "Givors", "insee": "69091"},
                     {"id": "corbas", "name": "Corbas", "insee": "69273"}],
        "credentials": {"v2": {"version": "2c", "community": "public"}},
        "targets": [{"name": "a", "address": "192.0.2.1", "credentials": "v2"},
                    {"name": "b", "address": "192.0.2.2", "credentials": "v2", "ifalias_parser": True}],
        "links": links,
    })  # fmt: skip


class Device:
    """A device whose rows drift over the polls (seeded)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.uptime = 50_000_000
        self.hc = {i: [rng.randrange(0, 2**40) for _ in range(8)] for i in range(1, ROWS + 1)}
        self.low = {i: [rng.randrange(0, 2**32) for _ in range(6)] for i in range(1, ROWS + 1)}
        self.names = {i: f"ge-{i}".encode() for i in range(1, ROWS + 1)}
        self.alias = {i: b"" for i in range(1, ROWS + 1)}
        self.alias[8] = "Vénissieux uplink".encode("latin-1")
        self.alias[3] = b"Commune: Corbas [1G] {circ-3}"
        self.descr = {i: f"port {i}".encode() for i in range(1, ROWS + 1)}
        self.descr[10] = self.descr[11] = b"dup"
        self.speed: dict[int, Any] = {i: 1_000_000_000 for i in range(1, ROWS + 1)}
        self.high: dict[int, Any] = {i: 1000 for i in range(1, ROWS + 1)}
        self.oper = dict.fromkeys(range(1, ROWS + 1), 1)
        self.shift = 0  # ifIndex renumbering

    def step(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        rng = self.rng
        self.uptime += 6000
        event = rng.random()
        if event < 0.04:
            self.uptime = rng.randrange(100, 5000)  # reboot
        for i in range(1, ROWS + 1):
            self.hc[i] = [v + rng.randrange(0, 10**8) for v in self.hc[i]]
            self.low[i] = [(v + rng.randrange(0, 10**9)) % 2**32 for v in self.low[i]]
            if rng.random() < 0.05:
                self.oper[i] = rng.choice([1, 2, 7])
        if rng.random() < 0.1:
            i = rng.randrange(1, ROWS + 1)
            self.names[i] = rng.choice(
                [f"ge-{i}".encode(), f"xe-{i}".encode(), b"G\xe9n\xe9ral", b"ge-\x00" + bytes([48 + i])]
            )
        if rng.random() < 0.1:
            i = rng.randrange(1, ROWS + 1)
            self.speed[i] = rng.choice([1_000_000_000, 1e9, 4_294_967_295, 10_000_000, None])
            self.high[i] = rng.choice([1000, 1000.0, 0, 10_000, 100_000_000, None])
        if rng.random() < 0.05:
            self.alias[rng.randrange(1, ROWS + 1)] = rng.choice([b"", b"Commune: Givors {x}", b"\xff\xfe"])
        if rng.random() < 0.04:
            self.shift = rng.choice([0, 100])
        idx = {i: str(i + self.shift) for i in range(1, ROWS + 1)}
        t: dict[str, dict[str, Any]] = {
            "ifName": {idx[i]: self.names[i] for i in idx},
            "ifDescr": {idx[i]: self.descr[i] for i in idx},
            "ifAlias": {idx[i]: self.alias[i] for i in idx},
            "ifSpeed": {idx[i]: self.speed[i] for i in idx if self.speed[i] is not None},
            "ifHighSpeed": {idx[i]: self.high[i] for i in idx if self.high[i] is not None},
            "ifAdminStatus": {idx[i]: 1 if i != 5 else 2 for i in idx},
            "ifOperStatus": {idx[i]: self.oper[i] for i in idx},
            "ifLastChange": {idx[i]: 100 for i in idx},
        }
        hc_cols = (
            "ifHCInOctets",
            "ifHCOutOctets",
            "ifHCInUcastPkts",
            "ifHCOutUcastPkts",
            "ifHCInMulticastPkts",
            "ifHCInBroadcastPkts",
            "ifHCOutMulticastPkts",
            "ifHCOutBroadcastPkts",
        )
        low_cols = ("ifInOctets", "ifOutOctets", "ifInErrors", "ifOutErrors", "ifInNUcastPkts", "ifOutNUcastPkts")
        for j, col in enumerate(hc_cols):
            if rng.random() < 0.05:
                continue  # a column missing from this walk
            t[col] = {idx[i]: self.hc[i][j] for i in idx}
            if rng.random() < 0.03:
                t[col][idx[rng.randrange(1, ROWS + 1)]] = 2**64 - 1
        for j, col in enumerate(low_cols):
            t[col] = {idx[i]: self.low[i][j] for i in idx}
        return t, {"sysUpTime": self.uptime}


def transcript() -> str:
    logging.disable(logging.CRITICAL)
    try:
        return _transcript()
    finally:
        logging.disable(logging.NOTSET)


def _transcript() -> str:
    rng = random.Random(15)
    cfg = config()
    batches: list[PollBatch] = []

    class Sink:
        def submit(self, batch: PollBatch) -> None:
            batches.append(batch)

    monitor = Monitor(cfg, usage_sinks=[Sink()])
    targets = cfg.target_by_name()
    devices = {"a": Device(rng), "b": Device(rng)}
    cache = LabelCache()
    acc = Accumulator()
    out: list[str] = []
    at = T0
    for n in range(160):
        at += rng.choice([60.0, 60.0, 60.0, 59.5, 200.0, -30.0])
        for name, device in devices.items():
            tables, scalars = device.step()
            poll = TargetPoll(name, at, 0.1, tables, scalars, varbinds=1, requests=1)
            monitor.on_poll(targets[name], poll)
        for batch in batches:
            out.append(f"batch {n} {batch.target} {batch.at!r} {batch.interval_s!r}")
            out += [f"  c {c.key.subject} {c.key.quantity.value} {c.start!r} {c.end!r} {c.delta} "
                    f"{sorted(f.value for f in c.flags)}" for c in batch.counters]  # fmt: skip
            out += [f"  g {g.key.subject} {g.key.quantity.value} {g.at!r} {g.value!r}" for g in batch.gauges]
            out += [f"  b {k} {v}" for k, v in sorted(batch.baselines.items())]
            acc.apply(batch)
        batches.clear()
        page = render(monitor, cache)
        out.append(f"page {n} {hashlib.sha256(page.encode()).hexdigest()}")
        if n % 40 == 39:
            out.append(page)
    for key, series in sorted(acc.open.items(), key=lambda kv: repr(kv[0])):
        out += [f"open {key.subject} {key.quantity.value} {s} {b}" for s, b in sorted(series.items())]
    out += [f"closed {k.subject} {k.quantity.value} {s} {b}" for (k, s), b in sorted(acc.closed.items(), key=repr)]
    return "\n".join(out) + "\n"


def test_fold_transcript_is_unchanged() -> None:
    text = transcript()
    for seen in ("reset", "gap", "unknown", "clamp", "in_nucast", "counter_unavailable", "speed_mismatch"):
        assert seen in text, seen  # the history reaches the rare paths
    assert text == GOLDEN.read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.stdout.write(transcript())
