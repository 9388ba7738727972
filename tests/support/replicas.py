"""A rig for sharded replica pairs: several `sitivmon run --shard I/N --replica R` daemons sharing one
store, started, SIGKILLed and restarted by key, plus the waits and clocks that make their figures
comparable with the kernel's byte counters to the byte.

Why the clock matters: every daemon splits a counter delta linearly over the 5-minute buckets
(UTC multiples of 300 s) that its poll interval overlaps, at its own poll phase. Two replicas therefore
put a few bytes of the same traffic on different sides of a bucket boundary when traffic crosses it,
and a reader that takes replica a's buckets up to a boundary and b's after it ("the switch") can be
off by what crossed that boundary. Tests keep traffic away from boundaries (`clear_of_boundary`) when
they assert exactness, and send it across one on purpose when they measure that error
(`KernelSampler` gives the traffic around the boundary, the bound of the error).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sitivmon.agents.netns import Lab
from tests.support import agents

BUCKET_S = 300
Key = tuple[int, int, str]
"""(shard, shard count, replica): `(1, 2, "a")` is `--shard 1/2 --replica a`."""


def next_boundary(t: float) -> float:
    """The first bucket boundary strictly after `t`."""
    return (int(t) // BUCKET_S + 1) * BUCKET_S


def nearest_boundary_distance(t: float) -> float:
    b = next_boundary(t)
    return min(b - t, t - (b - BUCKET_S))


def sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 1.0))


def clear_of_boundary(margin_s: float = 4.0, within_s: float = 0.0) -> None:
    """Return at a moment at least `margin_s` from any bucket boundary and staying so for `within_s`
    more seconds (waiting past the boundary when needed): traffic sent then cannot land in a poll
    interval that straddles a boundary (1 s polls, 0.5 s timeout)."""
    now = time.time()
    b = next_boundary(now)
    if now - (b - BUCKET_S) < margin_s:
        sleep_until(b - BUCKET_S + margin_s)
    elif b - now < margin_s + within_s:
        sleep_until(b + margin_s)


@dataclass
class ReplicaRig:
    """The daemons of a replica pair deployment, by key; `start` is the test's `start_daemon`."""

    start: Callable[..., agents.DaemonProcess]
    config: object  # the config Path handed to `start`
    targets: Mapping[str, str]  # target name -> commune
    owner: Callable[[str, int], int]  # (target, shard count) -> shard, the daemon's rendezvous hash
    daemons: dict[Key, agents.DaemonProcess] = field(default_factory=dict)

    def launch(self, key: Key) -> agents.DaemonProcess:
        shard, count, replica = key
        d = self.start(self.config, args=("--shard", f"{shard}/{count}", "--replica", replica))
        self.daemons[key] = d
        return d

    def kill(self, key: Key) -> agents.DaemonProcess:
        """SIGKILL: no last flush, what was polled since the last commit is lost to this replica."""
        d = self.daemons.pop(key)
        d.signal(signal.SIGKILL)
        assert d.proc is not None
        d.proc.proc.wait(10)
        return d

    def stop(self, key: Key) -> int | None:
        """SIGTERM: the last flush commits this replica's buckets and baselines."""
        return self.daemons.pop(key).stop()

    def own(self, key: Key) -> list[str]:
        shard, count, _ = key
        return [t for t in self.targets if self.owner(t, count) == shard]

    def polled(self, key: Key) -> set[str]:
        m = self.daemons[key].metrics()
        return {dict(labels)["target"] for labels in m.series("sitivmon_target_up")}

    def wait_polls(self, count: int = 2, keys: Iterable[Key] | None = None, timeout: float = 30.0) -> None:
        """`count` more successful polls of every target by every running daemon (or `keys`), all
        daemons watched together (one scrape of each per round)."""
        keys = list(self.daemons if keys is None else keys)
        seen = {k: {t: self.daemons[k].last_success(t) for t in self.own(k)} for k in keys}
        left = {(k, t): count for k in keys for t in self.own(k)}
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise AssertionError(f"polls still awaited (daemon, target): {sorted(left)}")
            time.sleep(0.1)
            for k in {k for k, _ in left}:
                m = self.daemons[k].metrics()
                for t in self.own(k):
                    if (k, t) not in left:
                        continue
                    last = self.daemons[k].last_success(t, m)
                    if last > seen[k][t]:
                        seen[k][t] = last
                        left[(k, t)] -= 1
                        if left[(k, t)] == 0:
                            del left[(k, t)]

    def wait_flushes(self, count: int = 2, timeout: float = 30.0) -> None:
        """`count` usage flushes completed after now by every running daemon: everything polled
        before this call is committed (see tests/usage_integration/rig.wait_flushes)."""
        name = "sitivmon_usage_last_write_timestamp_seconds"
        after = {k: time.time() for k in self.daemons}
        left = {k: count for k in self.daemons}
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise AssertionError(f"flushes still awaited: {left}")
            time.sleep(0.1)
            for k in list(left):
                last = self.daemons[k].metrics().value(name) or 0.0
                if last > after[k]:
                    after[k] = last
                    left[k] -= 1
                    if left[k] == 0:
                        del left[k]

    def settle(self, lab: Lab, link: str = "eth1", attempts: int = 20) -> tuple[int, int]:
        """Kernel counters that every running daemon's latest poll of every target read: unchanged
        across two whole polls of each."""
        for _ in range(attempts):
            k = lab.kernel_bytes(link)
            self.wait_polls(2)
            if lab.kernel_bytes(link) == k:
                return k
        raise AssertionError(f"{link} never went quiet")


@dataclass
class KernelSampler:
    """(time, rx, tx) of an agent-side link every few tens of milliseconds, in a thread: how much
    traffic crossed the link around a given instant (a bucket boundary) although no poll is there."""

    lab: Lab
    link: str = "eth1"
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)  # (read after, before, rx, tx)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> KernelSampler:
        self._thread = threading.Thread(target=self._run, name="kernel-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.time()
            rx, tx = self.lab.kernel_bytes(self.link)
            self.samples.append((before, time.time(), rx, tx))  # read somewhere between the two times
            self._stop.wait(0.05)  # two process spawns per sample: leave the daemons some CPU

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def bytes_between(self, t0: float, t1: float) -> tuple[int, int]:
        """An upper bound of the (rx, tx) bytes that crossed the link within [t0, t1]: from the last
        sample taken before t0 to the first one taken after t1."""
        before = [s for s in self.samples if s[1] <= t0]  # read for sure before t0
        after = [s for s in self.samples if s[0] >= t1]  # read for sure after t1
        assert before and after, f"no kernel sample around [{t0}, {t1}]"
        a, b = before[-1], after[0]
        return b[2] - a[2], b[3] - a[3]
