"""Parsing of the human units written in configuration files: durations and link capacities.

Pure functions so that the config model and the tests share one definition of `30s` or `10Gbit`.
"""

from __future__ import annotations

import re
from decimal import Decimal

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400)}

_CAPACITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGT]?)(bit|bps|B)?(?:/s)?\s*$")
_SI = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_duration(value: str | int | float) -> float:
    """Seconds in `30s`, `5m`, `1h`, `250ms`; a bare number is seconds."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a duration is a number with a unit, e.g. 30s or 5m")
    if isinstance(value, int | float):
        seconds = Decimal(str(value))
        if not seconds.is_finite():  # YAML .nan/.inf: NaN would raise InvalidOperation below
            raise ValueError(f"duration must be a finite number, got {value!r}")
    else:
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 5m, 1h, 250ms")
        seconds = Decimal(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return float(seconds)


def parse_capacity_bytes_per_second(value: str | int) -> int:
    """Bytes per second in `100Mbit`, `10Gbit`, `1G` (bits), `125MB` (bytes); a bare number is bit/s.

    Link capacities are quoted in bits by operators and carriers; the metrics use bytes per second
    (Prometheus base units), so the conversion lives here once.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("a capacity is a number with a unit, e.g. 100Mbit or 10Gbit")
    if isinstance(value, int):
        bits = Decimal(value)
    else:
        m = _CAPACITY.match(value)
        if not m:
            raise ValueError(f"invalid capacity {value!r}: use e.g. 100Mbit, 1Gbit, 10Gbit")
        amount = Decimal(m.group(1)) * _SI[m.group(2)]
        bits = amount * 8 if m.group(3) == "B" else amount
    if bits < 8:  # below one byte per second the capacity would be 0, read as "no capacity"
        raise ValueError(f"capacity must be at least 8 bit/s, got {value!r}")
    return int(bits / 8)
