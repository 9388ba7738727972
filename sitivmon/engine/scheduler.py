"""When targets are polled: one long-lived loop per target, a global concurrency limit, jittered starts.

A poll's deadline ends before the target's next tick, so polls of one target never overlap; a target
whose agent is slow or dead only ever occupies its own loop and one slot of the concurrency limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Callable, Mapping

from sitivmon.aio import wait_event
from sitivmon.config.model import CoreConfig, Credential, PollSettings, Target
from sitivmon.config.profiles import profile_table
from sitivmon.engine.poll import TargetPoll, poll_target
from sitivmon.engine.selection import ALL_TARGETS, TargetSelector
from sitivmon.profiles.model import Profile
from sitivmon.selfmetrics import SelfMetrics
from sitivmon.snmp.client import ClientFactory, SnmpClient

log = logging.getLogger("sitivmon.scheduler")

ProfileLookup = Callable[[str], Profile]
PollConsumer = Callable[[Target, TargetPoll], None]
"""Receives each finished poll (the monitor's `on_poll`); must not block."""


MIN_EARLY_SPACING_S = 5.0  # least time between two polls of a target that traps asked for


def start_offset(name: str, interval: float, jitter: float) -> float:
    """A stable offset in [0, interval * jitter): targets spread out, and each keeps its phase."""
    digest = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    return (digest / 2**64) * interval * jitter


def deadline_for(interval: float) -> float:
    """Leave a tenth of the interval (at most a second) between the deadline and the next tick."""
    return max(interval - min(1.0, interval * 0.1), interval * 0.5)


class Scheduler:
    """Polls the targets the selector owns and hands each poll to `on_poll`."""

    def __init__(
        self,
        config: CoreConfig,
        on_poll: PollConsumer,
        metrics: SelfMetrics,
        client_factory: ClientFactory,
        *,
        selector: TargetSelector = ALL_TARGETS,
        profiles: ProfileLookup | None = None,
    ) -> None:
        self.on_poll = on_poll
        self.selector = selector
        self.metrics = metrics
        self.client_factory = client_factory
        # None: built-in and user profiles of the running config (relative profile_files from the cwd).
        self.profiles = profiles
        self._tasks: dict[str, tuple[asyncio.Task[None], str]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Event()
        # The concurrency limit is fixed at start: a reload cannot resize a semaphore others wait on.
        self._sem = asyncio.Semaphore(config.poll.concurrency)
        self._config = config

    def poll_now(self, target: str) -> None:
        """Poll a target ahead of schedule (a trap said something changed); the schedule is kept."""
        event = self._wake.get(target)
        if event is not None:
            event.set()

    def apply(self, config: CoreConfig) -> None:
        """Adopt a reloaded config: unchanged targets keep their loop (and phase), others restart."""
        self._config = config
        self._changed.set()

    @staticmethod
    def _fingerprint(config: CoreConfig, target: Target, table: Mapping[str, Profile]) -> str:
        cred = config.credentials[target.credentials]
        secret_parts = [
            s.get_secret_value() for s in (cred.community, cred.auth_password, cred.priv_password) if s is not None
        ]
        # a changed user profile restarts the loops that use it
        material = "|".join(
            [
                target.model_dump_json(),
                cred.model_dump_json(),
                config.poll_settings(target).model_dump_json(),
                *secret_parts,
                *(repr(table.get(p)) for p in target.profiles),
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while True:
                self._reconcile(tg)
                await self._changed.wait()
                self._changed.clear()

    def _reconcile(self, tg: asyncio.TaskGroup) -> None:
        config = self._config
        table = profile_table(config)  # read once per (re)configuration, not once per target
        wanted = {t.name: (t, self._fingerprint(config, t, table)) for t in self.selector.select(config.targets)}
        for name, (task, fp) in list(self._tasks.items()):
            if name not in wanted or wanted[name][1] != fp:
                task.cancel()
                del self._tasks[name]
        for name, (target, fp) in wanted.items():
            if name not in self._tasks:
                task = tg.create_task(self._target_loop(config, target, table), name=f"poll:{name}")
                self._tasks[name] = (task, fp)

    async def _client(self, target: Target, cred: Credential, settings: PollSettings) -> SnmpClient:
        """Make the target's client, retrying with backoff: a bad address must not stop the daemon."""
        delay = 1.0
        while True:
            try:
                return self.client_factory(target, cred, settings)
            except Exception as exc:
                log.error("target %s: cannot open an SNMP session to %s: %s", target.name, target.address, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.interval)

    async def _target_loop(self, config: CoreConfig, target: Target, table: Mapping[str, Profile]) -> None:
        loop = asyncio.get_running_loop()
        settings = config.poll_settings(target)
        cred = config.credentials[target.credentials]
        lookup = self.profiles or table.__getitem__
        profiles = []
        for name in target.profiles:
            try:
                profiles.append(lookup(name))
            except KeyError:  # a profile file changed after the config was checked
                log.error("target %s: profile %r is not defined; polling the others", target.name, name)
        interval = settings.interval
        client = await self._client(target, cred, settings)
        next_at = loop.time() + start_offset(target.name, interval, settings.jitter)
        wake = self._wake[target.name] = asyncio.Event()
        last_start = -math.inf
        try:
            while True:
                early = await wait_event(wake, max(0.0, next_at - loop.time()))
                wake.clear()
                if early and loop.time() - last_start < max(MIN_EARLY_SPACING_S, interval / 10):
                    continue  # a trap storm must not turn into a poll storm: the state is already set
                async with self._sem:
                    now = last_start = loop.time()
                    if early:
                        # An extra poll must end before the scheduled one starts.
                        budget = min(deadline_for(interval), next_at - now - 0.05)
                    else:
                        self.metrics.poll_lag.observe(max(0.0, now - next_at))
                        budget = next_at + deadline_for(interval) - now
                    if budget <= 0:
                        if not early:
                            self.metrics.polls_skipped.labels(target.name).inc()
                    else:
                        poll = await poll_target(
                            client,
                            target.name,
                            profiles,
                            version=cred.version,
                            deadline_s=budget,
                            max_varbinds=settings.max_varbinds,
                        )
                        try:
                            self.on_poll(target, poll)
                        except Exception:
                            log.exception("target %s: processing the poll failed", target.name)
                if early:
                    continue
                next_at += interval
                behind = loop.time() - next_at
                if behind > 0:
                    missed = int(behind // interval) + 1
                    next_at += missed * interval
                    self.metrics.polls_skipped.labels(target.name).inc(missed)
        finally:
            if self._wake.get(target.name) is wake:
                del self._wake[target.name]
            await client.close()
