"""A leader cut off from PostgreSQL without its socket being closed (the case a lease would bound and
an advisory lock alone would not): the leader runs in a network namespace reaching a real PostgreSQL
over a veth; the veth is taken down. Its check hangs, so it steps down after `timeout_s`; the server
hears nothing more from it, closes its session after `server_timeout_s` (the keepalive settings of the
lock session) and frees the lock; the other elector, outside the namespace, takes over then, and
never before the cut-off leader stepped down. Figures printed."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitivmon.agents.netns import Lab, run
from tests.support import postgres
from tests.support.procs import ManagedProcess

pytestmark = pytest.mark.netns

ELECTOR = """
import asyncio, sys, time
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sitivmon.leader.election import Elector
from sitivmon.leader.postgres import PostgresElection, role_locks

async def main() -> None:
    interval_s, timeout_s, server_timeout_s = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    store = PostgresElection(SecretStr(sys.argv[1]), timeout_s=timeout_s, server_timeout_s=server_timeout_s)
    e: Elector
    e = Elector(store, role_locks(1), interval_s=interval_s, timeout_s=timeout_s, registry=CollectorRegistry(),
                on_change=lambda: print(f"{time.time():.3f} {len(e.held)}", flush=True))
    print("started", flush=True)
    await e.step()
    await e.run()

asyncio.run(main())
"""


@pytest.fixture
def pg_on_veth(netns_lab: Lab) -> Iterator[tuple[Lab, postgres.PostgresServer]]:
    """A server listening on the host end of the lab's management veth, reachable from the namespace."""
    with postgres.serve(host=netns_lab.mgmt_host_addr) as pg:
        pg.stop()
        with open(pg.datadir / "pg_hba.conf", "a", encoding="utf-8") as f:
            f.write("host all all 198.18.0.0/15 scram-sha-256\n")
        pg.start()
        yield netns_lab, pg


def transitions(proc: ManagedProcess) -> list[tuple[float, int]]:
    out = []
    for line in proc.output().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out.append((float(parts[0]), int(parts[1])))
    return out


def wait_line(proc: ManagedProcess, check: object, timeout: float) -> list[tuple[float, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = transitions(proc)
        if callable(check) and check(seen):
            return seen
        if not proc.alive():
            raise AssertionError(proc.output())
        time.sleep(0.02)
    raise AssertionError(f"timed out: {proc.output()[-2000:]}")


@pytest.mark.parametrize(
    ("interval_s", "timeout_s", "server_timeout_s"), [(1.0, 1.0, 6), (2.0, 2.0, 10)], ids=["fast", "defaults"]
)
def test_a_leader_cut_off_from_the_database_steps_down_before_the_other_takes_over(
    pg_on_veth: tuple[Lab, postgres.PostgresServer],
    tmp_path: Path,
    interval_s: float,
    timeout_s: float,
    server_timeout_s: int,
) -> None:
    lab, pg = pg_on_veth
    dsn = pg.create_database("leaders")
    timings = [str(interval_s), str(timeout_s), str(server_timeout_s)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cut_off = ManagedProcess(
        ["ip", "netns", "exec", lab.agent_ns, sys.executable, "-c", ELECTOR, dsn, *timings], tmp_path / "a.log", env
    )
    try:
        wait_line(cut_off, lambda seen: seen == [(seen[0][0], 2)] if seen else False, 20)
        other = ManagedProcess([sys.executable, "-c", ELECTOR, dsn, *timings], tmp_path / "b.log", env)
        try:
            time.sleep(3 * interval_s)
            assert transitions(other) == [] and "started" in other.output()  # a follower while a leads
            run("ip", "link", "set", "mgmt0", "down", netns=lab.agent_ns)
            partitioned = time.time()
            a = wait_line(cut_off, lambda seen: len(seen) == 2, interval_s + 2 * timeout_s + 2)
            b = wait_line(other, lambda seen: len(seen) == 1, server_timeout_s + interval_s + timeout_s + 3)
        finally:
            other.stop()
    finally:
        cut_off.stop()
    stepped_down, took_over = a[1][0] - partitioned, b[0][0] - partitioned
    print(f"partition ({interval_s:g}/{timeout_s:g}/{server_timeout_s} s): the cut-off leader stepped down "
          f"after {stepped_down:.2f} s, "
          f"the other took over after {took_over:.2f} s")  # fmt: skip
    assert a[1][1] == 0 and b[0][1] == 2
    assert stepped_down <= interval_s + 2 * timeout_s + 0.5
    assert stepped_down < took_over  # never two leaders
    assert server_timeout_s - 2 <= took_over <= server_timeout_s + interval_s + timeout_s + 1
    assert pg.password not in (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
