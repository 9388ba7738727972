"""HTTP access to usage and reports: `/api/v1/usage/{month}`, `/api/v1/reports/{month}.{json,csv,xlsx}`.

Bearer tokens come from the config and only their SHA-256 is kept; presented tokens are hashed and
compared in constant time against every entry. A commune-scoped token sees nothing of another commune
(`scope_report` whitelists what it may read). Refusals are counted, and logged at most once per source
and minute with the reason and the token's name when known, never with the token.

Reports are built and rendered in their own small thread pool and cached per month and inputs, so
that a crowd of report readers neither recomputes the month per request nor holds up `/metrics`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from sitivmon.allocation.config import ApiToken
from sitivmon.allocation.formats import CONTENT_TYPES, SECTIONS, render
from sitivmon.allocation.report import scope_report
from sitivmon.logthrottle import Throttle
from sitivmon.usage.periods import parse_month

log = logging.getLogger("sitivmon.allocation.api")

SYNDICATE = "syndicate"
CACHE_TTL_S = 60.0
"""A cached report is rebuilt after this long even if its inputs look unchanged (the current month's
coverage moves with the clock; a file rewritten within the same mtime tick would otherwise go unseen)."""
CACHE_ENTRIES = 64


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scope: str  # "syndicate" or a commune id
    role: str | None = None  # "operations" reads link status in the portal, never usage or money

    @property
    def reads_figures(self) -> bool:
        return self.role != "operations"

    def may_see(self, commune: str) -> bool:
        return self.reads_figures and self.scope in (SYNDICATE, commune)

    @property
    def admin(self) -> bool:
        return self.scope == SYNDICATE and self.reads_figures


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=(json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = json_response({"error": message}, status)
    response.headers.update(headers or {})
    return response


TokenSource = Sequence[ApiToken] | Callable[[], Sequence[ApiToken]]


class TokenAuthority:
    """Who presents which bearer token, for the API and the admin endpoints of the same server.

    `tokens` may be a callable, asked on each request, so that a reload that removes a token takes effect.
    `rejected` (labels status, reason) counts every refusal; the log says the first per source and minute.
    """

    def __init__(self, tokens: TokenSource, *, rejected: Counter | None = None, throttle: Throttle | None = None):
        self._tokens = tokens if callable(tokens) else (lambda: tokens)
        self._seen: Sequence[ApiToken] | None = None
        self._entries: list[_Entry] = []
        self.rejected = rejected
        self.throttle = throttle or Throttle(60.0)

    def _current(self) -> list[_Entry]:
        now = self._tokens()
        if now is not self._seen:
            self._seen, self._entries = now, [_Entry(t.digest(), Principal(t.name, t.scope, t.role)) for t in now]
        return self._entries

    def identify(self, request: web.Request) -> Principal | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            self.deny(request, 401, "no_token", "no bearer token", None)
            return json_error(401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="sitivmon"'})
        digest = hashlib.sha256(presented.strip().encode()).digest()
        found: Principal | None = None
        for entry in self._current():  # no early exit: the time does not depend on which entry matches
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        if found is None:
            self.deny(request, 401, "unknown_token", "unknown token", None)
            return json_error(
                401, "invalid token", {"WWW-Authenticate": 'Bearer realm="sitivmon", error="invalid_token"'}
            )
        return found

    def deny(self, request: web.Request, status: int, reason: str, detail: str, principal: Principal | None) -> None:
        """Count a refusal; log it unless this source already had its line this minute."""
        if self.rejected is not None:
            self.rejected.labels(str(status), reason).inc()
        held = self.throttle.allow(f"{request.remote}")
        if held is None:
            return
        who = f"token={principal.name} scope={principal.scope}" if principal else "token=-"
        more = f"; {held} more refusals from there in the last minute, not logged" if held else ""
        log.warning(
            "api refused %s %r: %d %s (%s, from %s)%s",  # %r: a path may carry a decoded newline
            request.method,
            request.raw_path[:200],
            status,
            detail,
            who,
            request.remote,
            more,
        )

    def forbid(self, request: web.Request, principal: Principal, detail: str) -> web.Response:
        self.deny(request, 403, "scope", detail, principal)
        return json_error(403, "this token may not read that commune's data")


class ReportCache:
    """Month documents by (kind, month, inputs), built once however many readers ask at the same time.

    `inputs(month)` says what the month's document is made of (store revision, config and allocation
    files, archive): a different answer is a different entry. Entries also expire after `ttl_s`.
    Builds and renderings run on `executor`, never on the default pool that `/metrics` uses.
    """

    def __init__(
        self,
        executor: Executor,
        inputs: Callable[[str], Hashable] | None = None,
        *,
        ttl_s: float = CACHE_TTL_S,
        entries: int = CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.executor = executor
        self.inputs = inputs or (lambda month: None)
        self.ttl_s = ttl_s
        self.entries = entries
        self.clock = clock
        self._done: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[Any]] = {}
        self.builds = 0

    async def get(self, key: Hashable, month: str, build: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        # A few stat() calls: not worth queueing behind a build on the report worker.
        inputs = await asyncio.to_thread(self.inputs, month)
        full = (key, month, inputs)
        hit = self._done.get(full)
        if hit is not None and self.clock() - hit[0] < self.ttl_s:
            self._done.move_to_end(full)
            return hit[1]
        pending = self._pending.get(full)
        if pending is None:
            pending = loop.run_in_executor(self.executor, build)
            self._pending[full] = pending
            self.builds += 1
            pending.add_done_callback(lambda f: self._settle(full, f))
        return await asyncio.shield(pending)

    def _settle(self, full: Hashable, future: asyncio.Future[Any]) -> None:
        self._pending.pop(full, None)
        if future.cancelled() or future.exception() is not None or self.ttl_s <= 0:
            return  # errors are not cached: the next reader tries again
        self._done[full] = (self.clock(), future.result())
        self._done.move_to_end(full)
        while len(self._done) > self.entries:
            self._done.popitem(last=False)


def report_executor() -> ThreadPoolExecutor:
    """One worker: report requests queue behind each other, not in front of the daemon's own work."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sitivmon-reports")


def setup_api(
    app: web.Application,
    *,
    tokens: TokenSource | TokenAuthority,
    usage_provider: Callable[[str], dict[str, Any]],
    report_builder: Callable[[str], dict[str, Any]],
    cache: ReportCache | None = None,
) -> None:
    """Add the usage and report routes to `app`.

    `usage_provider(month)` returns the month's usage as the report shows it (header and `indicators`),
    `report_builder(month)` the month's report document (frozen if closed); both may raise ValueError
    for a month that cannot be served (answered 422) or LookupError for a month without data (404).
    `ReportService.usage` and `ReportService.current(...).report` are meant for them. Without `cache`,
    a private one with its own executor is used; knowing nothing of the inputs, it only joins concurrent
    builds of the same month and keeps nothing afterwards.
    """
    authority = tokens if isinstance(tokens, TokenAuthority) else TokenAuthority(tokens)
    if cache is None:
        executor = report_executor()
        cache = ReportCache(executor, ttl_s=0.0)

        async def _stop_executor(_: web.Application) -> None:
            executor.shutdown(wait=False, cancel_futures=True)

        app.on_cleanup.append(_stop_executor)
    reports = cache

    def scope_of(request: web.Request, principal: Principal) -> str | web.Response | None:
        """The commune to restrict to (None: everything), or a refusal."""
        if not principal.reads_figures:
            return authority.forbid(request, principal, "an operations token reads no usage or report")
        wanted = request.query.get("commune")
        if wanted is not None and not principal.may_see(wanted):
            return authority.forbid(request, principal, f"asked for commune {wanted[:40]!r}")
        if principal.scope != SYNDICATE:
            return principal.scope
        return wanted

    def month_of(request: web.Request) -> str | web.Response:
        month = request.match_info["month"]
        try:
            if not month.isascii():  # parse_month's \d also takes other scripts' digits (２０２６-10)
                raise ValueError(month)
            parse_month(month)
        except ValueError:
            shown = month if month.isprintable() and len(month) <= 16 else repr(month[:16])
            return json_error(400, f"month must be YYYY-MM between 1970-01 and 9998-12, got {shown}")
        return month

    async def compute(kind: str, fn: Callable[[str], dict[str, Any]], month: str, principal: Principal) -> Any:
        try:
            return await reports.get(kind, month, lambda: fn(month))
        except LookupError as exc:
            detail = f": {exc}" if principal.admin else ""
            return json_error(404, f"no data for {month}{detail}")
        except ValueError as exc:
            log.warning("api could not build %s for %s: %s", kind, month, exc)
            # The reasons may name any commune: only a syndicate-wide reader gets them.
            detail = str(exc) if principal.admin else f"{month} cannot be served now; the syndicate has the details"
            return json_error(422, detail)

    async def usage(request: web.Request) -> web.StreamResponse:
        principal = authority.identify(request)
        if isinstance(principal, web.Response):
            return principal
        scope = scope_of(request, principal)
        if isinstance(scope, web.Response):
            return scope
        month = month_of(request)
        if isinstance(month, web.Response):
            return month
        doc = await compute("usage", usage_provider, month, principal)
        if isinstance(doc, web.Response):
            return doc
        if scope is not None:
            doc = {**doc, "indicators": [r for r in doc["indicators"] if r["commune"] == scope]}
        return json_response(doc)

    async def report(request: web.Request) -> web.StreamResponse:
        principal = authority.identify(request)
        if isinstance(principal, web.Response):
            return principal
        scope = scope_of(request, principal)
        if isinstance(scope, web.Response):
            return scope
        month = month_of(request)
        if isinstance(month, web.Response):
            return month
        ext = request.match_info["ext"]
        fmt = "csv-fr" if ext == "csv" and request.query.get("flavor") == "fr" else ext
        section = request.query.get("section", "allocations")
        if section not in SECTIONS:
            return json_error(400, f"section must be one of {', '.join(SECTIONS)}")
        doc = await compute("report", report_builder, month, principal)
        if isinstance(doc, web.Response):
            return doc
        used_section = section if fmt in ("csv", "csv-fr") else ""

        def rendered() -> tuple[dict[str, Any], bytes]:
            return doc, render(doc if scope is None else scope_report(doc, scope), fmt, section=section)

        # A rendering is cached under the document it came from, and keeps it alive so its id stays its own.
        _, body = await reports.get(("render", id(doc), scope, fmt, used_section), month, rendered)
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPES[fmt]})
        suffix = f"-{scope}" if scope else ""
        response.headers["Content-Disposition"] = f'attachment; filename="sitivmon-{month}{suffix}.{ext}"'
        return response

    app.router.add_get("/api/v1/usage/{month}", usage)
    app.router.add_get(r"/api/v1/reports/{month}.{ext:(json|csv|xlsx)}", report)
