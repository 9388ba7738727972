"""Walk guards against buggy agents, response by response."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sitivmon.snmp.client import Value, WalkResult, WalkStop
from sitivmon.snmp.walkguard import absorb_batch, oid_tuple

COL = "1.3.6.1.2.1.2.2.1.10"  # ifInOctets
Batch = list[tuple[str, Value] | None]


def vb(suffix: str, value: Value = 1, col: str = COL) -> tuple[str, Value]:
    return f"{col}.{suffix}", value


@dataclass(frozen=True)
class Row:
    name: str
    batches: list[Batch]
    rows: dict[str, Value]
    stopped: WalkStop | None = None
    done_at: int | None = None  # index of the batch that ends the walk (None: still going)
    cap: int = 1000
    prefix: str = COL
    extra: dict[str, object] = field(default_factory=dict)


ROWS = [
    Row("rows inside the column", [[vb("1", 10), vb("2", 20)]], {"1": 10, "2": 20}),
    Row(
        "multi-part index", [[vb("1.4.192.0.2.1", 5), vb("1.4.192.0.2.9", 6)]], {"1.4.192.0.2.1": 5, "1.4.192.0.2.9": 6}
    ),
    Row("next column ends the walk", [[vb("1"), vb("2"), ("1.3.6.1.2.1.2.2.1.11.1", 7)]], {"1": 1, "2": 1}, done_at=0),
    Row("out of subtree ends the walk", [[vb("1"), ("1.3.6.1.2.1.31.1.1.1.1.1", b"lo")]], {"1": 1}, done_at=0),
    Row(
        "a longer sibling column is outside (10 vs 1)",
        [[("1.3.6.1.2.1.2.2.1.10.3", 1)]],
        {},
        prefix="1.3.6.1.2.1.2.2.1.1",
        done_at=0,
    ),
    Row("the column OID itself is outside", [[(COL, 1)]], {}, done_at=0),
    Row("None end-of-MIB marker ends the walk", [[vb("1"), None, vb("9")]], {"1": 1}, done_at=0),
    Row("empty response does not end the walk by itself", [[]], {}),
    Row(
        "same OID twice: non-increasing",
        [[vb("1", 1), vb("2", 2), vb("2", 3)]],
        {"1": 1, "2": 2},
        WalkStop.NONINCREASING,
        done_at=0,
    ),
    Row(
        "OID going back: non-increasing",
        [[vb("1"), vb("3"), vb("2")]],
        {"1": 1, "3": 1},
        WalkStop.NONINCREASING,
        done_at=0,
    ),
    Row("compared as numbers, not text (9 < 10)", [[vb("9"), vb("10"), vb("100")]], {"9": 1, "10": 1, "100": 1}),
    Row(
        "text order would be wrong: 10 then 9 goes back",
        [[vb("10"), vb("9")]],
        {"10": 1},
        WalkStop.NONINCREASING,
        done_at=0,
    ),
    Row(
        "non-increasing across two responses",
        [[vb("1"), vb("2")], [vb("2"), vb("3")]],
        {"1": 1, "2": 1},
        WalkStop.NONINCREASING,
        done_at=1,
    ),
    Row("increasing across two responses", [[vb("1"), vb("2")], [vb("3")]], {"1": 1, "2": 1, "3": 1}),
    Row(
        "varbind cap stops the walk",
        [[vb("1"), vb("2"), vb("3"), vb("4")]],
        {"1": 1, "2": 1},
        WalkStop.VARBIND_CAP,
        done_at=0,
        cap=2,
    ),
    Row(
        "exactly the cap then end of column is no cap",
        [[vb("1"), vb("2"), ("1.3.6.1.2.1.2.2.1.11.1", 0)]],
        {"1": 1, "2": 1},
        None,
        done_at=0,
        cap=2,
    ),
    Row(
        "exactly the cap then end of MIB is no cap",
        [[vb("1"), vb("2")], [None]],
        {"1": 1, "2": 1},
        None,
        done_at=1,
        cap=2,
    ),
    Row(
        "cap across responses",
        [[vb("1"), vb("2")], [vb("3")]],
        {"1": 1, "2": 1},
        WalkStop.VARBIND_CAP,
        done_at=1,
        cap=2,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_absorb(row: Row) -> None:
    result = WalkResult()
    last: tuple[int, ...] | None = None
    done_at = None
    for i, batch in enumerate(row.batches):
        last, done = absorb_batch(row.prefix, batch, result, last, row.cap)
        if done:
            done_at = i
            break
    assert result.rows == row.rows
    assert result.stopped == row.stopped
    assert done_at == row.done_at
    if row.rows:
        assert last == max(oid_tuple(f"{row.prefix}.{k}") for k in row.rows)


def test_oid_tuple() -> None:
    assert oid_tuple("1.3.6.1.2.1.1.3.0") == (1, 3, 6, 1, 2, 1, 1, 3, 0)
    assert oid_tuple("1.3.10") > oid_tuple("1.3.9")
