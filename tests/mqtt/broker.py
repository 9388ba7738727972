"""A real mosquitto on free loopback ports with a generated config, password file and (optionally)
a TLS listener whose self-signed CA is made with openssl."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import ManagedProcess, free_port, require_binary, wait_tcp

USER = "sitivmon"
PASSWORD = "mqtt-Pa55-w0rd"
READER = "reader"
READER_PASSWORD = "reader-pass"


def make_ca(d: Path) -> tuple[Path, Path, Path]:
    """CA + server certificate for 127.0.0.1/localhost; returns (ca.crt, server.crt, server.key)."""
    openssl = require_binary("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sitivmon test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return d / "ca.crt", d / "server.crt", d / "server.key"


@dataclass
class Broker:
    workdir: Path
    tls: bool = False
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: ManagedProcess | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        passwd = self.workdir / "passwd"
        tool = require_binary("mosquitto_passwd")
        subprocess.run([tool, "-b", "-c", str(passwd), USER, PASSWORD], check=True, capture_output=True)
        subprocess.run([tool, "-b", str(passwd), READER, READER_PASSWORD], check=True, capture_output=True)
        lines = [
            # as root, mosquitto would switch to the `mosquitto` user, who cannot read pytest's tmp dirs
            *(["user root"] if os.geteuid() == 0 else []),
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 0",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.tls:
            self.ca, cert, key = make_ca(self.workdir)
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca}", f"certfile {cert}",
                      f"keyfile {key}"]  # fmt: skip
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        exe = require_binary("mosquitto")
        self.proc = ManagedProcess([exe, "-c", str(self.workdir / "mosquitto.conf")], self.workdir / "mosquitto.log")
        wait_tcp("127.0.0.1", self.port)
        if self.tls:
            wait_tcp("127.0.0.1", self.tls_port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
            time.sleep(0.05)

    def log(self) -> str:
        p = self.workdir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""
