"""A misbehaving SNMP agent: one real UDP socket per mode, each answering the daemon's requests wrongly in
its own way (silence, lateness, a wrong request-id, broken BER, walks that loop or never end, error
statuses, huge values, answers from another port or address).

snmpd cannot be made to misbehave on demand, so this is a raw-UDP responder. The BER comes from the
receiver's own codec (`sitivmon.snmp.ber`: `read_tlv`, `tlv`, `encode_*`); only request parsing and
the response PDU are written here. It serves a one-interface device (sysUpTime, ifTable and ifXTable
row 1, `eth0`) that a polite mode answers correctly, so each mode differs from a working agent only by
its one fault.

Run: `python -m tests.support.hostile_agent PORTS_FILE MODE...`; it binds 127.0.0.1:<free port> per mode
and writes `{mode: port}` to PORTS_FILE (atomically) once every socket is bound. Stop it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sitivmon.snmp import ber

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
COMMUNITY = b"hostile"
TIMEOUT_S = 0.5  # the poll timeout the tests configure: the slow modes answer just under and just over it
SLOW_UNDER_S = 0.3
SLOW_OVER_S = 0.8
HUGE = 65_000  # an OCTET STRING as large as one UDP datagram can carry with its envelope
MAX_DATAGRAM = 65_507
WIDE_ROWS = 30
GARBAGE = b"\x30\x40" + random.Random(11).randbytes(64)

# error-status values (RFC 3416)
TOO_BIG, NO_SUCH_NAME, GEN_ERR = 1, 2, 5

Oid = tuple[int, ...]
Entry = tuple[int, object]  # (BER tag, value)

IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)

MODES = (
    "polite", "silent", "slow_under", "slow_over", "wrong_reqid", "stale_drip", "truncated", "garbage", "cut_length",
    "nonincreasing", "outside", "endless", "endless_uncapped", "gen_err", "too_big", "v1_nosuchname",
    "huge_value", "wide_rows", "chatty", "other_port", "other_address",
)  # fmt: skip


def device(boot_at: float, huge: bool = False) -> dict[Oid, Entry]:
    """One interface, `eth0`, whose counters grow with time; `huge`: ifDescr and ifAlias of 65 KB."""
    up = int((time.time() - boot_at) * 100)
    octets = up * 1000
    text = b"x" * HUGE if huge else b""
    mib: dict[Oid, Entry] = {
        SYS_UPTIME: (ber.TIMETICKS, up),
        (*IF, 1, 1): (ber.INTEGER, 1),
        (*IF, 2, 1): (ber.OCTET_STRING, text or b"eth0"),
        (*IF, 5, 1): (ber.GAUGE32, 1_000_000_000),
        (*IF, 7, 1): (ber.INTEGER, 1),
        (*IF, 8, 1): (ber.INTEGER, 1),
        (*IF, 9, 1): (ber.TIMETICKS, 0),
        (*IF, 10, 1): (ber.COUNTER32, octets % 2**32),
        (*IF, 16, 1): (ber.COUNTER32, octets % 2**32),
        (*IFX, 1, 1): (ber.OCTET_STRING, b"eth0"),
        (*IFX, 6, 1): (ber.COUNTER64, octets),
        (*IFX, 10, 1): (ber.COUNTER64, octets),
        (*IFX, 15, 1): (ber.GAUGE32, 1000),
        (*IFX, 18, 1): (ber.OCTET_STRING, text or b"hostile"),
        (*IFX, 19, 1): (ber.TIMETICKS, 0),
    }
    for column in (11, 12, 13, 14, 17, 18, 19, 20):
        mib[(*IF, column, 1)] = (ber.COUNTER32, 0)
    for column in (7, 8, 9, 11, 12, 13):
        mib[(*IFX, column, 1)] = (ber.COUNTER64, 0)
    return mib


def wide_device(boot_at: float) -> dict[Oid, Entry]:
    """`device` plus 29 more interfaces whose ifDescr has 200 characters (IF-MIB allows 255): a GETBULK
    of ifDescr with 25 repetitions answers in one datagram of about 5.5 KB, as a real switch may."""
    mib = device(boot_at)
    for i in range(1, WIDE_ROWS + 1):
        mib[(*IF, 2, i)] = (ber.OCTET_STRING, f"port {i} ".encode().ljust(200, b"."))
        mib[(*IFX, 1, i)] = (ber.OCTET_STRING, b"eth0" if i == 1 else f"eth{i - 1}".encode())
    return mib


@dataclass(slots=True)
class Request:
    version: int
    community: bytes
    pdu: int
    request_id: int
    non_repeaters: int
    max_repetitions: int
    oids: list[Oid]


def parse(buf: bytes) -> Request:
    """A GET, GETNEXT or GETBULK request (v1/v2c); raises ber.BerError on anything else."""
    s, e = _expect(buf, 0, len(buf), ber.SEQUENCE)
    vs, ve = _expect(buf, s, e, ber.INTEGER)
    cs, ce = _expect(buf, ve, e, ber.OCTET_STRING)
    pdu, ps, pe = ber.read_tlv(buf, ce, e)
    numbers = []
    pos = ps
    for _ in range(3):
        s2, e2 = _expect(buf, pos, pe, ber.INTEGER)
        numbers.append(ber.decode_integer(buf, s2, e2))
        pos = e2
    ls, le = _expect(buf, pos, pe, ber.SEQUENCE)
    oids = []
    pos = ls
    while pos < le:
        vbs, vbe = _expect(buf, pos, le, ber.SEQUENCE)
        os_, oe = _expect(buf, vbs, vbe, ber.OBJECT_IDENTIFIER)
        oids.append(ber.decode_oid(buf, os_, oe))
        pos = vbe
    return Request(ber.decode_integer(buf, vs, ve), buf[cs:ce], pdu, numbers[0], numbers[1], numbers[2], oids)


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    t, s, e = ber.read_tlv(buf, pos, end)
    if t != tag:
        raise ber.BerError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
    return s, e


def varbind(oid: Oid, tag: int, value: object) -> bytes:
    if tag in (ber.NULL, ber.NO_SUCH_OBJECT, ber.NO_SUCH_INSTANCE, ber.END_OF_MIB_VIEW):
        body = ber.tlv(tag, b"")
    elif tag == ber.OCTET_STRING:
        assert isinstance(value, bytes)
        body = ber.tlv(tag, value)
    else:
        assert isinstance(value, int)
        body = ber.encode_integer(value, tag)
    return ber.tlv(ber.SEQUENCE, ber.encode_oid(oid) + body)


def response(req: Request, varbinds: list[bytes], error_status: int = 0, error_index: int = 0,
             request_id: int | None = None) -> bytes:  # fmt: skip
    pdu = (
        ber.encode_integer(req.request_id if request_id is None else request_id)
        + ber.encode_integer(error_status)
        + ber.encode_integer(error_index)
        + ber.tlv(ber.SEQUENCE, b"".join(varbinds))
    )
    return ber.tlv(
        ber.SEQUENCE,
        ber.encode_integer(req.version) + ber.tlv(ber.OCTET_STRING, req.community) + ber.tlv(RESPONSE, pdu),
    )


def answer(req: Request, mib: dict[Oid, Entry]) -> tuple[list[bytes], int, int]:
    """What a correct agent answers: (varbinds, error-status, error-index). v1 reports a missing object
    or the end of the MIB as noSuchName, v2c with exception values (RFC 3416, RFC 2576 §4.1.2)."""
    keys = sorted(mib)
    v1 = req.version == 0

    def after(oid: Oid) -> Oid | None:
        return next((k for k in keys if k > oid), None)

    out: list[bytes] = []
    if req.pdu == GET:
        for i, oid in enumerate(req.oids, 1):
            if oid in mib:
                out.append(varbind(oid, *mib[oid]))
            elif v1:
                return [varbind(o, ber.NULL, None) for o in req.oids], NO_SUCH_NAME, i
            else:
                out.append(varbind(oid, ber.NO_SUCH_OBJECT, None))
        return out, 0, 0
    if req.pdu == GETNEXT:
        for i, oid in enumerate(req.oids, 1):
            nxt = after(oid)
            if nxt is not None:
                out.append(varbind(nxt, *mib[nxt]))
            elif v1:
                return [varbind(o, ber.NULL, None) for o in req.oids], NO_SUCH_NAME, i
            else:
                out.append(varbind(oid, ber.END_OF_MIB_VIEW, None))
        return out, 0, 0
    # GETBULK
    size = 0
    for oid in req.oids:
        cursor: Oid | None = oid
        for _ in range(max(1, req.max_repetitions)):
            nxt = after(cursor) if cursor is not None else None
            vb = varbind(nxt, *mib[nxt]) if nxt is not None else varbind(cursor or oid, ber.END_OF_MIB_VIEW, None)
            if size + len(vb) > MAX_DATAGRAM - 200:
                break  # fewer repetitions, as an agent does when the response would not fit
            out.append(vb)
            size += len(vb)
            if nxt is None:
                break
            cursor = nxt
    return out, 0, 0


Send = tuple[float, bytes, socket.socket]  # (when, datagram, socket to send it from)


class Hostile:
    def __init__(self, modes: list[str]) -> None:
        self.boot_at = time.time() - 1000
        self.socks: dict[str, socket.socket] = {}
        for mode in modes:
            if mode not in MODES:
                raise SystemExit(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks[mode] = s
        self.stray_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stray_port.bind(("127.0.0.1", 0))
        self.stray_addr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stray_addr.bind(("127.0.0.2", 0))
        self.handlers: dict[str, Callable[[Request, socket.socket], list[Send]]] = {
            m: getattr(self, f"_{m}") for m in MODES
        }

    def ports(self) -> dict[str, int]:
        return {m: s.getsockname()[1] for m, s in self.socks.items()}

    def _polite(self, req: Request, sock: socket.socket, delay: float = 0.0) -> list[Send]:
        vbs, status, index = answer(req, device(self.boot_at))
        return [(time.monotonic() + delay, response(req, vbs, status, index), sock)]

    def _silent(self, req: Request, sock: socket.socket) -> list[Send]:
        return []

    def _slow_under(self, req: Request, sock: socket.socket) -> list[Send]:
        return self._polite(req, sock, SLOW_UNDER_S)

    def _slow_over(self, req: Request, sock: socket.socket) -> list[Send]:
        return self._polite(req, sock, SLOW_OVER_S)

    def _wrong_reqid(self, req: Request, sock: socket.socket) -> list[Send]:
        vbs, _, _ = answer(req, device(self.boot_at))
        return [(time.monotonic(), response(req, vbs, request_id=(req.request_id + 1) % 2**31), sock)]

    def _truncated(self, req: Request, sock: socket.socket) -> list[Send]:
        whole = self._polite(req, sock)[0][1]
        return [(time.monotonic(), whole[: len(whole) * 2 // 3], sock)]

    def _stale_drip(self, req: Request, sock: socket.socket) -> list[Send]:
        # Never the answer, but a stale one (wrong request-id) every 0.2 s for twice the timeout: a
        # client that restarts its timeout on every datagram waits for as long as the drip lasts.
        vbs, _, _ = answer(req, device(self.boot_at))
        stale = response(req, vbs, request_id=(req.request_id + 7) % 2**31)
        now = time.monotonic()
        return [(now + 0.2 * k, stale, sock) for k in range(1, int(2 * TIMEOUT_S / 0.2) + 1)]

    def _garbage(self, req: Request, sock: socket.socket) -> list[Send]:
        # A SEQUENCE header over random bytes: it gets past a first glance, then nothing parses.
        return [(time.monotonic(), GARBAGE, sock)]

    def _cut_length(self, req: Request, sock: socket.socket) -> list[Send]:
        # A response cut inside its first long-form length (SEQUENCE, "length in 2 bytes", then nothing).
        return [(time.monotonic(), b"\x30\x82", sock)]

    def _nonincreasing(self, req: Request, sock: socket.socket) -> list[Send]:
        # Each column's walk gets its first row, then the same OID again: a naive walker loops forever.
        mib = device(self.boot_at)
        if req.pdu == GET:
            return self._polite(req, sock)
        vbs = []
        for oid in req.oids:
            row = (*oid, 1) if (*oid, 1) in mib else oid
            entry = mib.get(row, (ber.INTEGER, 0))
            vbs += [varbind(row, *entry), varbind(row, *entry)]
        return [(time.monotonic(), response(req, vbs), sock)]

    def _outside(self, req: Request, sock: socket.socket) -> list[Send]:
        # Every walk answered from a subtree nobody asked for: the columns look empty, eth0 is never found.
        if req.pdu == GET:
            return self._polite(req, sock)
        vbs = [varbind((1, 3, 6, 1, 4, 1, 99999, 7, n), ber.INTEGER, n) for n in range(1, 11)]
        return [(time.monotonic(), response(req, vbs), sock)]

    def _endless(self, req: Request, sock: socket.socket) -> list[Send]:
        # A column that never ends: each answer continues with the next index, forever.
        if req.pdu == GET:
            return self._polite(req, sock)
        vbs = []
        for oid in req.oids:
            table = IF if oid[: len(IF)] == IF else IFX
            base = oid[: len(table) + 1]
            start = oid[len(base)] if len(oid) > len(base) else 0
            vbs += [varbind((*base, start + k), ber.COUNTER32, k) for k in range(1, max(1, req.max_repetitions) + 1)]
        return [(time.monotonic(), response(req, vbs), sock)]

    _endless_uncapped = _endless

    def _error(self, req: Request, sock: socket.socket, status: int) -> list[Send]:
        vbs = [varbind(o, ber.NULL, None) for o in req.oids]
        return [(time.monotonic(), response(req, vbs, status, 1), sock)]

    def _gen_err(self, req: Request, sock: socket.socket) -> list[Send]:
        return self._error(req, sock, GEN_ERR)

    def _too_big(self, req: Request, sock: socket.socket) -> list[Send]:
        return self._error(req, sock, TOO_BIG)

    def _v1_nosuchname(self, req: Request, sock: socket.socket) -> list[Send]:
        return self._error(req, sock, NO_SUCH_NAME)

    def _huge_value(self, req: Request, sock: socket.socket) -> list[Send]:
        vbs, status, index = answer(req, device(self.boot_at, huge=True))
        return [(time.monotonic(), response(req, vbs, status, index), sock)]

    def _wide_rows(self, req: Request, sock: socket.socket) -> list[Send]:
        vbs, status, index = answer(req, wide_device(self.boot_at))
        return [(time.monotonic(), response(req, vbs, status, index), sock)]

    def _chatty(self, req: Request, sock: socket.socket) -> list[Send]:
        # The right answer, after 50 stale ones (wrong request-id) sent at once: a burst of unsolicited
        # datagrams on the poller's socket must cost little and not hide the answer (200 would overflow
        # the default 208 KB receive buffer with GETBULK-sized answers: the kernel then drops the answer).
        vbs, status, index = answer(req, device(self.boot_at))
        stale = response(req, vbs, status, index, request_id=(req.request_id + 3) % 2**31)
        now = time.monotonic()
        return [*((now, stale, sock) for _ in range(50)), (now, response(req, vbs, status, index), sock)]

    def _other_port(self, req: Request, sock: socket.socket) -> list[Send]:
        return self._polite(req, self.stray_port)

    def _other_address(self, req: Request, sock: socket.socket) -> list[Send]:
        return self._polite(req, self.stray_addr)

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        for mode, s in self.socks.items():
            sel.register(s, selectors.EVENT_READ, mode)
        pending: list[tuple[float, int, bytes, socket.socket, tuple[str, int]]] = []
        seq = 0
        while True:
            wait = max(0.0, pending[0][0] - time.monotonic()) if pending else 1.0
            for key, _ in sel.select(wait):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                while True:
                    try:
                        data, peer = sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    try:
                        req = parse(data)
                    except (ber.BerError, IndexError, ValueError):
                        continue
                    for when, out, via in self.handlers[key.data](req, sock):
                        heapq.heappush(pending, (when, seq, out, via, peer))
                        seq += 1
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, out, via, peer = heapq.heappop(pending)
                with contextlib.suppress(OSError):  # the daemon's socket is gone: nothing to answer
                    via.sendto(out, peer)


def main(argv: list[str]) -> None:
    ports_file, modes = argv[0], argv[1:]
    agent = Hostile(modes or list(MODES))
    tmp = ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(agent.ports(), f)
    os.replace(tmp, ports_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    agent.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
