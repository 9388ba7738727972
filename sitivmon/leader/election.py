"""Roles, the election store port, and the loop that holds roles.

Two roles (`Role`): the leader of a shard publishes that shard's MQTT events and summaries; the
global leader (one for the whole installation, whatever its shard) refreshes and exposes the
month-to-date gauges and closes reports. Each role is a named lock in an `ElectionStore`: whoever
holds the lock holds the role. The store is the only arbiter; this module never decides leadership
on its own (no home-made consensus), it only asks and reports.

Why a session per connection (`ElectionSession`), run on an executor thread of its own: a check
that hangs (a leader cut off from the database) must not hold up the event loop, and the elector
must be able to give it up after `timeout_s` and step down at once. A session that failed or timed
out is abandoned whole (closed on its own thread once its call returns) and the next step opens a
new one: the two never share a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("sitivmon.leader")
STOPPING = "this daemon is stopping"


class Role(enum.Enum):
    SHARD = "shard"
    """Runs once per shard: MQTT events, retained states and summaries of the shard's links."""
    GLOBAL = "global"
    """Runs once for the installation: month-to-date gauges, report closing."""


class ElectionUnavailable(Exception):
    """The election store cannot be asked now. The message names it by location, never a secret."""


class ElectionSession(Protocol):
    """One connection to the election store; used by one thread at a time, then closed."""

    def hold(self, names: Sequence[str]) -> frozenset[str]:
        """Take every lock of `names` that is free, check the ones this session holds; return the
        names held now. Blocking; raises `ElectionUnavailable` (the session is then unusable)."""
        ...

    def close(self) -> None:
        """Release everything this session holds (closing its connection). Never raises."""
        ...


class ElectionStore(Protocol):
    location: str
    always: bool
    """True when every lock is granted without asking anybody (one daemon): no loop is needed."""

    def session(self) -> ElectionSession:
        """A new session; no I/O until its first `hold`."""
        ...


class _AllGranted:
    def hold(self, names: Sequence[str]) -> frozenset[str]:
        return frozenset(names)

    def close(self) -> None:
        pass


class AlwaysLeader:
    """One daemon on its own (SQLite, or PostgreSQL without shards or replicas): every role is its."""

    location = "this daemon alone"
    always = True

    def session(self) -> ElectionSession:
        return _AllGranted()


class LeaderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.leader = Gauge(
            "sitivmon_leader", "1 while this daemon holds the role (shard: MQTT; global: month-to-date, reports)",
            ["role"], registry=registry,
        )  # fmt: skip
        self.transitions = Counter(
            "sitivmon_leader_transitions_total", "Times this daemon took or gave up the role", ["role"],
            registry=registry,
        )  # fmt: skip
        self.errors = Counter(
            "sitivmon_leader_election_errors_total",
            "Election steps that failed or timed out (the daemon then holds no role)",
            registry=registry,
        )
        for role in Role:
            self.leader.labels(role.value).set(0)
            self.transitions.labels(role.value)


class Elector:
    """Holds the roles it wants in `store`, every `interval_s`; calls `on_change` when they change.

    `locks` maps each wanted role to its lock name in the store. `held` is what this daemon may act
    on: set only from an answer of the store no older than one step, emptied as soon as a step fails
    or does not answer within `timeout_s`. Use `step()` once at start, then `run()` in a task group
    (it never returns), and `close()` at the end (releases the roles at once, for a prompt takeover).
    """

    def __init__(
        self,
        store: ElectionStore,
        locks: Mapping[Role, str],
        *,
        interval_s: float,
        timeout_s: float,
        registry: CollectorRegistry,
        on_change: Callable[[], None] = lambda: None,
        name: str = "this daemon",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.locks = dict(locks)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.metrics = LeaderMetrics(registry)
        self.on_change = on_change
        self.name = name
        self._clock = clock
        self.held: frozenset[Role] = frozenset()
        self.changed_at: float | None = None
        self._session: ElectionSession | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._failing: str | None = None  # the error being reported, to log an outage once

    def holds(self, role: Role) -> bool:
        return role in self.held

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.step()

    async def step(self) -> frozenset[Role]:
        """One attempt: take or check every wanted role; on any failure hold none."""
        if self._session is None or self._executor is None:
            self._session = self.store.session()
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sitivmon-leader")
        session, executor = self._session, self._executor
        names = sorted(self.locks.values())
        try:
            got = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(executor, session.hold, names), self.timeout_s
            )
        except (ElectionUnavailable, TimeoutError) as exc:
            reason = str(exc) if isinstance(exc, ElectionUnavailable) else f"no answer within {self.timeout_s:g} s"
            self.metrics.errors.inc()
            self._abandon()
            if self._failing is None:
                log.warning("leader election: %s; %s holds no role until it answers", reason, self.name)
            self._failing = reason
            self._set(frozenset(), reason)
            return self.held
        if self._failing is not None:
            log.info("leader election: %s answers again", self.store.location)
            self._failing = None
        self._set(frozenset(role for role, lock in self.locks.items() if lock in got), "")
        return self.held

    def _set(self, held: frozenset[Role], reason: str) -> None:
        if held == self.held:
            return
        for role in Role:
            if (role in held) == (role in self.held):
                continue
            self.metrics.leader.labels(role.value).set(1 if role in held else 0)
            self.metrics.transitions.labels(role.value).inc()
            if role in held:
                log.info("%s is now the %s leader", self.name, role.value)
            else:
                level = logging.INFO if reason == STOPPING else logging.WARNING
                log.log(level, "%s is no longer the %s leader: %s", self.name, role.value, reason or "another holds it")
        self.held = held
        self.changed_at = self._clock()
        self.on_change()

    def _abandon(self) -> None:
        """Give up the session: closed on its own thread once its pending call returns (a cut-off
        connection returns when TCP gives up), never on the event loop."""
        session, executor = self._session, self._executor
        self._session = self._executor = None
        if session is not None and executor is not None:
            executor.submit(session.close)
            executor.shutdown(wait=False)

    async def close(self) -> None:
        """Release every role now (the other daemon takes over at its next attempt)."""
        session, executor = self._session, self._executor
        self._session = self._executor = None
        self.on_change = lambda: None  # the services it drives are closed by now
        self._set(frozenset(), STOPPING)
        if session is None or executor is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(executor, session.close), self.timeout_s)
        executor.shutdown(wait=False)
