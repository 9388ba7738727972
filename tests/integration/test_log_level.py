"""`log.level` in the config (and its environment override) is applied; the command line wins."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import StartDaemon
from tests.support import agents


def wait_polled(daemon: agents.DaemonProcess) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if daemon.get("/-/ready")[0] == 200:
            return
        time.sleep(0.1)
    raise AssertionError("daemon never ready")


def test_config_log_level_is_applied(start_daemon: StartDaemon, daemon_config: dict[str, Any]) -> None:
    quiet = start_daemon({**daemon_config, "log": {"level": "warning"}})
    wait_polled(quiet)
    quiet.stop()
    assert " INFO " not in quiet.output(), quiet.output()[-2000:]
    loud = start_daemon(daemon_config, env={"SITIVMON_LOG__LEVEL": "debug"})
    wait_polled(loud)
    loud.stop()
    assert " DEBUG " in loud.output()
    cli = start_daemon({**daemon_config, "log": {"level": "warning"}}, args=("--log-level", "info"))
    wait_polled(cli)
    cli.stop()
    assert " INFO " in cli.output()
