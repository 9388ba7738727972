"""The process's GC policy (`sitivmon.aio.gc_policy`), set by `run` before the loop starts."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sitivmon.aio import GC_YOUNG_THRESHOLD, gc_settle, run


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
def test_run_freezes_what_exists_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)

    async def main() -> tuple[int, int]:
        return gc.get_threshold()[0], gc.get_freeze_count()

    young, frozen = run(main())
    assert young == GC_YOUNG_THRESHOLD
    assert frozen > 1000  # modules, classes, functions: out of every full collection's reach
    assert gc.get_threshold()[1:] == (10, 10)  # the older generations keep CPython's cadence


@pytest.mark.usefixtures("restore_gc")
def test_a_frozen_object_is_still_freed_by_its_reference_count() -> None:
    import weakref

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing)

    async def main() -> None:
        return None

    run(main())
    assert ref() is not None
    del thing
    assert ref() is None


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.usefixtures("restore_gc")
def test_settle_freezes_the_warm_state() -> None:
    gc.unfreeze()
    gc.freeze()
    warm = [Node() for _ in range(5000)]  # built after start: links, baselines, caches
    young = {id(o) for o in gc.get_objects()}
    assert all(id(n) in young for n in warm)
    gc_settle()
    collected = {id(o) for o in gc.get_objects()}  # what collections traverse (the frozen are not listed)
    assert not any(id(n) in collected for n in warm)


@pytest.mark.usefixtures("restore_gc")
def test_a_frozen_cycle_is_freed_at_the_next_settle() -> None:
    """The bound on what settling can hold: a cycle frozen while alive that dies later (the old
    configuration's objects after a reload) is collected by the next settle, not kept for life."""
    import weakref

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    gc_settle()
    del a, b
    gc.collect()
    assert ref() is not None  # frozen: a full collection does not see it
    gc_settle()
    assert ref() is None


@pytest.mark.usefixtures("restore_gc")
def test_a_settle_without_unfreezing_leaves_the_start_frozen() -> None:
    """The daemon's first settle: the warm state is frozen, what was frozen at start is not put back
    under the collector (the imported code: traversing it again stalled the loop ~90 ms); a cycle
    frozen earlier waits for a settle that unfreezes (after a reload)."""
    import weakref

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    gc.freeze()  # as at start
    frozen = gc.get_freeze_count()
    warm = [Node() for _ in range(1000)]
    del a, b
    gc_settle(unfreeze=False)
    assert ref() is not None  # not unfrozen, so not collected
    assert gc.get_freeze_count() >= frozen + len(warm)
    assert not any(id(n) in {id(o) for o in gc.get_objects()} for n in warm)
    gc_settle()
    assert ref() is None
