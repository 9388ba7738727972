"""Fixtures for the dashboard tests.

LEAD: `running_daemon` below is a placeholder that skips. Provide the real fixture (a sitivmon
daemon polling a real snmpd, yielding its /metrics URL, e.g. "http://127.0.0.1:PORT/metrics") in
tests/conftest.py or tests/support/, then delete this placeholder: a fixture defined here would
shadow one defined in tests/conftest.py.

Meanwhile, SITIVMON_METRICS_URL=http://127.0.0.1:9811/metrics runs the live tests against a daemon
started by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def running_daemon() -> Iterator[str]:
    url = os.environ.get("SITIVMON_METRICS_URL")
    if url:
        yield url
        return
    pytest.skip("running_daemon is not wired yet: the lead provides a sitivmon polling a real snmpd")
    yield ""  # pragma: no cover
