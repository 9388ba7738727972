"""Guards against buggy agents during a walk: pure functions, tested table by table.

An agent that answers a GETBULK with an OID that does not increase would make a naive walker loop
forever; one that answers outside the column ends the column. Both are decided here, per response.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable
from itertools import islice

from sitivmon.snmp.client import Value, WalkResult, WalkStop


def oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.split("."))


@functools.lru_cache(maxsize=1024)
def _column(prefix: str) -> tuple[str, tuple[int, ...]]:
    """`prefix + "."` and the prefix parsed, once per column rather than once per response (a
    profile's columns are few; the bound only guards against a caller walking arbitrary OIDs)."""
    return prefix + ".", oid_tuple(prefix)


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

    Hot path: a response of a well-behaved agent (a list of varbinds inside the column, each indexed
    by one integer, strictly increasing, under the cap, possibly followed by varbinds past the column's
    end) is checked and stored with a few C-level calls over the whole batch (`_absorb_fast`); any
    other response, and any doubt, goes through the per-varbind loop (`_absorb_each`), which decides
    every case. Both give the same result, rows, `stopped` and return value (tests/unit/test_walkguard.py
    compares them on generated batches).
    """
    head, base = _column(prefix)
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
    if type(batch) is list and batch:
        fast = _absorb_fast(head, base, batch, result, prev, max_varbinds)
        if fast is not None:
            return fast
    return _absorb_each(head, base, batch, result, last, prev, max_varbinds)


def _absorb_fast(
    head: str,
    base: tuple[int, ...],
    batch: list[tuple[str, Value] | None],
    result: WalkResult,
    prev: tuple[float, ...] | None,
    max_varbinds: int,
) -> tuple[tuple[int, ...], bool] | None:
    """The common response in a few C-level passes, or None when it is not one (the caller then
    runs the per-varbind loop on the untouched `result`).

    The OIDs are joined with newlines and split on newline + `head`. Why the checks suffice: no OID
    holds a newline (the count), so every newline is a separator; the first OID starts with `head`;
    every piece but the last is an ASCII-digit index (so no separator was left unsplit, and no piece
    holds `head`): the OIDs before the last piece's first newline are `head` + one integer each,
    and the OID after it, if any, does not start with `head` (it would have been split), where the
    per-varbind loop would stop too. Then the indexes must increase strictly from `prev` (compared as
    strings when all have the same length, as integers otherwise) and fit under the cap.
    """
    try:
        oids, values = zip(*batch, strict=True)
    except (TypeError, ValueError):
        return None  # a None marker (end of MIB view), or not pairs: the loop decides
    first = oids[0]
    if not (type(first) is str and first.startswith(head)):
        return None  # a first varbind outside the column (or not a string): the loop is as quick
    try:
        joined = "\n".join(oids)
    except TypeError:
        return None  # an OID that is not a string, maybe past the column's end: the loop decides
    if joined.count("\n") != len(oids) - 1:
        return None
    parts = joined.split("\n" + head)
    piece, sep, _ = parts[-1].partition("\n")
    done = bool(sep)  # the column ends inside this response
    parts[-1] = piece
    parts[0] = parts[0][len(head) :]  # the first OID, whole (its newline, if any, was split on)
    k = len(parts)
    if max_varbinds - len(result.rows) < k:
        return None  # the cap is reached inside this response: the loop records where
    digits = "".join(parts)
    if not (digits.isascii() and digits.isdigit()):
        return None  # a multi-part index (or a stray separator): the loop parses it
    if len(set(map(len, parts))) == 1:
        # One width: string order is integer order (leading zeros included), equal iff equal; so
        # sorted and all distinct is strictly increasing (and the set computes the hashes the dict
        # update below reuses).
        if sorted(parts) != parts or len(set(parts)) != k:
            return None
        lowest, highest = int(parts[0]), int(parts[-1])
    else:
        if not all(parts):
            return None  # an empty index: the loop fails on it as it always did
        ints = list(map(int, parts))
        if not all(map(operator.lt, ints, islice(ints, 1, None))):
            return None
        lowest, highest = ints[0], ints[-1]
    if prev is not None and (lowest,) <= prev:
        return None
    result.rows.update(zip(parts, values, strict=False))  # `values` may go on past the column
    return (*base, highest), done


def _absorb_each(
    head: str,
    base: tuple[int, ...],
    batch: Iterable[tuple[str, Value] | None],
    result: WalkResult,
    last: tuple[int, ...] | None,
    prev: tuple[float, ...] | None,
    max_varbinds: int,
) -> tuple[tuple[int, ...] | None, bool]:
    """The per-varbind loop: every case, in order. Inside one column every OID shares the prefix, so
    OIDs are compared by their index suffix, usually one integer (`(int(suffix),)`), instead of the
    whole OID parsed to a tuple; `last` (in and out) is still the whole OID."""
    cut = len(head)
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
