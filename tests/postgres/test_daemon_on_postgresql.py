"""The real daemon with `usage.store: postgresql`: polling real snmpd over a veth pair in a network
namespace (tests/usage_integration/rig.py), the month's traffic_volume printed by the real
`sitivmon usage` equal, to the byte, to the kernel's counters, through a database outage during which
the daemon keeps polling, keeps the batches and writes the backlog once the server is back; the live
gauges and the HTTP API read the same store."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon
from tests.support import agents
from tests.support.postgres import PostgresServer
from tests.usage_integration import rig

pytestmark = pytest.mark.netns
TOKEN = "pg-finance-" + os.urandom(8).hex()


def volumes(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The traffic volumes of a usage document (the API writes them as JSON strings, the command as
    numbers). Volumes only: the daemon goes on polling, and the coverage of everything grows between reads."""
    return {(r["commune"], r["direction"]): str(r["value"]) for r in rows if r["indicator"] == "traffic_volume"}


def get_json(daemon: agents.DaemonProcess, path: str) -> dict[str, Any]:
    req = urllib.request.Request(daemon.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        doc: dict[str, Any] = json.loads(r.read(), parse_float=Decimal)
    return doc


def test_kernel_bytes_exact_through_a_database_outage(
    netns_snmp: agents.NetnsAgent, start_daemon: StartDaemon, postgres_server: PostgresServer,
    postgres_dsn: str, tmp_path: Path,
) -> None:
    lab, link = netns_snmp.lab, netns_snmp.links["eth1"]
    doc = rig.usage_config(tmp_path / "state", netns_snmp, store="postgresql", dsn=postgres_dsn,
                           retry_initial_s=0.2, retry_max_s=1.0)
    shutil.copy(agents.REPO / "config" / "allocation.yaml", tmp_path / "allocation.yaml")
    doc["allocation"] = "allocation.yaml"
    doc["api"] = {"tokens": [{"name": "finance", "scope": "syndicate", "token": TOKEN}]}
    config = agents.write_config(tmp_path / "sitivmon.yaml", doc)
    since = time.time()
    k0 = lab.kernel_bytes("eth1")
    daemon = start_daemon(config)
    rig.quiet_baseline(lab, daemon, k0)
    rig.burst(lab, link, 3)
    rig.wait_flushes(daemon)

    postgres_server.stop()
    try:
        rig.burst(lab, link, 3)  # traffic while the store is away: polled, kept in memory
        daemon.wait_polls(rig.TARGET, 3)
        m = daemon.wait_for(
            lambda m: rig.total(m, rig.WRITE_ERRORS) >= 1 and rig.pending(m) >= 2,
            "failed writes and batches kept while the database is down", timeout=30,
        )
        assert m.value("sitivmon_usage_store_up") == 0
    finally:
        postgres_server.start()
    rig.burst(lab, link, 2)
    k1, vol = rig.exact_volumes(lab, daemon, config, since)
    rx, tx = k1[0] - k0[0], k1[1] - k0[1]
    assert rx >= 8 * 40 * 1000, (rx, tx)  # the traffic did cross eth1
    assert vol.values == rig.expected(k0, k1)
    for commune in ("givors", "grigny"):
        assert vol.flagged(commune) == {}, vol.flagged(commune)  # the outage lost no poll: nothing flagged

    m = daemon.metrics()  # the live month-to-date gauges, read from PostgreSQL, say the same
    assert rig.live_volume(m, "givors", "in") == rx and rig.live_volume(m, "grigny", "in") == tx
    assert m.value("sitivmon_usage_store_up") == 1
    month = rig.month_label(time.time())  # the HTTP API reads the same store: the same figures
    api, cli = get_json(daemon, f"/api/v1/usage/{month}"), rig.usage_json(config, month)
    assert volumes(api["indicators"]) == volumes(cli["indicators"])
    assert volumes(api["indicators"])[("givors", "in")] == str(rx)
    report = get_json(daemon, f"/api/v1/reports/{month}.json")
    assert report["header"]["month"] == month and report["header"]["status"] == "provisional"
    assert daemon.stop() == 0
    assert rig.volumes(config, since).values == rig.expected(k0, k1)
    log = daemon.output()
    assert "postgresql://127.0.0.1:" in log  # the outage is logged, naming the server...
    assert postgres_server.password not in log  # ...never with its password
    assert not (tmp_path / "state" / "usage.sqlite3").exists()
