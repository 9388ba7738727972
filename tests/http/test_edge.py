"""The HTTP edge in process, on real loopback sockets: connection cap, head timeout, reload gate, errors,
throttled refusal logs, report cache and its own worker.

Each server here is the real aiohttp app of sitivmon/app/http.py (with the API of allocation/api.py) served
through `GuardedSite`, with small limits so that floods stay small and fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, ClientTimeout, web
from prometheus_client import CollectorRegistry

from sitivmon.allocation.api import ReportCache, TokenAuthority, report_executor, setup_api
from sitivmon.allocation.config import ApiConfig
from sitivmon.app.config import parse_config
from sitivmon.app.http import ConnectionGuard, GuardedSite, build_app
from sitivmon.monitor import Monitor
from sitivmon.selfmetrics import SelfMetrics
from tests.support import agents

ADMIN = "admin-" + hashlib.sha256(b"edge-admin").hexdigest()[:20]
GIVORS = "givors-" + hashlib.sha256(b"edge-givors").hexdigest()[:20]
TOKENS = ApiConfig.model_validate(
    {
        "tokens": [
            {"name": "finance", "scope": "syndicate", "token": ADMIN},
            {"name": "g", "scope": "givors", "token": GIVORS},
        ]
    }
).tokens


@dataclass
class Edge:
    url: str
    port: int
    registry: CollectorRegistry
    guard: ConnectionGuard
    reloads: list[float] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def value(self, name: str, **labels: str) -> float:
        got = self.registry.get_sample_value(name, labels)
        return got or 0.0


async def start_edge(
    *, limit: int = 32, header_timeout_s: float = 10.0, block_builds: bool = False
) -> tuple[Edge, web.AppRunner, Callable[[], Awaitable[None]]]:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    config = parse_config(yaml.safe_dump(agents.base_config(agents.REPO / "var" / "unused")))
    monitor = Monitor(config)
    guard = ConnectionGuard(metrics, limit=limit, header_timeout_s=header_timeout_s)
    authority = TokenAuthority(TOKENS, rejected=metrics.http_errors)
    edge = Edge("", 0, registry, guard)
    if not block_builds:
        edge.release.set()

    async def reload() -> tuple[bool, list[str]]:
        edge.reloads.append(time.monotonic())
        return False, ["links[1].commune: unknown commune 'venisieux' (line 42)"]

    def report(month: str) -> dict[str, Any]:
        edge.builds.append(month)
        edge.release.wait(30)
        return {"month": month, "indicators": []}

    app = build_app(lambda: monitor, metrics, reload, authority=authority, guard=guard)
    executor = report_executor()
    setup_api(app, tokens=authority, usage_provider=report, report_builder=report, cache=ReportCache(executor))

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret-cause-" + request.query.get("x", ""))

    app.router.add_get("/boom", boom)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, guard)
    await site.start()
    edge.port = runner.addresses[0][1]
    edge.url = f"http://127.0.0.1:{edge.port}"

    async def stop() -> None:
        edge.release.set()
        await runner.cleanup()
        executor.shutdown(wait=False, cancel_futures=True)

    return edge, runner, stop


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    e, _, stop = await start_edge()
    yield e
    await stop()


async def request(
    e: Edge, method: str, path: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, str, dict[str, str]]:
    async with (
        ClientSession(timeout=ClientTimeout(total=10)) as s,
        s.request(method, e.url + path, headers=headers, data=data) as r,
    ):
        return r.status, await r.text(), dict(r.headers)


async def until_building(e: Edge) -> None:
    """Wait until a report build has started on the report worker (it then blocks on `e.release`)."""
    deadline = time.monotonic() + 5
    while not e.builds and time.monotonic() < deadline:  # noqa: ASYNC110 (the signal comes from a thread)
        await asyncio.sleep(0.01)
    assert e.builds, "no build started"


def half_sent(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each sent the start of a request head and then nothing."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# ---------------------------------------------------------------- connections


async def test_a_connection_that_never_finishes_its_head_is_closed_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "sitivmon.http")
    e, _, stop = await start_edge(header_timeout_s=0.3)
    try:
        socks = await asyncio.to_thread(half_sent, e.port, 5)
        await asyncio.sleep(0.8)
        assert all(closed_by_peer(s) for s in socks)
        assert e.value("sitivmon_http_connections_dropped_total", reason="header_timeout") == 5
        lines = [r for r in caplog.records if "header_timeout" in r.getMessage()]
        assert len(lines) == 1, "one line per minute, not one per connection"
        assert (await request(e, "GET", "/-/healthy"))[0] == 200
    finally:
        for s in socks:
            s.close()
        await stop()


async def test_idle_connections_beyond_the_cap_make_room_for_real_clients(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "sitivmon.http")
    e, _, stop = await start_edge(limit=20)
    socks: list[socket.socket] = []
    try:
        socks = await asyncio.to_thread(half_sent, e.port, 60)
        started = time.perf_counter()
        for _ in range(5):
            status, _, _ = await request(e, "GET", "/-/healthy")
            assert status == 200
        assert time.perf_counter() - started < 5.0  # shared machine; before the guard: no answer at all
        # A burst is accepted before any of it is connected: the newest are refused (503), and once
        # connected, the oldest idle ones make room.
        dropped = sum(
            e.value("sitivmon_http_connections_dropped_total", reason=r) for r in ("limit_evicted", "limit_refused")
        )
        assert dropped >= 40
        assert e.value("sitivmon_http_connections") <= 20
        for reason in ("limit_evicted", "limit_refused"):
            assert len([r for r in caplog.records if reason in r.getMessage()]) <= 1
    finally:
        for s in socks:
            s.close()
        await stop()


async def test_a_connection_serving_a_request_is_not_evicted() -> None:
    e, _, stop = await start_edge(limit=4, block_builds=True)
    try:
        slow = asyncio.create_task(request(e, "GET", "/api/v1/usage/2026-10", {"Authorization": f"Bearer {ADMIN}"}))
        await until_building(e)
        socks = await asyncio.to_thread(half_sent, e.port, 12)  # churns the other three slots
        e.release.set()
        status, body, _ = await slow
        assert status == 200 and json.loads(body)["month"] == "2026-10"
        for s in socks:
            s.close()
    finally:
        await stop()


# ---------------------------------------------------------------- errors and months


@pytest.mark.parametrize("month", ["2026-10%0A", "0000-01", "9999-12", "2026-13", "1969-12", "２０２６-10", "2026-1"])
async def test_bad_month_labels_are_a_clear_400(edge: Edge, month: str) -> None:
    for path in (f"/api/v1/usage/{month}", f"/api/v1/reports/{month}.json"):
        status, body, headers = await request(edge, "GET", path, {"Authorization": f"Bearer {ADMIN}"})
        assert status == 400, (path, body)
        assert headers["Content-Type"].startswith("application/json")
        assert "YYYY-MM" in json.loads(body)["error"] and "Traceback" not in body
    assert edge.builds == []


async def test_an_unexpected_error_is_a_generic_500_with_the_cause_in_the_log(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "sitivmon.http")
    for accept in ("text/html", "*/*"):
        status, body, _ = await request(edge, "GET", "/boom?x=1", {"Accept": accept})
        assert status == 500
        assert "secret-cause" not in body and "Traceback" not in body and "RuntimeError" not in body
    assert "secret-cause-1" in caplog.text


# ---------------------------------------------------------------- tokens


async def test_refused_tokens_are_counted_each_and_logged_once_a_minute(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sitivmon.allocation.api")
    bad = "bad-token-" + hashlib.sha256(b"x").hexdigest()[:20]
    for _ in range(50):
        status, _, _ = await request(edge, "GET", "/api/v1/usage/2026-10", {"Authorization": f"Bearer {bad}"})
        assert status == 401
    assert edge.value("sitivmon_http_requests_rejected_total", status="401", reason="unknown_token") == 50
    lines = [r for r in caplog.records if r.name == "sitivmon.allocation.api"]
    assert len(lines) == 1
    assert bad not in caplog.text


# ---------------------------------------------------------------- reload


async def test_reload_needs_the_syndicate_token_and_says_nothing_to_others(edge: Edge) -> None:
    refusals = [
        ({}, None, 401),
        ({"Authorization": "Bearer not-a-real-token-000000"}, None, 401),
        ({"Authorization": f"Bearer {GIVORS}"}, None, 403),
        # A browser's cross-site form: no bearer can ride along, and the shape alone is refused.
        ({"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}, b"a=1", 415),
        ({"Origin": "http://evil.example", "Authorization": f"Bearer {ADMIN}"}, None, 403),
        ({"Sec-Fetch-Site": "cross-site", "Authorization": f"Bearer {ADMIN}"}, None, 403),
    ]
    for headers, data, expected in refusals:
        status, body, _ = await request(edge, "POST", "/-/reload", headers, data)
        assert status == expected, (headers, status, body)
        assert "venisieux" not in body and "line 42" not in body
    assert edge.reloads == []
    status, body, _ = await request(edge, "POST", "/-/reload", {"Authorization": f"Bearer {ADMIN}"})
    assert status == 400 and "unknown commune 'venisieux'" in body
    assert len(edge.reloads) == 1


async def test_reload_is_rate_limited(edge: Edge) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    statuses = [(await request(edge, "POST", "/-/reload", admin))[0] for _ in range(20)]
    assert statuses[0] == 400 and set(statuses[1:]) == {429}
    assert len(edge.reloads) == 1
    _, _, headers = await request(edge, "POST", "/-/reload", admin)
    assert int(headers["Retry-After"]) >= 1


# ---------------------------------------------------------------- reports and /metrics


async def test_concurrent_readers_of_a_month_share_one_build(edge: Edge) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    edge.release.clear()
    readers = [asyncio.create_task(request(edge, "GET", "/api/v1/reports/2026-10.json", admin)) for _ in range(12)]
    await asyncio.sleep(0.3)
    edge.release.set()
    results = await asyncio.gather(*readers)
    assert {status for status, _, _ in results} == {200}
    assert edge.builds == ["2026-10"]


async def test_report_builds_do_not_hold_up_metrics() -> None:
    """Twelve stuck report builds: /metrics (which needs a worker thread for its own collectors) still answers."""
    e, _, stop = await start_edge(block_builds=True)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    try:
        months = [f"2025-{m:02d}" for m in range(1, 13)]
        readers = [asyncio.create_task(request(e, "GET", f"/api/v1/reports/{m}.xlsx", admin)) for m in months]
        await until_building(e)
        started = time.perf_counter()
        status, text, _ = await asyncio.wait_for(request(e, "GET", "/metrics"), 5)
        assert status == 200 and "sitivmon_build_info" in text
        assert time.perf_counter() - started < 1.0
        e.release.set()
        await asyncio.gather(*readers)
    finally:
        await stop()
