"""Run real net-snmp notification tools (snmptrap, snmpinform) against a port, numerically (no MIBs)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Sequence

from tests.support.procs import require_binary

IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
LINK_UP = "1.3.6.1.6.3.1.1.5.4"
COLD_START = "1.3.6.1.6.3.1.1.5.1"
WARM_START = "1.3.6.1.6.3.1.1.5.2"


def link_varbinds(if_index: int, admin: int, oper: int) -> list[str]:
    return [
        f"{IF_INDEX}.{if_index}", "i", str(if_index),
        f"{IF_ADMIN}.{if_index}", "i", str(admin),
        f"{IF_OPER}.{if_index}", "i", str(oper),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    # A private persistent dir keeps net-snmp from writing engine boots/IDs into /var/lib/snmp.
    home = tempfile.mkdtemp(prefix="sitivmon-netsnmp-")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MIBS": "", "SNMP_PERSISTENT_DIR": home}


def run_tool(tool: str, args: Sequence[str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    exe = require_binary(tool)
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=_env())


def capture(tool: str, args_with_host: Sequence[str]) -> bytes:
    """The first datagram `tool` sends, caught on a plain UDP socket ("HOST" in args is replaced)."""
    exe = require_binary(tool)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        host = f"127.0.0.1:{s.getsockname()[1]}"
        argv = [exe, "-t", "0.3", "-r", "0"] if tool == "snmpinform" else [exe]
        argv += [a.replace("HOST", host) for a in args_with_host]
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
        try:
            data, _ = s.recvfrom(65535)
        finally:
            p.wait(10)
        return data
