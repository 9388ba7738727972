"""Prometheus remote_write to a real VictoriaMetrics, with the shipped example configuration.

A static exposition stands for a replica pair (two scrape targets, same `instance`, `replica` a/b);
a real Prometheus scrapes them with deploy/prometheus/prometheus.remote-write.yml (targets and URL
rewritten) and its rules, and the test reads back from VictoriaMetrics both raw samples and the
recording rules' output, undoubled.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import ManagedProcess, free_port, require_binary, wait_tcp

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "prometheus" / "prometheus.remote-write.yml"
START = time.time()


def _page() -> bytes:
    """Same counter on both replicas: 1,000 bytes/s received by commune ambert since START."""
    value = int((time.time() - START) * 1000)
    return (
        "# TYPE sitivmon_commune_receive_bytes_total counter\n"
        f'sitivmon_commune_receive_bytes_total{{commune="ambert"}} {value}\n'
        "# TYPE sitivmon_link_up gauge\n"
        'sitivmon_link_up{commune="ambert",link="ambert-fibre",target="rtr-ambert"} 1\n'
    ).encode()


@contextlib.contextmanager
def _exposition() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = _page()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _vm_query(url: str, expr: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10) as r:
        doc: dict[str, Any] = json.load(r)
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def test_samples_and_recording_rules_reach_victoriametrics(tmp_path: Path) -> None:
    vm_bin, prom_bin = require_binary("victoria-metrics"), require_binary("prometheus")
    vm_port, prom_port = free_port(), free_port()
    vm = ManagedProcess(
        [
            vm_bin,
            f"-httpListenAddr=127.0.0.1:{vm_port}",
            f"-storageDataPath={tmp_path / 'vm-data'}",
            "-search.latencyOffset=0s",
            "-search.disableCache",
        ],
        tmp_path / "vm.log",
    )
    try:
        wait_tcp("127.0.0.1", vm_port, timeout=30)
        vm_url = f"http://127.0.0.1:{vm_port}"
        with _exposition() as port:
            cfg = yaml.safe_load(EXAMPLE.read_text())
            cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
            cfg["rule_files"] = [str(ROOT / "deploy" / "prometheus" / f) for f in cfg["rule_files"]]
            for static in cfg["scrape_configs"][0]["static_configs"]:
                static["targets"] = [f"127.0.0.1:{port}"]
            assert cfg["remote_write"][0]["url"].endswith("/api/v1/write")
            cfg["remote_write"][0]["url"] = f"{vm_url}/api/v1/write"
            cfg["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
            prom = ManagedProcess(
                [
                    prom_bin,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                ],
                tmp_path / "prometheus.log",
            )
            try:
                deadline = time.monotonic() + 90
                raw: list[dict[str, Any]] = []
                rec: list[dict[str, Any]] = []
                while time.monotonic() < deadline:
                    with contextlib.suppress(OSError, KeyError, ValueError):
                        raw = _vm_query(vm_url, "sitivmon_commune_receive_bytes_total")
                        rec = _vm_query(vm_url, "commune:sitivmon_commune_receive_bits:rate5m")
                        if len(raw) == 2 and rec:
                            break
                    time.sleep(1)
                assert {r["metric"]["replica"] for r in raw} == {"a", "b"}, raw
                assert {r["metric"]["instance"] for r in raw} == {"shard-1"}, raw
                assert len(rec) == 1, rec
                # 8,000 bit/s once the 5m window is full; early on rate() divides by the whole window, so
                # only the bound matters here: two replicas summed would exceed it.
                bits = float(rec[0]["value"][1])
                assert 0 < bits <= 8000 * 1.05, f"{bits} bit/s: at most 8,000 expected, not doubled"
            finally:
                prom.stop()
    finally:
        vm.stop()
