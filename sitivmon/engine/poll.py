"""One poll of one target: walk the profiles' columns, GET their scalars, within a hard deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sitivmon.profiles.model import Profile
from sitivmon.readings import Anomaly
from sitivmon.snmp.client import PollError, PollErrorReason, SnmpClient, Value, WalkStop, is_native_panic

log = logging.getLogger("sitivmon.poll")


@dataclass(slots=True)
class TargetPoll:
    """What one poll read. `error` set means the poll failed; partial tables are not used then."""

    target: str
    at: float  # wall-clock time when the poll finished (used to time counter deltas)
    duration: float
    tables: dict[str, dict[str, Value]] = field(default_factory=dict)
    scalars: dict[str, Value] = field(default_factory=dict)
    error: PollError | None = None
    walk_stops: list[tuple[str, WalkStop]] = field(default_factory=list)
    varbinds: int = 0
    requests: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)  # what the agent served that was set aside

    @property
    def ok(self) -> bool:
        return self.error is None


def _capped(column: str, max_varbinds: int) -> Anomaly:
    """A column that would take the poll past its varbind cap is left out whole: a truncated column
    would make the interfaces past the cut look absent (links unresolved, counters missing), which
    is worse than a column plainly missing. The target's other columns are still used."""
    return Anomaly(
        "varbind_cap", column,
        f"column {column} dropped: reading it would take this poll past {max_varbinds} varbinds "
        "(raise poll.max_varbinds for this target if the device really has that many rows)",
    )  # fmt: skip


def missing_scalars(scalars: dict[str, list[str]], values: dict[str, Value]) -> list[Anomaly]:
    """One anomaly per scalar the agent did not serve (noSuchObject, or noSuchName in SNMPv1):
    the others are used, and the absence is counted instead of passing silently."""
    return [
        Anomaly("missing_object", name, f"the agent has no {name} ({oid})")
        for oid, names in scalars.items()
        if oid not in values
        for name in names
    ]


async def poll_target(
    client: SnmpClient,
    target: str,
    profiles: Sequence[Profile],
    *,
    version: str,
    deadline_s: float,
    max_varbinds: int,
) -> TargetPoll:
    """Poll every profile once. Never raises for agent trouble: the result carries the reason.

    Scalars first: sysUpTime must be read before the counters so that a reboot between the two can
    only make the uptime look older, never newer, than the counters (which would hide the reboot).
    """
    started = time.monotonic()
    result = TargetPoll(target=target, at=0.0, duration=0.0)
    # OID -> every name it is read under: a user profile may GET sysUpTime too, and the interfaces
    # profile's own name for it must still be filled (the monitor reads reboots from it).
    scalars: dict[str, list[str]] = {}
    for p in profiles:
        for s in p.scalars:
            names = scalars.setdefault(s.oid, [])
            if s.name not in names:
                names.append(s.name)
    columns: dict[str, str] = {}
    for p in profiles:
        for c in p.columns_for(version):
            columns.setdefault(c.name, c.oid)
    try:
        async with asyncio.timeout(deadline_s):
            if scalars:
                values = await client.get_many(list(scalars))
                result.requests += 1
                result.scalars = {name: v for oid, v in values.items() for name in scalars.get(oid, ())}
                result.varbinds += len(values)
                result.anomalies += missing_scalars(scalars, values)
            budget = max_varbinds
            for name, oid in columns.items():
                walk = await client.walk(oid, max_varbinds=max(budget, 0))
                result.requests += walk.requests
                result.varbinds += len(walk.rows)
                budget -= len(walk.rows)
                if walk.stopped is not None:
                    result.walk_stops.append((name, walk.stopped))
                if walk.stopped is WalkStop.VARBIND_CAP:
                    result.anomalies.append(_capped(name, max_varbinds))
                    continue  # the column is dropped, the target and its other columns are kept
                result.tables[name] = walk.rows
    except TimeoutError:
        result.error = PollError(PollErrorReason.DEADLINE, f"poll exceeded its {deadline_s:g}s deadline")
    except PollError as exc:
        result.error = exc
    except Exception as exc:  # a library bug on one agent must not stop the others
        log.exception("target %s: unexpected failure while polling", target)
        result.error = PollError(PollErrorReason.OTHER, type(exc).__name__)
    except BaseException as exc:
        if not is_native_panic(exc):
            raise  # cancellation, exit
        log.exception("target %s: the SNMP library panicked while polling", target)
        result.error = PollError(PollErrorReason.OTHER, "library panic")
    result.duration = time.monotonic() - started
    result.at = time.time()
    return result
