"""A commune token, used as an attacker would: every endpoint, format, section and revision, read whole.

Eight commune tokens on a real aiohttp server with the real report service and archive. The allocation
file makes every usage project fall back with a reason that names communes, and the month is closed
twice so that the second revision carries a diff. Whatever a commune token fetches (JSON walked key by
key, every csv section in both flavours, every xlsx cell through openpyxl and the raw XML of the
workbook, error bodies) must not name another commune: id, name or INSEE code, compared without case
or accents.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from sitivmon.allocation.api import ReportCache, report_executor, setup_api
from sitivmon.allocation.archive import open_report_archive
from sitivmon.allocation.config import ApiConfig
from sitivmon.allocation.formats import SECTIONS
from sitivmon.allocation.service import ReportService
from tests.allocation.conftest import COMMUNES, EXAMPLE_ALLOCATION, usage_data

SYNDICATE_TOKEN = "syndicate-finance-" + hashlib.sha256(b"scope").hexdigest()[:16]
TOKENS = {c.id: f"{c.id}-dsi-" + hashlib.sha256(c.id.encode()).hexdigest()[:16] for c in COMMUNES}
MONTH = "2026-10"
BROKEN_MONTH = "2026-11"  # a usage document missing communes: its error names them


def fold(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)).casefold()


def foreign_mentions(text: str, own: str) -> list[str]:
    """Every other commune's id, name (with or without hyphens) or INSEE code found in `text`."""
    folded = fold(text)
    hits = []
    for c in COMMUNES:
        if c.id == own:
            continue
        for needle in {fold(c.id), fold(c.name), fold(c.name).replace("-", " "), fold(c.id).replace("-", " ")}:
            if needle in folded:
                hits.append(needle)
        if re.search(rf"(?<![0-9.,]){c.insee}(?![0-9.,])", folded):
            hits.append(c.insee)
    return hits


def strings_of(value: Any) -> list[str]:
    """Every key and scalar of a JSON document as text (so that \\u escapes cannot hide a name)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *strings_of(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return [str(value)]


def xlsx_texts(body: bytes) -> list[str]:
    book = openpyxl.load_workbook(io.BytesIO(body))
    texts = []
    for sheet in book.worksheets:
        texts.append(sheet.title)
        for row in sheet.iter_rows(values_only=True):
            texts += [str(v) for v in row if v is not None]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        texts += [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
    return texts


class World:
    """The month's inputs, changed between revisions; `phase` is what the report cache keys on."""

    def __init__(self, tmp: Path) -> None:
        self.phase = 0
        self.allocation = tmp / "allocation.yaml"
        text = EXAMPLE_ALLOCATION.read_text(encoding="utf-8")
        # Every commune under the threshold: each usage project's reason names all eight.
        self.allocation.write_text(text.replace("coverage_threshold: 0.95", "coverage_threshold: 0.9999"))
        self.usage = usage_data()

    def usage_for(self, month: str) -> Any:
        if month == BROKEN_MONTH:
            doc = copy.deepcopy(self.usage)
            doc["month"] = BROKEN_MONTH
            doc["period"] = {"start": "2026-11-01T00:00:00+01:00", "end": "2026-12-01T00:00:00+01:00"}
            doc["indicators"] = [r for r in doc["indicators"] if r["commune"] in ("givors", "corbas")]
            return doc
        if month != MONTH:
            raise LookupError("the usage store has nothing for this month")
        return copy.deepcopy(self.usage)

    def change(self) -> None:
        """New figures for the next revision: a budget and one commune's traffic."""
        self.allocation.write_text(
            self.allocation.read_text(encoding="utf-8").replace('budget: "18450.00"', 'budget: "18500.00"')
        )
        for r in self.usage["indicators"]:
            if r["commune"] == "corbas" and r["indicator"] == "traffic_volume":
                r["value"] = int(r["value"]) // 2 if isinstance(r["value"], int) else r["value"]
                r["coverage"] = "0.5"
        self.phase += 1


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[TestServer, World, ReportService]]:
    w = World(tmp_path)
    service = ReportService(
        communes=COMMUNES,
        timezone="Europe/Paris",
        allocation_path=w.allocation,
        config_path=None,
        usage_for_month=w.usage_for,
        archive=open_report_archive(tmp_path / "var"),
    )
    api = ApiConfig.model_validate(
        {
            "tokens": [
                {"name": "finance", "scope": "syndicate", "token": SYNDICATE_TOKEN},
                *({"name": f"{c}-dsi", "scope": c, "token": t} for c, t in TOKENS.items()),
            ]
        }
    )
    app = web.Application()
    executor = report_executor()
    setup_api(
        app,
        tokens=api.tokens,
        usage_provider=service.usage,
        report_builder=lambda m: service.current(m).report,
        cache=ReportCache(executor, lambda m: w.phase),
    )
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv, w, service
    await srv.close()
    executor.shutdown()


async def fetch(session: ClientSession, srv: TestServer, path: str, token: str) -> tuple[int, bytes]:
    async with session.get(srv.make_url(path), headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.read()


def report_paths(month: str) -> list[str]:
    paths = [f"/api/v1/usage/{month}", f"/api/v1/reports/{month}.json", f"/api/v1/reports/{month}.xlsx"]
    for section in SECTIONS:
        csv = f"/api/v1/reports/{month}.csv?section={section}"
        paths += [csv, csv + "&flavor=fr"]
    return paths


async def leaks(srv: TestServer, commune: str) -> dict[str, list[str]]:
    """What one commune's token can read of the others, by path (empty when nothing)."""
    found: dict[str, list[str]] = {}
    token = TOKENS[commune]
    other = next(c.id for c in COMMUNES if c.id != commune)
    paths = [*report_paths(MONTH), *report_paths(BROKEN_MONTH), f"/api/v1/usage/{MONTH}?commune={other}"]
    async with ClientSession() as session:
        for path in paths:
            status, body = await fetch(session, srv, path, token)
            texts = [body.decode("utf-8", "replace")]
            if ".xlsx" in path and status == 200:
                texts += xlsx_texts(body)
            elif body.lstrip().startswith((b"{", b"[")):
                texts += strings_of(json.loads(body))
            hits = sorted({h for t in texts for h in foreign_mentions(t, commune)})
            if hits:
                found[f"{path} ({status})"] = hits
    return found


async def assert_no_commune_sees_another(srv: TestServer) -> None:
    found = {c.id: await leaks(srv, c.id) for c in COMMUNES}
    assert not any(found.values()), json.dumps({k: v for k, v in found.items() if v}, indent=1, ensure_ascii=False)


async def test_the_probe_finds_names_where_they_are_allowed(world: tuple[TestServer, World, ReportService]) -> None:
    """The scan has teeth: the syndicate's report names every commune, in the fallback reasons too."""
    srv, _, _ = world
    async with ClientSession() as session:
        status, body = await fetch(session, srv, f"/api/v1/reports/{MONTH}.csv?section=projects", SYNDICATE_TOKEN)
        assert status == 200
        assert set(foreign_mentions(body.decode(), "givors")) >= {"corbas", "rive-de-gier", "saint-chamond"}
        status, body = await fetch(session, srv, f"/api/v1/reports/{MONTH}.xlsx", SYNDICATE_TOKEN)
        assert status == 200
        found = {h for t in xlsx_texts(body) for h in foreign_mentions(t, "givors")}
        assert {"42186", "69273", "pierre-benite"} <= found


async def test_a_commune_token_reads_nothing_of_another_commune(
    world: tuple[TestServer, World, ReportService],
) -> None:
    srv, w, service = world
    await assert_no_commune_sees_another(srv)  # provisional
    service.close(MONTH)
    w.phase += 1
    await assert_no_commune_sees_another(srv)  # closed, revision 1
    w.change()
    outcome = service.close(MONTH)
    assert outcome.created and outcome.revision.revision == 2
    assert outcome.revision.report["changes"]["projects"], "the diff has project states with their reasons"
    await assert_no_commune_sees_another(srv)  # revision 2, with its diff


async def test_a_commune_still_reads_its_own_figures_and_why_its_projects_fell_back(
    world: tuple[TestServer, World, ReportService],
) -> None:
    srv, _, _ = world
    async with ClientSession() as session:
        status, body = await fetch(session, srv, f"/api/v1/reports/{MONTH}.json", TOKENS["rive-de-gier"])
    report = json.loads(body)
    assert status == 200
    assert {r["commune"] for r in report["allocations"]} == {"rive-de-gier"}
    projects = {p["project"]: p for p in report["projects"]}
    assert "Vidéoprotection Rhône" not in projects  # a project it does not pay into
    fibre = projects["Réseau fibre intercommunal"]
    assert fibre["fallback_used"] and fibre["basis_used"] == "key:population"
    assert "rive-de-gier: coverage 99.8 %" in fibre["fallback_reason"]
    assert {c["project"] for c in report["controls"]} == set(projects)
