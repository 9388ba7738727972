"""A scripted SNMP device behind a real snmpd: a net-snmp `pass_persist` helper that serves OIDs from
a JSON state file the test rewrites between polls.

Real devices wrap 32-bit counters, reboot and, sometimes, answer a GETNEXT with an OID that does not
increase. A real kernel cannot be made to do these on demand, so snmpd hands the IF-MIB subtrees (and
sysUpTime) to this helper, and the test scripts the values. snmpd still does the SNMP: encoding, v2c/v3,
GETBULK repetitions; only the values come from here.

State file (JSON), re-read whenever it changes:

    {"boot_at": 1764326400.0,                      # sysUpTime = (now - boot_at) in hundredths
     "oids": {"1.3.6.1.2.1.2.2.1.10.1": ["counter", 123], ...},
     "next_override": {"1.3.6.1.2.1.2.2.1.10.2": "1.3.6.1.2.1.2.2.1.10.1"}}   # buggy GETNEXT answers

Run by snmpd as `python scripted_agent.py STATE_FILE`; no imports beyond the standard library, so the
interpreter snmpd starts needs nothing installed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


def _key(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.strip(".").split(".") if p)


class Device:
    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[float, int] | None = None
        self.boot_at = time.time()
        self.oids: dict[str, tuple[str, Any]] = {}
        self.order: list[tuple[tuple[int, ...], str]] = []
        self.next_override: dict[str, str] = {}

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self.stamp:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return  # half-written: keep the previous state, the next request re-reads
        self.stamp = stamp
        self.boot_at = float(doc.get("boot_at", self.boot_at))
        self.oids = {k.strip("."): (v[0], v[1]) for k, v in doc.get("oids", {}).items()}
        if doc.get("serve_uptime", True):
            self.oids[SYS_UPTIME] = ("timeticks", None)
        self.order = sorted((_key(k), k) for k in self.oids)
        self.next_override = {k.strip("."): v.strip(".") for k, v in doc.get("next_override", {}).items()}

    def value(self, oid: str) -> tuple[str, Any]:
        kind, val = self.oids[oid]
        if oid == SYS_UPTIME and val is None:
            val = max(0, int((time.time() - self.boot_at) * 100))
        return kind, val

    def get(self, oid: str) -> str | None:
        return oid if oid in self.oids else None

    def getnext(self, oid: str) -> str | None:
        if oid in self.next_override:
            target = self.next_override[oid]
            return target if target in self.oids else None
        key = _key(oid)
        for k, name in self.order:
            if k > key:
                return name
        return None


def main() -> None:
    device = Device(sys.argv[1])
    out = sys.stdout
    for line in sys.stdin:
        cmd = line.strip().lower()
        if cmd == "ping":
            out.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = sys.stdin.readline().strip().strip(".")
            device.refresh()
            found = device.get(oid) if cmd == "get" else device.getnext(oid)
            if found is None:
                out.write("NONE\n")
            else:
                kind, val = device.value(found)
                out.write(f".{found}\n{kind}\n{val}\n")
        elif cmd == "set":
            sys.stdin.readline()
            sys.stdin.readline()
            out.write("not-writable\n")
        elif not cmd:
            continue
        else:
            out.write("NONE\n")
        out.flush()


if __name__ == "__main__":
    main()
