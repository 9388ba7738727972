"""Real devices' column layouts with moving counters (snmpsim's `numeric` variation module), and a real
recording whose ifAlias is Latin-1.

The counters of one interface of a recording are replaced by `numeric` with `atime` (the value is
`initial + rate * unix time`, modulo `max` with `wrap`): the traffic between two polls is then known
from the clock alone, `rate` bytes per second, and a 32-bit column wraps every 14.3 s, inside the
window of `sitivmon poll` (10 samples, 2 s apart), which must count every interval as rate x elapsed,
across the wrap (a Counter64 crosses 2**63 instead: it never wraps on a real device).
"""

from __future__ import annotations

import bz2
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.reference import COLUMNS
from tests.support import agents, snmpsim

REPO = Path(__file__).resolve().parents[2]
# Bytes/s: 2.4 Gbit/s on a link declared 5 Gbit/s. A 32-bit column wraps every 14.3 s, less than the
# polls' window (9 intervals of at least 2 s): a wrap falls inside it however late the polls start.
RATE = 300_000_000
SAMPLES = 10
PAUSE_S = 2.0  # between `sitivmon poll` samples (sitivmon/oneshot.py)


@dataclass(frozen=True, slots=True)
class Layout:
    community: str
    path: str
    vendor: str
    columns: tuple[str, ...]  # the counter columns made to move (served under their recorded tag)
    tag: str  # 65 Counter32 or 70 Counter64


LAYOUTS = (
    Layout("juniper-hc", "network/router/juniper-mx960-13-3r9-13", "Juniper MX960",
           ("ifHCInOctets", "ifHCOutOctets"), "70"),
    Layout("netapp-32", "storage/netapp-fas3270", "NetApp FAS3270", ("ifInOctets", "ifOutOctets"), "65"),
    Layout("cisco-32", "network/switch/cisco-c3560", "Cisco IOS (a port without HC)",
           ("ifInOctets", "ifOutOctets"), "65"),
    Layout("venus-hc32", "network/firewall/venus-vsos-v0600r0705b20180507", "Venus",
           ("ifHCInOctets", "ifHCOutOctets"), "65"),
    Layout("metel-hc32", "network/switch/metel-poe-box", "Metel PoE",
           ("ifHCInOctets", "ifHCOutOctets"), "65"),
)  # fmt: skip
LATIN1_ALIAS = "Commune: Vénissieux [1G] {circuit-42}"
DISCOVERED_ALIAS = "Commune: Pierre-Bénite [100M] {c-7}"


def _lines(path: Path) -> list[str]:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as fh:
        return fh.read().split("\n")[:-1]  # not splitlines(): values may hold \x0b, \x1c...


def _first_index(lines: list[str], column: str) -> int:
    """The first ifIndex with a row in `column`; for a 32-bit column, the first without an HC row (an
    agent serving both is read from HC, as it should be)."""
    oids = {line.split("|", 1)[0] for line in lines}
    prefix = COLUMNS[column] + "."
    for line in lines:
        if line.startswith(prefix):
            suffix = line.split("|", 1)[0][len(prefix):]
            hc = COLUMNS["ifHCInOctets"] + "." + suffix
            if suffix.isdigit() and (column.startswith("ifHC") or hc not in oids):
                return int(suffix)
    raise AssertionError(f"no {column} row")


def moving_recording(layout: Layout, wrap_at: float) -> tuple[str, int]:
    """The layout's recording with its counters moving, and the ifIndex that moves."""
    lines = _lines(snmpsim.recording(layout.path))
    index = _first_index(lines, layout.columns[0])
    if layout.columns[0].startswith("ifHC") and layout.tag == "70":
        # A real Counter64 does not wrap (46 years at 100 Gbit/s): one that goes back is a discontinuity.
        # Past 2**63 instead, where a signed 64-bit reading would go negative.
        top, initial = 2**64, 2**63 - round(RATE * wrap_at)
    else:
        top = 2**32
        initial = -round(RATE * wrap_at) % top  # the counter crosses 0 at `wrap_at` (unix time)
    args = f"rate={RATE},initial={initial},max={top},wrap=1,atime=1"
    targets = {f"{COLUMNS[c]}.{index}" for c in layout.columns}
    done = set()
    out = []
    for line in lines:
        oid = line.split("|", 1)[0]
        if oid in targets:
            line = f"{oid}|{layout.tag}:numeric|{args}"
            done.add(oid)
        out.append(line)
    assert done == targets, f"{layout.community}: rows {targets - done} not in the recording"
    return "\n".join(out) + "\n", index


def latin1_recording(dest: Path) -> tuple[int, int]:
    """cisco-c3560 with two ifAlias rows rewritten in Latin-1: one a configured link selects, one the
    ifAlias parser must discover. Returns their ifIndexes."""
    lines = _lines(snmpsim.recording("network/switch/cisco-c3560"))
    prefix = COLUMNS["ifAlias"] + "."
    rows = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(rows) >= 2
    indexes = []
    for pos, alias in zip(rows[:2], (LATIN1_ALIAS, DISCOVERED_ALIAS), strict=True):
        oid = lines[pos].split("|", 1)[0]
        lines[pos] = f"{oid}|4x|{alias.encode('latin-1').hex()}"
        indexes.append(int(oid[len(prefix):]))
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    return indexes[0], indexes[1]


@dataclass(slots=True)
class Run:
    index: int
    report: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    work = tmp_path_factory.mktemp("moving")
    sources: dict[str, Path] = {}
    indexes: dict[str, int] = {}
    for layout in LAYOUTS:
        text, indexes[layout.community] = moving_recording(layout, time.time())
        sources[layout.community] = work / f"{layout.community}.snmprec"
        sources[layout.community].write_text(text, encoding="utf-8", errors="surrogateescape")
    sources["cisco-latin1"] = work / "cisco-latin1.snmprec"
    latin_idx, discovered_idx = latin1_recording(sources["cisco-latin1"])
    with snmpsim.serve(sources) as sim:
        # The wrap is set now that the simulator answers: inside the polls' window (the first sample
        # is 3 to 14 s away on a loaded 2-core machine, the last at least 2 s x (SAMPLES - 1) later).
        wrap_at = time.time() + 14
        for layout in LAYOUTS:
            sim.replace(layout.community, moving_recording(layout, wrap_at)[0])
        doc = agents.base_config(work / "state", interval="60s", timeout="5s", retries=1)
        for layout in LAYOUTS:
            name = layout.community
            agents.add_target(doc, name, sim.address, name, {"version": "2c", "community": name})
            agents.add_link(doc, f"{name}-link", "givors", name, index=indexes[name], capacity="5Gbit")
        agents.add_target(
            doc, "cisco-latin1", sim.address, "cisco-latin1", {"version": "2c", "community": "cisco-latin1"},
            ifalias_parser=True,
        )
        doc["links"].append(
            {"id": "latin1-alias", "commune": "venissieux", "target": "cisco-latin1",
             "interface": {"alias": LATIN1_ALIAS}}
        )  # fmt: skip
        config = agents.write_config(work / "moving.yaml", doc)
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "sitivmon", "poll", "--config", str(config), "--target", name,
                 "--samples", str(SAMPLES if name != "cisco-latin1" else 1)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            )
            for name in [*indexes, "cisco-latin1"]
        }  # fmt: skip
        out = {}
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            assert stdout, f"{name}: sitivmon poll printed nothing: {stderr[-2000:]}"
            out[name] = Run(indexes.get(name, latin_idx), json.loads(stdout), stderr)
        out["cisco-latin1"].index = latin_idx
        out["discovered"] = Run(discovered_idx, out["cisco-latin1"].report, out["cisco-latin1"].stderr)
    yield out


@pytest.mark.parametrize("name", [lay.community for lay in LAYOUTS])
def test_moving_counters_counted_across_wraps(runs: dict[str, Run], name: str) -> None:
    layout = next(lay for lay in LAYOUTS if lay.community == name)
    run = runs[name]
    polls = run.report["polls"]
    assert run.report["error"] is None and len(polls) == SAMPLES
    raw_key = {"ifHCInOctets": "in_octets", "ifInOctets": "in_octets"}[layout.columns[0]]
    wrapped = False
    for before, after in itertools.pairwise(polls):
        lk = after["links"][0]
        assert lk["if_index"] == run.index and lk["resolve_error"] is None
        prev_raw = before["links"][0]["raw_counters"][raw_key]["value"]
        raw = lk["raw_counters"][raw_key]["value"]
        wrapped |= raw < prev_raw
        elapsed_max = PAUSE_S + before["duration_s"] + after["duration_s"] + 3.0  # a loaded CI machine
        for series in ("receive_bytes", "transmit_bytes"):
            delta = lk["delta_since_previous"][series]
            assert RATE * (PAUSE_S - 0.1) <= delta <= RATE * elapsed_max, (series, delta, prev_raw, raw)
    if layout.tag == "65":
        assert wrapped, "no wrap happened between two samples: the test did not test wraps"
    if layout.tag == "70" or not layout.columns[0].startswith("ifHC"):  # (HC served as Counter32: either)
        used = polls[-1]["links"][0]["raw_counters"][raw_key]["bits"]
        assert used == (64 if layout.tag == "70" else 32)


def test_latin1_alias_selects_the_link(runs: dict[str, Run]) -> None:
    """Issue 10 symptom 11 on a real recording: an ifAlias in Latin-1 selects its configured link."""
    run = runs["cisco-latin1"]
    links = {lk["link"]: lk for lk in run.report["polls"][-1]["links"]}
    lk = links["latin1-alias"]
    assert lk["resolve_error"] is None and lk["if_index"] == run.index
    assert lk["alias"] == LATIN1_ALIAS


def test_latin1_alias_is_discovered_by_the_ifalias_parser(runs: dict[str, Run]) -> None:
    run = runs["discovered"]
    found = [lk for lk in run.report["polls"][-1]["links"] if lk["if_index"] == run.index]
    assert [(lk["commune"], lk["alias"]) for lk in found] == [("pierre-benite", DISCOVERED_ALIAS)]
