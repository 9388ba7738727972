"""A panic in the SNMP library's native decoder stays one failed poll of one target.

gufo-snmp's Rust BER decoder panics on a response whose long-form length runs past the datagram's end;
pyo3 raises that as `PanicException`, a BaseException that `except Exception` does not catch. One such
datagram used to end the scheduler's task group and the daemon with it, without a log line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitivmon.config.model import Credential
from sitivmon.engine.poll import TargetPoll, poll_target
from sitivmon.profiles.builtin import INTERFACES
from sitivmon.snmp.client import PollErrorReason
from sitivmon.snmp.gufo import GufoClient
from tests.support import agents
from tests.support.hostile_agent import COMMUNITY
from tests.support.procs import ManagedProcess


@pytest.fixture
def hostile_ports(tmp_path: Path) -> Iterator[dict[str, int]]:
    ports_file = tmp_path / "ports.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(agents.REPO), os.environ.get("PYTHONPATH", "")]))
    argv = [sys.executable, "-m", "tests.support.hostile_agent", str(ports_file), "cut_length", "polite"]
    proc = ManagedProcess(argv, tmp_path / "hostile.log", env)
    try:
        deadline = time.monotonic() + 10
        while not ports_file.exists():
            assert proc.alive() and time.monotonic() < deadline, proc.output()[-2000:]
            time.sleep(0.05)
        yield json.loads(ports_file.read_text())
    finally:
        proc.stop()


async def test_a_decoder_panic_is_one_failed_poll(hostile_ports: dict[str, int]) -> None:
    cred = Credential.model_validate({"version": "2c", "community": COMMUNITY.decode()})

    async def poll(mode: str) -> TargetPoll:
        client = GufoClient("127.0.0.1", hostile_ports[mode], cred, timeout=0.5, retries=0, max_repetitions=25)
        return await poll_target(client, mode, [INTERFACES], version="2c", deadline_s=2.0, max_varbinds=1000)

    broken = await poll("cut_length")  # raised PanicException out of poll_target before the fix
    assert broken.error is not None and broken.error.reason in (PollErrorReason.OTHER, PollErrorReason.DECODE)
    polite = await poll("polite")  # the same process polls on afterwards
    assert polite.ok and polite.tables["ifName"] == {"1": b"eth0"}
