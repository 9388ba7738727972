"""Real Prometheus and Alertmanager for end-to-end tests, plus a webhook receiver that records alerts."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import ManagedProcess, free_port, require_binary, wait_tcp


@dataclass
class Webhook:
    """Collects Alertmanager's webhook posts (each a dict with `alerts`)."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, name: str, status: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                a
                for post in self.posts
                for a in post.get("alerts", [])
                if a.get("labels", {}).get("alertname") == name and a.get("status") == status
            ]


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    port = free_port()
    hook = Webhook(url=f"http://127.0.0.1:{port}/hook")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hook.lock:
                hook.posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Prometheus:
    url: str
    proc: ManagedProcess

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
            doc: dict[str, Any] = json.load(r)
        return doc

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as r:
            doc = json.load(r)
        alerts: list[dict[str, Any]] = doc["data"]["alerts"]
        return alerts

    def targets_up(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as r:
            doc = json.load(r)
        active = doc["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


@contextlib.contextmanager
def alertmanager(tmp: Path, webhook_url: str) -> Iterator[str]:
    binary = require_binary("prometheus-alertmanager")
    port, cluster = free_port(), free_port()
    cfg = {
        "route": {"receiver": "test", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h",
                  "group_by": ["alertname", "link"]},
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }
    (tmp / "am.yml").write_text(yaml.safe_dump(cfg))
    (tmp / "am-data").mkdir(exist_ok=True)
    proc = ManagedProcess(
        [binary, f"--config.file={tmp / 'am.yml'}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.path={tmp / 'am-data'}", f"--cluster.listen-address=127.0.0.1:{cluster}"],
        tmp / "alertmanager.log",
    )
    try:
        wait_tcp("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@contextlib.contextmanager
def prometheus(
    tmp: Path,
    scrape_targets: Sequence[str],
    *,
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> Iterator[Prometheus]:
    binary = require_binary("prometheus")
    port = free_port()
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "scrape_configs": [{"job_name": "sitivmon", "static_configs": [{"targets": list(scrape_targets)}]}],
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager_url:
        host = alertmanager_url.removeprefix("http://")
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    (tmp / "prom-data").mkdir(exist_ok=True)
    proc = ManagedProcess(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.tsdb.path={tmp / 'prom-data'}"],
        tmp / "prometheus.log",
    )
    try:
        wait_tcp("127.0.0.1", port, timeout=30)
        prom = Prometheus(f"http://127.0.0.1:{port}", proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, KeyError, ValueError):
                if prom.targets_up():
                    break
            time.sleep(0.3)
        yield prom
    finally:
        proc.stop()
