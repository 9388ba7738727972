"""The replica merge rule (`sitivmon.usage.replicas`), table by table, and its exactness measured.

The rule: per bucket, one replica's bucket (never a sum): written beats absent, observed beats a gap,
more coverage (capped at whole) beats less, a tie keeps the previous bucket's replica. The exactness
tests build each replica's buckets with the recorder's own arithmetic (`Accumulator`, which splits
counter intervals with `periods.split_delta`) from synthetic counters polled at two different phases,
then measure how far the merged total is from the counter's true increase.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sitivmon.readings import CounterInterval, Flag, PollBatch, Quantity, UsageKey
from sitivmon.usage.buckets import CHUNK_S, FLAG_BITS, PRESENT, SLOTS, Chunk, col_sum
from sitivmon.usage.periods import BUCKET_S
from sitivmon.usage.recorder import Accumulator
from sitivmon.usage.replicas import (
    PPM,
    Columns,
    apportion,
    base_replica,
    choose,
    exact_runs,
    merge_chunks,
    rank,
    switches,
    take,
)

GAP = FLAG_BITS[Flag.GAP]
UNKNOWN = FLAG_BITS[Flag.UNKNOWN]
RESET = FLAG_BITS[Flag.RESET]
P = PRESENT
E = 3333  # expected_milli of a 90 s poll
W = 10_000  # expected_milli of a 30 s poll


def cols(*slots: tuple[int, int, int, int]) -> Columns:
    """Columns from (value, received, expected, flags) per slot."""
    v, r, e, f = zip(*slots, strict=True)
    return list(v), list(r), list(e), list(f)


# -- rank ----------------------------------------------------------------------------------------------------

RANK_ORDER = [
    # (label, received, expected, flags), from worst to best
    ("never written", 0, 0, 0),
    ("gap, nothing received", 0, W, P | GAP),
    ("unknown, half received", W // 2, W, P | UNKNOWN),
    ("gap, almost all received", W - 1, W, P | GAP),
    ("observed, nothing received", 0, W, P),
    ("observed, a tenth", W // 10, W, P),
    ("observed, whole", W, W, P),
]


def test_rank_orders_written_then_observed_then_coverage() -> None:
    ranks = [rank(r, e, f) for _, r, e, f in RANK_ORDER]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks), list(zip(RANK_ORDER, ranks, strict=True))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((E, E, P), (4000, E, P)),  # a gauge with 4 readings where 3.333 were expected: whole, like 3.333
        ((W, W, P), (W, W, P | RESET)),  # a reset is observed time (not a gap)
        ((W, W, P), (W + 500, W, P)),  # two writers' open buckets overlapping: still just whole
    ],
)
def test_whole_is_whole(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    assert rank(*a) == rank(*b) == (2 * (PPM + 1)) + PPM


def test_a_gauge_bucket_is_whole_at_the_lower_whole_number_of_readings() -> None:
    top = 2 * (PPM + 1) + PPM
    assert rank(3000, E, P, counter=False) == rank(4000, E, P, counter=False) == top  # 90 s: 3 or 4
    assert rank(2000, E, P, counter=False) < top  # a reading missed
    assert rank(3000, E, P, counter=True) < top  # a counter observed 90 % of the bucket is not whole
    assert rank(1000, 500, P, counter=False) == top  # 10 min polls: one reading in a bucket is whole


# -- choose: one table per situation -------------------------------------------------------------------------

A_WHOLE = (100, W, W, P)
B_WHOLE = (101, W, W, P)
A_GAP = (70, 0, W, P | GAP)
B_GAP = (90, 0, W, P | GAP)
ABSENT = (0, 0, 0, 0)

CHOOSE_TABLE = [
    # (name, a's slots, b's slots, expected choice, expected merged values)
    ("both whole: a all along", [A_WHOLE] * 3, [B_WHOLE] * 3, [0, 0, 0], [100, 100, 100]),
    ("hole in a: b there, then b kept", [A_WHOLE, A_GAP, A_WHOLE], [B_WHOLE] * 3, [0, 1, 1], [100, 101, 101]),
    ("hole in b: a all along", [A_WHOLE] * 3, [B_WHOLE, B_GAP, B_WHOLE], [0, 0, 0], [100, 100, 100]),
    (
        "holes in both, at different buckets",
        [A_WHOLE, A_GAP, A_WHOLE, A_WHOLE],
        [B_WHOLE, B_WHOLE, B_GAP, B_WHOLE],
        [0, 1, 0, 0],
        [100, 101, 100, 100],
    ),
    ("holes in both at once: one gap bucket, a's", [A_WHOLE, A_GAP], [B_WHOLE, B_GAP], [0, 0], [100, 70]),
    ("b never wrote (one daemon's view)", [A_WHOLE, A_GAP], [ABSENT, ABSENT], [0, 0], [100, 70]),
    ("a not started yet", [ABSENT, A_WHOLE, A_WHOLE], [B_WHOLE] * 3, [1, 1, 1], [101, 101, 101]),
    ("nobody wrote", [ABSENT], [ABSENT], [0], [0]),
    (
        "partial buckets: the larger coverage",
        [(10, W // 10, W, P), A_WHOLE],
        [(60, W // 2, W, P), B_WHOLE],
        [1, 1],
        [60, 101],
    ),
    (
        "observed partial beats a gap with more samples",
        [(10, W // 10, W, P)],
        [(90, W - 1, W, P | GAP)],
        [0],
        [10],
    ),
    (
        "both gaps: the one with more samples",
        [(10, W // 10, W, P | GAP)],
        [(90, W // 2, W, P | GAP)],
        [1],
        [90],
    ),
]


@pytest.mark.parametrize(("name", "a", "b", "want", "values"), CHOOSE_TABLE, ids=[t[0] for t in CHOOSE_TABLE])
def test_choose(
    name: str,
    a: list[tuple[int, int, int, int]],
    b: list[tuple[int, int, int, int]],
    want: list[int],
    values: list[int],
) -> None:
    reps = [cols(*a), cols(*b)]
    got = choose(reps)
    assert got == want, name
    merged = take(reps, got)
    assert merged[0] == values
    for i, j in enumerate(got):  # every slot is one replica's whole bucket, never a sum
        assert (merged[0][i], merged[1][i], merged[2][i], merged[3][i]) == (a, b)[j][i]


def test_choose_with_three_replicas_takes_the_lowest_of_the_best() -> None:
    a, b, c = cols(A_GAP, A_GAP), cols(B_WHOLE, B_WHOLE), cols(B_WHOLE, B_WHOLE)
    assert choose([a, b, c]) == [1, 1]
    assert choose([a, c, b], first=2) == [2, 2]  # a tie keeps the current one


def test_switches_count_changes_between_written_slots() -> None:
    assert switches([0, 1, 1, 0]) == 2
    assert switches([0, 1, 0], flags=[P, 0, P]) == 0


# -- merge_chunks --------------------------------------------------------------------------------------------


def chunk(slots: dict[int, tuple[int, int, int, int]]) -> Chunk:
    ch = Chunk()
    for i, (v, r, e, f) in slots.items():
        ch.merge(i, v, r, e, f)
    return ch


def test_one_replica_is_returned_as_it_is() -> None:
    ch = chunk({0: A_WHOLE})
    assert merge_chunks([ch]) is ch


def test_a_dominant_first_replica_is_returned_as_it_is() -> None:
    a = chunk({i: A_WHOLE for i in range(10)})
    b = chunk({i: B_WHOLE for i in range(2, 10)})
    assert merge_chunks([a, b]) is a


def test_merge_chunks_takes_b_where_a_has_a_hole_and_a_where_b_started_late() -> None:
    a = chunk({0: A_WHOLE, 1: A_GAP, 2: A_WHOLE})
    b = chunk({1: B_WHOLE, 2: B_WHOLE, 3: B_WHOLE})
    v, r, _e, f = merge_chunks([a, b]).slice(0, SLOTS)
    assert not isinstance(v, int) and not isinstance(f, int) and not isinstance(r, int)
    assert list(v[:5]) == [100, 101, 101, 101, 0]
    assert [x & GAP for x in f[:4]] == [0, 0, 0, 0] and f[4] == 0
    assert list(r[:4]) == [W] * 4


# -- exactness, measured -------------------------------------------------------------------------------------

K = UsageKey("givors", "link-a", Quantity.TRAFFIC_IN)
T0 = 2_000 * CHUNK_S  # a week start: the run stays inside one chunk
INTERVAL = 60
END = 4 * 3_600


@dataclass(frozen=True)
class Run:
    chunk: Chunk
    first: int
    last: int


def replica_run(counter: Callable[[int], int], polls: list[int]) -> Run:
    """A replica's buckets for polls at `polls` (seconds), with the recorder's arithmetic; an interval
    longer than 2.5 poll intervals is a GAP, as the normaliser flags it (a replica restarting from its
    committed baseline: the interval spanning its outage carries every byte)."""
    acc = Accumulator()
    for p, q in itertools.pairwise(polls):
        flags = frozenset({Flag.GAP}) if q - p > 2.5 * INTERVAL else frozenset()
        iv = CounterInterval(K, float(T0 + p), float(T0 + q), counter(q) - counter(p), flags)
        acc.apply(PollBatch("t", float(T0 + q), INTERVAL, counters=(iv,)))
    closed, open_b, _, _ = acc.snapshot()
    ch = Chunk()
    for (_, start), b in {**closed, **open_b}.items():
        ch.merge((start - T0) // BUCKET_S, b.value, b.received_milli, b.expected_milli, b.flags)
    return Run(ch, polls[0], polls[-1])


def polls(phase: int, end: int, down: tuple[int, int] | None = None) -> list[int]:
    return [t for t in range(phase, end, INTERVAL) if down is None or not down[0] < t < down[1]]


def steady(rate_milli: int) -> Callable[[int], int]:
    return lambda t: t * rate_milli // 1000


def bursty(seed: int, end: int) -> Callable[[int], int]:
    """Quiet most of the time (under 1 kB/s), with bursts of up to 1 GB within one second, one every
    200 s on average, at random instants."""
    rng = random.Random(seed)
    per_s = [rng.randrange(1_000) for _ in range(end + 1)]
    for _ in range(end // 200):
        per_s[rng.randrange(end)] += rng.randrange(1, 1_000_000_000)
    cum = [0]
    for x in per_s:
        cum.append(cum[-1] + x)
    return lambda t: cum[t]


@dataclass(frozen=True)
class Measured:
    error: int
    """Merged total minus the counter's true increase over the same span, in bytes."""
    switches: int
    bound: int
    """Traffic within one poll interval either side of every switch: the most a plain switch can be off."""
    truth: int


def measure(counter: Callable[[int], int], a: Run, b: Run, *, exact: bool) -> Measured:
    """The merged series against the counter. The merged span runs from the first poll of the replica
    that holds the first bucket to the last poll of the one that holds the last bucket: the counter's
    increase over that span is what the merge must add up to."""
    merged = merge_chunks([a.chunk, b.chunk], counter=exact)
    got = col_sum(merged.slice(0, SLOTS)[0], SLOTS)
    reps: list[Columns] = []
    for ch in (a.chunk, b.chunk):
        v, r, e, f = ch.slice(0, SLOTS)
        reps.append(
            (
                [v] * SLOTS if isinstance(v, int) else v,
                [r] * SLOTS if isinstance(r, int) else r,
                [e] * SLOTS if isinstance(e, int) else e,
                [f] * SLOTS if isinstance(f, int) else f,
            )
        )
    choice = choose(reps, first=base_replica(reps))
    written = [i for i in range(SLOTS) if reps[0][3][i] or reps[1][3][i]]
    runs = (a, b)
    truth = counter(runs[choice[written[-1]]].last) - counter(runs[choice[written[0]]].first)
    bound = 0
    for i in written[1:]:
        if choice[i] != choice[i - 1]:
            t = i * BUCKET_S  # both replicas' interpolations at t lie within one poll interval of t
            bound += counter(min(t + INTERVAL, max(a.last, b.last))) - counter(max(t - INTERVAL, 0))
    return Measured(got - truth, switches(choice, reps[0][3]), bound, truth)


RESTARTS = {"a killed 2 min": (3_600, 3_720), "a killed 1 h": (3_600, 7_200)}


def scenario(counter: Callable[[int], int], name: str) -> tuple[Run, Run]:
    """Replica a polls at second 7 of each minute, b at second 41; a is down as `name` says."""
    if name == "both up":
        a_polls = polls(7, END + 30)
    elif name == "a dies for good":
        a_polls = polls(7, 3_600)
    else:
        a_polls = polls(7, END + 30, RESTARTS[name])
    return replica_run(counter, a_polls), replica_run(counter, polls(41, END))


NAMES = ["both up", *RESTARTS, "a dies for good"]


@pytest.mark.parametrize("name", NAMES)
def test_steady_traffic_switches_cost_at_most_a_byte_of_rounding(name: str) -> None:
    counter = steady(1_234_567_891)  # ~1.2 MB/s, not a whole number of bytes per second
    a, b = scenario(counter, name)
    for exact in (False, True):
        m = measure(counter, a, b, exact=exact)
        assert abs(m.error) <= m.switches, m
        assert (m.switches == 0) == (name == "both up"), m


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", NAMES)
def test_bursty_traffic_plain_switches_stay_within_the_straddling_intervals(name: str, seed: int) -> None:
    counter = bursty(seed, END + 60)
    a, b = scenario(counter, name)
    m = measure(counter, a, b, exact=False)
    assert abs(m.error) <= m.bound, m
    if name == "both up":
        assert m.error == 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", NAMES)
def test_bursty_traffic_exact_runs_are_exact_when_the_base_replica_comes_back(name: str, seed: int) -> None:
    counter = bursty(seed, END + 60)
    a, b = scenario(counter, name)
    m = measure(counter, a, b, exact=True)
    if name == "a dies for good":  # a's counter stops: the switch to b cannot be made exact
        assert abs(m.error) <= m.bound, m
    else:
        assert m.error == 0, m


def test_plain_switches_are_not_exact_under_bursts() -> None:
    """The measurement can fail: without `exact_runs`, a killed replica's switches cost bytes."""
    errors = []
    for seed in range(5):
        counter = bursty(seed, END + 60)
        a, b = scenario(counter, "a killed 2 min")
        errors.append(measure(counter, a, b, exact=False).error)
    assert any(errors), errors


def test_exact_runs_keep_the_observed_shape_and_the_base_total() -> None:
    base = cols((100, W, W, P), (60, 0, W, P | GAP), (60, 0, W, P | GAP), (100, W, W, P))
    other = cols((0, 0, 0, 0), (10, W, W, P), (100, W, W, P), (0, 0, 0, 0))
    choice = [0, 1, 1, 0]
    assert exact_runs([base, other], choice, 0) == [100, 11, 109, 100]  # 120 split 10:100
    assert exact_runs([base, other], choice, 0, cuts=[2]) == [100, 60, 60, 100]  # runs cut at the read's bound
    untrusted = cols((100, W, W, P), (60, 0, W, P | UNKNOWN), (60, 0, W, P | GAP), (100, W, W, P))
    assert exact_runs([untrusted, other], choice, 0) == [100, 10, 100, 100]  # a's count is unsure: b's kept
    assert apportion(7, [0, 0]) == [4, 3] and apportion(10, [1, 2, 2]) == [2, 4, 4]


def test_no_double_count_and_no_gap_when_one_replica_is_down() -> None:
    counter = steady(1_000_000_000)
    a, b = scenario(counter, "a killed 2 min")
    _, r, e, f = merge_chunks([a.chunk, b.chunk], counter=True).slice(0, SLOTS)
    assert not isinstance(f, int) and not isinstance(r, int) and not isinstance(e, int)
    written = [i for i in range(SLOTS) if f[i]]
    assert not [i for i in written if f[i] & GAP]  # b observed a's hole: no gap left
    inner = written[1:-1]
    assert all(r[i] == e[i] for i in inner)  # every inner bucket whole, none counted twice


# -- the whole-column merge equals the slot-by-slot reference ------------------------------------------------


def random_replica(rng: random.Random, counter: bool) -> Chunk:
    """A week in runs of one kind of bucket: never written, whole, partial, gap, reset, unknown."""
    exp = rng.choice([W, E])
    ch = Chunk()
    slot = 0
    while slot < SLOTS:
        kind = rng.choice(["absent", "whole", "whole", "whole", "partial", "gap", "reset", "unknown"])
        length = rng.choice([1, 1, 2, 5, 30, 300])
        for i in range(slot, min(SLOTS, slot + length)):
            v = rng.randrange(10**9)
            if counter:
                got = {"whole": exp, "partial": rng.randrange(exp), "gap": rng.randrange(exp)}.get(kind, exp)
            else:
                got = 1000 * rng.choice([exp // 1000, exp // 1000 + 1, max(exp // 1000 - 1, 0)])
            flags = {"gap": P | GAP, "reset": P | RESET, "unknown": P | UNKNOWN}.get(kind, P)
            if kind != "absent":
                ch.merge(i, v, got, exp, flags)
        slot += length
    return Chunk.decode(ch.encode())


def reference(chunks: list[Chunk], counter: bool, cuts: list[int]) -> list[list[int]]:
    full: list[Columns] = []
    for ch in chunks:
        v, r, e, f = ch.slice(0, SLOTS)
        full.append(tuple([x] * SLOTS if isinstance(x, int) else list(x) for x in (v, r, e, f)))  # type: ignore[arg-type]
    base = base_replica(full)
    choice = choose(full, first=base, counter=counter)
    v, r, e, f = take(full, choice)
    if counter:
        v = exact_runs(full, choice, base, cuts)
    return [v, r, e, f]


@pytest.mark.parametrize("seed", range(60))
def test_merge_chunks_equals_the_slot_by_slot_reference(seed: int) -> None:
    rng = random.Random(seed)
    counter = seed % 3 != 0
    n = 2 + (seed % 5 == 0)
    chunks = [random_replica(rng, counter) for _ in range(n)]
    if seed % 4 == 0:  # a replica that observed the whole week, the others with holes
        chunks[rng.randrange(n)] = Chunk.decode(chunk({i: (7, W, W, P) for i in range(SLOTS)}).encode())
    cuts = sorted(rng.sample(range(1, SLOTS), rng.choice([0, 1, 2])))
    want = reference([Chunk.decode(c.encode()) for c in chunks], counter, cuts)
    got = merge_chunks(chunks, counter=counter, cuts=cuts).slice(0, SLOTS)
    assert [[x] * SLOTS if isinstance(x, int) else list(x) for x in got] == want


@pytest.mark.parametrize("seed", range(5))
def test_month_to_date_is_the_base_count_up_to_its_latest_poll(seed: int) -> None:
    """The live edge: a came back from a kill, b kept the series since (rule 4) and polled last, into
    the bucket a polled last too. The merged month-to-date total is a's exact count up to a's latest
    poll (b's newer bytes come with a's next poll), not off by the switch."""
    counter = bursty(seed, END + 120)
    a = replica_run(counter, polls(7, END + 30, RESTARTS["a killed 2 min"]))
    b = replica_run(counter, polls(41, END + 60))
    assert a.last // BUCKET_S == b.last // BUCKET_S and b.last > a.last
    merged = merge_chunks([a.chunk, b.chunk], counter=True)
    assert col_sum(merged.slice(0, SLOTS)[0], SLOTS) == counter(a.last) - counter(a.first)
