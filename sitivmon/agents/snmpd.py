"""Start a real net-snmp `snmpd` with generated configuration (v2c communities, v3 users, pass scripts).

Used by the demo command and by the tests, so both exercise the same agent set-up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SNMPD_CANDIDATES = ("/usr/sbin/snmpd", "/usr/local/sbin/snmpd")


def snmpd_path() -> str | None:
    found = shutil.which("snmpd")
    if found:
        return found
    return next((p for p in SNMPD_CANDIDATES if os.path.exists(p)), None)


@dataclass(frozen=True, slots=True)
class V3User:
    name: str
    auth_protocol: str | None = None  # MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512
    auth_password: str | None = None
    priv_protocol: str | None = None  # DES, AES, AES-192, AES-256
    priv_password: str | None = None

    def create_line(self) -> str:
        parts = ["createUser", self.name]
        if self.auth_protocol and self.auth_password:
            parts += [self.auth_protocol, self.auth_password]
            if self.priv_protocol and self.priv_password:
                parts += [self.priv_protocol, self.priv_password]
        return " ".join(parts)

    def access_line(self) -> str:
        level = "noauth"
        if self.auth_protocol:
            level = "priv" if self.priv_protocol else "auth"
        return f"rouser {self.name} {level}"


@dataclass(slots=True)
class SnmpdSpec:
    port: int
    address: str = "127.0.0.1"
    communities: Sequence[str] = ("public",)
    users: Sequence[V3User] = ()
    pass_persist: Sequence[tuple[str, str]] = ()  # (oid prefix, command)
    extra: Sequence[str] = ()
    netns: str | None = None
    engine_id: str = field(default_factory=lambda: "sitivmon" + os.urandom(4).hex())
    also_on: Sequence[str] = ()
    """More addresses served on `port` (one process answering as several agents: capacity_bench.py's
    200 agents would otherwise be 200 processes each reloading its interface table on two cores)."""
    start_timeout_s: float = 10.0
    """How long a start may take: hundreds of agents starting on two cores (capacity_bench.py) take
    longer than one on an idle machine."""

    def config_text(self) -> str:
        where = ",".join(f"udp:{a}:{self.port}" for a in (self.address, *self.also_on))
        lines = [f"agentaddress {where}", f"engineID {self.engine_id}"]
        lines += [f"rocommunity {c} default" for c in self.communities]
        for user in self.users:
            lines += [user.create_line(), user.access_line()]
        lines += [f"pass_persist .{oid} {cmd}" for oid, cmd in self.pass_persist]
        lines += ["sysLocation sitivmon test agent", "sysContact noc@syndicat.invalid", "sysServices 72"]
        lines += list(self.extra)
        return "\n".join(lines) + "\n"


class Snmpd:
    """A running snmpd; `stop()` (or leaving the context) ends it."""

    def __init__(self, spec: SnmpdSpec, workdir: Path | None = None) -> None:
        binary = snmpd_path()
        if binary is None:
            raise FileNotFoundError("snmpd is not installed (Debian package 'snmpd')")
        self.spec = spec
        self._tmp = tempfile.TemporaryDirectory(prefix="sitivmon-snmpd-") if workdir is None else None
        self.workdir = workdir or Path(self._tmp.name if self._tmp else ".")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / f"snmpd-{spec.port}.conf"
        self.conf.write_text(spec.config_text())
        self.log = self.workdir / f"snmpd-{spec.port}.log"
        persistent = self.workdir / f"persist-{spec.port}"
        persistent.mkdir(exist_ok=True)
        argv = [
            binary,
            "-C",
            "-c",
            str(self.conf),
            "-f",
            "-Lf",
            str(self.log),
            "-p",
            str(self.workdir / f"snmpd-{spec.port}.pid"),
        ]
        if spec.netns:
            argv = ["ip", "netns", "exec", spec.netns, *argv]
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(persistent), MIBS="")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(spec.start_timeout_s)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpd exited at start: {self.read_log()[-2000:]}")
            if "NET-SNMP version" in self.read_log() and self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"snmpd did not answer on {self.spec.address}:{self.spec.port}")

    def _answers(self) -> bool:
        if self.spec.netns:
            return True  # not reachable from here without routing; the log line is enough
        # A v2c GET of sysUpTime; any response means the agent is serving.
        community = (self.spec.communities or ("public",))[0].encode()
        oid = bytes([0x06, 0x08, 0x2B, 6, 1, 2, 1, 1, 3, 0])
        varbind = bytes([0x30, len(oid) + 2]) + oid + b"\x05\x00"
        vbl = bytes([0x30, len(varbind)]) + varbind
        pdu_body = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + vbl
        pdu = bytes([0xA0, len(pdu_body)]) + pdu_body
        body = b"\x02\x01\x01" + bytes([0x04, len(community)]) + community + pdu
        msg = bytes([0x30, len(body)]) + body
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            try:
                s.sendto(msg, (self.spec.address, self.spec.port))
                s.recvfrom(4096)
                return True
            except OSError:
                return False

    def read_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def pause(self) -> None:
        """Freeze the agent (SIGSTOP): it stops answering, as a dead device would."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Snmpd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

