"""The portal's routes under `/ui/`: sign-in, month overview, closing, revisions, commune pages, link status.

Everything a page shows comes from the report service and the monitor the daemon already has; the
portal adds people's concerns only: sessions, roles, words and charts. Each handler checks the role and
the commune scope before reading anything, and answers 403 for a commune that is not the reader's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from sitivmon.allocation.archive import CloseOutcome, Revision, diff_reports
from sitivmon.allocation.formats import CONTENT_TYPES
from sitivmon.allocation.report import substance
from sitivmon.portal import fmt
from sitivmon.portal.auth import Account, Role, Session, Sessions, SignInThrottle, find_account, same_token
from sitivmon.portal.labels import t
from sitivmon.portal.views import (
    CommuneRef,
    allocation_matrix,
    commune_lines,
    finance_reason,
    history_charts,
    indicator_pivot,
    indicator_value,
    indicator_words,
    previous_months,
    project_basis_words,
    shift_month,
)
from sitivmon.usage.periods import month_of, month_range, parse_month

log = logging.getLogger("sitivmon.portal")

HERE = Path(__file__).parent
SESSION_COOKIE = "sitivmon_session"
LOGIN_COOKIE = "sitivmon_signin"
LANG_COOKIE = "sitivmon_lang"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class ReportView:
    report: dict[str, Any]
    stale_warning: str | None


@dataclass(frozen=True, slots=True)
class LinkRow:
    commune: str
    link: str
    target: str
    interface: str
    state: str  # up, down, unknown
    admin_up: bool | None
    maintenance: bool
    since: float | None
    last_poll: float | None


class PortalBackend:
    """What the portal reads and does, as plain callables the composition root provides."""

    def __init__(
        self,
        *,
        accounts: Callable[[], Sequence[Account]],
        communes: Callable[[], Sequence[CommuneRef]],
        timezone: Callable[[], str],
        report: Callable[[str], ReportView],
        fresh: Callable[[str], dict[str, Any]],
        revisions: Callable[[str], list[Revision]],
        close: Callable[[str, datetime], CloseOutcome],
        usage: Callable[[str], dict[str, Any]],
        download: Callable[[dict[str, Any], str, str, str | None], bytes],
        links: Callable[[], list[LinkRow]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.accounts = accounts
        self.communes = communes
        self.timezone = timezone
        self.report = report
        self.fresh = fresh
        self.revisions = revisions
        self.close = close
        self.usage = usage
        self.download = download
        self.links = links
        self.clock = clock


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION_KEY = web.RequestKey("portal_session", Session)
FORM_KEY = web.RequestKey("portal_form", object)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda cents, lang="fr": fmt.money(int(cents), lang)
    env.filters["percent"] = lambda v, lang="fr", places=1: fmt.percent(v, lang, places)
    env.filters["when"] = lambda v, tz="Europe/Paris", lang="fr": fmt.when(v, tz, lang)
    return env


def setup_portal(
    app: web.Application, backend: PortalBackend, *, secure_cookies: bool = False, executor: Executor | None = None
) -> None:
    """Add `/ui/` to the daemon's app. `secure_cookies` marks cookies Secure (behind TLS).

    Report work runs on `executor` (the daemon's report pool), never on the default pool that the
    /metrics scrape uses: a finance officer paging through months must not delay a scrape.
    """
    env = _environment()
    sessions = Sessions()
    throttle = SignInThrottle()

    def lang_of(request: web.Request) -> str:
        wanted = request.query.get("lang") or request.cookies.get(LANG_COOKIE, "fr")
        return wanted if wanted in fmt.LANGS else "fr"

    def page(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        lang = lang_of(request)
        session: Session | None = request.get(SESSION_KEY)
        body = env.get_template(template).render(
            lang=lang, t=lambda key, **kw: t(lang, key, **kw), session=session, tz=backend.timezone(),
            fmt=fmt, path=request.path, Role=Role, **values,
        )
        response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        response.headers.update(SECURITY_HEADERS)
        if "lang" in request.query and request.query["lang"] in fmt.LANGS:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/ui", samesite="Strict",
                                httponly=True, secure=secure_cookies)
        return response

    def refuse(request: web.Request, status: int, key: str) -> web.Response:
        return page(request, "error.html", status=status, message=t(lang_of(request), key))

    def current_session(request: web.Request) -> Session | None:
        return sessions.get(request.cookies.get(SESSION_COOKIE), backend.accounts())

    def guarded(*roles: Role) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def run(request: web.Request) -> web.StreamResponse:
                session = current_session(request)
                if session is None:
                    raise web.HTTPSeeOther(f"/ui/login?next={request.path}")
                request[SESSION_KEY] = session
                if session.account.role not in roles:
                    log.warning("portal refused %s %s to %s (%s)", request.method, request.path,
                                session.account.name, session.account.role.value)
                    return refuse(request, 403, "forbidden")
                if request.method == "POST":
                    form = await request.post()
                    origin = request.headers.get("Origin")
                    if origin is not None and origin.split("://", 1)[-1] != request.host:
                        return refuse(request, 403, "forbidden")
                    if not same_token(str(form.get("csrf", "")), session.csrf):
                        log.warning("portal refused %s %s: bad CSRF token", request.method, request.path)
                        return refuse(request, 403, "forbidden")
                    request[FORM_KEY] = form
                return await handler(request)

            return run

        return wrap

    def month_param(request: web.Request) -> str:
        label = request.match_info.get("month", "")
        try:
            parse_month(label)
        except ValueError:
            raise web.HTTPNotFound() from None
        return label

    def this_month() -> str:
        return month_of(backend.clock(), backend.timezone()).label

    def ended(month: str) -> bool:
        return month_range(month, backend.timezone()).end <= backend.clock()

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    # --- sign-in -----------------------------------------------------------------------------------------------

    async def login_form(request: web.Request) -> web.StreamResponse:
        if current_session(request) is not None:
            raise web.HTTPSeeOther("/ui/")
        token = sessions_token()
        response = page(request, "login.html", csrf=token, error=None, next=_safe_next(request.query.get("next")))
        response.set_cookie(LOGIN_COOKIE, token, path="/ui/login", httponly=True, samesite="Strict",
                            secure=secure_cookies, max_age=600)
        return response

    def sessions_token() -> str:
        import secrets

        return secrets.token_urlsafe(24)

    async def login(request: web.Request) -> web.StreamResponse:
        source = request.remote or "?"
        lang = lang_of(request)
        wait = throttle.retry_after(source)
        form = await request.post()
        nxt = _safe_next(str(form.get("next", "")))
        if wait > 0:
            log.warning("portal sign-in throttled for %s", source)
            response = page(request, "login.html", status=429, csrf=request.cookies.get(LOGIN_COOKIE, ""),
                            error=t(lang, "signin_throttled", seconds=int(wait) + 1), next=nxt)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        if not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")):
            return refuse(request, 403, "forbidden")
        account = find_account(backend.accounts(), str(form.get("token", "")))
        if account is None:
            throttle.failed(source)
            log.warning("portal sign-in refused from %s: unknown token", source)
            return page(request, "login.html", status=401, csrf=request.cookies.get(LOGIN_COOKIE, ""),
                        error=t(lang, "signin_bad"), next=nxt)
        throttle.succeeded(source)
        session = sessions.open(account)
        log.info("portal sign-in: %s (%s) from %s", account.name, account.role.value, source)
        response = web.HTTPSeeOther(nxt or "/ui/")
        response.set_cookie(SESSION_COOKIE, session.id, path="/ui", httponly=True, samesite="Strict",
                            secure=secure_cookies, max_age=int(sessions.ttl_s))
        response.del_cookie(LOGIN_COOKIE, path="/ui/login")
        raise response

    @guarded(Role.FINANCE, Role.COMMUNE, Role.OPERATIONS)
    async def logout(request: web.Request) -> web.StreamResponse:
        session: Session = request[SESSION_KEY]
        sessions.close(session.id)
        response = web.HTTPSeeOther("/ui/login")
        response.del_cookie(SESSION_COOKIE, path="/ui")
        raise response

    @guarded(Role.FINANCE, Role.COMMUNE, Role.OPERATIONS)
    async def home(request: web.Request) -> web.StreamResponse:
        account: Account = request[SESSION_KEY].account
        month = shift_month(this_month(), -1)
        if account.role is Role.FINANCE:
            raise web.HTTPSeeOther(f"/ui/months/{month}")
        if account.role is Role.COMMUNE:
            raise web.HTTPSeeOther(f"/ui/communes/{account.commune}/{month}")
        raise web.HTTPSeeOther("/ui/links")

    # --- finance -----------------------------------------------------------------------------------------------

    def communes_by_id() -> dict[str, CommuneRef]:
        return {c.id: c for c in backend.communes()}

    async def load_report(month: str) -> ReportView | None:
        try:
            view: ReportView = await in_thread(backend.report, month)
        except LookupError:
            return None
        return view

    @guarded(Role.FINANCE)
    async def overview(request: web.Request) -> web.StreamResponse:
        month = month_param(request)
        view = await load_report(month)
        communes = list(backend.communes())
        matrix = allocation_matrix(view.report, communes) if view else None
        lang = lang_of(request)
        rows = view.report["indicators"] if view is not None else []
        indicators = indicator_pivot(rows, communes, lang)
        projects = [
            {**p, "basis_text": project_basis_words(p, lang), "used_text": project_basis_words(p, lang, used=True),
             "why": finance_reason(p, rows, communes, lang)}
            for p in (view.report["projects"] if view is not None else [])
        ]
        return page(request, "overview.html", month=month, view=view, matrix=matrix, indicators=indicators,
                    projects=projects, communes=communes_by_id(), prev=shift_month(month, -1),
                    next_month=shift_month(month, 1), ended=ended(month))

    @guarded(Role.FINANCE)
    async def close_form(request: web.Request) -> web.StreamResponse:
        month = month_param(request)
        lang = lang_of(request)
        if not ended(month):
            end = fmt.when(month_range(month, backend.timezone()).end, backend.timezone(), lang)
            return page(request, "close.html", status=409, month=month, fresh=None, diff=None, revision=None,
                        refused=t(lang, "close_not_ended", month=fmt.month_name(month, lang), end=end),
                        communes=communes_by_id())
        fresh = await in_thread(backend.fresh, month)
        revisions: list[Revision] = await in_thread(backend.revisions, month)
        latest = revisions[-1] if revisions else None
        diff = diff_reports(latest.report, fresh) if latest else None
        unchanged = latest is not None and substance(latest.report) == substance(fresh)
        return page(request, "close.html", month=month, fresh=allocation_matrix(fresh, backend.communes()),
                    diff=diff, unchanged=unchanged, revision=(latest.revision + 1) if latest else 1, refused=None,
                    communes=communes_by_id())

    @guarded(Role.FINANCE)
    async def close(request: web.Request) -> web.StreamResponse:
        month = month_param(request)
        if not ended(month):
            return await close_form(request)
        account: Account = request[SESSION_KEY].account
        outcome: CloseOutcome = await in_thread(backend.close, month, datetime.fromtimestamp(backend.clock(), UTC))
        log.info("portal: %s closed %s: revision %d (%s)", account.name, month, outcome.revision.revision,
                 "new" if outcome.created else "unchanged")
        state = "done" if outcome.created else "unchanged"
        raise web.HTTPSeeOther(f"/ui/months/{month}/revisions?closed={state}&rev={outcome.revision.revision}")

    @guarded(Role.FINANCE)
    async def revisions(request: web.Request) -> web.StreamResponse:
        month = month_param(request)
        lang = lang_of(request)
        revs: list[Revision] = await in_thread(backend.revisions, month)
        pending = None
        if revs and ended(month):
            try:
                fresh = await in_thread(backend.fresh, month)
            except (LookupError, ValueError) as exc:
                log.warning("portal: recomputing %s failed: %s", month, exc)
            else:
                if substance(fresh) != substance(revs[-1].report):
                    pending = diff_reports(revs[-1].report, fresh)
        notice = None
        closed = request.query.get("closed")
        rev = request.query.get("rev", "")
        if closed in ("done", "unchanged") and rev.isdigit():
            key = "close_done" if closed == "done" else "close_unchanged"
            notice = t(lang, key, month=fmt.month_name(month, lang), revision=int(rev))
        return page(request, "revisions.html", month=month, revisions=revs[::-1], pending=pending, notice=notice,
                    communes=communes_by_id())

    @guarded(Role.FINANCE, Role.COMMUNE)
    async def download(request: web.Request) -> web.StreamResponse:
        month = month_param(request)
        account: Account = request[SESSION_KEY].account
        ext = request.match_info["ext"]
        flavor = "csv-fr" if ext == "csv" and request.query.get("flavor") == "fr" else ext
        scope = account.commune if account.role is Role.COMMUNE else None
        view = await load_report(month)
        if view is None:
            return refuse(request, 404, "not_found")
        section = request.query.get("section", "allocations")
        try:
            body: bytes = await in_thread(backend.download, view.report, flavor, section, scope)
        except ValueError:
            return refuse(request, 404, "not_found")
        suffix = f"-{scope}" if scope else ""
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPES[flavor]
        response.headers["Content-Disposition"] = f'attachment; filename="sitivmon-{month}{suffix}.{ext}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- communes ----------------------------------------------------------------------------------------------

    @guarded(Role.FINANCE, Role.COMMUNE)
    async def commune(request: web.Request) -> web.StreamResponse:
        month = month_param(request)
        commune_id = request.match_info["commune"]
        account: Account = request[SESSION_KEY].account
        known = communes_by_id()
        if commune_id not in known:
            return refuse(request, 404, "not_found")
        if not account.may_see_commune(commune_id):
            log.warning("portal refused commune %s to %s", commune_id, account.name)
            return refuse(request, 403, "forbidden")
        lang = lang_of(request)
        view = await load_report(month)
        lines = commune_lines(view.report, commune_id, lang) if view else []
        own = [r for r in (view.report["indicators"] if view else []) if r["commune"] == commune_id]
        indicators = [
            {**r, "label": indicator_words(r["indicator"], r.get("direction"), lang), "shown": indicator_value(r, lang)}
            for r in own
        ]
        months = previous_months(month, 12)

        def history() -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            for m in months:
                try:
                    rows = backend.usage(m)["indicators"]
                except (LookupError, ValueError):
                    continue
                out[m] = [r for r in rows if r["commune"] == commune_id]  # scoped before anything else sees it
            return out

        charts = history_charts(months, await in_thread(history), commune_id, lang)
        status = view.report["header"] if view else None
        return page(request, "commune.html", month=month, commune=known[commune_id], lines=lines,
                    total=sum(line["amount_cents"] for line in lines), indicators=indicators, charts=charts,
                    header=status, prev=shift_month(month, -1), next_month=shift_month(month, 1))

    @guarded(Role.FINANCE, Role.COMMUNE, Role.OPERATIONS)
    async def links(request: web.Request) -> web.StreamResponse:
        account: Account = request[SESSION_KEY].account
        rows = [r for r in backend.links() if account.role is not Role.COMMUNE or r.commune == account.commune]
        known = communes_by_id()
        groups: dict[str, list[LinkRow]] = {}
        for row in sorted(rows, key=lambda r: (known[r.commune].insee if r.commune in known else r.commune, r.link)):
            groups.setdefault(row.commune, []).append(row)
        return page(request, "links.html", groups=groups, communes=known, now=backend.clock())

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        response = web.FileResponse(HERE / "static" / name)
        response.headers["Cache-Control"] = "max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/ui/")

    app.router.add_get("/ui", root)
    app.router.add_get("/ui/", home)
    app.router.add_get("/ui/login", login_form)
    app.router.add_post("/ui/login", login)
    app.router.add_post("/ui/logout", logout)
    app.router.add_get("/ui/months/{month}", overview)
    app.router.add_get("/ui/months/{month}/close", close_form)
    app.router.add_post("/ui/months/{month}/close", close)
    app.router.add_get("/ui/months/{month}/revisions", revisions)
    app.router.add_get(r"/ui/months/{month}/report.{ext:(json|csv|xlsx)}", download)
    app.router.add_get("/ui/communes/{commune}/{month}", commune)
    app.router.add_get("/ui/links", links)
    app.router.add_get("/ui/static/{name}", static)


_STATIC = {"portal.css"}


def _safe_next(value: str | None) -> str:
    """Only a local portal path: a sign-in never redirects off the site."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return ""
