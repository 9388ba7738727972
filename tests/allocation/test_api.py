"""The HTTP API on a real aiohttp server on loopback: tokens, scopes, formats, logs without secrets."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import openpyxl
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from sitivmon.allocation.api import setup_api
from sitivmon.allocation.archive import open_report_archive
from sitivmon.allocation.config import ApiConfig
from sitivmon.allocation.engine import load_usage_json
from sitivmon.allocation.service import ReportService

from .conftest import COMMUNES, EXAMPLE_ALLOCATION, USAGE_FILE

SYNDICATE_TOKEN = "syndicate-finance-7f3a9c1e5b"
VENISSIEUX_TOKEN = "venissieux-dsi-2b8e6d4f0a"


def usage_for(month: str) -> object:
    if month != "2026-10":
        raise LookupError("the usage store has nothing for this month")
    return load_usage_json(USAGE_FILE.read_bytes())


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    shutil.copy(EXAMPLE_ALLOCATION, tmp_path / "allocation.yaml")
    service = ReportService(
        communes=COMMUNES,
        timezone="Europe/Paris",
        allocation_path=tmp_path / "allocation.yaml",
        config_path=None,
        usage_for_month=usage_for,
        archive=open_report_archive(tmp_path / "var"),
    )
    api = ApiConfig.model_validate(
        {
            "tokens": [
                {"name": "finance", "scope": "syndicate", "token": SYNDICATE_TOKEN},
                {
                    "name": "venissieux-dsi",
                    "scope": "venissieux",
                    "token_sha256": hashlib.sha256(VENISSIEUX_TOKEN.encode()).hexdigest(),
                },
            ]
        }
    )
    app = web.Application()
    setup_api(
        app,
        tokens=api.tokens,
        usage_provider=service.usage,
        report_builder=lambda m: service.current(m).report,
    )
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


async def get(srv: TestServer, path: str, token: str | None) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as session, session.get(srv.make_url(path), headers=headers) as r:
        return r.status, await r.read(), dict(r.headers)


async def test_syndicate_sees_everything(server: TestServer) -> None:
    status, body, _ = await get(server, "/api/v1/usage/2026-10", SYNDICATE_TOKEN)
    assert status == 200
    assert {r["commune"] for r in json.loads(body)["indicators"]} == {c.id for c in COMMUNES}
    status, body, _ = await get(server, "/api/v1/reports/2026-10.json", SYNDICATE_TOKEN)
    report = json.loads(body)
    assert status == 200 and len({a["commune"] for a in report["allocations"]}) == 8
    assert all(c["ok"] for c in report["controls"])
    status, body, _ = await get(server, "/api/v1/reports/2026-10.json?commune=corbas", SYNDICATE_TOKEN)
    assert {a["commune"] for a in json.loads(body)["allocations"]} == {"corbas"}


async def test_commune_token_sees_only_its_rows(server: TestServer) -> None:
    status, body, _ = await get(server, "/api/v1/usage/2026-10", VENISSIEUX_TOKEN)
    assert status == 200 and {r["commune"] for r in json.loads(body)["indicators"]} == {"venissieux"}
    status, body, _ = await get(server, "/api/v1/reports/2026-10.json", VENISSIEUX_TOKEN)
    report = json.loads(body)
    assert {a["commune"] for a in report["allocations"]} == {"venissieux"}
    assert {r["commune"] for r in report["indicators"]} == {"venissieux"}
    status, body, headers = await get(server, "/api/v1/reports/2026-10.csv", VENISSIEUX_TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = body.decode().splitlines()[1:]
    assert rows and all(",venissieux,69259," in r for r in rows)
    status, body, _ = await get(server, "/api/v1/reports/2026-10.csv?flavor=fr", VENISSIEUX_TOKEN)
    assert body.startswith(b"\xef\xbb\xbf") and b";venissieux;69259;" in body
    status, body, headers = await get(server, "/api/v1/reports/2026-10.xlsx", VENISSIEUX_TOKEN)
    assert status == 200 and "spreadsheetml" in headers["Content-Type"]
    sheet = openpyxl.load_workbook(io.BytesIO(body))["Répartition"]
    assert {row[1] for row in sheet.iter_rows(min_row=2, values_only=True)} == {"venissieux"}


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/api/v1/usage/2026-10", None, 401),
        ("/api/v1/reports/2026-10.json", "not-a-token-at-all-0000", 401),
        ("/api/v1/reports/2026-10.xlsx", SYNDICATE_TOKEN + "x", 401),
        ("/api/v1/usage/2026-10?commune=givors", VENISSIEUX_TOKEN, 403),
        ("/api/v1/reports/2026-10.csv?commune=corbas", VENISSIEUX_TOKEN, 403),
    ],
)
async def test_refusals_are_logged_without_the_token(
    server: TestServer, path: str, token: str | None, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sitivmon.allocation.api")
    got, body, headers = await get(server, path, token)
    assert got == status
    assert b"allocations" not in body and b"indicators" not in body
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert caplog.records, "a refusal is logged"
    logged = caplog.text
    for secret in (SYNDICATE_TOKEN, VENISSIEUX_TOKEN, "not-a-token-at-all"):
        assert secret not in logged
    if status == 403:
        assert "venissieux-dsi" in logged


async def test_bad_and_unknown_months(server: TestServer) -> None:
    assert (await get(server, "/api/v1/usage/2026-13", SYNDICATE_TOKEN))[0] == 400
    status, body, _ = await get(server, "/api/v1/reports/2026-09.json", SYNDICATE_TOKEN)
    assert status == 404 and b"nothing for this month" in body
    assert (await get(server, "/api/v1/reports/2026-10.pdf", SYNDICATE_TOKEN))[0] == 404
