"""Bench-local prototypes of the changes proposed for sitivmon's hot spots, measured by profile_poll.py.

Nothing here is imported by sitivmon. Each prototype keeps the behaviour of the code it shadows
(same rows, same errors, same walk guards); only the cost per varbind changes. The lead applies the
chosen ones to sitivmon/ (see bench/README.md, "Proposed changes").

1. `absorb_batch_fast`  (sitivmon/snmp/walkguard.py): the guard compared full-OID tuples built with
   `tuple(int(p) for p in oid.split("."))` for every varbind (12 ints for an ifXTable OID). Inside one
   walk every OID shares the column prefix, so comparing the index suffix is equivalent, and the usual
   suffix is a single integer: `(int(suffix),)`. The cap check becomes a countdown.
2. `LeanGufoClient.walk` (sitivmon/snmp/gufo.py): per GETBULK the current walk builds two closures and
   three coroutines, and gufo's `_recv` does add_reader + remove_reader (two epoll_ctl syscalls) and
   `asyncio.wait_for` (an extra future and a timer) per response. The lean walk registers the socket's
   reader once per column, waits on one future per response with one `call_at` timer, and keeps the
   same retry/timeout/error semantics.
3. `LazyMonitor` (sitivmon/monitor.py + links/interfaces.py): `interface_rows` built an InterfaceRow
   (≈40 dict look-ups, 8-10 RawCounters) for every interface of the device on every poll, though only
   the linked ones are used (50 of 500 here). The lazy version resolves selectors on a per-poll index of
   the selector's column, and builds rows only for the interfaces that links resolve to.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gufo.snmp._fast import GetIter

from sitivmon.config.model import InterfaceSelector, Target
from sitivmon.engine.poll import TargetPoll, poll_target
from sitivmon.links.interfaces import (
    _COUNTER_SOURCES,
    _NUCAST_32,
    _NUCAST_HC,
    InterfaceRow,
    ResolveError,
    _int,
    _text,
    interface_rows,
)
from sitivmon.links.state import apply_row
from sitivmon.monitor import Monitor, TargetStatus, log
from sitivmon.normalize.counters import RawCounter
from sitivmon.readings import CounterInterval, GaugeReading, LinkState, PollBatch, StateSource
from sitivmon.snmp.client import PollError, PollErrorReason, Value, WalkResult, WalkStop
from sitivmon.snmp.gufo import GufoClient, _classify
from sitivmon.snmp.walkguard import oid_tuple

# --- 1. walk guard -----------------------------------------------------------------------------------


def absorb_batch_fast(
    prefix: str,
    batch: Iterable[tuple[str, Value] | None],
    result: WalkResult,
    last: tuple[int, ...] | None,
    max_varbinds: int,
) -> tuple[tuple[int, ...] | None, bool]:
    """Same contract as walkguard.absorb_batch (`last` in and out is the full OID as a tuple), but the
    per-varbind comparison is on the index suffix: inside one column every OID shares the prefix, so
    suffix order is OID order, and the usual suffix is one integer, `(int(suffix),)`. The full tuple
    is rebuilt once per response."""
    head = prefix + "."
    cut = len(head)
    base = oid_tuple(prefix)
    n = len(base)
    prev: tuple[float, ...] | None
    if last is None:
        prev = None
    elif last[:n] == base:
        prev = last[n:]
    elif last[:n] < base:
        prev = ()  # every OID of this column is greater than `last`
    else:
        prev = (math.inf,)  # every OID of this column is smaller: the first one is non-increasing
    rows = result.rows
    room = max_varbinds - len(rows)
    moved = False
    done = False
    for item in batch:
        if item is None:
            done = True
            break
        oid, value = item
        if not oid.startswith(head):
            done = True
            break
        suffix = oid[cut:]
        current = (int(suffix),) if suffix.isdigit() else tuple(map(int, suffix.split(".")))
        if prev is not None and current <= prev:
            result.stopped = WalkStop.NONINCREASING
            done = True
            break
        if room <= 0:  # one row more than the cap: stop (a column of exactly the cap is not capped)
            result.stopped = WalkStop.VARBIND_CAP
            done = True
            break
        prev = current
        moved = True
        rows[suffix] = value  # strictly increasing, so never a duplicate: the count is exact
        room -= 1
    return (base + prev if moved else last), done  # type: ignore[operator]


class FastGuardClient(GufoClient):
    """The current walk with only the guard replaced (measures change 1 alone)."""

    async def walk(self, column_oid: str, max_varbinds: int) -> WalkResult:
        import sitivmon.snmp.gufo as g

        saved = g.absorb_batch
        g.absorb_batch = absorb_batch_fast  # type: ignore[assignment]
        try:
            return await super().walk(column_oid, max_varbinds)
        finally:
            g.absorb_batch = saved


# --- 2. lean walk ------------------------------------------------------------------------------------


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class LeanGufoClient(GufoClient):
    """GETBULK walk with the socket's reader registered once per column and one future per response."""

    async def walk(self, column_oid: str, max_varbinds: int) -> WalkResult:
        if not self._bulk:
            return await super().walk(column_oid, max_varbinds)
        await self._ensure_ready()
        session = self._session
        sock = session._sock
        fd = session._fd
        timeout = session._timeout
        loop = asyncio.get_running_loop()
        ctx = GetIter(column_oid, self._max_repetitions)
        result = WalkResult()
        waiter: list[asyncio.Future[None] | None] = [None]

        def on_readable() -> None:
            w = waiter[0]
            if w is not None and not w.done():
                w.set_result(None)

        last: tuple[int, ...] | None = None
        loop.add_reader(fd, on_readable)
        try:
            while True:
                attempt = 0
                while True:  # one request, retried on timeout like GufoClient._retry
                    try:
                        try:
                            sock.send_get_bulk(ctx)
                        except BlockingIOError:
                            await session._send(lambda: sock.send_get_bulk(ctx))
                        deadline = loop.time() + timeout
                        while True:
                            w = loop.create_future()
                            waiter[0] = w
                            handle = loop.call_at(deadline, _expire, w)
                            try:
                                await w
                            finally:
                                handle.cancel()
                                waiter[0] = None
                            try:
                                batch = sock.recv_get_bulk(ctx)
                                break
                            except BlockingIOError:
                                continue  # not our datagram yet (stale response): keep waiting
                            except StopAsyncIteration:
                                # gufo: the response held only endOfMibView/noSuch* (end of the agent's
                                # view). The current walk turns this into PollError(OTHER): a bug.
                                batch = []
                                break
                        break
                    except TimeoutError as exc:
                        attempt += 1
                        if attempt > self._retries:
                            raise _classify(exc) from None
                    except PollError:
                        raise
                    except Exception as exc:
                        raise _classify(exc) from None
                if not batch:
                    break
                result.requests += 1
                last, done = absorb_batch_fast(column_oid, batch, result, last, max_varbinds)
                if done:
                    break
        finally:
            loop.remove_reader(fd)
        return result


# --- 3. lazy interface rows --------------------------------------------------------------------------

_PRESENCE = ("ifDescr", "ifName", "ifInOctets", "ifHCInOctets", "ifOperStatus")
_KEY_COLUMN = {"name": "ifName", "alias": "ifAlias", "descr": "ifDescr"}


def build_row(tables: Mapping[str, Mapping[str, Value]], idx: str) -> InterfaceRow:
    """One InterfaceRow, exactly as interface_rows builds it (the loop body, factored out)."""

    def get(col: str) -> Value:
        return tables.get(col, {}).get(idx)

    counters: dict[str, RawCounter] = {}
    for raw, hc, low in _COUNTER_SOURCES:
        hc_value = _int(get(hc)) if hc else None
        if hc_value is not None:
            counters[raw] = RawCounter(hc_value, 64)
        else:
            low_value = _int(get(low))
            if low_value is not None:
                counters[raw] = RawCounter(low_value, 32)
    for direction in ("in", "out"):
        mc, bc = (_int(get(c)) for c in _NUCAST_HC[direction])
        if mc is not None and bc is not None:
            counters[f"{direction}_mcast"] = RawCounter(mc, 64)
            counters[f"{direction}_bcast"] = RawCounter(bc, 64)
        else:
            nu = _int(get(_NUCAST_32[direction]))
            if nu is not None:
                counters[f"{direction}_nucast"] = RawCounter(nu, 32)
    high = _int(get("ifHighSpeed"))
    low_speed = _int(get("ifSpeed"))
    if high:
        speed: int | None = high * 1_000_000 // 8
    elif low_speed:
        speed = low_speed // 8
    else:
        speed = None
    return InterfaceRow(
        index=int(idx),
        name=_text(get("ifName")),
        alias=_text(get("ifAlias")),
        descr=_text(get("ifDescr")),
        admin_status=_int(get("ifAdminStatus")),
        oper_status=_int(get("ifOperStatus")),
        speed_bytes_per_s=speed,
        last_change_ticks=_int(get("ifLastChange")),
        discontinuity_ticks=_int(get("ifCounterDiscontinuityTime")),
        counters=counters,
    )


class InterfaceIndex:
    """Per poll: which indexes exist, selector look-ups in O(1), rows built on first use.

    Mirrors Monitor._fold's `interface_rows(tables) if tables.get("ifDescr") or tables.get("ifName")
    else {}`: without either column there are no interfaces at all.
    """

    def __init__(
        self, tables: Mapping[str, Mapping[str, Value]], rows: Mapping[int, InterfaceRow] | None = None
    ) -> None:
        self.tables = tables
        present: set[str] = set()
        if tables.get("ifDescr") or tables.get("ifName"):
            for column in _PRESENCE:
                present.update(tables.get(column, {}))
        self.indexes = {i for i in present if i.isdigit()}
        self._by_key: dict[str, dict[str, list[str]]] = {}
        self._rows: dict[str, InterfaceRow] = {str(k): v for k, v in (rows or {}).items()}

    def row(self, idx: str) -> InterfaceRow:
        r = self._rows.get(idx)
        if r is None:
            r = self._rows[idx] = build_row(self.tables, idx)
        return r

    def resolve(self, selector: InterfaceSelector) -> InterfaceRow:
        """Same answers and messages as links.interfaces.resolve over interface_rows(tables)."""
        if selector.index is not None:
            idx = str(selector.index)
            if idx not in self.indexes:
                raise ResolveError(f"no interface with ifIndex {selector.index}")
            return self.row(idx)
        key = selector.key
        wanted = selector.wanted
        by = self._by_key.get(key)
        if by is None:
            column = self.tables.get(_KEY_COLUMN[key], {})
            by = {}
            for idx in self.indexes:
                by.setdefault(_text(column.get(idx)), []).append(idx)
            self._by_key[key] = by
        found = by.get(wanted, [])
        if not found:
            raise ResolveError(f"no interface with if{key.capitalize()} {wanted!r}")
        if len(found) > 1:
            listed = ", ".join(str(i) for i in sorted(int(i) for i in found))
            raise ResolveError(f"if{key.capitalize()} {wanted!r} matches several interfaces (ifIndex {listed})")
        return self.row(found[0])


class LazyMonitor(Monitor):
    """Monitor._fold with InterfaceIndex instead of interface_rows + resolve (the rest is unchanged).

    Every row is still built when the target has `ifalias_parser` (discovery reads all aliases)."""

    def _fold(self, target: Target, poll: TargetPoll, status: TargetStatus) -> None:
        counters: list[CounterInterval] = []
        gauges: list[GaugeReading] = []
        baselines: dict[str, str] = {}
        tables = poll.tables
        rows: Mapping[int, InterfaceRow] = {}
        if target.ifalias_parser and (tables.get("ifDescr") or tables.get("ifName")):
            rows = interface_rows(tables)
            if rows:
                self._discover(target, rows)
        links = self.links_of(target.name)
        if links:
            index = InterfaceIndex(tables, rows)
            uptime = poll.scalars.get("sysUpTime")
            uptime_ticks = uptime if isinstance(uptime, int) else None
            for rt in links:
                try:
                    row = index.resolve(rt.link.interface)
                except ResolveError as exc:
                    if rt.resolve_error != str(exc):
                        log.error("link %s on %s: %s", rt.link.id, target.name, exc)
                        status.errors[PollErrorReason.RESOLVE.value] += 1
                    rt.resolve_error = str(exc)
                    self._emit(rt.set_state(LinkState.UNKNOWN, poll.at, StateSource.POLL, target.name))
                    continue
                outcome = apply_row(
                    rt,
                    row,
                    at=poll.at,
                    uptime_ticks=uptime_ticks,
                    interval_s=status.interval_s,
                    target=target.name,
                )
                self._emit(outcome.event)
                counters.extend(outcome.counters)
                gauges.extend(outcome.gauges)
                baselines[rt.link.id] = outcome.baseline
        for handler in self.handlers:
            contribution = handler.on_poll(target, poll)
            counters.extend(contribution.counters)
            gauges.extend(contribution.gauges)
            baselines.update(contribution.baselines)
        if self.usage is not None and (counters or gauges or baselines):
            self.usage.submit(
                PollBatch(target.name, poll.at, status.interval_s, tuple(counters), tuple(gauges), baselines)
            )


def check_equivalence(tables: Mapping[str, Mapping[str, Value]], selectors: Sequence[InterfaceSelector]) -> None:
    """The lazy index answers exactly as interface_rows + resolve (raises AssertionError otherwise)."""
    from sitivmon.links.interfaces import resolve

    rows = interface_rows(tables) if tables.get("ifDescr") or tables.get("ifName") else {}
    index = InterfaceIndex(tables)
    for sel in selectors:
        try:
            want: Any = resolve(sel, rows)
        except ResolveError as exc:
            want = str(exc)
        try:
            got: Any = index.resolve(sel)
        except ResolveError as exc:
            got = str(exc)
        assert want == got, (sel, want, got)


# (name, client class, poll function, monitor class, use uvloop)
VARIANTS: list[tuple[str, Any, Any, Any, bool]] = [
    ("guard", FastGuardClient, poll_target, Monitor, False),
    ("lean-walk", LeanGufoClient, poll_target, Monitor, False),
    ("lazy-fold", GufoClient, poll_target, LazyMonitor, False),
    ("all", LeanGufoClient, poll_target, LazyMonitor, False),
    ("all+uvloop", LeanGufoClient, poll_target, LazyMonitor, True),
    ("current+uvloop", GufoClient, poll_target, Monitor, True),
]
