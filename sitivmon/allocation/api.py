"""HTTP access to usage and reports: `/api/v1/usage/{month}`, `/api/v1/reports/{month}.{json,csv,xlsx}`.

Bearer tokens come from the config and only their SHA-256 is kept; presented tokens are hashed and
compared in constant time against every entry. A commune-scoped token sees its own commune's rows only;
refusals are logged with the reason and the token's name when known, never with the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sitivmon.allocation.config import ApiToken
from sitivmon.allocation.engine import MONTH_RE
from sitivmon.allocation.formats import CONTENT_TYPES, SECTIONS, render
from sitivmon.allocation.report import scope_report

log = logging.getLogger("sitivmon.allocation.api")

SYNDICATE = "syndicate"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scope: str  # "syndicate" or a commune id

    def may_see(self, commune: str) -> bool:
        return self.scope in (SYNDICATE, commune)


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=(json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = _json_response({"error": message}, status)
    response.headers.update(headers or {})
    return response


class _Auth:
    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self.entries = [_Entry(t.digest(), Principal(t.name, t.scope)) for t in tokens]

    def identify(self, request: web.Request) -> Principal | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            self._deny(request, 401, "no bearer token", None)
            return _error(401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="sitivmon"'})
        digest = hashlib.sha256(presented.strip().encode()).digest()
        found: Principal | None = None
        for entry in self.entries:  # no early exit: the time does not depend on which entry matches
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        if found is None:
            self._deny(request, 401, "unknown token", None)
            return _error(401, "invalid token", {"WWW-Authenticate": 'Bearer realm="sitivmon", error="invalid_token"'})
        return found

    @staticmethod
    def _deny(request: web.Request, status: int, reason: str, principal: Principal | None) -> None:
        who = f"token={principal.name} scope={principal.scope}" if principal else "token=-"
        log.warning(
            "api refused %s %s: %d %s (%s, from %s)",
            request.method,
            request.path,
            status,
            reason,
            who,
            request.remote,
        )

    def forbid(self, request: web.Request, principal: Principal, reason: str) -> web.Response:
        self._deny(request, 403, reason, principal)
        return _error(403, "this token may not read that commune's data")


def setup_api(
    app: web.Application,
    *,
    tokens: Sequence[ApiToken] | Callable[[], Sequence[ApiToken]],
    usage_provider: Callable[[str], dict[str, Any]],
    report_builder: Callable[[str], dict[str, Any]],
) -> None:
    """Add the usage and report routes to `app`.

    `usage_provider(month)` returns the month's usage as the report shows it (header and `indicators`),
    `report_builder(month)` the month's report document (frozen if closed); both may raise ValueError
    for a month that cannot be served (answered 422) or LookupError for a month without data (404).
    `ReportService.usage` and `ReportService.current(...).report` are meant for them.
    """
    # A callable is asked again on each request, so that a reload that removes a token takes effect.
    current_tokens = tokens if callable(tokens) else (lambda: tokens)
    cache: dict[str, Any] = {}

    def authority() -> _Auth:
        now = current_tokens()
        if cache.get("tokens") is not now:
            cache["tokens"], cache["auth"] = now, _Auth(now)
        auth: _Auth = cache["auth"]
        return auth

    def scope_of(request: web.Request, principal: Principal) -> str | web.Response | None:
        """The commune to restrict to (None: everything), or a refusal."""
        wanted = request.query.get("commune")
        if wanted is not None and not principal.may_see(wanted):
            return authority().forbid(request, principal, f"asked for commune {wanted!r}")
        if principal.scope != SYNDICATE:
            return principal.scope
        return wanted

    async def compute(fn: Callable[[str], dict[str, Any]], month: str) -> dict[str, Any] | web.Response:
        if not MONTH_RE.match(month):
            return _error(400, f"month must be YYYY-MM, got {month!r}")
        try:
            return await asyncio.to_thread(fn, month)
        except LookupError as exc:
            return _error(404, f"no data for {month}: {exc}")
        except ValueError as exc:
            log.warning("api could not build %s: %s", month, exc)
            return _error(422, str(exc))

    async def usage(request: web.Request) -> web.StreamResponse:
        principal = authority().identify(request)
        if isinstance(principal, web.Response):
            return principal
        scope = scope_of(request, principal)
        if isinstance(scope, web.Response):
            return scope
        doc = await compute(usage_provider, request.match_info["month"])
        if isinstance(doc, web.Response):
            return doc
        if scope is not None:
            doc = {**doc, "indicators": [r for r in doc["indicators"] if r["commune"] == scope]}
        return _json_response(doc)

    async def report(request: web.Request) -> web.StreamResponse:
        principal = authority().identify(request)
        if isinstance(principal, web.Response):
            return principal
        scope = scope_of(request, principal)
        if isinstance(scope, web.Response):
            return scope
        ext = request.match_info["ext"]
        fmt = "csv-fr" if ext == "csv" and request.query.get("flavor") == "fr" else ext
        section = request.query.get("section", "allocations")
        if section not in SECTIONS:
            return _error(400, f"section must be one of {', '.join(SECTIONS)}")
        doc = await compute(report_builder, request.match_info["month"])
        if isinstance(doc, web.Response):
            return doc
        if scope is not None:
            doc = scope_report(doc, scope)
        body = await asyncio.to_thread(render, doc, fmt, section=section)
        month = request.match_info["month"]
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPES[fmt]})
        suffix = f"-{scope}" if scope else ""
        response.headers["Content-Disposition"] = f'attachment; filename="sitivmon-{month}{suffix}.{ext}"'
        return response

    app.router.add_get("/api/v1/usage/{month}", usage)
    app.router.add_get(r"/api/v1/reports/{month}.{ext:(json|csv|xlsx)}", report)
