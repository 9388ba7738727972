"""Small asyncio helpers shared by the long-lived loops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the daemon's loop on uvloop: measured on the poll benchmark (bench/README.md), it takes
    about a third off the CPU of the polling path (socket readiness and timers are most of it)."""
    import uvloop

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
