"""Which targets this daemon owns: the port where sharding plugs in.

The monitor (which folds polls and traps) and the scheduler (which polls) ask the same selector, so
the two never disagree on what "this daemon's targets" means. One daemon owns every target
(`AllTargets`), or each of N daemons owns its shard (`ShardSelector`, docs/sharding.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from sitivmon.config.model import Target


class TargetSelector(Protocol):
    """Picks, from the configured targets, the ones this daemon polls, exposes and takes traps for.

    Must be a pure function of the targets (and the selector's own settings): it is called on every
    (re)configuration, by the monitor and by the scheduler."""

    def select(self, targets: Sequence[Target]) -> list[Target]: ...


class AllTargets:
    """One daemon owns every configured target."""

    def select(self, targets: Sequence[Target]) -> list[Target]:
        return list(targets)


ALL_TARGETS = AllTargets()


def _weight(shard: int, name: str) -> int:
    """The stable weight of `name` on `shard`: blake2b, not `hash()` (salted per process, so two
    daemons would disagree on who owns what)."""
    digest = hashlib.blake2b(f"{shard}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(name: str, count: int) -> int:
    """The shard (1..count) owning the target `name`: rendezvous (highest random weight) hashing.

    Why rendezvous: going from N to N+1 shards moves only the targets whose new shard wins, about
    1/(N+1) of them, and every target has exactly one owner with no shared table to agree on."""
    return max(range(1, count + 1), key=lambda shard: (_weight(shard, name), -shard))


class ShardSelector:
    """Shard `index` of `count` (1-based) owns the targets whose name hashes to it (`shard_of`)."""

    def __init__(self, index: int, count: int) -> None:
        if not 1 <= index <= count:
            raise ValueError(f"shard {index}/{count}: the index must be between 1 and the count")
        self.index = index
        self.count = count

    def __repr__(self) -> str:
        return f"ShardSelector({self.index}, {self.count})"

    @property
    def writer(self) -> str:
        """This shard's identity in a shared store (scopes its open buckets)."""
        return str(self.index)

    def owns(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def select(self, targets: Sequence[Target]) -> list[Target]:
        return [t for t in targets if self.owns(t.name)]
