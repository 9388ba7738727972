"""Indicators per commune per month, table-driven, through the real accumulator and SQLite store."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from sitivmon.readings import CounterInterval, Flag, GaugeReading, PollBatch, Quantity, UsageKey
from sitivmon.usage.buckets import MAX_POLL_INTERVAL_S
from sitivmon.usage.indicators import nearest_rank_p95, usage_document
from sitivmon.usage.periods import BUCKET_S, Month, month_range
from sitivmon.usage.store import SqliteUsageStore

from .support import communes, link_keys, pick, poll_link, record

V = "venissieux"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteUsageStore]:
    s = SqliteUsageStore(tmp_path / "usage.sqlite3")
    yield s
    s.close()


def doc_for(store: SqliteUsageStore, month: Month, *links: str) -> dict[str, Any]:
    keys = [k for link in links for k in link_keys(V, link)]
    return usage_document(store, communes(), month, keys)


def linear(rate: int) -> Any:
    return lambda t: int(t * rate)


def with_flag(batches: Iterator[PollBatch], at: float, flag: Flag, delta: int | None = None) -> Iterator[PollBatch]:
    """Replace, in the poll at `at`, the traffic_in interval's flags (and delta), as the normaliser would."""
    for b in batches:
        if b.at == at:
            c = b.counters[0]
            c = replace(c, flags=c.flags | {flag}, delta=c.delta if delta is None else delta)
            b = replace(b, counters=(c, *b.counters[1:]))
        yield b


# (name, month, per-second rates in/out, outages [offset s from month start, duration s], expectations)
CASES = [
    ("october-745h", "2026-10", 10, 3, [], {"in": 10 * 745 * 3600, "out": 3 * 745 * 3600, "buckets": 8940}),
    ("march-743h", "2026-03", 10, 3, [], {"in": 10 * 743 * 3600, "out": 3 * 743 * 3600, "buckets": 8916}),
    ("january-744h", "2026-01", 7, 0, [], {"in": 7 * 744 * 3600, "out": 0, "buckets": 8928}),
    ("zero-traffic", "2026-10", 0, 0, [], {"in": 0, "out": 0, "buckets": 8940}),
    # daemon down 2 h on the 2nd: the spanning delta keeps the volume exact, the gap is reported
    (
        "two-hour-gap",
        "2026-10",
        10,
        3,
        [(86400, 7200)],
        {"in": 10 * 745 * 3600, "out": 3 * 745 * 3600, "buckets": 8940},
    ),
    (
        "gap-at-month-end",
        "2026-03",
        10,
        3,
        [(743 * 3600 - 1800, 3600)],
        {"in": 10 * 743 * 3600, "out": 3 * 743 * 3600, "buckets": 8916},
    ),
]


@pytest.mark.parametrize(("name", "label", "rin", "rout", "outages", "exp"), CASES, ids=[c[0] for c in CASES])
def test_traffic_volume_and_p95(
    store: SqliteUsageStore,
    name: str,
    label: str,
    rin: int,
    rout: int,
    outages: list[tuple[int, int]],
    exp: dict[str, int],
) -> None:
    m = month_range(label)
    down = [(m.start + a, m.start + a + d) for a, d in outages]
    # polls every 300 s at a phase of 17 s, from before the month to after it
    record(store, poll_link(V, "l1", m.start - 283, m.end + 7200, 300, linear(rin), linear(rout), down=down))
    doc = doc_for(store, m, "l1")
    assert doc["period"]["buckets"] == exp["buckets"]
    vin, vout = pick(doc, V, "traffic_volume", "in"), pick(doc, V, "traffic_volume", "out")
    assert (vin["value"], vout["value"]) == (exp["in"], exp["out"])
    assert vin["unit"] == "bytes"
    if not outages:
        assert vin["coverage"] == "1.000000" and vin["gaps"] == []
        # constant rate: every bucket holds rate*300 bytes, so the p95 is the rate itself
        assert pick(doc, V, "traffic_p95", "in")["value"] == f"{rin}.000"
        assert pick(doc, V, "traffic_p95", "aggregate")["value"] == f"{rin + rout}.000"
        assert pick(doc, V, "traffic_p95", "max")["value"] == f"{max(rin, rout)}.000"
    else:
        cov = Decimal(vin["coverage"])
        inside = sum(min(a + d, m.end - m.start) - a for a, d in outages)  # outage seconds in the month
        lost = inside / (exp["buckets"] * BUCKET_S)
        assert Decimal(1) - Decimal(lost) - Decimal("0.0003") <= cov < 1
        assert vin["gaps"] and all("gap" in g["reasons"] for g in vin["gaps"])
        spanned = sum(g["buckets"] for g in vin["gaps"])
        assert inside // BUCKET_S <= spanned <= inside // BUCKET_S + 2
        assert vin["detail"]["flagged_buckets"]["gap"] == spanned


def test_month_with_no_data_at_all(store: SqliteUsageStore) -> None:
    m = month_range("2026-10")
    doc = doc_for(store, m, "l1")
    for ind in ("traffic_volume", "traffic_p95"):
        for d in ("in", "out") if ind == "traffic_volume" else ("max", "in", "out", "aggregate"):
            i = pick(doc, V, ind, d)
            assert i["coverage"] == "0.000000"
            assert i["value"] in (0, "0.000")
    vin = pick(doc, V, "traffic_volume", "in")
    assert vin["gaps"] == [
        {
            "subject": "l1",
            "start": "2026-10-01T00:00:00+02:00",
            "end": "2026-11-01T00:00:00+01:00",
            "buckets": 8940,
            "reasons": ["missing"],
        }
    ]
    av = pick(doc, V, "availability")
    assert av["value"] is None and av["detail"]["unknown_buckets"] == 8940
    # a commune without any series: zero with coverage 0 and series 0, never an error
    g = pick(doc, "givors", "energy")
    assert (g["value"], g["coverage"], g["series"]) == ("0.000000", "0", 0)
    json.dumps(doc)


def test_store_never_written_is_readable_empty(tmp_path: Path) -> None:
    s = SqliteUsageStore(Path(":memory:"))
    doc = usage_document(s, communes(), month_range("2026-02"))
    assert {i["commune"] for i in doc["indicators"]} == {c.id for c in communes()}


def test_reset_and_clamp_are_counted_and_flagged(store: SqliteUsageStore) -> None:
    m = month_range("2026-01")
    t_reset, t_clamp = m.start + 17 + 300 * 100, m.start + 17 + 300 * 200
    polls = poll_link(V, "l1", m.start - 283, m.end + 900, 300, linear(10))
    # after a reset the normaliser counts only what the new counter shows (here 1234 bytes)
    polls = with_flag(polls, t_reset, Flag.RESET, delta=1234)
    # a clamped delta counts as zero
    polls = with_flag(polls, t_clamp, Flag.CLAMP, delta=0)
    record(store, polls)
    vin = pick(doc_for(store, m, "l1"), V, "traffic_volume", "in")
    assert vin["value"] == 10 * 744 * 3600 - 3000 + 1234 - 3000
    assert vin["detail"]["flagged_buckets"] == {"clamp": 2, "reset": 2}  # each interval spans 2 buckets
    # issue 10 symptom 4: bytes may be missing (reset) or wrong (clamp): those buckets lower coverage
    assert vin["coverage"] == str((Decimal(8928 - 4) / 8928).quantize(Decimal("0.000001"), "ROUND_FLOOR"))
    assert [(g["buckets"], g["reasons"]) for g in vin["gaps"]] == [(2, ["reset"]), (2, ["clamp"])]


def test_interval_straddling_the_month_boundary_is_split(store: SqliteUsageStore) -> None:
    sep, oct_ = month_range("2026-09"), month_range("2026-10")
    c = linear(1000)
    t0, t1 = oct_.start - 2 * 86400 + 150, oct_.start + 2 * 86400
    record(store, poll_link(V, "l1", t0, t1, 300, c))
    vs = pick(doc_for(store, sep, "l1"), V, "traffic_volume", "in")["value"]
    vo = pick(doc_for(store, oct_, "l1"), V, "traffic_volume", "in")["value"]
    last = t0 + 300 * ((t1 - t0) // 300)
    assert vs + vo == c(last) - c(t0)
    assert vs == 1000 * (oct_.start - t0)  # the boundary poll's 300 s split 150/150 exactly


def test_p95_nearest_rank_on_a_known_distribution(store: SqliteUsageStore) -> None:
    m = month_range("2026-10")
    n = m.buckets
    per_bucket = [(k * 7919) % 1000 * 300 for k in range(n)]  # a permutation-like spread of rates
    prefix = [0]
    for b in per_bucket:
        prefix.append(prefix[-1] + b)

    def counter(t: float) -> int:  # polls land exactly on bucket boundaries
        k = round((t - m.start) / BUCKET_S)
        return prefix[max(0, min(k, n))]

    record(store, poll_link(V, "l1", m.start, m.end, 300, counter))
    doc = doc_for(store, m, "l1")
    p = pick(doc, V, "traffic_p95", "in")
    rank = math.ceil(Fraction(95, 100) * n)
    assert p["detail"]["rank"] == rank and p["detail"]["samples"] == n
    assert p["detail"]["bucket_bytes"] == sorted(per_bucket)[rank - 1]
    assert Decimal(p["value"]) == (Decimal(sorted(per_bucket)[rank - 1]) / 300).quantize(Decimal("0.001"))


@pytest.mark.parametrize(
    ("n", "ours", "librenms", "cacti"),
    [
        (20, 19, 19, 19),
        (8916, 8471, 8470, 8470),  # 743 h: 0.95 n = 8470.2
        (8928, 8482, 8482, 8481),  # 744 h: 0.95 n = 8481.6
        (8940, 8493, 8493, 8493),  # 745 h: 0.95 n = 8493 exactly
        (8064, 7661, 7661, 7660),  # 28 days: 0.95 n = 7660.8
    ],
)
def test_rank_rule_against_librenms_and_cacti(n: int, ours: int, librenms: int, cacti: int) -> None:
    """The table in docs/usage.md: ascending 1-based ranks picked by each tool for n samples."""
    assert nearest_rank_p95(list(range(1, n + 1))) == (ours, ours)
    assert int(Fraction(95 * n, 100) + Fraction(1, 2)) == librenms  # PHP round(n/100*95), then index -1
    assert n - math.ceil(Fraction(5 * n, 100)) == cacti  # rsort, index ceil(n*0.05)


def test_several_links_of_a_commune_add_up_and_communes_stay_apart(store: SqliteUsageStore) -> None:
    m = month_range("2026-02")
    record(store, poll_link(V, "l1", m.start - 283, m.end + 900, 300, linear(10), linear(1)))
    record(store, poll_link(V, "l2", m.start - 100, m.end + 900, 300, linear(5), linear(2)))
    record(store, poll_link("givors", "g1", m.start - 283, m.end + 900, 300, linear(1000), linear(1000)))
    doc = doc_for(store, m, "l1", "l2")
    secs = 672 * 3600
    assert pick(doc, V, "traffic_volume", "in")["value"] == 15 * secs
    assert pick(doc, V, "traffic_volume", "out")["value"] == 3 * secs
    assert pick(doc, V, "traffic_volume", "in")["series"] == 2
    assert pick(doc, V, "traffic_p95", "in")["value"] == "15.000"
    assert pick(doc, V, "traffic_p95", "aggregate")["value"] == "18.000"
    assert pick(doc, "givors", "traffic_volume", "out")["value"] == 1000 * secs
    assert pick(doc, "grigny", "traffic_volume", "in")["value"] == 0


def test_availability_up_down_unknown(store: SqliteUsageStore) -> None:
    m = month_range("2026-10")
    a, b = m.start + 10 * 86400, m.start + 20 * 86400
    up = lambda t: not (a <= t < a + 3000)  # noqa: E731 - 10 readings say down
    record(store, poll_link(V, "l1", m.start - 283, m.end + 900, 300, linear(1), up=up, down=[(b, b + 1500)]))
    av = pick(doc_for(store, m, "l1"), V, "availability")
    n = m.buckets
    assert av["detail"]["down_buckets"] == 10
    assert av["detail"]["unknown_buckets"] == 5
    assert av["detail"]["up_buckets"] == n - 15
    assert Decimal(av["value"]) == (Decimal(n - 15) / Decimal(n - 5)).quantize(Decimal("0.000001"))
    assert av["unit"] == "ratio"
    assert sum(g["buckets"] for g in av["gaps"]) == 5


def resource_batches(m: Month, interval: float, skip: tuple[float, float] | None = None) -> Iterator[PollBatch]:
    """A datacenter resource of Vénissieux: 1 kW, 2 vCPUs, 4 GiB, storage 1000 B then 3000 B."""
    ks = UsageKey(V, "vm-1", Quantity.STORAGE_BYTES)
    kv = UsageKey(V, "vm-1", Quantity.VCPUS)
    km = UsageKey(V, "vm-1", Quantity.MEMORY_BYTES)
    ke = UsageKey(V, "pdu-1", Quantity.ENERGY_JOULES)
    half = m.start + (m.end - m.start) // 2
    last = m.start
    t = m.start + interval / 2
    while t < m.end:
        if skip is None or not skip[0] <= t < skip[1]:
            yield PollBatch(
                "dc",
                t,
                interval,
                counters=(
                    CounterInterval(
                        ke,
                        last,
                        t,
                        round((t - last) * 1000),
                        frozenset({Flag.GAP}) if t - last > 1.5 * interval else frozenset(),
                    ),
                ),
                gauges=(
                    GaugeReading(ks, t, 1000.0 if t < half else 3000.0),
                    GaugeReading(kv, t, 2.0),
                    GaugeReading(km, t, float(4 << 30)),
                ),
            )
            last = t
        t += interval
    yield PollBatch("dc", m.end, interval, counters=(CounterInterval(ke, last, m.end, round((m.end - last) * 1000)),))


@pytest.mark.parametrize("interval", [300.0, 60.0])
def test_datacenter_indicators(store: SqliteUsageStore, interval: float) -> None:
    m = month_range("2026-01")
    record(store, resource_batches(m, interval))
    doc = doc_for(store, m)
    assert pick(doc, V, "storage")["value"] == 2000
    assert pick(doc, V, "storage")["detail"]["byte_hours"] == "1488000.000"
    assert pick(doc, V, "energy") | {"gaps": []} == pick(doc, V, "energy")
    assert pick(doc, V, "energy")["value"] == "744.000000"
    assert pick(doc, V, "energy")["detail"]["joules"] == 744 * 3600 * 1000
    assert pick(doc, V, "vcpu_hours")["value"] == "1488.000000"
    assert pick(doc, V, "memory_gib_hours")["value"] == "2976.000000"
    for ind in ("storage", "vcpu_hours", "memory_gib_hours", "energy"):
        assert pick(doc, V, ind)["coverage"] == "1.000000", ind


def test_datacenter_gap_lowers_coverage_not_the_average(store: SqliteUsageStore) -> None:
    m = month_range("2026-01")
    day = (m.start + 86400, m.start + 2 * 86400)
    record(store, resource_batches(m, 300.0, skip=day))
    doc = doc_for(store, m)
    st = pick(doc, V, "storage")
    # the missing day was in the 1000-byte half: mean over the buckets that have readings
    assert st["value"] == round(Fraction(1000 * (4464 - 288) + 3000 * 4464, 8928 - 288))
    assert Decimal(st["coverage"]) < 1 and st["gaps"]
    assert pick(doc, V, "energy")["value"] == "744.000000"  # the counter spans the gap: exact
    vh = Decimal(pick(doc, V, "vcpu_hours")["value"])
    assert vh == Decimal(2 * (744 - 24)).quantize(Decimal("0.000001"))  # known hours only, coverage says so


def test_document_shape_is_the_allocation_engine_input(store: SqliteUsageStore) -> None:
    m = month_range("2026-10")
    record(store, poll_link(V, "l1", m.start - 283, m.start + 3600, 300, linear(10)))
    doc = doc_for(store, m, "l1")
    text = json.dumps(doc)
    back = json.loads(text, parse_float=Decimal)
    assert back["month"] == "2026-10" and back["timezone"] == "Europe/Paris"
    assert back["period"] == {
        "start": "2026-10-01T00:00:00+02:00",
        "end": "2026-11-01T00:00:00+01:00",
        "hours": 745,
        "buckets": 8940,
        "complete": True,
        "provisional": False,
    }
    first = pick(back, V, "traffic_volume", "in")
    assert {"commune", "insee", "indicator", "direction", "value", "unit", "coverage", "gaps"} <= set(first)
    assert first["insee"] == "69259"
    for i in back["indicators"]:  # exact numbers: ints, or decimal strings
        assert i["value"] is None or isinstance(i["value"], int | str)
        assert isinstance(i["coverage"], str) and 0 <= Decimal(i["coverage"]) <= 1


def vm_batches(m: Month, interval: float, wobble: float = 0.0, skip: int | None = None) -> Iterator[PollBatch]:
    """A VM of Vénissieux polled every `interval` s from 2 h before the month to 2 h after it: 4 vCPUs,
    8 GiB, 5000 B of storage. Poll k lands at `m.start + k * interval`, moved by +-`wobble` (a fixed
    pseudo-random sign per poll, as a poll's end time wobbles); poll number `skip` is missed."""
    keys = [UsageKey(V, "vm-1", q) for q in (Quantity.VCPUS, Quantity.MEMORY_BYTES, Quantity.STORAGE_BYTES)]
    values = (4.0, float(8 << 30), 5000.0)
    lead = -int(7200 // interval)
    for k in range(lead, int((m.end - m.start + 7200) // interval)):
        if k == skip:
            continue
        t = m.start + k * interval + (wobble if (k * 7919) % 13 < 6 else -wobble)
        yield PollBatch(
            "dc", t, interval, gauges=tuple(GaugeReading(key, t, v) for key, v in zip(keys, values, strict=True))
        )


GAUGE_INTERVALS = [30.0, 60.0, 90.0, 120.0, 300.0, 600.0, float(MAX_POLL_INTERVAL_S)]


@pytest.mark.parametrize(
    ("interval", "wobble"),
    [(i, 0.0) for i in GAUGE_INTERVALS] + [(60.0, 1.0), (90.0, 1.0)],
    ids=[f"{i:g}s" for i in GAUGE_INTERVALS] + ["60s-wobble-1s", "90s-wobble-1s"],
)
def test_gauge_hours_and_coverage_at_any_poll_interval(store: SqliteUsageStore, interval: float, wobble: float) -> None:
    """Issue 10 symptom 7: October 2026 (745 h), 4 vCPUs, no reading missed: 2,980 vCPU-hours and
    coverage 1 whatever the interval (it used to be 0.933 at 90 s, 0.90 at 120 s, half at 600 s)."""
    m = month_range("2026-10")
    assert m.hours == 745
    record(store, vm_batches(m, interval, wobble))
    doc = doc_for(store, m)
    for name, value in (
        ("vcpu_hours", "2980.000000"),
        ("memory_gib_hours", str(8 * 745) + ".000000"),
        ("storage", 5000),
    ):
        ind = pick(doc, V, name)
        assert (ind["value"], ind["coverage"], ind["gaps"]) == (value, "1.000000", []), (name, ind)
    assert pick(doc, V, "storage")["detail"]["byte_hours"] == f"{5000 * 745}.000"


@pytest.mark.parametrize("interval", GAUGE_INTERVALS)
def test_a_missed_gauge_reading_costs_one_interval(store: SqliteUsageStore, interval: float) -> None:
    m = month_range("2026-10")
    k = int(10 * 86400 // interval)  # a poll in the middle of the month
    record(store, vm_batches(m, interval, skip=k))
    doc = doc_for(store, m)
    seconds = 745 * 3600
    vh = pick(doc, V, "vcpu_hours")
    assert Decimal(vh["value"]) == (Fraction(4 * (seconds - int(interval)), 3600)).__round__(6)
    lost = Fraction(seconds - int(interval), seconds)
    assert vh["coverage"] == str(
        (Decimal(lost.numerator) / lost.denominator).quantize(Decimal("0.000001"), "ROUND_FLOOR")
    )
    assert pick(doc, V, "storage")["value"] == 5000  # the mean over the observed time is not diluted


def test_gauge_buckets_count_observed_time_not_readings() -> None:
    """Table: readings per bucket at one interval, with the carry between buckets (pure scan)."""
    from sitivmon.usage.buckets import PRESENT, expected_milli
    from sitivmon.usage.indicators import scan_gauge
    from sitivmon.usage.store import SeriesMonth

    cases = [  # (interval s, readings in each bucket, seconds observed)
        (90, [4, 3, 3] * 4, 12 * 300),
        (120, [3, 2] * 6, 12 * 300),
        (600, [1, 0] * 6, 12 * 300),
        (60, [6, 4, 5, 6, 5, 4], 6 * 300),  # runs of early boundaries: the carry fills the short bucket
        (60, [5, 5, 4, 5], 1140),  # one reading missed: one interval unobserved
        (60, [7, 5, 5], 900),  # extra readings (a confirming poll) carry at most one interval
        (60, [7, 0, 5], 660),
        (90, [4, 3, 2, 4, 3], 1410),  # one of the 90 s polls missed: one interval unobserved
        (3600, [1] + [0] * 11 + [1] + [0] * 11, 24 * 300),
        (3600, [1] + [0] * 23, 12 * 300),  # the next hourly reading missed: its hour unobserved
    ]
    for interval, counts, seconds in cases:
        e = expected_milli(interval)
        sm = SeriesMonth(UsageKey(V, "vm", Quantity.VCPUS), 0, len(counts))
        sm.segments[0] = (
            len(counts),
            [4000 * c for c in counts],
            [1000 * c for c in counts],
            [e if c else 0 for c in counts],
            [PRESENT if c else 0 for c in counts],
        )
        scan = scan_gauge(sm)
        assert scan.covered_ns == seconds * 1_000_000_000, (interval, counts, scan.covered_ns / 1e9)
        assert scan.level_seconds() == 4000 * seconds, (interval, counts)  # 4 vCPUs held, milli-vCPU s


def test_the_longest_accepted_poll_interval_is_the_one_tested() -> None:
    from pydantic import ValidationError

    from sitivmon.config.model import PollOverrides, PollSettings

    assert PollSettings(interval="1h").interval == MAX_POLL_INTERVAL_S in GAUGE_INTERVALS
    for model in (PollSettings, PollOverrides):
        with pytest.raises(ValidationError, match=r"at most 3600s \(1h\), got 3660s"):
            model(interval="61m")
        with pytest.raises(ValidationError, match=r"2005s cannot be recorded exactly .* use e.g. 2000s or 2010s"):
            model(interval="2005s")


@pytest.mark.parametrize(
    "interval",
    [0.001, 0.25, 1.3, 7, 11, 11.3, 17, 30, 59, 60, 61, 90, 120, 150, 300, 420, 552, 600, 780]
    + [60.0 * m for m in range(1, 61)]
    + [2000, 2500, 3000],
)
def test_every_accepted_interval_is_recovered_exactly_from_the_store(interval: float) -> None:
    """Gauges are held for the interval recovered from `expected_milli`: it must be the configured one."""
    from sitivmon.usage.buckets import check_recordable_interval, expected_milli, poll_interval_ns

    assert check_recordable_interval(float(interval)) == interval
    assert poll_interval_ns(expected_milli(interval)) == round(interval * 1_000_000_000)


@pytest.mark.parametrize(
    ("interval", "hint"), [(553, "552s or 554s"), (2005, "2000s or 2010s"), (3599, "3570s or 3600s")]
)
def test_intervals_the_store_cannot_tell_apart_are_refused(interval: float, hint: str) -> None:
    from sitivmon.usage.buckets import check_recordable_interval

    with pytest.raises(ValueError, match=f"use e.g. {hint}"):
        check_recordable_interval(float(interval))


# (flags of the bucket, received_milli, expected_milli) -> what the bucket counts toward coverage, gap reasons
FLAGGED_BUCKETS = [
    (frozenset(), 5000, 5000, Fraction(1), ()),
    (frozenset(), 2500, 5000, Fraction(1, 2), ()),
    (frozenset(), 0, 5000, Fraction(0), ("no_sample",)),
    (frozenset({Flag.RESET}), 5000, 5000, Fraction(0), ("reset",)),
    (frozenset({Flag.CLAMP}), 5000, 5000, Fraction(0), ("clamp",)),
    (frozenset({Flag.UNKNOWN}), 2500, 5000, Fraction(0), ("unknown",)),
    (frozenset({Flag.GAP}), 2500, 5000, Fraction(1, 2), ("gap",)),  # bytes exact, time half observed
    (frozenset({Flag.GAP}), 0, 5000, Fraction(0), ("gap",)),
    (frozenset({Flag.GAP, Flag.RESET}), 2500, 5000, Fraction(0), ("gap", "reset")),
]


@pytest.mark.parametrize("layout", ["constant", "array"])
@pytest.mark.parametrize(("flags", "received", "expected", "counts", "reasons"), FLAGGED_BUCKETS)
def test_how_a_flagged_bucket_counts_toward_coverage(
    layout: str, flags: frozenset[Flag], received: int, expected: int, counts: Fraction, reasons: tuple[str, ...]
) -> None:
    """Every flag meaning "bytes may be missing or wrong" lowers coverage (docs/usage.md, Coverage)."""
    from sitivmon.usage.buckets import PRESENT, flag_bits
    from sitivmon.usage.indicators import scan_series
    from sitivmon.usage.store import SeriesMonth

    f = flag_bits(flags) | PRESENT
    sm = SeriesMonth(UsageKey(V, "l1", Quantity.TRAFFIC_IN), 0, 4)
    if layout == "constant":  # a run of 4 such buckets
        sm.segments[0] = (4, 100, received, expected, f)
        assert scan_series(sm).covered == 4 * counts
        assert [(a, b, sorted(r)) for a, b, r in scan_series(sm).gaps] == ([(0, 4, list(reasons))] if reasons else [])
    else:  # the bucket among plain ones
        sm.segments[0] = (4, [100] * 4, [5000, received, 5000, 5000], [5000] * 4, [PRESENT, f, PRESENT, PRESENT])
        assert scan_series(sm).covered == 3 + counts
        assert [(a, b, sorted(r)) for a, b, r in scan_series(sm).gaps] == ([(1, 2, list(reasons))] if reasons else [])


@pytest.mark.parametrize("interval", [90.0, 120.0, 600.0])
def test_gauge_projects_do_not_fall_back_when_no_reading_is_missed(store: SqliteUsageStore, interval: float) -> None:
    """The money end of symptom 7: storage, vCPU and memory projects used to fall back to their key."""
    import yaml

    from sitivmon.allocation.config import parse_allocation
    from sitivmon.allocation.engine import allocate, load_usage_json, parse_usage

    m = month_range("2026-10")
    record(store, vm_batches(m, interval))
    doc = load_usage_json(json.dumps(doc_for(store, m)))
    equal = {c.id: "12.5%" for c in communes()}
    projects = [
        {"name": q, "budget": "1000.00", "basis": f"usage:{q}", "fallback": "equal", "communes": [V]}
        for q in ("vcpu_hours", "memory_gib_hours", "storage")
    ]
    config = parse_allocation(yaml.safe_dump({"keys": {"equal": equal}, "projects": projects}), communes())
    result = allocate(config, parse_usage(doc, communes(), month="2026-10"), communes())
    assert [(p.project, p.fallback_used, p.fallback_reason) for p in result.projects] == [
        (q, False, None) for q in ("vcpu_hours", "memory_gib_hours", "storage")
    ]


@pytest.mark.parametrize("interval", [90.0, 120.0, 600.0, 3600.0])
def test_availability_is_observed_in_full_at_any_poll_interval(store: SqliteUsageStore, interval: float) -> None:
    """The link state is a gauge too: at 90 s its coverage was 0.933, at 600 s half its buckets unknown."""
    m = month_range("2026-10")
    record(store, poll_link(V, "l1", m.start - 7200, m.end + 7200, interval, linear(10)))
    doc = doc_for(store, m, "l1")
    av = pick(doc, V, "availability")
    assert (av["value"], av["coverage"], av["gaps"]) == ("1.000000", "1.000000", [])
    assert av["detail"]["up_buckets"] == m.buckets and av["detail"]["unknown_buckets"] == 0
    vin = pick(doc, V, "traffic_volume", "in")
    assert (vin["value"], vin["coverage"]) == (10 * 745 * 3600, "1.000000")
