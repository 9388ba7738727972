"""Small asyncio helpers shared by the long-lived loops."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


# Young-generation threshold (CPython's default: 700 container allocations net of frees). The poll
# path allocates in bursts (the GETBULK responses of every agent polled at once, a fold of 500 rows):
# at 700 a burst triggers many young collections, each traversing the survivors. At 20,000 there were
# still ~20 young and ~1.6 middle collections a minute at 4 x 500 links (6 % of the CPU: the walks'
# varbinds and the fold's objects are alive together, so each collection traverses them and promotes
# them). At 100,000 a poll cycle's objects die before a collection: 0.4 a minute, 0.6 % of the CPU
# (bench/profile_gc.py; bench/README.md, issue 15). The price: garbage *cycles* wait longer, at most
# this many container objects (~10-20 MB at 100-200 bytes each), against a 1 GiB budget at 20,000 links.
GC_YOUNG_THRESHOLD = 100_000


def gc_policy() -> None:
    """The process's garbage-collector policy, set once before the loop starts (the composition root
    calls `run`, so every command gets it).

    The daemon's long-lived objects (modules, classes, the configuration, the profiles) would be
    traversed by every full collection; `gc.freeze()` moves what exists now out of the collector's
    reach (they stay reference-counted: one freed later is freed as usual; only a cycle among them
    would not be collected, and `gc.collect()` first leaves none). Python's GC was ~4.5 % of the
    daemon's CPU at 500 links per agent (perf: gc_collect_main, visit_decref); bench/README.md has
    the figures with and without.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def gc_settle(unfreeze: bool = True) -> None:
    """Freeze again, once the daemon is warm: the state built after start (2,000 link runtimes,
    baselines, label and render caches, the usage accumulator: ~100,000 tracked objects at 2,000 links)
    is otherwise traversed by every full collection (~65 ms each at 2,000 links, ~13 ms with it frozen:
    bench/README.md, issue 15).

    `unfreeze` first puts everything frozen before (at start or at the last settle) back under the
    collector, and the full collection then frees whatever of it became cyclic garbage since: a frozen
    cycle is only held until the next settle that unfreezes, never for the process's life. The daemon
    unfreezes at the settle after each reload (the old configuration's state dies then), not at the
    first one after start: what was frozen at start is the imported code, which lives as long as the
    process, and traversing it again took ~90 ms on the event loop (more on a loaded machine), enough
    to start polls 100 to 500 ms late (tests/hostile/test_misbehaving_agents.py, 2026-12-01).
    """
    if unfreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the daemon's loop on uvloop: measured on the poll benchmark (bench/README.md), it takes
    about a third off the CPU of the polling path (socket readiness and timers are most of it).
    The GC policy (`gc_policy`) is set first."""
    import uvloop

    gc_policy()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
    """Wait for `event` at most `timeout` seconds; True when it was set.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives in the same loop
    turn as the event, so a loop woken often (a trap storm, a datagram flood) could not be stopped.
    """
    if timeout is not None and timeout <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
