"""Rendezvous-hash sharding: one owner per target, stable across processes, and few moves."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sitivmon.config.model import Target
from sitivmon.engine.selection import ShardSelector, shard_of

NAMES = [f"sw-{i:05d}.commune-{i % 97}" for i in range(10_000)]


def _target(name: str) -> Target:
    return Target(name=name, address="192.0.2.1", credentials="c")


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_each_target_has_exactly_one_owner(count: int) -> None:
    owners: dict[str, list[int]] = {n: [] for n in NAMES}
    for index in range(1, count + 1):
        sel = ShardSelector(index, count)
        for n in NAMES:
            if sel.owns(n):
                owners[n].append(index)
    assert all(len(o) == 1 for o in owners.values())
    sizes = [sum(1 for o in owners.values() if o == [i]) for i in range(1, count + 1)]
    # balanced within 10 % of the mean on 10,000 names
    assert max(sizes) - min(sizes) < 0.1 * len(NAMES) / count, sizes


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_n_to_n_plus_1_moves_about_one_in_n_plus_1(n: int) -> None:
    moved = [name for name in NAMES if shard_of(name, n) != shard_of(name, n + 1)]
    fraction = len(moved) / len(NAMES)
    assert abs(fraction - 1 / (n + 1)) < 0.02, fraction
    # and every moved target goes to the new shard: no reshuffle among the old ones
    assert all(shard_of(name, n + 1) == n + 1 for name in moved)


def test_select_keeps_config_order_and_partitions() -> None:
    targets = [_target(f"sw-{i}") for i in range(300)]
    parts = [ShardSelector(i, 3).select(targets) for i in (1, 2, 3)]
    assert sorted(t.name for p in parts for t in p) == sorted(t.name for t in targets)
    for p in parts:
        assert [t.name for t in p] == [t.name for t in targets if t in p]


def test_stable_across_processes() -> None:
    """`hash()` is salted per process; the shard of a name must not be."""
    code = (
        "from sitivmon.engine.selection import shard_of;"
        "print(','.join(str(shard_of(f'sw-{i}', 5)) for i in range(50)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "random"}).stdout.strip()
    assert out == ",".join(str(shard_of(f"sw-{i}", 5)) for i in range(50))


@pytest.mark.parametrize(("index", "count"), [(0, 3), (4, 3), (1, 0), (-1, 2)])
def test_index_outside_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="between 1 and the count"):
        ShardSelector(index, count)
