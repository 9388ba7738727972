"""Calendar arithmetic for usage accounting: five-minute buckets, months in a timezone, exact splits.

Everything here is pure (no clock, no I/O) so that DST months and boundary cases are tested as tables.

Buckets are aligned on the UTC epoch (multiples of 300 s). Every timezone offset in use today is a
multiple of 15 minutes, so a bucket never straddles a local midnight or a month boundary: a month is
an exact run of buckets and an interval straddling a month boundary is split with the buckets, in
proportion to its overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

BUCKET_S = 300
"""Width of a usage bucket in seconds."""

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")  # matched whole (fullmatch): "$" would accept a final newline
MIN_YEAR, MAX_YEAR = 1970, 9998  # unix time starts in 1970; 9999-12 would end in year 10000


def bucket_start(t: float) -> int:
    """Start (unix seconds) of the bucket holding instant `t` (buckets are half-open [start, start+300))."""
    return int(t // BUCKET_S) * BUCKET_S


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month in a timezone, as the half-open UTC interval [start, end) of whole buckets."""

    label: str  # "YYYY-MM"
    timezone: str
    start: int  # unix seconds, bucket aligned
    end: int

    @property
    def buckets(self) -> int:
        return (self.end - self.start) // BUCKET_S

    @property
    def hours(self) -> int:
        return (self.end - self.start) // 3600

    def local_iso(self, t: int) -> str:
        """ISO 8601 with the local offset, as people in the syndicate read times."""
        return datetime.fromtimestamp(t, ZoneInfo(self.timezone)).isoformat()


def parse_month(label: str) -> tuple[int, int]:
    """`"2026-10"` -> (2026, 10); ValueError with the offending text otherwise.

    The one gate for every month label from outside (CLI, HTTP path, archive keys): a label that
    passes here is the only spelling of its month, so two spellings can never name two archives.
    """
    m = _MONTH.fullmatch(label)
    if m is None or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"month must be YYYY-MM, got {label!r}")
    year = int(m.group(1))
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"month {label!r} is outside {MIN_YEAR}-01..{MAX_YEAR}-12")
    return year, int(m.group(2))


def month_range(label: str, timezone: str = "Europe/Paris") -> Month:
    """The month `label` in `timezone`: local midnight of the 1st to local midnight of the next 1st.

    A month containing a DST change is 743 or 745 hours long; that falls out of converting both local
    midnights to UTC. Raises ValueError for a malformed label and ZoneInfoNotFoundError for a bad zone.
    """
    year, month = parse_month(label)
    tz = ZoneInfo(timezone)
    first = datetime(year, month, 1, tzinfo=tz)
    nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    start = int(first.astimezone(UTC).timestamp())
    end = int(nxt.astimezone(UTC).timestamp())
    if start % BUCKET_S or end % BUCKET_S:  # offsets such as LMT: refuse rather than mis-split
        raise ValueError(f"timezone {timezone} does not put month boundaries on 5-minute buckets")
    return Month(label, timezone, start, end)


def month_of(t: float, timezone: str = "Europe/Paris") -> Month:
    """The month containing instant `t` in `timezone`."""
    local = datetime.fromtimestamp(t, ZoneInfo(timezone))
    return month_range(f"{local.year:04d}-{local.month:02d}", timezone)


def _micros(t: float) -> int:
    """Instants as integer microseconds so that splitting is integer arithmetic end to end."""
    return round(t * 1_000_000)


def split_delta(start: float, end: float, delta: int) -> list[tuple[int, int]]:
    """Split a counter increase over [start, end] into (bucket_start, part) in proportion to overlap.

    Integer largest-remainder apportionment: the parts are non-negative when `delta` is, and always sum
    exactly to `delta`; ties on the remainder go to the earlier bucket, so the result is deterministic.
    A zero-length (or reversed) interval puts everything in the bucket of `end`.
    """
    s, e = _micros(start), _micros(end)
    if e <= s:
        return [(bucket_start(end), delta)]
    width = BUCKET_S * 1_000_000
    overlaps: list[tuple[int, int]] = []
    b = (s // width) * width
    while b < e:
        overlaps.append((b // 1_000_000, min(e, b + width) - max(s, b)))
        b += width
    total = e - s
    sign = -1 if delta < 0 else 1
    mag = abs(delta)
    parts = [mag * ov // total for _, ov in overlaps]
    rest = mag - sum(parts)
    if rest:
        order = sorted(range(len(overlaps)), key=lambda i: (-(mag * overlaps[i][1] % total), i))
        for i in order[:rest]:
            parts[i] += 1
    return [(bs, sign * p) for (bs, _), p in zip(overlaps, parts, strict=True)]


def split_runs(start: float, end: float, delta: int) -> list[tuple[int, int, int]]:
    """`split_delta` run-length encoded: (first bucket start, buckets, part of each), in bucket order.

    Why: a restart after two days spreads one interval over 576 buckets per series, and listing them
    (`split_delta`) for every series of a large site cost gigabytes (issue 15). Every bucket fully
    inside the interval overlaps it by the same width, so they share one quotient and one remainder
    in the largest-remainder apportionment; with ties going to the earlier bucket, the first `m` of
    them get one more unit. Only the (at most two) partial buckets at the ends differ. So the same
    exact parts come in at most four runs, computed in constant time whatever the interval's length;
    expanding the runs gives `split_delta`'s list exactly (tests/usage/test_periods.py).
    """
    s, e = _micros(start), _micros(end)
    if e <= s:
        return [(bucket_start(end), 1, delta)]
    width = BUCKET_S * 1_000_000
    first, last = s // width, (e - 1) // width  # bucket numbers
    if first == last:
        return [(first * BUCKET_S, 1, delta)]
    total = e - s
    sign = -1 if delta < 0 else 1
    mag = abs(delta)
    inner = last - first - 1  # buckets between the first and the last, fully covered
    o_first, o_last = (first + 1) * width - s, e - last * width
    p_first, p_inner, p_last = mag * o_first // total, mag * width // total, mag * o_last // total
    rest = mag - p_first - p_inner * inner - p_last
    # Groups in the order `split_delta` hands out the rest: larger remainder first, then lower index
    # (the first bucket is index 0, the inner run starts at 1, the last is index inner + 1).
    groups = sorted(
        [
            (-(mag * o_first % total), 0, 1, 0),
            (-(mag * width % total), 1, inner, 1),
            (-(mag * o_last % total), inner + 1, 1, 2),
        ]
    )
    extra = [0, 0, 0]  # units of the rest for the first bucket, the inner run, the last bucket
    for _, _, count, group in groups:
        extra[group] = min(count, rest)
        rest -= extra[group]
    m = extra[1]  # the first m inner buckets get one more
    runs = [(first * BUCKET_S, 1, p_first + extra[0])]
    if m:
        runs.append(((first + 1) * BUCKET_S, m, p_inner + 1))
    if inner - m:
        runs.append(((first + 1 + m) * BUCKET_S, inner - m, p_inner))
    runs.append((last * BUCKET_S, 1, p_last + extra[2]))
    return [(b, n, sign * p) for b, n, p in runs]


def utc_iso(t: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=t)).isoformat()
