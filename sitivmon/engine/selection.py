"""Which targets this daemon owns: the port where sharding plugs in.

The monitor (which folds polls and traps) and the scheduler (which polls) ask the same selector, so
the two never disagree on what "this daemon's targets" means. Today one daemon owns every target.
"""

from __future__ import annotations

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
