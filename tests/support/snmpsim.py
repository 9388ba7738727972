"""Serve real-device recordings with snmpsim (`snmpsim-command-responder`) on a free loopback UDP port.

The simulator and the recordings (PyPI `snmpsim`, `snmpsim-data`) live in their own venv,
`.venv-snmpsim` at the repository root, made by `scripts/dev test` with Debian's `/usr/bin/python3`:
run as root, the simulator drops privileges to `nobody` once it has bound its port, and from then on
opens the data files and its index cache as nobody. So the work directory here is a fresh
`mkdtemp` made world-readable (pytest's own tmp dirs are mode 700), with the cache owned by nobody.

snmpsim can read `.snmprec.bz2` itself, but it seeks in the data file for every request and a
backwards seek in a bz2 stream decompresses from the start: the recordings are decompressed into the
data directory once. Each recording is addressed by community = its file stem (snmpsim's convention),
so one simulator process serves any number of recordings.

Usage::

    from tests.support import snmpsim
    with snmpsim.serve({"dlink": snmpsim.recording("network/switch/dlink-des3200")}) as sim:
        ...  # SNMP v2c to sim.host:sim.port, community "dlink"

Outside CI a missing simulator venv skips the test with the reason; under CI (CI=true) it fails,
as tests/support/procs.py does for other binaries.
"""

from __future__ import annotations

import bz2
import contextlib
import grp
import os
import pwd
import random
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import ManagedProcess, free_udp_port

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("SITIVMON_SNMPSIM_VENV", str(REPO / ".venv-snmpsim")))
RESPONDER = VENV / "bin" / "snmpsim-command-responder"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run (scripts/dev test) must install it")
    pytest.skip(f"{reason} (run scripts/dev test, which installs it)")


def data_root() -> Path:
    """The snmpsim-data recordings directory in the simulator venv (skip/fail when absent)."""
    if not RESPONDER.exists():
        _missing(f"the SNMP simulator is not installed ({RESPONDER} missing)")
    found = sorted(VENV.glob("lib/python3*/site-packages/snmpsim_data/data"))
    if not found:
        _missing(f"snmpsim-data is not installed in {VENV}")
    return found[0]


def recording(relative: str) -> Path:
    """An installed recording by its path under snmpsim_data/data, without extension
    (e.g. `network/switch/dlink-des3200`)."""
    root = data_root()
    for ext in (".snmprec.bz2", ".snmprec"):
        path = root / f"{relative}{ext}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no recording {relative!r} under {root}")


@dataclass(frozen=True, slots=True)
class Simulator:
    host: str
    port: int
    workdir: Path
    communities: tuple[str, ...]
    process: ManagedProcess

    @property
    def address(self) -> str:
        """`host:port`, as a sitivmon target address."""
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.process.output()

    def replace(self, community: str, text: str) -> None:
        """Serve new content for a recording from now on (snmpsim re-indexes a data file whose mtime
        changed). A variation module reads its arguments at the first request of each OID, so this
        lets a test set time-dependent arguments once the simulator is up."""
        path = self.workdir / "data" / f"{community}.snmprec"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        tmp.chmod(0o644)
        mtime = path.stat().st_mtime_ns
        tmp.replace(path)
        if path.stat().st_mtime_ns <= mtime:  # same clock tick: make the change visible
            os.utime(path, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))


def _ber_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _ber_len(len(body)) + body


def _probe_packet(community: str, request_id: int) -> bytes:
    """An SNMPv2c GET of sysUpTime.0: enough to tell that the simulator answers for `community`."""
    sys_uptime = bytes([0x2B, 6, 1, 2, 1, 1, 3, 0])
    varbind = _tlv(0x30, _tlv(0x06, sys_uptime) + b"\x05\x00")
    pdu = _tlv(0xA0, _tlv(0x02, request_id.to_bytes(4, "big")) + b"\x02\x01\x00\x02\x01\x00" + _tlv(0x30, varbind))
    return _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, community.encode()) + pdu)


def wait_answering(host: str, port: int, community: str, process: ManagedProcess, timeout: float) -> None:
    """Block until the simulator answers a GET (it indexes every recording before it serves)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"snmpsim exited early:\n{process.output()[-3000:]}")
            s.sendto(_probe_packet(community, random.randrange(1, 1 << 31)), (host, port))
            with contextlib.suppress(TimeoutError):
                if s.recv(65535):
                    return
    raise TimeoutError(f"snmpsim not answering on {host}:{port} after {timeout}s:\n{process.output()[-3000:]}")


def _readable_by_others(path: Path) -> bool:
    """Whether a non-root user can reach and read `path` (every parent searchable by others)."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            return False
    return True


def _install(source: Path, dest: Path) -> None:
    if source.name.endswith(".bz2"):
        with bz2.open(source, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    else:
        shutil.copyfile(source, dest)
    dest.chmod(0o644)


@contextlib.contextmanager
def serve(recordings: Mapping[str, Path], *, timeout: float = 180.0) -> Iterator[Simulator]:
    """Serve `recordings` ({community: .snmprec or .snmprec.bz2 file}) on a free 127.0.0.1 UDP port
    until the block exits. Communities are file stems: letters, digits, `-`, `_` and `.`."""
    if not RESPONDER.exists():
        _missing(f"the SNMP simulator is not installed ({RESPONDER} missing)")
    if not recordings:
        raise ValueError("nothing to serve")
    workdir = Path(tempfile.mkdtemp(prefix="sitivmon-snmpsim-"))
    try:
        workdir.chmod(0o755)
        data = workdir / "data"
        cache = workdir / "cache"
        data.mkdir(mode=0o755)
        cache.mkdir(mode=0o755)
        for community, source in recordings.items():
            if not community or not all(c.isalnum() or c in "-_." for c in community):
                raise ValueError(f"bad community {community!r}")
            _install(Path(source), data / f"{community}.snmprec")
        env = dict(os.environ)
        argv = [
            str(RESPONDER),
            f"--data-dir={data}",
            f"--cache-dir={cache}",
            "--log-level=error",
        ]
        if os.geteuid() == 0:
            if _readable_by_others(RESPONDER):
                nobody = pwd.getpwnam("nobody")
                os.chown(cache, nobody.pw_uid, nobody.pw_gid)
                group = grp.getgrgid(nobody.pw_gid).gr_name
                argv += ["--process-user=nobody", f"--process-group={group}"]
            else:
                # The simulator venv sits where nobody cannot read it (e.g. under /root): keep root.
                env["SNMPSIM_ALLOW_ROOT"] = "true"
        host = "127.0.0.1"
        port = free_udp_port(host)
        argv.append(f"--agent-udpv4-endpoint={host}:{port}")
        process = ManagedProcess(argv, workdir / "snmpsim.log", env=env)
        try:
            wait_answering(host, port, next(iter(recordings)), process, timeout)
            yield Simulator(host, port, workdir, tuple(recordings), process)
        finally:
            process.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def serve_groups(groups: Sequence[Mapping[str, Path]], *, timeout: float = 180.0) -> Iterator[dict[str, Simulator]]:
    """One simulator per group, started side by side (each indexes its recordings on one core before it
    answers: a several-MB recording alone in its group is indexed while the others are); yields
    {community: the simulator serving it}."""
    entered: list[contextlib.AbstractContextManager[Simulator]] = []
    sims: list[Simulator] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start(group: Mapping[str, Path]) -> None:
        cm = serve(group, timeout=timeout)
        try:
            sim = cm.__enter__()
        except BaseException as exc:  # re-raised below, once every simulator is stopped
            with lock:
                errors.append(exc)
            return
        with lock:
            entered.append(cm)
            sims.append(sim)

    threads = [threading.Thread(target=start, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        yield {community: sim for sim in sims for community in sim.communities}
    finally:
        for cm in entered:
            cm.__exit__(None, None, None)
