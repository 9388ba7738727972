"""The elector's state machine (sitivmon.leader.election) on an in-memory election store: a lock table
shared by several stores, like one database shared by several daemons, whose sessions can be made to
hang (a leader cut off from the database). PostgreSQL itself is tested in tests/postgres/test_leader*.py."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from sitivmon.leader.config import LeaderSettings, leader_problems
from sitivmon.leader.election import AlwaysLeader, ElectionSession, ElectionUnavailable, Elector, Role
from sitivmon.usage.config import UsageSettings

LOCKS = {Role.SHARD: "shard-1", Role.GLOBAL: "global"}


class LockTable:
    """What the database would be: who holds which lock; `down` makes every call fail."""

    def __init__(self) -> None:
        self.owner: dict[str, object] = {}
        self.mutex = threading.Lock()
        self.down = False


class MemorySession:
    def __init__(self, table: LockTable, gate: threading.Event) -> None:
        self.table, self.gate = table, gate
        self.closed = False

    def hold(self, names: Sequence[str]) -> frozenset[str]:
        self.gate.wait()  # cleared: a call that hangs like a cut-off connection
        if self.table.down or self.closed:
            self.close()
            raise ElectionUnavailable("memory: down")
        with self.table.mutex:
            for n in names:
                self.table.owner.setdefault(n, self)
            return frozenset(n for n in names if self.table.owner[n] is self)

    def close(self) -> None:
        self.closed = True
        with self.table.mutex:
            for n in [n for n, s in self.table.owner.items() if s is self]:
                del self.table.owner[n]


class MemoryElection:
    always = False
    location = "memory"

    def __init__(self, table: LockTable) -> None:
        self.table = table
        self.gate = threading.Event()
        self.gate.set()
        self.sessions: list[MemorySession] = []

    def session(self) -> ElectionSession:
        s = MemorySession(self.table, self.gate)
        self.sessions.append(s)
        return s


def elector(store: MemoryElection | AlwaysLeader, registry: CollectorRegistry | None = None, **kw: object) -> Elector:
    return Elector(store, LOCKS, interval_s=0.05, timeout_s=0.2, registry=registry or CollectorRegistry(), **kw)  # type: ignore[arg-type]


def gauge(e: Elector, role: Role) -> float | None:
    return e.metrics.leader.labels(role.value)._value.get()


def transitions(e: Elector, role: Role) -> float:
    return e.metrics.transitions.labels(role.value)._value.get()


def test_one_daemon_alone_holds_every_role() -> None:
    async def main() -> None:
        e = elector(AlwaysLeader())
        assert await e.step() == {Role.SHARD, Role.GLOBAL}
        assert gauge(e, Role.SHARD) == 1 and gauge(e, Role.GLOBAL) == 1

    asyncio.run(main())


def test_exactly_one_leader_and_the_other_takes_over_when_it_goes() -> None:
    async def main() -> None:
        table = LockTable()
        changes: list[str] = []
        a = elector(MemoryElection(table), on_change=lambda: changes.append("a"))
        b = elector(MemoryElection(table), on_change=lambda: changes.append("b"))
        assert await a.step() == {Role.SHARD, Role.GLOBAL}
        for _ in range(3):
            assert await b.step() == frozenset()  # a follower stays one, quietly
            assert await a.step() == {Role.SHARD, Role.GLOBAL}
        assert changes == ["a"]  # one change each time roles move, not one per step
        assert gauge(b, Role.SHARD) == 0 and transitions(a, Role.SHARD) == 1
        await a.close()  # a stops: its roles are released at once
        assert gauge(a, Role.SHARD) == 0 and transitions(a, Role.SHARD) == 2
        assert await b.step() == {Role.SHARD, Role.GLOBAL}
        assert changes == ["a", "b"]  # close() does not call back: the services are closed by then

    asyncio.run(main())


def test_a_leader_whose_check_hangs_steps_down_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        table = LockTable()
        store_a = MemoryElection(table)
        a, b = elector(store_a, name="replica a"), elector(MemoryElection(table))
        await a.step()
        store_a.gate.clear()  # a's connection hangs: it cannot tell whether it still holds the lock
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await a.step() == frozenset()
        assert 0.2 <= loop.time() - started < 0.5  # gave up after timeout_s, without waiting for the call
        assert gauge(a, Role.SHARD) == 0 and a.metrics.errors._value.get() == 1
        for _ in range(3):  # still cut off: steps keep failing, logged once
            assert await a.step() == frozenset()
        assert await b.step() == frozenset()  # the hung session still holds the lock: no second leader
        store_a.gate.set()  # the cut-off call returns (TCP gave up): the abandoned session is closed
        for _ in range(50):
            if all(s.closed for s in store_a.sessions[:-1]):
                break
            await asyncio.sleep(0.01)
        assert await b.step() == {Role.SHARD, Role.GLOBAL}
        assert await a.step() == frozenset()  # a is back, as the follower
        assert gauge(a, Role.SHARD) == 0 and gauge(b, Role.SHARD) == 1
        await a.close()
        await b.close()

    with caplog.at_level(logging.INFO, logger="sitivmon.leader"):
        asyncio.run(main())
    failures = [r for r in caplog.records if r.getMessage().startswith("leader election: no answer")]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert sum("replica a is no longer the shard leader: no answer" in r.getMessage() for r in caplog.records) == 1
    assert any("memory answers again" in r.getMessage() for r in caplog.records)


def test_a_store_that_fails_leaves_no_leader_until_it_answers() -> None:
    async def main() -> None:
        table = LockTable()
        a, b = elector(MemoryElection(table)), elector(MemoryElection(table))
        await a.step()
        table.down = True
        assert await a.step() == frozenset() and await b.step() == frozenset()
        table.down = False
        table.owner.clear()  # a database that restarted has no lock of before
        held = [await a.step(), await b.step()]
        assert sorted(len(h) for h in held) == [0, 2]

    asyncio.run(main())


def test_timings_where_a_cut_off_leader_could_overlap_its_successor_are_refused() -> None:
    with pytest.raises(ValidationError, match="server_timeout_s"):
        LeaderSettings(interval_s=4, timeout_s=3, server_timeout_s=10)
    assert LeaderSettings(interval_s=2, timeout_s=2, server_timeout_s=7).server_timeout_s == 7


def test_auto_elects_through_postgresql_only_for_shards_and_replicas() -> None:
    pg = UsageSettings(store="postgresql", dsn=SecretStr("postgresql://u:p@127.0.0.1/db"))
    auto = LeaderSettings()
    assert not auto.elects_through_postgresql(UsageSettings(), sharded=True, replica=True)
    assert not auto.elects_through_postgresql(pg, sharded=False, replica=False)
    assert auto.elects_through_postgresql(pg, sharded=True, replica=False)
    assert auto.elects_through_postgresql(pg, sharded=False, replica=True)
    assert not LeaderSettings(election="always").elects_through_postgresql(pg, sharded=True, replica=True)
    problems = list(leader_problems(LeaderSettings(election="postgresql", close_reports=True), UsageSettings(),
                                    allocation=False))  # fmt: skip
    assert [p for p, _ in problems] == [("leader", "election"), ("leader", "close_reports")]
