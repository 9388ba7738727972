"""Rate-limited logging for events an outsider can trigger at will (refused tokens, dropped connections).

A log line per refused request lets anyone who can reach the port fill the disk and drown the one
line that matters. The first event per key and window is said; the rest are counted (the caller keeps
a metric for every event) and the next line that is said tells how many were held back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

OVERFLOW_KEY = "*"
"""Key used once `max_keys` distinct keys are in the window: spoofed or many sources share one budget."""


@dataclass(slots=True)
class _Window:
    opened: float
    held_back: int = 0


class Throttle:
    """Say yes to the first event per key per `window_s`; `allow` returns how many were held back before it."""

    def __init__(
        self, window_s: float = 60.0, *, max_keys: int = 256, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def allow(self, key: str) -> int | None:
        """None: stay quiet. An int: log now, mentioning that many events held back since the last line."""
        now = self.clock()
        if key not in self._windows and len(self._windows) >= self.max_keys:
            self._windows = {k: w for k, w in self._windows.items() if now - w.opened < self.window_s}
            if len(self._windows) >= self.max_keys:
                key = OVERFLOW_KEY
        window = self._windows.get(key)
        if window is None or now - window.opened >= self.window_s:
            held = window.held_back if window is not None else 0
            self._windows[key] = _Window(now)
            return held
        window.held_back += 1
        return None
