"""Reusable test rigs around real components: snmpd agents (loopback, in a namespace, scripted), the
daemon as a subprocess, and a reader for its /metrics.

Everything here starts real processes and stops them; nothing is mocked. The pytest fixtures in
tests/conftest.py are thin wrappers, so other suites (usage, alerts, dashboards) can either use the
fixtures or build their own rigs from these pieces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from sitivmon.agents import netns
from sitivmon.agents.snmpd import Snmpd, SnmpdSpec, V3User
from sitivmon.app.demo import COMMUNES as DEMO_COMMUNES
from tests.support.procs import ManagedProcess, free_port, free_udp_port

REPO = Path(__file__).resolve().parents[2]
SCRIPTED_AGENT = Path(__file__).with_name("scripted_agent.py")

# The demo's list, the same as ../shared/communes.csv (checked by tests/unit/test_config.py), so that
# the rigs do not depend on the checkout's neighbours.
COMMUNES: tuple[tuple[str, str, str], ...] = tuple(DEMO_COMMUNES)

# Secrets are random per run, so that "the secret never appears in output" checks cannot pass by luck.
COMMUNITY = "c0mm-" + os.urandom(6).hex()

# One v3 user per security level and per protocol net-snmp 5.9 accepts in createUser (SHA-2 via
# RFC 7860, AES-192/256 via the Blumenthal draft); names are what the config calls the credentials.
V3_USERS: tuple[V3User, ...] = (
    V3User("noauth"),
    V3User("md5auth", "MD5", "md5-auth-" + os.urandom(3).hex()),
    V3User("shaauth", "SHA", "sha-auth-" + os.urandom(3).hex()),
    V3User("sha224auth", "SHA-224", "sha224-auth-" + os.urandom(3).hex()),
    V3User("sha256auth", "SHA-256", "sha256-auth-" + os.urandom(3).hex()),
    V3User("sha384auth", "SHA-384", "sha384-auth-" + os.urandom(3).hex()),
    V3User("sha512auth", "SHA-512", "sha512-auth-" + os.urandom(3).hex()),
    V3User("md5des", "MD5", "md5-des-a-" + os.urandom(3).hex(), "DES", "md5-des-p-" + os.urandom(3).hex()),
    V3User("shades", "SHA", "sha-des-a-" + os.urandom(3).hex(), "DES", "sha-des-p-" + os.urandom(3).hex()),
    V3User("shaaes", "SHA", "sha-aes-a-" + os.urandom(3).hex(), "AES", "sha-aes-p-" + os.urandom(3).hex()),
    V3User("sha256aes192", "SHA-256", "s256-a192-a-" + os.urandom(3).hex(), "AES-192",
           "s256-a192-p-" + os.urandom(3).hex()),
    V3User("sha512aes256", "SHA-512", "s512-a256-a-" + os.urandom(3).hex(), "AES-256",
           "s512-a256-p-" + os.urandom(3).hex()),
)  # fmt: skip

IF_TABLE = "1.3.6.1.2.1.2.2"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1"
SYS_UPTIME_OID = "1.3.6.1.2.1.1.3"
NS_CACHE_TIMEOUT = "1.3.6.1.4.1.8072.1.5.3.1.2"


def all_secrets() -> list[str]:
    """Every secret the rigs hand out, for "never printed" assertions."""
    out = [COMMUNITY, _CACHE_COMMUNITY]
    for u in V3_USERS:
        out += [s for s in (u.auth_password, u.priv_password) if s]
    return out


def credential_for(user: V3User) -> dict[str, Any]:
    """The config `credentials:` entry for a v3 user (protocol names as an operator writes them)."""
    cred: dict[str, Any] = {"version": "3", "username": user.name}
    if user.auth_protocol:
        cred |= {"auth_protocol": user.auth_protocol, "auth_password": user.auth_password}
    if user.priv_protocol:
        cred |= {"priv_protocol": user.priv_protocol, "priv_password": user.priv_password}
    return cred


def all_credentials(community: str = COMMUNITY) -> dict[str, dict[str, Any]]:
    creds: dict[str, dict[str, Any]] = {"v2c": {"version": "2c", "community": community}}
    creds |= {f"v3-{u.name}": credential_for(u) for u in V3_USERS}
    return creds


@dataclass(slots=True)
class Agent:
    """A running snmpd and how to reach it."""

    snmpd: Snmpd
    host: str
    port: int
    community: str = COMMUNITY
    users: tuple[V3User, ...] = V3_USERS
    netns_name: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def fresh_counters(self) -> None:
        """Make snmpd re-read interface data at every request instead of every 3 s (nsCacheTimeout of
        ifTable, which ifXTable shares), so that a change shows at the very next poll."""
        netns.run(
            "snmpset", "-v2c", "-c", _CACHE_COMMUNITY, "-t", "2", "-r", "2", self.address,
            f".{NS_CACHE_TIMEOUT}.1.3.6.1.2.1.2.2", "i", "0", netns=self.netns_name,
        )  # fmt: skip

    def pause(self) -> None:
        self.snmpd.pause()

    def resume(self) -> None:
        self.snmpd.resume()

    def stop(self) -> None:
        self.snmpd.stop()


# Write access limited to NET-SNMP-AGENT-MIB's nsCacheTable and to requests from the agent's own address
# (inside a namespace: from that namespace only): enough to turn the interface cache off, nothing else.
_CACHE_COMMUNITY = "cachectl-" + os.urandom(6).hex()
NS_CACHE_TABLE = "1.3.6.1.4.1.8072.1.5.3"


def start_snmpd(
    *,
    address: str = "127.0.0.1",
    port: int | None = None,
    netns_name: str | None = None,
    community: str = COMMUNITY,
    users: Sequence[V3User] = V3_USERS,
    extra: Sequence[str] = (),
    workdir: Path | None = None,
    fresh: bool = True,
) -> Agent:
    """Start snmpd on a free UDP port (or `port`), retrying when another process took the port first.
    `fresh`: interface counters current at every request (see `Agent.fresh_counters`)."""
    last: Exception | None = None
    lines = list(extra)
    if fresh:
        lines.append(f"rwcommunity {_CACHE_COMMUNITY} {address} .{NS_CACHE_TABLE}")
    for _ in range(3):
        chosen = port or free_udp_port(address if netns_name is None else "127.0.0.1")
        spec = SnmpdSpec(
            port=chosen,
            address=address,
            communities=(community,),
            users=tuple(users),
            extra=tuple(lines),
            netns=netns_name,
        )
        try:
            snmpd = Snmpd(spec, workdir)
        except (RuntimeError, TimeoutError) as exc:
            last = exc
            if port is not None:
                break
            continue
        agent = Agent(snmpd, address, chosen, community, tuple(users), netns_name)
        if fresh:
            try:
                agent.fresh_counters()
            except BaseException:
                agent.stop()
                raise
        return agent
    raise RuntimeError(f"snmpd would not start: {last}")


@contextlib.contextmanager
def snmpd_agent(**kw: Any) -> Iterator[Agent]:
    agent = start_snmpd(**kw)
    try:
        yield agent
    finally:
        agent.stop()


# --- scripted device -------------------------------------------------------------------------------

IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
# Column name -> (OID, pass_persist type). Enough of IF-MIB for the interfaces profile.
IF_COLUMNS: dict[str, tuple[str, str]] = {
    "ifDescr": (f"{IF}.2", "string"),
    "ifSpeed": (f"{IF}.5", "gauge"),
    "ifAdminStatus": (f"{IF}.7", "integer"),
    "ifOperStatus": (f"{IF}.8", "integer"),
    "ifInOctets": (f"{IF}.10", "counter"),
    "ifInUcastPkts": (f"{IF}.11", "counter"),
    "ifOutOctets": (f"{IF}.16", "counter"),
    "ifOutUcastPkts": (f"{IF}.17", "counter"),
    "ifName": (f"{IFX}.1", "string"),
    "ifHCInOctets": (f"{IFX}.6", "counter64"),
    "ifHCOutOctets": (f"{IFX}.10", "counter64"),
    "ifHighSpeed": (f"{IFX}.15", "gauge"),
    "ifAlias": (f"{IFX}.18", "string"),
    "ifCounterDiscontinuityTime": (f"{IFX}.19", "timeticks"),
}


class ScriptedDevice:
    """IF-MIB values and sysUpTime scripted by the test, served by a real snmpd through pass_persist.

    Set values with `set(index, ifInOctets=..., ...)`, `reboot()`, `next_override(...)`, then `write()`;
    the helper re-reads the file on the next request. Values absent from the state are not served
    (e.g. leave out ifHCInOctets to make a 32-bit-only interface).
    """

    def __init__(self, state: Path, uptime_s: float = 1000.0) -> None:
        self.state = state
        self.boot_at = time.time() - uptime_s
        self.values: dict[str, tuple[str, Any]] = {}
        self.overrides: dict[str, str] = {}
        self.write()

    def set(self, index: int, **columns: Any) -> ScriptedDevice:
        for name, value in columns.items():
            oid, kind = IF_COLUMNS[name]
            if value is None:
                self.values.pop(f"{oid}.{index}", None)
            else:
                self.values[f"{oid}.{index}"] = (kind, value)
        return self

    def interface(
        self,
        index: int,
        name: str,
        *,
        hc: bool = True,
        in_octets: int = 0,
        out_octets: int = 0,
        oper: int = 1,
        speed_mbit: int = 1000,
        alias: str = "",
    ) -> ScriptedDevice:
        """A whole interface row; `hc=False` serves only the 32-bit counters."""
        self.set(
            index,
            ifDescr=name,
            ifName=name,
            ifAlias=alias,
            ifAdminStatus=1,
            ifOperStatus=oper,
            ifSpeed=min(speed_mbit * 1_000_000, 2**32 - 1),
            ifHighSpeed=speed_mbit,
            ifInUcastPkts=0,
            ifOutUcastPkts=0,
            ifCounterDiscontinuityTime=0,
        )
        return self.counters(index, in_octets=in_octets, out_octets=out_octets, hc=hc)

    def counters(self, index: int, *, in_octets: int, out_octets: int, hc: bool = True) -> ScriptedDevice:
        if hc:
            self.set(
                index,
                ifHCInOctets=in_octets,
                ifHCOutOctets=out_octets,
                ifInOctets=in_octets % 2**32,
                ifOutOctets=out_octets % 2**32,
            )
        else:
            self.set(index, ifHCInOctets=None, ifHCOutOctets=None, ifInOctets=in_octets, ifOutOctets=out_octets)
        return self

    def reboot(self, uptime_s: float = 1.0) -> ScriptedDevice:
        """sysUpTime restarts: it reads `uptime_s` now and grows from there."""
        self.boot_at = time.time() - uptime_s
        return self

    def next_override(self, asked: str, answer: str) -> ScriptedDevice:
        """Answer a GETNEXT for `asked` with `answer` (use a smaller OID for a non-increasing agent)."""
        self.overrides[asked] = answer
        return self

    def clear_overrides(self) -> ScriptedDevice:
        self.overrides.clear()
        return self

    def write(self) -> None:
        doc = {
            "boot_at": self.boot_at,
            "oids": {k: list(v) for k, v in self.values.items()},
            "next_override": self.overrides,
        }
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.state)  # a new inode: the helper notices even within one mtime tick

    def snmpd_lines(self) -> list[str]:
        """snmpd.conf lines handing sysUpTime, ifTable and ifXTable to the helper (priority over the
        built-in modules, which register the same subtrees at the default priority 127)."""
        cmd = f"{sys.executable} {SCRIPTED_AGENT} {self.state}"
        return [f"pass_persist -p 1 .{oid} {cmd}" for oid in (SYS_UPTIME_OID, IF_TABLE, IF_X_TABLE)]


@contextlib.contextmanager
def scripted_agent(workdir: Path, **kw: Any) -> Iterator[tuple[Agent, ScriptedDevice]]:
    """A loopback snmpd whose IF-MIB and sysUpTime come from a ScriptedDevice."""
    device = ScriptedDevice(workdir / f"device-{os.urandom(3).hex()}.json")
    with snmpd_agent(extra=device.snmpd_lines(), users=(), fresh=False, **kw) as agent:
        yield agent, device


# --- network namespace lab --------------------------------------------------------------------------


@dataclass(slots=True)
class NetnsAgent:
    """snmpd inside the lab's agent namespace, answering on lab.agent_addr:161 through the mgmt veth."""

    lab: netns.Lab
    agent: Agent
    links: dict[str, netns.DataLink] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.agent.address

    def fresh_counters(self) -> None:
        """See `Agent.fresh_counters` (start_snmpd(fresh=True), the default, already did it once)."""
        self.agent.fresh_counters()


def _subnet_clash(lab: netns.Lab) -> bool:
    """True when another interface on the host already has the lab's management /30 (another test
    session's lab picked the same subnet): routing to the agent would then be ambiguous."""
    prefix = lab.mgmt_host_addr.rsplit(".", 1)[0] + "."
    out = netns.run("ip", "-o", "-4", "addr", "show", check=False).stdout
    return any(prefix in line and lab.mgmt_host_if not in line for line in out.splitlines())


@contextlib.contextmanager
def netns_lab() -> Iterator[netns.Lab]:
    """A lab whose management subnet is not used by any other lab on the machine."""
    made = netns.create_lab()
    for _ in range(10):
        if not _subnet_clash(made):
            break
        made.destroy()
        made = netns.create_lab()
    try:
        yield made
    finally:
        made.destroy()


@contextlib.contextmanager
def netns_agent(
    lab: netns.Lab, links: Sequence[str] = ("eth1",), *, fresh: bool = True, users: Sequence[V3User] = V3_USERS
) -> Iterator[NetnsAgent]:
    """Quiet data links (IPv6 off) in the agent namespace and snmpd serving them on lab.agent_addr:161."""
    made = {name: lab.add_link(name) for name in links}
    agent = start_snmpd(address=lab.agent_addr, port=161, netns_name=lab.agent_ns, users=users, fresh=fresh)
    try:
        yield NetnsAgent(lab, agent, made)
    finally:
        agent.stop()


# --- configuration -----------------------------------------------------------------------------------


def base_config(
    state_dir: Path, *, interval: str = "1s", timeout: str = "0.5s", retries: int = 0, **extra: Any
) -> dict[str, Any]:
    """A config document with the eight communes and fast polling (no jitter: polls start at once)."""
    doc: dict[str, Any] = {
        "state_dir": str(state_dir),
        "poll": {"interval": interval, "timeout": timeout, "retries": retries, "jitter": 0},
        # The trap receiver is on by default at 127.0.0.1:9162: several daemons (tests running side by
        # side) would fight for it. Port 0 keeps it real, on a free port.
        "traps": {"port": 0},
        "communes": [{"id": i, "name": n, "insee": s} for i, n, s in COMMUNES],
        "credentials": {},
        "targets": [],
        "links": [],
    }
    doc.update(extra)
    return doc


def add_target(
    doc: dict[str, Any],
    name: str,
    address: str,
    credentials: str,
    credential: Mapping[str, Any] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    if credential is not None:
        doc["credentials"][credentials] = dict(credential)
    doc["targets"].append({"name": name, "address": address, "credentials": credentials, **kw})
    return doc


def add_link(
    doc: dict[str, Any],
    link_id: str,
    commune: str,
    target: str,
    *,
    name: str | None = None,
    index: int | None = None,
    side: str = "commune",
    **kw: Any,
) -> dict[str, Any]:
    selector = {"name": name} if name is not None else {"index": index}
    doc["links"].append(
        {"id": link_id, "commune": commune, "target": target, "interface": selector, "side": side, **kw}
    )
    return doc


def write_config(path: Path, doc: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# --- metrics -----------------------------------------------------------------------------------------


class Metrics:
    """A parsed /metrics page (prometheus_client's own parser: a page it cannot read fails here)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in self.families.values():
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {lab: v for (n, lab), v in self.samples.items() if n == name}

    def link(self, name: str, link: str) -> float | None:
        """A link series by link id alone (commune and target labels as exposed)."""
        for (n, lab), v in self.samples.items():
            if n == name and ("link", link) in lab:
                return v
        return None


# --- the daemon as a subprocess -------------------------------------------------------------------------


def _clean_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The test process's environment without SITIVMON_* overrides (a developer's shell must not change
    what the daemon under test reads), plus what the test passes."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("SITIVMON_")}
    out["PYTHONUNBUFFERED"] = "1"
    out.update(env or {})
    return out


class DaemonProcess:
    """`python -m sitivmon run --config ... --listen 127.0.0.1:<free port>`, stopped by `stop()`."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        start_timeout: float = 20.0,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.env = _clean_env(env)
        self.args = list(args)
        self.port = 0
        self.proc: ManagedProcess | None = None
        self._start(start_timeout)

    def _start(self, timeout: float) -> None:
        for attempt in range(3):
            self.port = free_port()
            log = self.workdir / f"daemon-{self.port}.log"
            argv = [
                sys.executable,
                "-m",
                "sitivmon",
                "run",
                "--config",
                str(self.config),
                "--listen",
                f"127.0.0.1:{self.port}",
                *self.args,
            ]
            self.proc = ManagedProcess(argv, log, self.env)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.proc.alive():
                    break
                with contextlib.suppress(OSError):
                    if self.get("/-/healthy")[0] == 200:
                        return
                time.sleep(0.05)
            output = self.proc.output()
            self.proc.stop()
            if "address already in use" in output.lower() and attempt < 2:
                continue
            raise RuntimeError(f"sitivmon did not start (exit {self.proc.proc.returncode}):\n{output[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def output(self) -> str:
        """Everything the daemon wrote (stdout and stderr), also readable after it stopped."""
        if self.proc is None:
            return ""
        with contextlib.suppress(ValueError):
            self.proc._logf.flush()
        return self.proc.log.read_text(errors="replace")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post(self, path: str, timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path, data=b"", method="POST", headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> Metrics:
        status, text = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}: {text[:500]}"
        return Metrics(text)

    def wait_for(
        self, check: Callable[[Metrics], bool], what: str, timeout: float = 10.0, every: float = 0.05
    ) -> Metrics:
        """Scrape until `check` holds; fail with `what`, the last page's relevant lines and the log."""
        deadline = time.monotonic() + timeout
        m = self.metrics()
        while not check(m):
            if time.monotonic() > deadline:
                lines = "\n".join(line for line in m.text.splitlines() if line.startswith("sitivmon_"))
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n--- metrics ---\n{lines[-4000:]}"
                    f"\n--- daemon log ---\n{self.output()[-3000:]}"
                )
            if not self.alive():
                raise AssertionError(f"daemon exited while waiting for {what}:\n{self.output()[-3000:]}")
            time.sleep(every)
            m = self.metrics()
        return m

    def last_success(self, target: str, m: Metrics | None = None) -> float:
        m = m or self.metrics()
        return m.value("sitivmon_target_last_success_timestamp_seconds", target=target) or 0.0

    def wait_polls(self, target: str, count: int = 1, timeout: float = 10.0) -> Metrics:
        """Wait for `count` more successful polls of `target`, and return the page after the last."""
        m = self.metrics()
        for i in range(count):
            before = self.last_success(target, m)
            m = self.wait_for(
                lambda m, b=before: self.last_success(target, m) > b,
                f"successful poll {i + 1}/{count} of {target}",
                timeout,
            )
        return m

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def reload(self) -> None:
        self.signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if not self.proc.alive():
            return self.proc.stop()
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.stop()
            return None
        finally:
            self.proc.stop()


@contextlib.contextmanager
def running_daemon(config: Path, workdir: Path, **kw: Any) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(config, workdir, **kw)
    try:
        yield daemon
    finally:
        daemon.stop()
