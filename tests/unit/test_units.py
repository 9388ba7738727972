"""Durations and capacities as operators write them, table by table."""

from __future__ import annotations

import math

import pytest

from sitivmon.units import parse_capacity_bytes_per_second, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("0.5m", 30.0),
        (" 2 s ", 2.0),
        ("10", 10.0),
        (10, 10.0),
        (0.5, 0.5),
    ],
)
def test_durations(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        "5x",
        "5 minutes",
        "-1s",
        "0s",
        "0",
        0,
        -3,
        "1.5.2s",
        "1e3s",
        "PT5M",
        True,
        False,
        math.nan,
        math.inf,
        -math.inf,
        None,
        [1],
        {"s": 1},
    ],
)
def test_bad_durations_are_value_errors(text: object) -> None:
    # ValueError (not TypeError or decimal.InvalidOperation) is what pydantic turns into a located error.
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "bytes_per_s"),
    [
        ("100Mbit", 12_500_000),
        ("10Gbit", 1_250_000_000),
        ("1Gbit", 125_000_000),
        ("1G", 125_000_000),  # bits by default: carriers quote bits
        ("1Gbps", 125_000_000),
        ("100Mbit/s", 12_500_000),
        ("10 Gbit", 1_250_000_000),
        ("2.5Gbit", 312_500_000),
        ("1kbit", 125),
        ("1Kbit", 125),
        ("1Tbit", 125_000_000_000),
        ("125MB", 125_000_000),  # bytes when written B
        ("125MB/s", 125_000_000),
        (1_000_000, 125_000),
        ("8", 1),
    ],
)
def test_capacities(text: str | int, bytes_per_s: int) -> None:
    assert parse_capacity_bytes_per_second(text) == bytes_per_s


@pytest.mark.parametrize(
    "text",
    ["", "fast", "10Gb", "1MiB", "10 Gigabit", "0Mbit", "0", 0, -1, "1", 7, "-5Mbit", True, 1.5, None, ["1G"]],
)
def test_bad_capacities_are_value_errors(text: object) -> None:
    # "10Gb" is refused rather than guessed: b/B ambiguity is a factor of eight on a bill.
    # Below 8 bit/s the capacity would round to 0 bytes/s, which the links read as "none configured".
    with pytest.raises(ValueError):
        parse_capacity_bytes_per_second(text)  # type: ignore[arg-type]
