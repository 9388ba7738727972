"""The portal over real HTTP: sign-in, roles, commune scope in every page and download, CSRF, closing."""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, CookieJar

from tests.allocation.conftest import COMMUNES

from .conftest import FINANCE, GIVORS, OPERATIONS, VENISSIEUX, Portal

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


@pytest.fixture
async def browser() -> AsyncIterator[ClientSession]:
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as session:  # unsafe: cookies for 127.0.0.1
        yield session


async def sign_in(portal: Portal, session: ClientSession, token: str, *, expect: int = 200) -> str:
    async with session.get(portal.url("/ui/login")) as r:
        page = await r.text()
    found = CSRF.search(page)
    assert found is not None
    async with session.post(portal.url("/ui/login"), data={"csrf": found.group(1), "token": token, "next": ""}) as r:
        assert r.status == expect, await r.text()
        return await r.text()


async def csrf_of(portal: Portal, session: ClientSession, path: str) -> str:
    async with session.get(portal.url(path)) as r:
        found = CSRF.search(await r.text())
    assert found is not None
    return found.group(1)


async def test_unsigned_visitor_is_sent_to_sign_in(portal: Portal, browser: ClientSession) -> None:
    async with browser.get(portal.url("/ui/months/2026-10"), allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/ui/login")


async def test_finance_lands_on_last_month_with_amounts_in_french(portal: Portal, browser: ClientSession) -> None:
    page = await sign_in(portal, browser, FINANCE)
    assert "Vue du mois — octobre 2026" in page
    report = portal.service.current("2026-10").report
    total = sum(line["amount_cents"] for line in report["allocations"])
    euros, cents = divmod(total, 100)
    shown = f"{euros:,}".replace(",", "\u00a0") + f",{cents:02d}\u00a0€"
    assert shown in page  # the grand total, in the French way
    for c in COMMUNES:
        assert c.name in page
    assert "<caption" in page and 'scope="col"' in page and 'scope="row"' in page


async def test_session_cookie_is_httponly_and_strict(portal: Portal, browser: ClientSession) -> None:
    async with browser.get(portal.url("/ui/login")) as r:
        csrf = CSRF.search(await r.text())
    assert csrf is not None
    async with browser.post(portal.url("/ui/login"), data={"csrf": csrf.group(1), "token": FINANCE},
                            allow_redirects=False) as r:
        assert r.status == 303
        cookie = r.cookies["sitivmon_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui"
        assert FINANCE not in str(r.headers)


async def test_commune_sees_only_its_commune_everywhere(portal: Portal, browser: ClientSession) -> None:
    page = await sign_in(portal, browser, VENISSIEUX)
    assert "Vénissieux — octobre 2026" in page
    others = [c for c in COMMUNES if c.id != "venissieux"]
    bodies = {"commune page": page}
    for path in ("/ui/links", "/ui/months/2026-10/report.json", "/ui/months/2026-10/report.csv?flavor=fr",
                 "/ui/months/2026-10/report.csv?section=projects", "/ui/months/2026-10/report.csv?section=indicators",
                 "/ui/communes/venissieux/2026-09", "/ui/communes/venissieux/2026-10?lang=en"):
        async with browser.get(portal.url(path)) as r:
            assert r.status == 200, path
            bodies[path] = (await r.read()).decode("utf-8-sig")
    for where, body in bodies.items():
        folded = fold(body)
        for c in others:
            for needle in (c.id, fold(c.name), c.insee):
                assert needle not in folded, f"{needle} of {c.id} appears in {where}"
    for path in ("/ui/communes/givors/2026-10", "/ui/months/2026-10", "/ui/months/2026-10/revisions",
                 "/ui/months/2026-10/close"):
        async with browser.get(portal.url(path)) as r:
            assert r.status == 403, path


async def test_downloads_are_the_api_bytes(portal: Portal, browser: ClientSession) -> None:
    for token in (FINANCE, VENISSIEUX):
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as session:
            await sign_in(portal, session, token)
            for ext, query in (("json", ""), ("csv", "?flavor=fr"), ("csv", "?section=indicators"), ("xlsx", "")):
                async with session.get(portal.url(f"/ui/months/2026-10/report.{ext}{query}")) as r:
                    ours = await r.read()
                    our_type = r.headers["Content-Type"]
                async with session.get(portal.url(f"/api/v1/reports/2026-10.{ext}{query}"),
                                       headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200
                    theirs = await r.read()
                    assert r.headers["Content-Type"] == our_type
                if ext == "xlsx":  # xlsx zips carry a timestamp per build: compare the cells instead
                    assert ours[:2] == b"PK" and theirs[:2] == b"PK"
                else:
                    assert ours == theirs, (token, ext, query)


async def test_wrong_token_is_refused_then_throttled(portal: Portal, browser: ClientSession) -> None:
    for _ in range(5):
        page = await sign_in(portal, browser, "not-a-token-at-all-123", expect=401)
        assert "Jeton inconnu" in page
    page = await sign_in(portal, browser, FINANCE, expect=429)  # even the right token waits now
    assert "Trop de tentatives" in page


async def test_post_without_csrf_is_refused(portal: Portal, browser: ClientSession) -> None:
    await sign_in(portal, browser, FINANCE)
    async with browser.post(portal.url("/ui/months/2026-10/close"), data={}) as r:
        assert r.status == 403
    async with browser.post(portal.url("/ui/months/2026-10/close"), data={"csrf": "guess"}) as r:
        assert r.status == 403
    assert portal.service.archive.revisions("2026-10") == []
    csrf = await csrf_of(portal, browser, "/ui/months/2026-10/close")
    async with browser.post(portal.url("/ui/months/2026-10/close"), data={"csrf": csrf},
                            headers={"Origin": "https://evil.example"}) as r:
        assert r.status == 403
    assert portal.service.archive.revisions("2026-10") == []


async def test_finance_closes_a_month_and_the_revision_appears(portal: Portal, browser: ClientSession) -> None:
    await sign_in(portal, browser, FINANCE)
    async with browser.get(portal.url("/ui/months/2026-10/close")) as r:
        page = await r.text()
    assert "figés comme révision 1 de octobre 2026" in page
    csrf = CSRF.search(page)
    assert csrf is not None
    async with browser.post(portal.url("/ui/months/2026-10/close"), data={"csrf": csrf.group(1)}) as r:
        assert r.status == 200 and "/revisions" in str(r.url)
        page = await r.text()
    assert "octobre 2026 clôturé : révision 1." in page
    revisions = portal.service.archive.revisions("2026-10")
    assert [rev.revision for rev in revisions] == [1]
    assert revisions[0].sha256[:16] in page
    async with browser.get(portal.url("/ui/months/2026-10")) as r:
        assert "clôturé" in await r.text()
    # closing again with nothing changed stores nothing
    csrf2 = await csrf_of(portal, browser, "/ui/months/2026-10/close")
    async with browser.post(portal.url("/ui/months/2026-10/close"), data={"csrf": csrf2}) as r:
        assert "inchangé depuis la révision 1" in await r.text()
    assert len(portal.service.archive.revisions("2026-10")) == 1


async def test_a_month_that_has_not_ended_cannot_be_closed(portal: Portal, browser: ClientSession) -> None:
    await sign_in(portal, browser, FINANCE)
    async with browser.get(portal.url("/ui/months/2026-11/close")) as r:
        assert r.status == 409
        assert "novembre 2026 n'est pas terminé" in html.unescape(await r.text())
    csrf = await csrf_of(portal, browser, "/ui/months/2026-10/close")
    async with browser.post(portal.url("/ui/months/2026-11/close"), data={"csrf": csrf}) as r:
        assert r.status == 409
    assert portal.service.archive.revisions("2026-11") == []


async def test_commune_page_explains_each_amount(portal: Portal, browser: ClientSession) -> None:
    page = await sign_in(portal, browser, VENISSIEUX)
    report = portal.service.current("2026-10").report
    lines = [a for a in report["allocations"] if a["commune"] == "venissieux"]
    assert lines
    for line in lines:
        assert line["project"] in page
    assert page.count("Répartition selon") + page.count("Repli sur") >= len(lines)
    assert page.count("<svg") == 6 and "<desc" in page  # six charts, each with a text description


async def test_operations_sees_links_only(portal: Portal, browser: ClientSession) -> None:
    page = await sign_in(portal, browser, OPERATIONS)
    assert "État des liens" in page and "venissieux-fibre" in page and "givors-fibre" in page
    for path in ("/ui/months/2026-10", "/ui/communes/venissieux/2026-10", "/ui/months/2026-10/report.json"):
        async with browser.get(portal.url(path)) as r:
            assert r.status == 403, path


async def test_commune_link_status_is_scoped(portal: Portal, browser: ClientSession) -> None:
    await sign_in(portal, browser, GIVORS)
    async with browser.get(portal.url("/ui/links")) as r:
        page = await r.text()
    assert "givors-fibre" in page and "venissieux-fibre" not in page and "corbas-sdsl" not in page
    assert "coupé" in page and "désactivé" in page


async def test_sign_out_and_removed_token_end_the_session(portal: Portal, browser: ClientSession) -> None:
    await sign_in(portal, browser, GIVORS)
    csrf = await csrf_of(portal, browser, "/ui/links")
    async with browser.post(portal.url("/ui/logout"), data={"csrf": csrf}, allow_redirects=False) as r:
        assert r.status == 303
    async with browser.get(portal.url("/ui/links"), allow_redirects=False) as r:
        assert r.status == 303
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as other:
        await sign_in(portal, other, VENISSIEUX)
        portal.tokens = [t for t in portal.tokens if t.name != "venissieux-dsi"]  # as a reload would
        async with other.get(portal.url("/ui/links"), allow_redirects=False) as r:
            assert r.status == 303


async def test_bad_month_in_url_is_not_found(portal: Portal, browser: ClientSession) -> None:
    await sign_in(portal, browser, FINANCE)
    for month in ("2026-13", "2026-10%0A", "0000-01", "9999-12", "abc"):
        async with browser.get(portal.url(f"/ui/months/{month}")) as r:
            assert r.status == 404, month


async def test_english_on_request(portal: Portal, browser: ClientSession) -> None:
    await sign_in(portal, browser, FINANCE)
    async with browser.get(portal.url("/ui/months/2026-10?lang=en")) as r:
        page = await r.text()
    assert "Month overview — October 2026" in page and "€" in page
    async with browser.get(portal.url("/ui/months/2026-10")) as r:  # the choice is kept
        assert "Month overview" in await r.text()


async def test_pages_carry_security_headers(portal: Portal, browser: ClientSession) -> None:
    async with browser.get(portal.url("/ui/login")) as r:
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
    async with browser.get(portal.url("/ui/static/portal.css")) as r:
        assert r.status == 200 and "sitivmon portal" in await r.text()
    async with browser.get(portal.url("/ui/static/..%2Fapp.py")) as r:
        assert r.status == 404


def test_json_download_matches_report_exactly(portal: Portal) -> None:
    doc = portal.service.current("2026-10").report
    assert json.loads(json.dumps(doc)) == doc


async def test_an_operations_token_reads_no_figures_over_the_api_nor_reloads(portal: Portal) -> None:
    async with ClientSession() as session:
        for path in ("/api/v1/usage/2026-10", "/api/v1/reports/2026-10.json", "/api/v1/reports/2026-10.csv",
                     "/api/v1/reports/2026-10.json?commune=givors"):
            async with session.get(portal.url(path), headers={"Authorization": f"Bearer {OPERATIONS}"}) as r:
                assert r.status == 403, path
                assert "givors" not in (await r.text()).lower()
            async with session.get(portal.url(path), headers={"Authorization": f"Bearer {FINANCE}"}) as r:
                assert r.status == 200, path


async def test_mixed_basis_and_annual_budget_are_explained(portal: Portal, browser: ClientSession) -> None:
    page = html.unescape(await sign_in(portal, browser, FINANCE))
    assert "40\u00a0% clé « population » + 60\u00a0% usage « Énergie »" in page
    assert "Budget annuel 1\u00a0000,05\u00a0€" in page and "Cumul de l'année 833,39\u00a0€" in page  # 9×83,34 + 83,33
    assert "couverture des mesures sous le seuil de 95\u00a0% : Corbas 93,1\u00a0%" in page  # in French, for finance
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as commune:
        page = html.unescape(await sign_in(portal, commune, VENISSIEUX))
    line = next(a for a in portal.service.current("2026-10").report["allocations"]
                if a["project"] == "Fibre mixte" and a["commune"] == "venissieux")
    key_part, energy_part = line["parts"]
    for part, words in ((key_part, "Part 1 (40\u00a0% du budget)"), (energy_part, "Part 2 (60\u00a0% du budget)")):
        euros, cents = divmod(part["amount_cents"], 100)
        assert f"{words} — {euros},{cents:02d}\u00a0€" in page
    assert "Repli sur la clé « population »" in page and "la vôtre : 99,9\u00a0%" in page
    assert "Corbas" not in page
