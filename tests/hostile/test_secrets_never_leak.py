"""Secrets never leak: every kind of secret the config holds, given distinctive random values, is absent
from everything the daemon and the CLI write or answer, after a run that exercises them all.

The run: a real daemon polls a real snmpd over v2c and v3 (authPriv), publishes on a real mosquitto with
a password, receives real net-snmp traps with right and wrong communities and v3 passwords, answers API
requests with wrong, near-miss and out-of-scope tokens, and refuses a reload of a broken config whose
errors sit next to secrets (one of them under a misspelt key). Then `sitivmon check` runs on a valid and
an invalid config, and `sitivmon report` writes the month in json, csv, csv-fr and xlsx.

Each artifact is searched for each secret as written, in hex (both cases) and in base64 (standard and
URL-safe), as UTF-8 and, for the binary files of the state directory (SQLite, WAL), also UTF-16.
Secrets are set inline, as `${ENV}` and as `file:` so that every way of giving one is covered.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sitivmon.agents.snmpd import V3User
from tests.mqtt.broker import Broker
from tests.support import agents
from tests.support.procs import free_udp_port, require_binary
from tests.traps import netsnmp as ns


def _secret(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(10)}"


@dataclass(frozen=True)
class Secrets:
    poll_community: str = field(default_factory=lambda: _secret("pollcomm"))
    poll_auth: str = field(default_factory=lambda: _secret("pollauth"))
    poll_priv: str = field(default_factory=lambda: _secret("pollpriv"))
    trap_community: str = field(default_factory=lambda: _secret("trapcomm"))
    trap_auth: str = field(default_factory=lambda: _secret("trapauth"))
    trap_priv: str = field(default_factory=lambda: _secret("trappriv"))
    mqtt_password: str = field(default_factory=lambda: _secret("mqttpass"))
    token_syndicate: str = field(default_factory=lambda: _secret("tokensyn"))
    token_commune: str = field(default_factory=lambda: _secret("tokencom"))
    # Not configured, but sent by a stranger: echoing what an attacker tried is a leak too (it may be
    # another system's real community or token).
    wrong_community: str = field(default_factory=lambda: _secret("wrongcomm"))
    wrong_auth: str = field(default_factory=lambda: _secret("wrongauth"))
    wrong_token: str = field(default_factory=lambda: _secret("wrongtok"))
    # Written under a misspelt key in the broken config: `check` must not echo it either.
    misspelt: str = field(default_factory=lambda: _secret("misspelt"))

    def values(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def forms(value: str, *, utf16: bool = False) -> dict[str, bytes]:
    raw = value.encode()
    out = {
        "plain": raw,
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
    }
    if utf16:
        out["utf-16-le"] = value.encode("utf-16-le")
        out["utf-16-be"] = value.encode("utf-16-be")
    return out


@dataclass
class Run:
    secrets: Secrets
    artifacts: dict[str, bytes] = field(default_factory=dict)
    binary: set[str] = field(default_factory=set)  # artifacts also searched in UTF-16
    notes: list[str] = field(default_factory=list)
    controls: dict[str, bytes] = field(default_factory=dict)  # where secrets are: the search must find them


def _http(url: str, *, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _config(s: Secrets, work: Path, snmpd: agents.Agent, broker: Broker, trap_port: int) -> dict[str, Any]:
    doc = agents.base_config(work / "state", interval="1s", timeout="1s", retries=1)
    priv_file = work / "poll-priv.secret"
    priv_file.write_text(s.poll_priv + "\n")
    trap_priv_file = work / "trap-priv.secret"
    trap_priv_file.write_text(s.trap_priv)
    doc["credentials"] = {
        "poll-v2c": {"version": "2c", "community": s.poll_community},
        "poll-v3": {
            "version": "3", "username": "leakpoll", "auth_protocol": "SHA", "auth_password": "${LEAK_POLL_AUTH}",
            "priv_protocol": "AES", "priv_password": f"file:{priv_file}",
        },
        "trap-v2c": {"version": "2c", "community": "${LEAK_TRAP_COMMUNITY}"},
        "trap-v3": {
            "version": "3", "username": "leaktrap", "auth_protocol": "SHA", "auth_password": s.trap_auth,
            "priv_protocol": "AES", "priv_password": f"file:{trap_priv_file}",
        },
    }  # fmt: skip
    agents.add_target(doc, "leak-v2c", snmpd.address, "poll-v2c")
    agents.add_target(doc, "leak-v3", snmpd.address, "poll-v3")
    agents.add_link(doc, "givors-lo", "givors", "leak-v2c", name="lo")
    agents.add_link(doc, "grigny-lo", "grigny", "leak-v3", name="lo")
    doc["traps"] = {"port": trap_port, "communities": ["trap-v2c"], "v3_users": [{"credential": "trap-v3"}]}
    doc["mqtt"] = {
        "enabled": True, "port": broker.port, "username": "leakmqtt", "password": s.mqtt_password,
        "summary_interval_s": 1, "client_id": "sitivmon-leak-test",
    }  # fmt: skip
    shutil.copy(agents.REPO / "config" / "allocation.yaml", work / "allocation.yaml")
    doc["allocation"] = "allocation.yaml"
    doc["api"] = {
        "tokens": [
            {"name": "finance", "scope": "syndicate", "token": s.token_syndicate},
            {"name": "venissieux-dsi", "scope": "venissieux", "token": "${LEAK_TOKEN_COMMUNE}"},
        ]
    }
    return doc


def _broken(doc: dict[str, Any], s: Secrets) -> dict[str, Any]:
    """The same config with errors next to every secret: a misspelt secret key, a bad protocol beside a
    password, a community of the wrong type beside another, an unknown commune on a link."""
    broken = {**doc, "credentials": {k: dict(v) for k, v in doc["credentials"].items()}}
    broken["credentials"]["poll-v3"]["auth_pasword"] = s.misspelt
    broken["credentials"]["trap-v3"]["priv_protocol"] = "ROT13"
    broken["credentials"]["poll-v2c"]["version"] = "4"
    broken["links"] = [*doc["links"], {**doc["links"][0], "id": "x-lo", "commune": "atlantis"}]
    return broken


def _trap(args: list[str], port: int) -> None:
    r = ns.run_tool("snmptrap", [a.replace("HOST", f"127.0.0.1:{port}") for a in args])
    assert r.returncode == 0, r.stderr


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sitivmon", *args], capture_output=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    for tool in ("snmpd", "snmptrap", "mosquitto"):
        require_binary(tool)
    s = Secrets()
    out = Run(s)
    work = tmp_path_factory.mktemp("leak")
    env = dict(os.environ, LEAK_POLL_AUTH=s.poll_auth, LEAK_TRAP_COMMUNITY=s.trap_community,
               LEAK_TOKEN_COMMUNE=s.token_commune, RUST_BACKTRACE="0")  # fmt: skip
    env = {k: v for k, v in env.items() if not k.startswith("SITIVMON_")}
    user = V3User("leakpoll", "SHA", s.poll_auth, "AES", s.poll_priv)
    snmpd = agents.start_snmpd(community=s.poll_community, users=(user,), workdir=work)
    broker = Broker(work / "broker")
    subprocess.run([require_binary("mosquitto_passwd"), "-b", str(broker.workdir / "passwd"), "leakmqtt",
                    s.mqtt_password], check=True, capture_output=True)  # fmt: skip
    broker.start()
    daemon: agents.DaemonProcess | None = None
    try:
        trap_port = free_udp_port()
        doc = _config(s, work, snmpd, broker, trap_port)
        config = agents.write_config(work / "sitivmon.yaml", doc)
        # Debug level: the most the daemon (and the libraries under it) ever writes.
        daemon = agents.DaemonProcess(config, work, env=env, args=("--log-level", "debug"))
        daemon.wait_polls("leak-v2c", 2)
        daemon.wait_polls("leak-v3", 1)

        # Traps: right and wrong community, right and wrong v3 passwords (engine ID learnt from the source).
        engine = "0x80001f8880" + secrets.token_hex(8)
        v3 = ["-v", "3", "-e", engine, "-u", "leaktrap", "-l", "authPriv", "-a", "SHA", "-x", "AES", "-X", s.trap_priv]
        link_down = ["HOST", "", ns.LINK_DOWN, *ns.link_varbinds(1, 1, 2)]
        _trap(["-v", "2c", "-c", s.trap_community, *link_down], trap_port)
        _trap(["-v", "2c", "-c", s.wrong_community, *link_down], trap_port)
        _trap(["-v", "1", "-c", s.wrong_community, "HOST", "1.3.6.1.4.1.8072", "127.0.0.1", "2", "0", ""], trap_port)
        _trap([*v3, "-A", s.trap_auth, *link_down], trap_port)
        _trap([*v3, "-A", s.wrong_auth, *link_down], trap_port)
        _trap([*v3[:-1], s.wrong_auth, "-A", s.trap_auth, *link_down], trap_port)  # right auth, wrong priv

        def traps(m: agents.Metrics, name: str) -> float:
            return sum(v for (n, _), v in m.samples.items() if n == name)

        m = daemon.wait_for(
            lambda m: traps(m, "sitivmon_traps_received_total") >= 2 and traps(m, "sitivmon_traps_rejected_total") >= 4,
            "two traps accepted, four rejected",
        )
        out.notes.append(f"traps rejected: {m.series('sitivmon_traps_rejected_total')}")

        # API: no token, a wrong one, a near miss of each real one, a commune token out of its scope, and
        # the right ones (whose reports must not hold the tokens either).
        month = datetime.now(UTC).strftime("%Y-%m")
        api = daemon.url + "/api/v1"
        for name, path, token in [
            ("no-token", f"/usage/{month}", None),
            ("wrong-token", f"/reports/{month}.json", s.wrong_token),
            ("near-miss-syndicate", f"/reports/{month}.xlsx", s.token_syndicate + "x"),
            ("near-miss-commune", f"/usage/{month}", s.token_commune[:-1]),
            ("out-of-scope", f"/reports/{month}.csv?commune=corbas", s.token_commune),
            ("bad-month", "/usage/2026-13", s.token_syndicate),
            ("unknown-format", f"/reports/{month}.pdf", s.token_syndicate),
        ]:
            status, body = _http(api + path, token=token)
            assert status >= 400, f"{name}: {status}"
            out.artifacts[f"http {name} ({status})"] = body
        for fmt in ("json", "csv", "xlsx"):
            status, body = _http(f"{api}/reports/{month}.{fmt}", token=s.token_syndicate)
            assert status == 200, (fmt, status, body[:300])
            out.artifacts[f"http report .{fmt}"] = body
        status, body = _http(f"{api}/usage/{month}", token=s.token_commune)
        assert status == 200, (status, body[:300])
        out.artifacts["http usage (commune token)"] = body

        # A broken config: refused by a reload (HTTP and SIGHUP), the old one kept.
        agents.write_config(config, _broken(doc, s))
        status, body = _http(daemon.url + "/-/reload", method="POST")
        out.artifacts[f"http reload refused ({status})"] = body
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(
            lambda m: (m.value("sitivmon_config_reloads_total", result="failure") or 0) >= 1,
            "the broken config refused",
        )
        time.sleep(1.0)  # both refusals (HTTP, SIGHUP) are logged
        status, body = _http(f"{api}/reports/{month}.json", token=s.token_syndicate + "y")
        out.artifacts[f"http after reload ({status})"] = body
        daemon.wait_polls("leak-v3", 1)  # still polling on the old config
        out.artifacts["/metrics"] = daemon.get("/metrics")[1].encode()

        # sitivmon check, valid and invalid.
        valid = agents.write_config(work / "valid.yaml", doc)
        invalid = agents.write_config(work / "invalid.yaml", _broken(doc, s))
        for name, path in (("valid", valid), ("invalid", invalid)):
            r = _cli("check", "--config", str(path), env=env)
            assert (r.returncode == 0) == (name == "valid"), (name, r.returncode, r.stdout, r.stderr)
            out.artifacts[f"check {name}"] = r.stdout + r.stderr
        out.controls["config file"] = config.read_bytes()
        out.controls["secret file"] = (work / "poll-priv.secret").read_bytes()
        agents.write_config(config, doc)
        daemon.stop()
        out.artifacts["daemon log"] = daemon.output().encode()

        # Reports from the store the daemon wrote (each format, every section for the csv ones).
        for fmt in ("json", "csv", "csv-fr", "xlsx"):
            target = work / f"report.{fmt}"
            r = _cli("report", "--config", str(config), "--month", month, "--format", fmt, "--output", str(target),
                     env=env)  # fmt: skip
            assert r.returncode == 0, (fmt, r.stdout, r.stderr)
            out.artifacts[f"report {fmt} (console)"] = r.stdout + r.stderr
            data = target.read_bytes()
            if fmt == "xlsx":
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    for member in z.namelist():
                        out.artifacts[f"report xlsx {member}"] = z.read(member)
            else:
                out.artifacts[f"report {fmt}"] = data

        # Every file under the state directory, as bytes (SQLite database, WAL, archives...).
        files = sorted(p for p in (work / "state").rglob("*") if p.is_file())
        assert any(p.suffix == ".sqlite" or "usage" in p.name for p in files), files
        for p in files:
            key = f"state {p.relative_to(work / 'state')}"
            out.artifacts[key] = p.read_bytes()
            out.binary.add(key)
        out.notes.append(f"state files: {[p.name for p in files]}")
        yield out
    finally:
        if daemon is not None:
            daemon.stop()
        broker.stop()
        snmpd.stop()


def leaks(run: Run, name: str) -> list[str]:
    data = run.artifacts[name] if name in run.artifacts else run.controls[name]
    found = []
    for kind, value in run.secrets.values().items():
        for form, needle in forms(value, utf16=name in run.binary).items():
            if needle in data:
                at = data.index(needle)
                context = data[max(0, at - 80) : at + len(needle) + 40].decode("utf-8", "replace")
                found.append(f"{kind} ({form}) in {name}: ...{context}...")
    return found


def test_the_run_exercised_every_channel(run: Run) -> None:
    names = set(run.artifacts)
    for expected in ("daemon log", "/metrics", "check valid", "check invalid", "report json", "report csv",
                     "report csv-fr"):  # fmt: skip
        assert expected in names, sorted(names)
    assert any(n.startswith("report xlsx ") for n in names)
    assert any(n.startswith("state ") for n in names)
    log = run.artifacts["daemon log"].decode()
    assert "reload" in log.lower(), "the refused reload is logged"
    check = run.artifacts["check invalid"].decode()
    assert "auth_pasword" in check and "priv_protocol" in check, check
    print(f"--- check invalid ---\n{check}")
    print(
        "\n".join(f"--- {n} ---\n{v[:400].decode(errors='replace')}" for n, v in run.artifacts.items() if "reload" in n)
    )
    print("\n".join(run.notes))


def test_the_search_finds_secrets_where_they_are(run: Run) -> None:
    """The broken config holds inline secrets and the misspelt one; the secret file holds the priv password."""
    found = " ".join(leaks(run, "config file"))
    for kind in ("poll_community", "trap_auth", "mqtt_password", "token_syndicate", "misspelt"):
        assert f"{kind} (plain)" in found, found
    assert "poll_priv (plain)" in " ".join(leaks(run, "secret file"))
    run.artifacts["hex control"] = run.secrets.poll_auth.encode().hex().encode()
    run.artifacts["b64 control"] = base64.b64encode(run.secrets.trap_community.encode())
    assert leaks(run, "hex control") and leaks(run, "b64 control")


def _artifact_names() -> list[str]:
    """Parametrize by artifact family; each test searches every artifact of its family."""
    return ["daemon log", "/metrics", "check", "report", "state", "http"]


@pytest.mark.parametrize("family", _artifact_names())
def test_no_secret_in(run: Run, family: str) -> None:
    names = [n for n in run.artifacts if n == family or n.startswith(family + " ")]
    assert names, f"nothing collected for {family}"
    found = [leak for n in names for leak in leaks(run, n)]
    assert not found, "\n".join(found)
