"""HTTP edge: /metrics, health, readiness and reload. Other areas add their routes to the same app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sitivmon.exposition import LabelCache, render
from sitivmon.monitor import Monitor
from sitivmon.selfmetrics import SelfMetrics

Reloader = Callable[[], Awaitable[tuple[bool, list[str]]]]



def build_app(monitor_ref: Callable[[], Monitor], metrics: SelfMetrics, reload: Reloader) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    cache = LabelCache()

    async def handle_metrics(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = render(monitor_ref(), cache)
        metrics.scrape_seconds.observe(time.perf_counter() - started)
        # Collectors of other areas (usage month-to-date) may read the database: off the event loop.
        own = (await asyncio.to_thread(generate_latest, metrics.registry)).decode()
        return web.Response(body=(body + own).encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_healthy(request: web.Request) -> web.Response:
        return web.Response(text="sitivmon is healthy.\n")

    async def handle_ready(request: web.Request) -> web.Response:
        if monitor_ref().ready():
            return web.Response(text="sitivmon is ready.\n")
        return web.Response(status=503, text="sitivmon is not ready: some targets have not been polled yet.\n")

    async def handle_reload(request: web.Request) -> web.Response:
        ok, errors = await reload()
        if ok:
            return web.Response(text="configuration reloaded\n")
        return web.Response(status=400, text="configuration refused, old one kept:\n" + "\n".join(errors) + "\n")

    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/-/healthy", handle_healthy)
    app.router.add_get("/-/ready", handle_ready)
    app.router.add_post("/-/reload", handle_reload)
    return app
