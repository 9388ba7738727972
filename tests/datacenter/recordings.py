"""Real-device recordings (PyPI `snmpsim-data`) as input to the pure datacenter functions.

The recordings are read with tests/support/snmprec.py, which shares no code with sitivmon; the tests
compute what they expect from the recording's own OIDs (named here from the MIBs, not from sitivmon's
profiles), so a wrong OID in a profile cannot make the expectation agree with it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from sitivmon.profiles.model import Profile
from sitivmon.snmp.client import Value
from tests.support import snmpsim
from tests.support.snmprec import Recording


def data_dir() -> Path:
    """`SITIVMON_SNMPSIM_DATA`, else an importable `snmpsim_data` package, else the simulator's venv
    (tests/support/snmpsim.py: skipped outside CI, failed under CI, when it is not installed)."""
    env = os.environ.get("SITIVMON_SNMPSIM_DATA")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("snmpsim_data")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent / "data"
    return snmpsim.data_root()


def path_of(relative: str) -> Path:
    path = data_dir() / relative
    if not path.exists():
        pytest.fail(f"snmpsim-data has no recording {relative}")
    return path


def recording(relative: str) -> Recording:
    return Recording(path_of(relative))


def served(rec: Recording, profiles: list[Profile]) -> tuple[dict[str, dict[str, Value]], dict[str, Value]]:
    """(tables, scalars) as a poll of `profiles` against the recorded agent would read them."""
    tables: dict[str, dict[str, Value]] = {}
    scalars: dict[str, Value] = {}
    for p in profiles:
        for c in p.columns:
            tables[c.name] = {idx: e.value for idx, e in rec.column(c.oid).items()}
        for s in p.scalars:
            entry = rec.get(s.oid)
            if entry is not None:
                scalars[s.name] = entry.value
    return tables, scalars


def number(rec: Recording, oid: str) -> int:
    entry = rec.get(oid)
    assert entry is not None and isinstance(entry.value, int), (oid, entry)
    return entry.value


def octets(rec: Recording, oid: str) -> str:
    entry = rec.get(oid)
    assert entry is not None and isinstance(entry.value, bytes), (oid, entry)
    return entry.value.decode("ascii")


ARISTA = "cloud/arista-dcs-7150s-52-cl.snmprec.bz2"
ISILON = "storage/isilon-onefs.snmprec.bz2"
PALOALTO = "network/firewall/paloalto-pa-5000.snmprec.bz2"

HR_STORAGE = "1.3.6.1.2.1.25.2.3.1"  # .3 descr, .4 allocation units, .5 size, .6 used
UCD_MEMORY = "1.3.6.1.4.1.2021.4"  # .5 memTotalReal, .6 memAvailReal, .14 memBuffer, .15 memCached
ENT_SENSOR = "1.3.6.1.2.1.99.1.1.1"  # .1 type, .2 scale, .3 precision, .4 value
ENT_PHYSICAL = "1.3.6.1.2.1.47.1.1.1.1"  # .2 descr, .4 containedIn, .5 class, .7 name
