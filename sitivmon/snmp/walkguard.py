"""Guards against buggy agents during a walk: pure functions, tested table by table.

An agent that answers a GETBULK with an OID that does not increase would make a naive walker loop
forever; one that answers outside the column ends the column. Both are decided here, per response.
"""

from __future__ import annotations

import math
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

    Hot path (once per varbind): inside one column every OID shares the prefix, so OIDs are compared
    by their index suffix, usually one integer (`(int(suffix),)`), instead of the whole OID parsed to
    a tuple; `last` (in and out) is still the whole OID, rebuilt once per response.
    """
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
        if room <= 0:
            # One row more than the cap: stop. A column of exactly `max_varbinds` rows is not capped.
            result.stopped = WalkStop.VARBIND_CAP
            done = True
            break
        prev = current
        moved = True
        rows[suffix] = value  # strictly increasing, so never a duplicate: the count stays exact
        room -= 1
    return (base + prev if moved else last), done  # type: ignore[operator]
