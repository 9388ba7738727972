"""Throttle: the first event per key and window is said, the rest are counted and reported with the next."""

from __future__ import annotations

import pytest

from sitivmon.logthrottle import OVERFLOW_KEY, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # (time offset, key) -> what allow() answers
        ([(0, "a")], [0]),
        ([(0, "a"), (1, "a"), (59, "a")], [0, None, None]),
        ([(0, "a"), (1, "a"), (2, "a"), (60, "a")], [0, None, None, 2]),
        ([(0, "a"), (0, "b"), (1, "b")], [0, 0, None]),
        ([(0, "a"), (61, "a"), (122, "a")], [0, 0, 0]),
    ],
)
def test_first_per_window_then_the_count_held_back(events: list[tuple[float, str]], expected: list[int | None]) -> None:
    clock = Clock()
    throttle = Throttle(60.0, clock=clock)
    got = []
    for offset, key in events:
        clock.now = 1000.0 + offset
        got.append(throttle.allow(key))
    assert got == expected


def test_many_sources_share_one_budget_once_the_table_is_full() -> None:
    """Spoofed or numerous sources cannot each buy a log line: past max_keys they share one."""
    clock = Clock()
    throttle = Throttle(60.0, max_keys=4, clock=clock)
    said = [throttle.allow(f"10.0.0.{i}") for i in range(100)]
    assert said[:4] == [0, 0, 0, 0]
    assert said[4] == 0 and all(s is None for s in said[5:])  # the overflow key spoke once
    clock.now += 61
    assert throttle.allow("10.0.0.200") == 0  # expired windows are dropped, room again
    assert OVERFLOW_KEY == "*"
