"""HTTP edge: /metrics, health, readiness and reload. Other areas add their routes to the same app.

The edge is reachable by anyone on the management network, so it is built to stay answerable:
connections are capped (the oldest idle one makes room for a new one) and a connection that has not
sent a whole request head within `HEADER_TIMEOUT_S` is closed, so idle or half-sent connections can
neither exhaust the process's file descriptors nor lock `/metrics` out. No handler can answer with a
traceback: an unexpected error is logged and answered with a generic 500. Reload is an admin action:
bearer token of syndicate scope, no browser form, rate-limited.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sitivmon.allocation.api import TokenAuthority, json_error
from sitivmon.exposition import LabelCache, render_pieces
from sitivmon.logthrottle import Throttle
from sitivmon.monitor import Monitor
from sitivmon.selfmetrics import SelfMetrics

log = logging.getLogger("sitivmon.http")

Reloader = Callable[[], Awaitable[tuple[bool, list[str]]]]

HEADER_TIMEOUT_S = 10.0
"""Time a new connection has to send its first request head (slowloris, idle sockets)."""
KEEPALIVE_TIMEOUT_S = 30.0
"""Idle time allowed between requests on a kept-alive connection (aiohttp closes it after)."""
MAX_CONNECTIONS = 512
RELOAD_MIN_INTERVAL_S = 2.0
"""At most one reload over HTTP per this interval; SIGHUP is not limited (it needs the host)."""
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


def connection_limit(ceiling: int = MAX_CONNECTIONS) -> int:
    """Connections to allow given the open-files limit: a quarter of it, the rest is for SNMP, SQLite, MQTT."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ceiling
    return max(16, min(ceiling, soft // 4))


@dataclass(slots=True)
class _Conn:
    opened: float
    requests: int = 0
    busy: int = 0
    made: bool = False  # connection_made has run (until then, aiohttp's handler has no transport)


class _Refuse(asyncio.Protocol):
    """Answers 503 and hangs up: for a connection that arrives when every slot is serving a request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 29\r\n"
            b"Connection: close\r\nRetry-After: 1\r\n\r\ntoo many connections, retry\r\n"
        )
        transport.close()


class ConnectionGuard:
    """Caps open connections and times out slow request heads, counting and logging (throttled) each drop.

    aiohttp itself has neither a connection cap nor a head timeout separate from keep-alive; the guard
    wraps its protocol factory (`GuardedSite`), sees each connection start and end through `_Tracked`,
    and learns from its middleware which connections are serving a request. When full, the oldest
    connection not serving a request is closed to make room, so a flood of idle connections churns
    itself out instead of locking real clients out.
    """

    def __init__(
        self,
        metrics: SelfMetrics,
        *,
        limit: int | None = None,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        throttle: Throttle | None = None,
    ) -> None:
        self.limit = limit if limit is not None else connection_limit()
        self.header_timeout_s = header_timeout_s
        self.metrics = metrics
        self.throttle = throttle or Throttle(60.0)
        self._conns: OrderedDict[web.RequestHandler, _Conn] = OrderedDict()
        metrics.http_connections.set_function(lambda: len(self._conns))

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            loop = asyncio.get_running_loop()
            if not self._make_room():
                self._dropped("limit_refused", "every connection is serving a request")
                return _Refuse()
            handler = server()
            conn = self._conns[handler] = _Conn(loop.time())
            loop.call_later(self.header_timeout_s, self._check_head, handler)
            return _Tracked(self, handler, conn)

        return make

    def _make_room(self) -> bool:
        if len(self._conns) < self.limit:
            return True
        self._prune()
        while len(self._conns) >= self.limit:
            idle = next((h for h, c in self._conns.items() if not c.busy and c.made), None)
            if idle is None:
                return False
            del self._conns[idle]
            idle.force_close()
            self._dropped("limit_evicted", f"{self.limit} connections open, closed the oldest idle one")
        return True

    def _prune(self) -> None:
        """Forget accepts whose connection was never made (the loop failed to set up the transport)."""
        now = asyncio.get_running_loop().time()
        for handler in [h for h, c in self._conns.items() if not c.made and now - c.opened > 5.0]:
            del self._conns[handler]

    def _lost(self, handler: web.RequestHandler) -> None:
        self._conns.pop(handler, None)

    def _check_head(self, handler: web.RequestHandler) -> None:
        conn = self._conns.get(handler)
        if conn is not None and conn.requests == 0:
            del self._conns[handler]
            handler.force_close()
            self._dropped("header_timeout", f"no complete request head within {self.header_timeout_s:g} s")

    def _dropped(self, reason: str, detail: str) -> None:
        self.metrics.http_connections_dropped.labels(reason).inc()
        held = self.throttle.allow(reason)
        if held is not None:
            more = f" ({held} more since the last such line)" if held else ""
            log.warning("http connection dropped: %s: %s%s", reason, detail, more)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = self._conns.get(request.protocol)
        if conn is None:
            return await handler(request)
        conn.requests += 1
        conn.busy += 1
        try:
            return await handler(request)
        finally:
            conn.busy -= 1


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol, seen through by the guard: it learns exactly when a connection starts and ends."""

    __slots__ = ("_conn", "_guard", "_handler")

    def __init__(self, guard: ConnectionGuard, handler: web.RequestHandler, conn: _Conn) -> None:
        self._guard, self._handler, self._conn = guard, handler, conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn.made = True
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._lost(self._handler)
        self._handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> None:
        self._handler.eof_received()  # aiohttp keeps the transport open for the response: returns None

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard` (aiohttp's TCPSite takes no factory)."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard, backlog: int = 512):
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server), self._host, self._port, backlog=self._backlog, reuse_address=True
        )


@web.middleware
async def no_tracebacks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An unexpected error is logged with its cause and answered with a generic 500, never with its text."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("error while answering %s %r", request.method, request.raw_path[:200])
        return json_error(500, "internal error; the cause is in the daemon's log")


class ReloadGate:
    """Who may reload over HTTP, and how often: a syndicate-scope bearer token, no browser form, rate-limited.

    A bearer token cannot ride along a cross-site form (browsers add no Authorization header, and a
    request that sets it needs a CORS preflight this server never grants); form content types and
    requests a browser marks as cross-site are refused before the token is even looked at.
    """

    def __init__(
        self,
        authority: TokenAuthority | None,
        reload: Reloader,
        metrics: SelfMetrics,
        *,
        min_interval_s: float = RELOAD_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.authority = authority
        self.reload = reload
        self.metrics = metrics
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._last = -float("inf")

    def _refuse(self, request: web.Request, status: int, reason: str, message: str) -> web.Response:
        self.metrics.http_errors.labels(str(status), reason).inc()
        if self.authority is not None:
            self.authority.deny(request, status, reason, f"reload: {message}", None)
        return json_error(status, message)

    async def handle(self, request: web.Request) -> web.Response:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype in FORM_TYPES and request.content_length:  # urllib and `curl -d ''` label an empty body a form
            return self._refuse(request, 415, "form", "reload takes no form; POST with a bearer token and no body")
        if request.headers.get("Sec-Fetch-Site", "") in ("cross-site", "same-site") or "Origin" in request.headers:
            return self._refuse(request, 403, "cross_site", "reload from a web page is refused")
        if self.authority is None:
            return self._refuse(request, 403, "disabled", "reload over HTTP needs api.tokens; use SIGHUP")
        principal = self.authority.identify(request)
        if isinstance(principal, web.Response):
            return principal
        if not principal.admin:
            self.authority.deny(request, 403, "scope", "reload needs a syndicate token", principal)
            return json_error(403, "reload needs a token of scope syndicate")
        now = self.clock()
        wait = self._last + self.min_interval_s - now
        if wait > 0:
            self.metrics.http_errors.labels("429", "reload_rate").inc()
            response = json_error(429, "a reload was just done; retry shortly")
            response.headers["Retry-After"] = str(max(1, round(wait + 0.5)))
            return response
        self._last = now
        ok, errors = await self.reload()
        log.info("reload requested over HTTP by token %s: %s", principal.name, "adopted" if ok else "refused")
        if ok:
            return web.Response(text="configuration reloaded\n")
        return web.Response(status=400, text="configuration refused, old one kept:\n" + "\n".join(errors) + "\n")


def build_app(
    monitor_ref: Callable[[], Monitor],
    metrics: SelfMetrics,
    reload: Reloader,
    *,
    authority: TokenAuthority | None = None,
    guard: ConnectionGuard | None = None,
) -> web.Application:
    middlewares: list[Any] = [no_tracebacks]
    if guard is not None:
        middlewares.insert(0, guard.middleware)
    app = web.Application(client_max_size=64 * 1024, middlewares=middlewares)
    cache = LabelCache()
    gate = ReloadGate(authority, reload, metrics)

    async def handle_metrics(request: web.Request) -> web.Response:
        started = time.perf_counter()
        pieces = render_pieces(monitor_ref(), cache)  # on the loop: the monitor changes only there
        metrics.scrape_seconds.observe(time.perf_counter() - started)
        # Collectors of other areas (usage month-to-date) may read the database: off the event loop.
        pieces.append((await asyncio.to_thread(generate_latest, metrics.registry)).decode())
        return web.Response(body="".join(pieces).encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_healthy(request: web.Request) -> web.Response:
        return web.Response(text="sitivmon is healthy.\n")

    async def handle_ready(request: web.Request) -> web.Response:
        if monitor_ref().ready():
            return web.Response(text="sitivmon is ready.\n")
        return web.Response(status=503, text="sitivmon is not ready: some targets have not been polled yet.\n")

    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/-/healthy", handle_healthy)
    app.router.add_get("/-/ready", handle_ready)
    app.router.add_post("/-/reload", gate.handle)
    return app
