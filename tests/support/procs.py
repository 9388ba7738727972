"""Start real servers for tests on free loopback ports, and stop them afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that is free now on `host` (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_port(host: str = "127.0.0.1") -> int:
    return free_port(socket.SOCK_DGRAM, host)


def wait_tcp(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def require_binary(name: str) -> str:
    """Path of a real tool the test needs; fail (not skip) when CI forgot to install it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run must install it")
        pytest.skip(f"{name} is not installed (run scripts/dev test, which installs it)")
    return path


def require_root_netns() -> None:
    """Skip with a clear reason when network namespaces cannot be made; in CI this is a failure."""
    reason = None
    if os.geteuid() != 0:
        reason = "network namespace tests need root"
    elif shutil.which("ip") is None:
        reason = "network namespace tests need iproute2 (ip)"
    else:
        probe = f"sitivmon-probe-{os.getpid()}"
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if r.returncode != 0:
            reason = f"ip netns add is not permitted here: {r.stderr.strip()}"
        else:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


class ManagedProcess:
    """A child process whose whole process group is stopped on exit."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        self._logf = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, stdout=self._logf, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._logf.flush()
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        self._logf.close()
        return self.proc.returncode


@contextlib.contextmanager
def managed(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Iterator[ManagedProcess]:
    p = ManagedProcess(argv, log, env)
    try:
        yield p
    finally:
        p.stop()
