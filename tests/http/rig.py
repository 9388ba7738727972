"""The rig shared by tests/http/test_daemon_edge.py and bench/http_bench.py: a daemon config with the
example allocation file and a syndicate token, timed GETs, half-sent connections."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.support import agents

ADMIN = "bench-admin-" + os.urandom(8).hex()


def daemon_config(workdir: Path) -> Path:
    shutil.copy(agents.REPO / "config" / "allocation.yaml", workdir / "allocation.yaml")
    doc = agents.base_config(
        workdir / "state",
        allocation="allocation.yaml",
        api={"tokens": [{"name": "finance", "scope": "syndicate", "token": ADMIN}]},
    )
    path = workdir / "sitivmon.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def timed_get(url: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[float, int]:
    """Seconds taken and status (0: no HTTP answer at all, e.g. reset or timeout)."""
    started = time.perf_counter()
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return time.perf_counter() - started, status


def half_sent(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each sent the start of a request head and then nothing."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(2.0)
        with contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    return socks
