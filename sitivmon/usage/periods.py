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


def utc_iso(t: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=t)).isoformat()
