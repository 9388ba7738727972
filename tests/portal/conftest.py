"""A real portal on a loopback aiohttp server: the real report service over the October 2026 usage file,
the real archive in SQLite, the API beside it (to compare downloads), tokens for each role."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from sitivmon.allocation.api import setup_api
from sitivmon.allocation.archive import open_report_archive
from sitivmon.allocation.config import ApiConfig, ApiToken
from sitivmon.allocation.engine import load_usage_json
from sitivmon.allocation.service import ReportService
from sitivmon.portal.app import LinkRow, PortalBackend, ReportView, setup_portal
from sitivmon.portal.backend import accounts_from_tokens, report_download
from sitivmon.portal.views import CommuneRef
from tests.allocation.conftest import COMMUNES, EXAMPLE_ALLOCATION, USAGE_FILE

FINANCE = "finance-portal-token-7f3a9c1e5b"
VENISSIEUX = "venissieux-portal-token-2b8e6d4f0a"
GIVORS = "givors-portal-token-5c1d9e7a3b"
OPERATIONS = "operations-portal-token-9e4f2a6c8d"
NOVEMBER_15 = datetime(2026, 11, 15, 10, 0, tzinfo=UTC).timestamp()  # October has ended; November has not


EXTRA_PROJECTS = [
    {"name": "Fibre mixte", "budget": "1000.00", "fallback": "population",
     "parts": [{"share": "40%", "basis": "key:population"}, {"share": "60%", "basis": "usage:energy"}]},
    {"name": "Licences annuelles", "annual_budget": "1000.05", "basis": "key:equal"},
]


def usage_for(month: str) -> object:
    if month != "2026-10":
        raise LookupError("the usage store has nothing for this month")
    return load_usage_json(USAGE_FILE.read_bytes())


@dataclass
class Portal:
    server: TestServer
    service: ReportService
    tokens: list[ApiToken]
    clock: list[float] = field(default_factory=lambda: [NOVEMBER_15])

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


def api_tokens() -> list[ApiToken]:
    return ApiConfig.model_validate({"tokens": [
        {"name": "finance", "scope": "syndicate", "token": FINANCE},
        {"name": "venissieux-dsi", "scope": "venissieux",
         "token_sha256": hashlib.sha256(VENISSIEUX.encode()).hexdigest()},
        {"name": "givors-dsi", "scope": "givors", "token": GIVORS},
        {"name": "noc", "scope": "syndicate", "role": "operations", "token": OPERATIONS},
    ]}).tokens  # fmt: skip


LINKS = [
    LinkRow("venissieux", "venissieux-fibre", "core", "xe-0/0/1", "up", True, False, NOVEMBER_15 - 3600,
            NOVEMBER_15 - 20),
    LinkRow("givors", "givors-fibre", "core", "xe-0/0/2", "down", False, False, NOVEMBER_15 - 60, NOVEMBER_15 - 20),
    LinkRow("corbas", "corbas-sdsl", "sw-corbas", "ge-0/0/3", "unknown", None, True, None, None),
]  # fmt: skip


def make_portal(tmp_path: Path) -> tuple[web.Application, Portal]:
    allocation = yaml.safe_load(EXAMPLE_ALLOCATION.read_text(encoding="utf-8"))
    allocation["projects"] += EXTRA_PROJECTS  # a mixed basis and an annual budget beside the example's
    (tmp_path / "allocation.yaml").write_text(yaml.safe_dump(allocation, allow_unicode=True), encoding="utf-8")
    service = ReportService(
        communes=COMMUNES, timezone="Europe/Paris", allocation_path=tmp_path / "allocation.yaml", config_path=None,
        usage_for_month=usage_for, archive=open_report_archive(tmp_path / "var"),
    )
    state = Portal(server=None, service=service, tokens=api_tokens())  # type: ignore[arg-type]

    def report(month: str) -> ReportView:
        current = service.current(month)
        return ReportView(current.report, current.stale_warning)

    backend = PortalBackend(
        accounts=lambda: accounts_from_tokens(state.tokens),
        communes=lambda: [CommuneRef(c.id, c.name, c.insee) for c in COMMUNES],
        timezone=lambda: "Europe/Paris",
        report=report,
        fresh=service.fresh,
        revisions=service.archive.revisions,
        close=lambda month, now: service.close(month, now=now),
        usage=service.usage,
        download=report_download,
        links=lambda: list(LINKS),
        clock=lambda: state.clock[0],
    )
    app = web.Application()
    setup_api(app, tokens=lambda: state.tokens, usage_provider=service.usage,
              report_builder=lambda m: service.current(m).report)
    setup_portal(app, backend)
    return app, state


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[Portal]:
    app, state = make_portal(tmp_path)
    state.server = TestServer(app, host="127.0.0.1")
    await state.server.start_server()
    yield state
    await state.server.close()


@pytest.fixture
def portal_in_thread(tmp_path: Path) -> Iterator[tuple[str, Portal]]:
    """The same portal served from a thread, for a blocking client such as a WebDriver."""
    app, state = make_portal(tmp_path)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    port: list[int] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "portal did not start"
    yield f"http://127.0.0.1:{port[0]}", state
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
