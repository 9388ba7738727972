"""The README's first command: `sitivmon demo` prints the portal's address and demo tokens that work.

Runs the real demo (its own snmpd agents, the real daemon) and signs in to the portal it prints with the
finance and the commune tokens, through the real daemon's HTTP server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession, CookieJar

from tests.support.procs import free_port, require_binary, wait_tcp

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def demo(tmp_path: Path) -> tuple[str, dict[str, str], subprocess.Popen[str]]:
    require_binary("snmpd")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sitivmon", "demo", "--listen", f"127.0.0.1:{port}", "--state-dir",
         str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    tokens: dict[str, str] = {}
    portal = ""
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"portal:\s+(http://\S+/ui/)", line):
            portal = m.group(1)
        elif portal and (m := re.match(r"\s+(finance|venissieux-dsi|noc)\s+(demo-\S+)\s*$", line)):
            tokens[m.group(1)] = m.group(2)
        if len(tokens) == 3:
            break
    assert portal and len(tokens) == 3, "".join(lines)
    wait_tcp("127.0.0.1", port, timeout=30)
    yield portal, tokens, proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def sign_in(session: ClientSession, base: str, token: str) -> tuple[str, str]:
    async with session.get(base + "login") as r:
        found = CSRF.search(await r.text())
    assert found is not None
    async with session.post(base + "login", data={"csrf": found.group(1), "token": token}) as r:
        assert r.status == 200
        return str(r.url), await r.text()


async def test_demo_prints_a_working_portal(demo: tuple[str, dict[str, str], subprocess.Popen[str]]) -> None:
    base, tokens, _ = demo
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as session:
        url, page = await sign_in(session, base, tokens["finance"])
        assert "/ui/months/" in url and "Vue du mois" in page
        async with session.get(base + "links") as r:
            links = await r.text()
        assert "venissieux-fibre-1" in links and "givors-fibre-1" in links
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as session:
        url, page = await sign_in(session, base, tokens["venissieux-dsi"])
        assert "/ui/communes/venissieux/" in url and "Vénissieux" in page
        async with session.get(base + "links") as r:
            links = await r.text()
        assert "venissieux-fibre-1" in links and "givors-fibre-1" not in links
        async with session.get(url.replace("venissieux", "givors")) as r:
            assert r.status == 403
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as session:
        url, page = await sign_in(session, base, tokens["noc"])
        assert url.endswith("/ui/links")
