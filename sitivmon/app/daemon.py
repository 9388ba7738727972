"""The daemon: long-lived loops owned by one TaskGroup inside an async context manager.

`Daemon` owns the scheduler, the HTTP server and the services around the monitor (trap receiver,
MQTT publisher, usage recorder), each entered on an AsyncExitStack so that they stop in reverse
order. SIGTERM/SIGINT stop it cleanly; SIGHUP and POST /-/reload (syndicate token, see http.py)
reload the configuration, keeping all counter state; a configuration that does not validate is
refused and the old one kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sitivmon.aio import gc_settle
from sitivmon.allocation.api import ReportCache, TokenAuthority, report_executor, setup_api
from sitivmon.allocation.archive import archive_change_stamp
from sitivmon.allocation.service import ReportService, service_from_config
from sitivmon.app.config import ConfigError, SitivmonConfig, load_config
from sitivmon.app.http import KEEPALIVE_TIMEOUT_S, ConnectionGuard, GuardedSite, build_app
from sitivmon.config.model import parse_listen
from sitivmon.datacenter.handler import DatacenterHandler
from sitivmon.engine.scheduler import Scheduler
from sitivmon.engine.selection import ALL_TARGETS, ShardSelector, TargetSelector
from sitivmon.filestamp import file_stamp
from sitivmon.leader.election import AlwaysLeader, ElectionStore, Elector, Role
from sitivmon.leader.postgres import PostgresElection, role_locks
from sitivmon.monitor import Monitor
from sitivmon.mqtt.config import MqttConfig
from sitivmon.mqtt.publisher import MqttPublisher
from sitivmon.portal.app import setup_portal
from sitivmon.portal.backend import daemon_backend
from sitivmon.selfmetrics import SelfMetrics
from sitivmon.snmp.client import ClientFactory
from sitivmon.snmp.gufo import gufo_factory
from sitivmon.traps.config import resolve_trap_auth
from sitivmon.traps.events import TrapEvent, TrapKind
from sitivmon.traps.receiver import TrapReceiver
from sitivmon.usage import UsageRecorder, open_usage_store
from sitivmon.usage.backends import usage_change_stamp, usage_reader_factory
from sitivmon.usage.live import UsageLiveCollector
from sitivmon.usage.periods import month_of
from sitivmon.usage.service import link_keys

log = logging.getLogger("sitivmon.daemon")


@dataclass(frozen=True, slots=True)
class Composition:
    """Which features this daemon wires around the core. MQTT and traps follow their config sections
    (`enabled`); usage recording can be left out as a whole: monitoring only, no usage store, no
    month-to-date gauges (what the benchmarks use to attribute the recorder's cost)."""

    usage: bool = True
    selector: TargetSelector = ALL_TARGETS
    replica: str = ""
    """This daemon's name in a replica pair ('' alone): its buckets and baselines in the shared store
    are its own, and readers merge the pair's (docs/scale.md)."""


def report_service(config_path: Path, config: SitivmonConfig) -> ReportService:
    """The allocation service over this configuration's pieces (the daemon's API and report closing,
    and the CLI's verbs, build it the same way)."""
    return service_from_config(
        config_path=config_path,
        state_dir=config.state_dir,
        timezone=config.timezone,
        communes=config.communes,
        links=config.links,
        allocation=config.allocation,
        usage_settings=config.usage,
    )


def per_daemon_client_id(mqtt: MqttConfig, shard: str | None, replica: str) -> MqttConfig:
    """The default client id `sitivmon-<host>` is one per host: two shards (or a pair handing over)
    on one host would keep kicking each other off the broker, so it gets `-<shard><replica>`. An id
    set in the config is the operator's and is kept."""
    if "client_id" in mqtt.model_fields_set or not (shard or replica):
        return mqtt
    suffix = f"-{shard or ''}{replica}"
    return mqtt.model_copy(update={"client_id": mqtt.client_id[: 64 - len(suffix)] + suffix})


class Daemon:
    def __init__(
        self,
        config_path: Path,
        config: SitivmonConfig,
        *,
        listen: str | None = None,
        registry: CollectorRegistry | None = None,
        client_factory: ClientFactory = gufo_factory,
        composition: Composition = Composition(),
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.composition = composition
        self.listen = listen or config.listen
        self.registry = registry or CollectorRegistry()
        self.metrics = SelfMetrics(self.registry)
        self.datacenter = DatacenterHandler(config, config.attribution, base_dir=config_path.resolve().parent)
        self.monitor = Monitor(config, handlers=[self.datacenter], selector=composition.selector)
        self.scheduler = Scheduler(
            config, self.monitor.on_poll, self.metrics, client_factory, selector=composition.selector
        )
        self.traps: TrapReceiver | None = None
        self.mqtt: MqttPublisher | None = None
        self.usage: UsageRecorder | None = None
        self.live: UsageLiveCollector | None = None
        self.elector = Elector(
            self._election_store(),
            role_locks(composition.selector.index if isinstance(composition.selector, ShardSelector) else 1),
            interval_s=config.leader.interval_s,
            timeout_s=config.leader.timeout_s,
            registry=self.registry,
            on_change=self._apply_leadership,
            name=self._describe(),
        )
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Future[tuple[bool, list[str]]]] = set()
        self._stack = contextlib.AsyncExitStack()
        self._tg: asyncio.TaskGroup | None = None
        self._runner: web.AppRunner | None = None
        self._report_pool: ThreadPoolExecutor | None = None
        self.bound_port: int | None = None
        self._loops: list[asyncio.Task[None]] = []  # the long-lived loops in the task group
        self._settle_due: float | None = time.monotonic()  # when the warm state may be frozen (gc_settle)
        self.gc_settles = 0
        self._settle_unfreezes = False  # after a reload: the old configuration's frozen state may die

    async def __aenter__(self) -> Daemon:
        try:
            await self._start_services()
            self._tg = asyncio.TaskGroup()
            await self._tg.__aenter__()
            await self._start_http()
            self._loops.append(self._tg.create_task(self._until_stopped(self.scheduler.run()), name="scheduler"))
            if not self.elector.store.always:
                self._loops.append(self._tg.create_task(self._until_stopped(self.elector.run()), name="leader"))
            if self.config.leader.close_reports:
                self._loops.append(self._tg.create_task(self._until_stopped(self._close_reports()), name="reports"))
            self._loops.append(self._tg.create_task(self._until_stopped(self._settle_gc()), name="gc-settle"))
        except BaseException:
            await self._shutdown()
            raise
        return self

    def _election_store(self) -> ElectionStore:
        """Who arbitrates leadership: the usage store's PostgreSQL database when several daemons share
        it (shards, replicas), else nobody (this daemon holds every role, as before elections)."""
        config = self.config
        sharded = isinstance(self.composition.selector, ShardSelector)
        if config.usage.dsn is not None and config.leader.elects_through_postgresql(
            config.usage, sharded=sharded, replica=bool(self.composition.replica)
        ):
            return PostgresElection(  # no I/O here; a DSN libpq cannot parse is refused by the config check
                config.usage.dsn, timeout_s=config.leader.timeout_s, server_timeout_s=config.leader.server_timeout_s
            )
        return AlwaysLeader()

    def _describe(self) -> str:
        selector = self.composition.selector
        shard = f"shard {selector.index}/{selector.count}" if isinstance(selector, ShardSelector) else "the daemon"
        return f"{shard}, replica {self.composition.replica}" if self.composition.replica else shard

    def _apply_leadership(self) -> None:
        """Start or stop what only a leader runs, to match the roles held now: the shard's MQTT
        publishing, the month-to-date gauges (a fresh collector each time: a former leader's figures
        are never served). Followers keep polling, exposing their targets, taking traps, recording."""
        if self.mqtt is not None:
            self.mqtt.set_active(self.elector.holds(Role.SHARD))
        if not self.composition.usage or self.usage is None:
            return
        if self.elector.holds(Role.GLOBAL) and self.live is None:
            config = self.config
            self.live = UsageLiveCollector(
                usage_reader_factory(config.usage, config.state_dir),
                config.communes,
                config.timezone,
                link_keys(config.links),
                refresh_s=config.usage.live_refresh_s,
                background=True,
                settle_s=self._settle_s(),
            )
            self.registry.register(self.live)
        elif not self.elector.holds(Role.GLOBAL) and self.live is not None:
            live, self.live = self.live, None
            self.registry.unregister(live)

    async def _settle_gc(self) -> None:
        """Freeze the warm state (`aio.gc_settle`) once every target has been polled twice over since
        start or the last reload: then the links' baselines, label caches and the usage accumulator
        exist, and what remains young is the traffic of the polls."""
        while True:
            await asyncio.sleep(1.0)
            due = self._settle_due
            if due is not None and time.monotonic() >= due + 2 * self._longest_interval() and self.monitor.ready():
                self._settle_due = None
                gc_settle(unfreeze=self._settle_unfreezes)
                self._settle_unfreezes = False
                self.gc_settles += 1

    def _settle_s(self) -> float:
        """How long a closed bucket may still change in the store: a poll straddling its end, at the
        longest interval, then the flush that writes it (`UsageLiveCollector`'s `settle_s`)."""
        return self._longest_interval() + self.config.usage.flush_interval_s

    def _longest_interval(self) -> float:
        config = self.config
        return max((t.poll.interval or config.poll.interval for t in config.targets), default=config.poll.interval)

    async def _close_reports(self) -> None:
        """The global leader closes last month's report once the month is over (plus the grace for
        the last flushes), unless it was ever closed: later revisions stay a human decision."""
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.config.leader.close_grace_s / 10)))
            if self.elector.holds(Role.GLOBAL):
                try:
                    await asyncio.to_thread(self._close_last_month, time.time())
                except Exception as exc:  # a report that cannot be built now is tried again next time
                    log.warning("automatic report closing failed, will retry: %s", exc)

    def _close_last_month(self, now: float) -> str | None:
        config = self.config
        if config.allocation is None:
            return None
        current = month_of(now, config.timezone)
        if now < current.start + config.leader.close_grace_s:
            return None
        previous = month_of(current.start - 1, config.timezone).label
        service = report_service(self.config_path, config)
        if service.archive.latest(previous) is not None:
            return None
        outcome = service.close(previous, now=datetime.fromtimestamp(now, UTC))
        log.info("closed the report of %s as revision %d", previous, outcome.revision.revision)
        return previous

    async def _start_services(self) -> None:
        config = self.config
        # The first answer before the services start: a leader publishes from its first event on.
        await self.elector.step()
        self._stack.push_async_callback(self.elector.close)  # closed after MQTT has drained
        if self.composition.usage:
            await self._start_usage()
        if config.mqtt.enabled:
            selector = self.composition.selector
            shard = selector.writer if isinstance(selector, ShardSelector) else None
            mqtt_config = per_daemon_client_id(config.mqtt, shard, self.composition.replica)
            self.mqtt = await self._stack.enter_async_context(
                MqttPublisher(mqtt_config, registry=self.registry, shard=shard, active=self.elector.holds(Role.SHARD))
            )
            self.monitor.add_event_sink(self.mqtt)
        if config.traps.enabled:
            auth = resolve_trap_auth(config.traps, config.credentials)
            owned = {t.name for t in self.monitor.owned}
            self.traps = TrapReceiver(
                config.traps,
                auth,
                self._on_trap,
                registry=self.registry,
                target_hosts=[t.host for t in self.monitor.owned],
                other_shard_hosts=[t.host for t in config.targets if t.name not in owned],
            )
            await self._stack.enter_async_context(self.traps)

    async def _start_usage(self) -> None:
        config = self.config
        # Opened by the recorder, which survives a store that cannot be opened (garbage file, full
        # disk...): monitoring, traps and HTTP must not depend on the usage file.
        selector = self.composition.selector
        writer = selector.writer if isinstance(selector, ShardSelector) else ""
        store = open_usage_store(
            config.usage, config.state_dir, connect=False, writer=writer, replica=self.composition.replica
        )
        self.usage = await self._stack.enter_async_context(UsageRecorder(store, self.registry, config.usage))
        seeded = self.monitor.seed_baselines(self.usage.load_baselines())
        if seeded:
            log.info(
                "restored %d counter baselines from %s: the first polls count the downtime", seeded, store.location
            )
        self.monitor.add_usage_sink(self.usage)
        self._apply_leadership()  # the global leader's month-to-date gauges

    async def _start_http(self) -> None:
        authority = TokenAuthority(lambda: self.config.api.tokens, rejected=self.metrics.http_errors)
        guard = ConnectionGuard(self.metrics)
        app = build_app(lambda: self.monitor, self.metrics, self.reload, authority=authority, guard=guard)
        if self.config.allocation is not None:
            # Built per request from the running config, so a reload's new allocation file is used.
            def service() -> ReportService:
                return report_service(self.config_path, self.config)

            def report(month: str) -> dict[str, Any]:
                """The closed revision as stored, else today's computation (what `current` gives, without
                recomputing a closed month only to compare it)."""
                svc = service()
                latest = svc.archive.latest(month)
                return latest.report if latest is not None else svc.fresh(month)

            self._report_pool = report_executor()
            setup_api(
                app,
                tokens=authority,
                usage_provider=lambda month: service().usage(month),
                report_builder=report,
                cache=ReportCache(self._report_pool, self._report_inputs),
            )
            if self.config.api.portal:
                setup_portal(
                    app,
                    daemon_backend(
                        service=service, monitor=lambda: self.monitor, tokens=lambda: self.config.api.tokens
                    ),
                    secure_cookies=self.config.api.secure_cookies,
                    executor=self._report_pool,
                )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_TIMEOUT_S)
        await self._runner.setup()
        host, port = parse_listen(self.listen)
        site = GuardedSite(self._runner, host, port, guard)
        await site.start()
        addresses = self._runner.addresses
        self.bound_port = addresses[0][1] if addresses else port
        log.info(
            "listening on http://%s:%s/metrics (at most %d connections, request heads within %g s)",
            host,
            self.bound_port,
            guard.limit,
            guard.header_timeout_s,
        )

    def _report_inputs(self, month: str) -> Hashable:
        """What a month's report is made of, cheaply: the running config object and the files behind it.

        Any write to the usage store or the archive changes its change stamp, and any write to the
        config or the allocation file a file's size, mtime or inode, and so the cache key.
        """
        config = self.config
        files = [self.config_path]
        if config.allocation is not None:
            alloc = config.allocation
            files.append(alloc if alloc.is_absolute() else self.config_path.parent / alloc)
        return (
            id(config),
            month,
            tuple(file_stamp(p) for p in files),
            usage_change_stamp(config.usage, config.state_dir),
            archive_change_stamp(config.state_dir),
        )

    def _on_trap(self, event: TrapEvent) -> None:
        """Called by the receiver for each accepted trap; must not block."""
        for target in apply_trap(self.monitor, event):
            self.scheduler.poll_now(target)  # the next poll confirms what the trap said

    async def _until_stopped(self, loop: Coroutine[Any, Any, None]) -> None:
        """A long-lived loop that ends (by crash or otherwise) stops the daemon instead of hiding."""
        try:
            await loop
        except Exception:
            log.exception("a long-lived loop crashed; stopping")
            raise
        finally:
            self._stop.set()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        """Stop serving, stop the loops, then close the services (flush usage, drain MQTT) whatever
        went wrong before: losing the last usage flush would be worse than a noisy exit."""
        try:
            if self._runner is not None:
                runner, self._runner = self._runner, None
                await runner.cleanup()
            if self._report_pool is not None:
                pool, self._report_pool = self._report_pool, None
                pool.shutdown(wait=False, cancel_futures=True)
        finally:
            try:
                if self._tg is not None:
                    tg, self._tg = self._tg, None
                    self._stop.set()
                    # Cancelled loops end the group quietly; a loop that crashed is raised from here.
                    for task in self._loops:
                        task.cancel()
                    await tg.__aexit__(None, None, None)
            finally:
                await self._stack.aclose()

    def stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def reload(self) -> tuple[bool, list[str]]:
        """Load the file again; adopt it only if it validates. Counter state is kept by link id.

        Listener addresses (HTTP, traps, MQTT broker) are bound at start; a change of them is logged
        and takes effect at the next restart.
        """
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(load_config, self.config_path)
            except ConfigError as exc:
                errors = [str(i) for i in exc.issues]
            except Exception as exc:  # a validator bug must not kill the SIGHUP task or answer 500
                log.exception("reload failed unexpectedly")
                errors = [f"unexpected error while loading the configuration: {type(exc).__name__}"]
            else:
                errors = []
            if errors:
                log.error("reload refused, keeping the running configuration: %s", "; ".join(errors))
                self.metrics.reloads.labels("failure").inc()
                self.metrics.config_ok.set(0)
                return False, errors
            if {t.host for t in new.targets} != {t.host for t in self.config.targets}:
                log.warning("reload: target addresses changed; the trap receiver's allowed sources follow at restart")
            for section in ("listen", "traps", "mqtt", "state_dir", "usage", "leader"):
                if getattr(new, section) != getattr(self.config, section):
                    log.warning("reload: '%s' changed; it takes effect at the next restart", section)
            self.config = new
            self.datacenter.set_attribution(new.attribution)
            self.monitor.reconfigure(new)
            if self.live is not None:
                self.live.follow(new.communes, new.timezone, link_keys(new.links), self._settle_s())
            self.scheduler.apply(new)
            self._settle_due = time.monotonic()  # the new links' state: frozen after their first polls
            self._settle_unfreezes = True
            self.metrics.reloads.labels("success").inc()
            self.metrics.config_ok.set(1)
            self.metrics.config_loaded.set(time.time())
            log.info("configuration reloaded: %d targets, %d links", len(new.targets), len(new.links))
            return True, []

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)

    def _reload_in_background(self) -> None:
        task = asyncio.ensure_future(self.reload())
        self._background.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._background.discard)


def apply_trap(monitor: Monitor, event: TrapEvent) -> list[str]:
    """Fold an accepted trap into the monitor, stamped with when it arrived (a trap coalesced under a
    flood is delivered later than it was received); returns the targets to poll at once to confirm it."""
    if event.kind in (TrapKind.LINK_DOWN, TrapKind.LINK_UP):
        monitor.on_link_trap(
            event.source_ip, event.if_index, event.kind is TrapKind.LINK_UP, event.received_at,
            admin_status=event.admin_status, oper_status=event.oper_status,
        )  # fmt: skip
    elif event.kind in (TrapKind.COLD_START, TrapKind.WARM_START):
        monitor.on_restart_trap(event.source_ip, event.received_at)
    else:
        return []
    return [target.name for target in monitor.targets_at(event.source_ip)]


async def run_daemon(
    config_path: Path, config: SitivmonConfig, listen: str | None = None, *, composition: Composition = Composition()
) -> int:
    daemon = Daemon(config_path, config, listen=listen, composition=composition)
    async with daemon:
        daemon.install_signal_handlers()
        daemon.metrics.config_loaded.set(time.time())
        await daemon.wait()
    log.info("stopped")
    return 0
