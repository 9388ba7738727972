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
def _column(prefix: str) -> tuple[str, str | None, tuple[int, ...]]:
    """`prefix + "."`, the separator `_absorb_fast` splits on (None: no fast path for a prefix holding
    a newline, its proof needs newline-free heads) and the prefix parsed, once per column rather than
    once per response (a profile's columns are few; the bound only guards against a caller walking
    arbitrary OIDs)."""
    head = prefix + "."
    return head, None if "\n" in head else "\n" + head, oid_tuple(prefix)


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
    head, sep, base = _column(prefix)
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
    if type(batch) is list and batch and sep is not None:
        fast = _absorb_fast(head, sep, base, batch, result, prev, max_varbinds)
        if fast is not None:
            return fast
    return _absorb_each(head, base, batch, result, last, prev, max_varbinds)


_VALUE = operator.itemgetter(1)


def _absorb_fast(
    head: str,
    sep: str,
    base: tuple[int, ...],
    batch: list[tuple[str, Value] | None],
    result: WalkResult,
    prev: tuple[float, ...] | None,
    max_varbinds: int,
) -> tuple[tuple[int, ...], bool] | None:
    """The common response in a few C-level passes, or None when it is not one (the caller then
    runs the per-varbind loop on the untouched `result`).

    The OIDs are joined with newlines into `joined` and split on `sep` (newline + `head`, which holds
    no newline). The first OID starts with `head` and every piece is checked to be ASCII digits, so
    the column's text `joined[:end]` (all of it, or up to the last piece's first newline) is exactly
    head + piece, newline, head + piece, ...: its only newlines are the k - 1 between the pieces.
    Why that suffices: when the last piece holds no newline, k == n (the OIDs' count) says the join's
    n - 1 newlines are those, so no OID holds one and OID i is head + piece i. When it holds one, the
    column ends inside this response: `joined` must hold exactly n - 1 newlines (counted), so the
    first k OIDs are head + pieces and OID k + 1, the text after that newline, does not start with
    `head` (it would have been split), where the per-varbind loop would stop too.

    Then the indexes must increase strictly from `prev` and fit under the cap. One width (every
    column OID is as long as the first: the k - 1 newlines of the column's text sit every len + 1
    characters, one strided slice) lets them be compared as strings; otherwise as integers.
    """
    try:
        oids = [oid for oid, _ in batch]  # type: ignore[misc]  # raises on a None or a non-pair, as the loop
    except (TypeError, ValueError):
        return None  # a None marker (end of MIB view), or not pairs: the loop decides
    first = oids[0]
    if not (type(first) is str and first.startswith(head)):
        return None  # a first varbind outside the column (or not a string): the loop is as quick
    try:
        joined = "\n".join(oids)
    except TypeError:
        return None  # an OID that is not a string, maybe past the column's end: the loop decides
    parts = joined.split(sep)
    k = len(parts)
    piece, nl, rest = parts[-1].partition("\n")
    if nl:  # the column ends inside this response
        if joined.count("\n") != len(oids) - 1:
            return None
        parts[-1] = piece
        end = len(joined) - len(rest) - 1
    elif k == len(oids):
        end = len(joined)
    else:
        return None  # an OID holding a newline (or past the column's end and back): the loop decides
    if max_varbinds - len(result.rows) < k:
        return None  # the cap is reached inside this response: the loop records where
    parts[0] = parts[0][len(head) :]  # the first OID, whole: head + its index
    digits = "".join(parts)
    if not (digits.isascii() and digits.encode().isdigit()):
        return None  # a multi-part index (or a stray separator): the loop parses it
    step = len(first) + 1
    if end == k * step - 1 and joined[step - 1 : end : step] == "\n" * (k - 1):
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
    # Every item is a pair (unpacked above); zip stops at the column's end.
    result.rows.update(zip(parts, map(_VALUE, batch), strict=False))  # type: ignore[arg-type]
    return (*base, highest), bool(nl)


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
