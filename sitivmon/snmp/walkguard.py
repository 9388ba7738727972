"""Guards against buggy agents during a walk: pure functions, tested table by table.

An agent that answers a GETBULK with an OID that does not increase would make a naive walker loop
forever; one that answers outside the column ends the column. Both are decided here, per response.
"""

from __future__ import annotations

from collections.abc import Iterable

from sitivmon.snmp.client import Value, WalkResult, WalkStop


def oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.split("."))


def absorb_batch(
    prefix: str,
    batch: Iterable[tuple[str, Value] | None],
    result: WalkResult,
    last: tuple[int, ...] | None,
    max_varbinds: int,
) -> tuple[tuple[int, ...] | None, bool]:
    """Add a response's varbinds to `result`; return the last OID seen and whether the walk must end.

    The walk ends at the first varbind outside `prefix` (normal end of column), at a `None` marker
    (end of MIB view), at an OID that is not greater than the previous one (buggy agent, recorded in
    `result.stopped`) or when the column would hold more than `max_varbinds` rows (recorded too).
    """
    head = prefix + "."
    cut = len(head)
    for item in batch:
        if item is None:
            return last, True
        oid, value = item
        if not oid.startswith(head):
            return last, True
        current = oid_tuple(oid)
        if last is not None and current <= last:
            result.stopped = WalkStop.NONINCREASING
            return last, True
        if len(result.rows) >= max_varbinds:
            # One row more than the cap: stop. A column of exactly `max_varbinds` rows is not capped.
            result.stopped = WalkStop.VARBIND_CAP
            return last, True
        last = current
        result.rows[oid[cut:]] = value
    return last, False
