"""The daemon freezes its warm state (`aio.gc_settle`) after the first polls, and again after a reload's.
In-process, against a real snmpd."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sitivmon.aio import gc_settle
from sitivmon.app import daemon as daemon_module
from sitivmon.app.config import load_config
from sitivmon.app.daemon import Daemon
from tests.support import agents
from tests.support.procs import free_port


async def _until(check: Callable[[], bool], within: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def test_warm_state_is_frozen_after_the_first_polls_and_after_a_reload(
    tmp_path: Path, snmp_agent: agents.Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    unfreezes: list[bool] = []  # each settle's `unfreeze`, the real `gc_settle` run with it

    def recorded(unfreeze: bool = True) -> None:
        unfreezes.append(unfreeze)
        gc_settle(unfreeze=unfreeze)

    monkeypatch.setattr(daemon_module, "gc_settle", recorded)
    doc = agents.base_config(tmp_path / "state", interval="1s", timeout="0.5s")
    agents.add_target(doc, "loopback", snmp_agent.address, "v2c", {"version": "2c", "community": snmp_agent.community})
    agents.add_link(doc, "givors-lo", "givors", "loopback", name="lo", capacity="1Gbit")
    path = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    daemon = Daemon(path, load_config(path), listen=f"127.0.0.1:{free_port()}", registry=CollectorRegistry())

    async def scenario() -> None:
        async with daemon:
            await _until(daemon.monitor.ready, 10)
            assert daemon.gc_settles == 0  # polled once: baselines and caches still to build
            waited = await _until(lambda: daemon.gc_settles == 1, 10)
            assert waited > 0.5
            runtime = next(iter(daemon.monitor.links.values()))
            assert not any(o is runtime for o in gc.get_objects())  # out of every collection's reach
            ok, _ = await daemon.reload()
            assert ok and daemon.gc_settles == 1
            await _until(lambda: daemon.gc_settles == 2, 10)
            # the first settle leaves the start's freeze (the imported code) alone; the reload's
            # unfreezes, so that the old configuration's state, if it died as cycles, is collected
            assert unfreezes == [False, True]

    try:
        asyncio.run(scenario())
    finally:
        gc.unfreeze()
