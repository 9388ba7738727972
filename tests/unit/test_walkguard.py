"""Walk guards against buggy agents, response by response."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitivmon.snmp.client import Value, WalkResult, WalkStop
from sitivmon.snmp.walkguard import _absorb_fast, absorb_batch, oid_tuple

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


# --- The batch fast path gives what the per-varbind loop gives ---------------------------------------


def reference_absorb(
    prefix: str, batch: Batch, result: WalkResult, last: tuple[int, ...] | None, max_varbinds: int
) -> tuple[tuple[int, ...] | None, bool]:
    """`absorb_batch` as it was before the batch fast path (b9e81d9), the specification it must meet."""
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
        prev = ()
    else:
        prev = (math.inf,)
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
            result.stopped = WalkStop.VARBIND_CAP
            done = True
            break
        prev = current
        moved = True
        rows[suffix] = value
        room -= 1
    return (base + prev if moved else last), done  # type: ignore[operator]


NEXT = "1.3.6.1.2.1.2.2.1.11"
# Index texts an agent could send, and some it should not: the fast path must take the well-formed
# ones and leave every other to the loop (same rows, same stop, same exception).
INDEXES = st.one_of(
    st.integers(0, 2**32).map(str),
    st.integers(0, 120).map(str),
    st.integers(0, 99).map(lambda i: f"{i:03d}"),  # leading zeros: compared as integers
    st.lists(st.integers(0, 300), min_size=2, max_size=4).map(lambda p: ".".join(map(str, p))),
    st.sampled_from(["", "1\n2", "1.", "x", "\u0663", "\u00b2", "1\n" + COL + ".2", "9\n" + NEXT + ".1"]),
)
OIDS = st.one_of(
    INDEXES.map(lambda i: f"{COL}.{i}"),
    INDEXES.map(lambda i: f"{COL}.{i}"),
    INDEXES.map(lambda i: f"{NEXT}.{i}"),
    st.sampled_from([COL, "1.3.6.1.2.1.2.2.1.9.4", "1.3.6.1.2.1.2.2.1.100.1", "1.3.6.1.2.1.31.1.1.1.1.1", COL + "."]),
)
ITEMS = st.one_of(st.tuples(OIDS, st.integers(0, 9)), st.none(), st.just((b"1.3", 1)), st.just((f"{COL}.1", 1, 2)))


def increasing_runs(start: int, lengths: list[int]) -> list[str]:
    out, i = [], start
    for step in lengths:
        i += step
        out.append(str(i))
    return out


WELL_FORMED = st.builds(
    lambda start, steps, tail, lead: (
        [(f"{COL}.{'0' * lead}{i}", int(i)) for i in increasing_runs(start, steps)]
        + [(f"{NEXT}.{j}", j) for j in range(tail)]
    ),
    st.integers(0, 2000),
    st.lists(st.integers(1, 3), min_size=1, max_size=30),
    st.integers(0, 3),
    st.sampled_from([0, 0, 0, 1]),
)
ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))  # "1" -> "\u0661"


def mutate(indexes: list[str], at: int, how: str) -> list[str]:
    """One flaw in an otherwise increasing run, aimed at the fast path's cheap checks (one width by a
    strided slice, string order, ASCII digits, the piece count)."""
    out = list(indexes)
    i = at % len(out)
    j = max(i - 1, 0)
    if how == "equal neighbour":
        out[i] = out[j]
    elif how == "leading zero":  # "07" after "6": two widths, 7 > 6 as integers
        out[i] = "0" + out[i]
    elif how == "padded to the neighbour's width":  # "099" then "100": one width, string order holds
        out[i] = out[i].zfill(len(out[-1]))
    elif how == "non-ASCII digits":  # str.isdigit says yes, int() parses them, the loop's rule decides
        out[i] = out[i].translate(ARABIC_INDIC)
    elif how == "empty":
        out[i] = ""
    elif how == "swapped":
        out[i], out[j] = out[j], out[i]
    elif how == "one shorter":  # the widths' total can still match: the strided slice must catch it
        out[i] = out[i][1:] or "0"
    elif how == "newline inside":
        out[i] = out[i][:1] + "\n" + COL + "." + out[i][1:]
    elif how == "two parts":
        out[i] = out[i] + ".1"
    return out


MUTATIONS = [
    "none", "equal neighbour", "leading zero", "padded to the neighbour's width", "non-ASCII digits", "empty",
    "swapped", "one shorter", "newline inside", "two parts",
]  # fmt: skip
NEAR_WELL_FORMED = st.builds(
    lambda start, steps, at, how, tail: (
        [(f"{COL}.{i}", n) for n, i in enumerate(mutate(increasing_runs(start, steps), at, how))]
        + [(f"{NEXT}.{j}", j) for j in tail]
    ),
    st.sampled_from([0, 5, 90, 95, 980, 995, 2000]),  # runs within one width and across a width change
    st.lists(st.integers(1, 3), min_size=1, max_size=30),
    st.integers(0, 30),
    st.sampled_from(MUTATIONS),
    st.lists(st.sampled_from([1, 10, 100, 1000]), max_size=3),  # past the end: as long as the column's OIDs, or not
)
LASTS = st.one_of(
    st.none(),
    st.lists(st.integers(0, 3000), min_size=1, max_size=3).map(lambda p: (*oid_tuple(COL), *p)),
    st.just(oid_tuple("1.3.6.1.2.1.2.2.1.9.7")),
    st.just(oid_tuple(NEXT + ".1")),
    st.just(oid_tuple(COL)),
)


def outcome(fn: object, batches: list[Batch], last: tuple[int, ...] | None, cap: int, rows: int) -> object:
    result = WalkResult(rows={str(-i): i for i in range(rows)})  # rows of earlier responses, for the cap
    trace: list[object] = []
    try:
        for batch in batches:
            last, done = fn(COL, batch, result, last, cap)  # type: ignore[operator]
            trace.append((last, done))
            if done:
                break
    except Exception as exc:  # the loop raises on an index it cannot parse; the fast path must too
        trace.append(type(exc))
    return trace, list(result.rows.items()), result.stopped


@settings(max_examples=1500, deadline=None)
@given(
    batches=st.lists(st.one_of(WELL_FORMED, NEAR_WELL_FORMED, st.lists(ITEMS, max_size=8)), min_size=1, max_size=3),
    last=LASTS,
    cap=st.integers(0, 70),
    rows=st.integers(0, 5),
)
def test_fast_path_matches_the_loop(batches: list[Batch], last: tuple[int, ...] | None, cap: int, rows: int) -> None:
    assert outcome(absorb_batch, batches, last, cap, rows) == outcome(reference_absorb, batches, last, cap, rows)


@pytest.mark.parametrize(
    "batch",
    [
        [vb(str(i), i) for i in range(100, 124)],  # one width: compared as text
        [vb(str(i), i) for i in range(1, 25)],  # 1..9 then 10..24: compared as integers
        [vb(str(i), i) for i in range(491, 501)] + [(f"{NEXT}.{j}", j) for j in range(1, 15)],  # end of column
        [vb(str(i), i) for i in range(95, 105)] + [(f"{NEXT}.{j}", j) for j in range(1, 15)],
        [vb(f"{i:03d}", i) for i in range(95, 120)],  # leading zeros: one width
        [vb(str(i), i) for i in range(7, 8)],
        [vb(str(i), i) for i in range(7, 8)] + [(f"{NEXT}.{j}", j) for j in range(1, 15)],
    ],
    ids=["one-width", "two-widths", "column-ends", "two-widths-column-ends", "leading-zeros", "one", "one-then-end"],
)
def test_a_well_behaved_response_takes_the_fast_path(batch: Batch) -> None:
    """The fast path must not silently decline the responses it exists for (it would still be right,
    through the loop, but the hot path would be lost)."""
    head = COL + "."
    result = WalkResult()
    fast = _absorb_fast(head, "\n" + head, oid_tuple(COL), batch, result, None, 1000)
    assert fast is not None
    assert result.rows == {oid[len(head) :]: v for oid, v in batch if oid.startswith(head)}
    assert fast[1] is (len(result.rows) < len(batch))


@pytest.mark.parametrize(
    "batch",
    [
        [vb("1\n" + COL + ".2"), vb("3")],  # a newline inside an OID could pass for a separator
        [vb("5"), (f"{COL}.6\n{NEXT}.1", 1)],
        [vb("5"), vb("6\n" + NEXT + ".1"), vb("7")],
        [vb("10"), vb("2"), vb("300"), vb("40")],  # widths 2,1,3,2: right total, not one width
        [vb("7"), vb("07")],  # equal as integers
        [vb("1"), vb(""), vb("3")],
        [vb("1"), (COL + "..2", 1)],
        [vb("1"), (NEXT + ".1", 1), vb("2")],  # the column ends at the first OID outside it
        [vb("1"), (NEXT + ".1", 1), (b"1.3", 1)],
        [vb("1"), None, vb("2")],
        [vb("01"), vb("1")],  # two widths, equal as integers
        [vb("10"), vb("01")],  # one width, string order goes back
        [vb("099"), vb("100"), vb("101")],  # one width thanks to a leading zero: increasing
        [vb("5"), vb("5")],  # equal neighbours
        [vb("7"), vb("8"), vb("8"), (NEXT + ".1", 1)],  # equal neighbours, then the column ends
        [vb("\u0661"), vb("2")],  # a non-ASCII digit: str.isdigit says yes
        [vb("1"), vb("\u0662")],
        [vb(""), vb("")],  # empty pieces, one width
        [vb("1"), vb("")],
        [vb(""), vb("1")],
        [vb("1"), vb("22"), vb("3")],  # widths 1, 2, 1
        [vb("22"), vb("3"), vb("44")],  # widths 2, 1, 2: the total is not a multiple
        [vb("100"), vb("2"), vb("3000")],  # widths 3, 1, 4: every OID's length averages the first's
        [vb("10"), vb("11"), (NEXT + ".10", 1)],  # the OID past the end is as long as the column's
        [vb("10"), vb("11"), (NEXT + ".1", 1)],
        [vb("9"), vb("10"), (NEXT + ".1", 1)],
        [vb("5"), vb("6"), (f"{NEXT}.1\n{COL}.7", 1)],  # a newline past the column's end
        [vb("5"), (f"{COL}.6\nx", 1), (NEXT + ".1", 1)],
        [(f"{COL}.5\n", 1), vb("6")],
        [vb("1"), vb("\ud800")],  # a lone surrogate: str.encode would raise, int() raises ValueError
    ],
)
def test_crafted_responses_match_the_loop(batch: Batch) -> None:
    for cap in (1, 2, 1000):
        assert outcome(absorb_batch, [batch], None, cap, 0) == outcome(reference_absorb, [batch], None, cap, 0)


def test_a_prefix_holding_a_newline_takes_the_loop() -> None:
    """The fast path's proof needs a newline-free column head. `oid_tuple` accepts "1.3\n" (int()
    strips whitespace), and with head "1.3\n." a newline inside an OID would pass for a separator
    between two OIDs: two rows where the loop raises on the index "1\n1.3"."""
    prefix = "1.3\n"
    batch: Batch = [(f"{prefix}.1\n1.3", 1), (".2", 2)]
    outcomes = []
    for fn in (absorb_batch, reference_absorb):
        result = WalkResult()
        try:
            outcomes.append(fn(prefix, batch, result, None, 100))
        except ValueError as exc:
            outcomes.append(type(exc))
        outcomes.append(result.rows)
    assert outcomes[0:2] == outcomes[2:4] == [ValueError, {}]
