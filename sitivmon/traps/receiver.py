"""The trap receiver: a socket drained in batches, a decoder task, and flood control without losing
link state.

Why it is shaped this way:
- The socket callback only copies datagrams into a deque (many per wakeup, no decoding), so a burst
  lands in user space quickly; a large SO_RCVBUF absorbs what arrives while the loop is busy.
- A separate decoder task decodes in small batches bounded in count and in time, and yields to the
  event loop between batches, so the daemon's other work keeps running under a flood.
- Sources are checked before any decoding (cheap rejection of strangers), then the community as soon
  as its bytes are read (before the PDU is decoded): an unauthenticated datagram costs a few header
  bytes. The decoder bounds the work of every datagram (size, varbinds, OID length and arcs).
  v1/v2c use the local BER decoder, v3 goes through pysnmp's USM after a bounded clear-text check.
- A per-source token bucket limits what reaches the rest of the daemon, but link traps over the limit
  are *coalesced* per (source, ifIndex) to their latest state and delivered as tokens return, so a
  flood can delay a link event but never lose the final state. Non-link traps over the limit are
  dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from sitivmon.aio import wait_event
from sitivmon.snmp import ber
from sitivmon.traps.config import TrapAuth, TrapConfig
from sitivmon.traps.events import Interpretation, TrapEvent, TrapKind, interpret_v1, interpret_v2
from sitivmon.traps.v3 import UsmProcessor

log = logging.getLogger(__name__)

EventCallback = Callable[[TrapEvent], None]
_DRAIN_PER_WAKEUP = 1024
_DECODE_BATCH = 256
_DECODE_BUDGET_S = 0.005
_V3_UNAUTHENTICATED_VARBINDS = 64
_VERSION_NAMES = {ber.VERSION_1: "v1", ber.VERSION_2C: "v2c", ber.VERSION_3: "v3"}


class RejectReason:
    UNKNOWN_SOURCE = "unknown_source"
    UNKNOWN_COMMUNITY = "unknown_community"
    UNKNOWN_USER = "unknown_user"
    DECODE_ERROR = "decode_error"
    RATE_LIMITED = "rate_limited"
    QUEUE_FULL = "queue_full"
    # from pysnmp's USM statistics (v3)
    AUTH_FAILED = "auth_failed"
    DECRYPTION_ERROR = "decryption_error"
    NOT_IN_TIME_WINDOW = "not_in_time_window"
    UNSUPPORTED_SECURITY_LEVEL = "unsupported_security_level"
    OTHER_SHARD = "other_shard"  # a configured target that another shard owns (docs/sharding.md)
    ALL = (
        OTHER_SHARD, UNKNOWN_SOURCE, UNKNOWN_COMMUNITY, UNKNOWN_USER, DECODE_ERROR, RATE_LIMITED, QUEUE_FULL,
        AUTH_FAILED, DECRYPTION_ERROR, NOT_IN_TIME_WINDOW, UNSUPPORTED_SECURITY_LEVEL,
    )  # fmt: skip


@dataclass(slots=True)
class TokenBucket:
    """Classic token bucket; pure (time is passed in) so it is testable without sleeping."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


CoalesceKey = tuple[str, int | None]


@dataclass(slots=True)
class Coalescer:
    """Per-source ordered latest-state store for link/restart traps that exceed the rate limit.

    Keys are (kind group, ifIndex): linkDown and linkUp of one interface share a key (the later wins),
    coldStart/warmStart share one per source. Re-inserting moves the key to the end so delivery
    order follows the latest event.
    """

    limit: int
    by_source: dict[str, dict[CoalesceKey, TrapEvent]] = field(default_factory=dict)
    size: int = 0

    @staticmethod
    def key(event: TrapEvent) -> CoalesceKey:
        return ("link", event.if_index) if event.kind.is_link else ("restart", None)

    def has(self, source: str) -> bool:
        return bool(self.by_source.get(source))

    def put(self, event: TrapEvent) -> tuple[bool, bool]:
        """Store; returns (stored, replaced an older event)."""
        d = self.by_source.setdefault(event.source_ip, {})
        k = self.key(event)
        replaced = d.pop(k, None) is not None
        if not replaced and self.size >= self.limit:
            return False, False
        d[k] = event
        if not replaced:
            self.size += 1
        return True, replaced

    def release(self, allow: Callable[[str], bool]) -> list[TrapEvent]:
        """Pop, per source in order, as many events as `allow(source)` permits."""
        out: list[TrapEvent] = []
        for source in list(self.by_source):
            d = self.by_source[source]
            while d and allow(source):
                k = next(iter(d))
                out.append(d.pop(k))
                self.size -= 1
            if not d:
                del self.by_source[source]
        return out


class TrapMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "sitivmon_traps_received_total",
            "Authenticated traps and informs received, by source address and kind",
            ["source", "type"],
            registry=registry,
        )
        self.rejected = Counter(
            "sitivmon_traps_rejected_total",
            "Traps refused or dropped, by reason",
            ["reason"],
            registry=registry,
        )
        self.coalesced = Counter(
            "sitivmon_traps_coalesced_total",
            "Link traps superseded by a later one for the same interface while a source was rate limited",
            registry=registry,
        )
        self.queue_depth = Gauge("sitivmon_traps_queue_depth", "Datagrams waiting for the decoder", registry=registry)
        self.rcvbuf = Gauge(
            "sitivmon_traps_receive_buffer_bytes",
            "Effective SO_RCVBUF of the trap socket as reported by the kernel",
            registry=registry,
        )
        for reason in RejectReason.ALL:
            self.rejected.labels(reason)


class TrapReceiver:
    """Receives SNMP notifications and calls `on_event` (synchronously, must not block) per accepted
    trap. Use as `async with TrapReceiver(...) as r:` or `await r.start()` + `await r.run()`."""

    def __init__(
        self,
        config: TrapConfig,
        auth: TrapAuth,
        on_event: EventCallback,
        *,
        registry: CollectorRegistry,
        target_hosts: Iterable[str] = (),
        other_shard_hosts: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._on_event = on_event
        self._clock = clock
        self.metrics = TrapMetrics(registry)
        self._communities = [(c.community.get_secret_value().encode(), c.name) for c in auth.communities]
        self._networks = list(config.allowed_sources)
        self._target_hosts = list(target_hosts)
        # Targets of the config that other shards own: their traps are counted (`other_shard`) and
        # dropped before decoding, whatever `allowed_sources` says (their shard takes them).
        self._other_hosts = list(other_shard_hosts)
        self._allowed_ips: set[str] = set()
        self._other_ips: set[str] = set()
        self._allowed_cache: dict[str, bool] = {}
        self._queue: collections.deque[tuple[bytes, Any, float]] = collections.deque()
        self._overflow = 0
        self._wake = asyncio.Event()
        self._sock: socket.socket | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._coalescer = Coalescer(config.max_pending_coalesced)
        self._received_children: dict[tuple[str, str], Any] = {}
        self._rejected_children: dict[str, Any] = {}
        self._learned: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.rcvbuf_effective = 0
        self.decoded = 0
        self._usm: UsmProcessor | None = None
        if auth.users:
            eid = bytes.fromhex(config.engine_id) if config.engine_id else None
            self._usm = UsmProcessor(auth.users, self._send, eid)

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        assert self._sock is not None, "receiver not started"
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def pending_coalesced(self) -> int:
        """Link states waiting for their source's rate limit (delivered as tokens return)."""
        return self._coalescer.size

    @property
    def engine_id(self) -> bytes | None:
        return self._usm.engine_id if self._usm else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for host in self._target_hosts:
            try:
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("trap receiver: cannot resolve target host %s: %s", host, exc)
                continue
            self._allowed_ips.update(str(info[4][0]) for info in infos)
        for host in self._other_hosts:
            try:
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("trap receiver: cannot resolve another shard's target host %s: %s", host, exc)
                continue
            self._other_ips.update(str(info[4][0]) for info in infos)
        self._other_ips -= self._allowed_ips  # a host with targets on this shard too stays ours
        infos = await loop.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.rcvbuf_effective = set_receive_buffer(sock, self.config.rcvbuf_bytes)
            sock.bind(sockaddr)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.metrics.rcvbuf.set(self.rcvbuf_effective)
        loop.add_reader(sock.fileno(), self._on_readable)
        log.info(
            "trap receiver listening on %s:%s (SO_RCVBUF requested %d, effective %d)",
            *self.address,
            self.config.rcvbuf_bytes,
            self.rcvbuf_effective,
        )

    async def run(self) -> None:
        """The decoder loop; returns only when cancelled (then closes the socket)."""
        try:
            while True:
                timeout = 0.05 if self._coalescer.size else None
                if not self._queue:
                    await wait_event(self._wake, timeout)
                self._wake.clear()
                self.process_pending(self._DECODE_BATCH, budget_s=_DECODE_BUDGET_S)
                if self._queue:
                    await asyncio.sleep(0)
        finally:
            self.close()

    _DECODE_BATCH = _DECODE_BATCH

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> TrapReceiver:
        await self.start()
        self._task = asyncio.create_task(self.run(), name="sitivmon-trap-decoder")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.close()

    # ----- hot path ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        q = self._queue
        qmax = self.config.queue_size
        now = self._clock()
        for _ in range(_DRAIN_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if len(q) >= qmax:
                self._overflow += 1
            else:
                q.append((data, addr, now))
        if q:
            self._wake.set()

    # ----- decoding ------------------------------------------------------------------------------

    def process_pending(self, limit: int, budget_s: float | None = None) -> None:
        """Decode up to `limit` queued datagrams (fewer once `budget_s` seconds have passed), then
        release coalesced events as tokens allow."""
        q = self._queue
        n = min(limit, len(q))
        deadline = time.perf_counter() + budget_s if budget_s is not None else None
        for _ in range(n):
            data, addr, at = q.popleft()
            self.handle_datagram(data, addr, at)
            if deadline is not None and time.perf_counter() >= deadline:
                break
        if self._overflow:
            self._reject(RejectReason.QUEUE_FULL, self._overflow)
            self._overflow = 0
        if self._coalescer.size:
            now = self._clock()
            for event in self._coalescer.release(lambda src: self._bucket(src).take(now)):
                self._emit(event)
        self.metrics.queue_depth.set(len(q))
        if self._usm is not None:
            self._usm.tick(time.time())

    def _reject(self, reason: str, n: int = 1) -> None:
        child = self._rejected_children.get(reason)
        if child is None:
            child = self._rejected_children[reason] = self.metrics.rejected.labels(reason)
        child.inc(n)

    def _bucket(self, source: str) -> TokenBucket:
        b = self._buckets.get(source)
        if b is None:
            b = self._buckets[source] = TokenBucket(self.config.rate_limit_per_source, self.config.rate_burst)
        return b

    def source_allowed(self, ip: str) -> bool:
        allowed = self._allowed_cache.get(ip)
        if allowed is None:
            if len(self._allowed_cache) > 65536:
                self._allowed_cache.clear()
            try:
                addr = ipaddress.ip_address(ip.split("%", 1)[0])
            except ValueError:
                allowed = False
            else:
                if addr.version == 6 and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                allowed = str(addr) in self._allowed_ips or any(addr in n for n in self._networks)
            self._allowed_cache[ip] = allowed
        return allowed

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:  # the sender retries an unacknowledged INFORM
            log.debug("trap receiver: cannot answer %s: %s", addr[0], exc)

    def handle_datagram(self, data: bytes, addr: Any, monotonic_at: float) -> None:
        ip = str(addr[0])
        if self._other_ips and ip.split("%", 1)[0].removeprefix("::ffff:") in self._other_ips:
            self._reject(RejectReason.OTHER_SHARD)
            return
        if not self.source_allowed(ip):
            self._reject(RejectReason.UNKNOWN_SOURCE)
            return
        received_at = time.time() - (self._clock() - monotonic_at)
        try:
            version, community = ber.message_header(data)
            if version == ber.VERSION_3:
                self._handle_v3(data, (ip, int(addr[1])), received_at)
                return
            if community is None:
                raise ber.BerError(f"unsupported SNMP version {version}")
            name = self._community_name(community)
            if name is None:  # before the PDU is decoded: a stranger's datagram costs a few bytes
                self._reject(RejectReason.UNKNOWN_COMMUNITY)
                return
            msg = ber.decode_message(data)
        except ber.BerError:
            self._reject(RejectReason.DECODE_ERROR)
            return
        if msg.pdu_type == ber.PDU_INFORM:
            self._send(ber.encode_inform_response(data, msg), (ip, int(addr[1])))
        interp = interpret_v1(msg) if msg.version == ber.VERSION_1 else interpret_v2(msg.varbinds)
        self._accept(ip, interp, received_at, _VERSION_NAMES[msg.version], name, msg.pdu_type == ber.PDU_INFORM)

    def _community_name(self, community: bytes) -> str | None:
        found = None
        for secret, name in self._communities:  # compare against all: timing does not leak which
            if hmac.compare_digest(secret, community) and found is None:
                found = name
        return found

    def _handle_v3(self, data: bytes, addr: tuple[str, int], received_at: float) -> None:
        """USM through pysnmp, behind cheap gates, because pysnmp decodes the whole message before it
        checks anything: the header (and a clear-text PDU) is walked with the decoder's bounds first;
        an empty user name is only an engine discovery probe; the message must carry the security
        level of its user's credential; and its digest is verified here (a few microseconds with the
        cached localised key) before pysnmp decodes it or an engine ID is learnt."""
        usm = self._usm
        header = ber.decode_v3_header(data)
        if usm is None:
            self._reject(RejectReason.UNKNOWN_USER)
            return
        user = header.user_name
        eid = header.engine_id
        if not user:
            # RFC 3414 4: discovery is noAuthNoPriv with an empty varbind list; anything else without a
            # user name would only make pysnmp decode a stranger's PDU.
            if header.flags & (ber.FLAG_AUTH | ber.FLAG_PRIV) or header.varbind_count != 0:
                self._reject(RejectReason.UNKNOWN_USER)
                return
        elif not usm.knows_user(user):
            self._reject(RejectReason.UNKNOWN_USER)
            return
        else:
            required = usm.required_flags(user)
            if header.flags & required != required:
                self._reject(RejectReason.UNSUPPORTED_SECURITY_LEVEL)
                return
            if not eid:  # sent before discovering our engine: pysnmp answers with a Report, no key applies
                if header.varbind_count:
                    self._reject(RejectReason.UNKNOWN_USER)
                    return
            elif required & ber.FLAG_AUTH:
                if not usm.authenticates(user, eid, header.auth_params, data):
                    self._reject(RejectReason.AUTH_FAILED)
                    return
                if not usm.has_engine(user, eid) and not self._learn_engine(usm, eid, user, addr[0]):
                    return
            elif not usm.has_engine(user, eid):
                self._reject(RejectReason.UNKNOWN_USER)
                return
            elif (header.varbind_count or 0) > _V3_UNAUTHENTICATED_VARBINDS:
                # A user without authentication proves nothing: anyone naming it would otherwise make
                # pysnmp decode hundreds of varbinds (~0.3 ms each) on the loop.
                self._reject(RejectReason.DECODE_ERROR)
                return
        notes, reason = usm.process(data, addr, user.decode(errors="replace"))
        if reason is not None:
            if reason != "unknown_engine_id":  # engine discovery by an INFORM sender is normal
                self._reject(reason)
            return
        for n in notes:
            self._accept(addr[0], interpret_v2(n.varbinds), received_at, "v3", n.user, n.inform)

    def _learn_engine(self, usm: UsmProcessor, eid: bytes, user: bytes, source: str) -> bool:
        """Register an authenticated sender's engine ID for `user`, within the per-source quota.
        False (and counted) when it may not be learnt."""
        learned = self._learned.get(source, 0)
        if (
            not self.config.learn_engine_ids
            or not 5 <= len(eid) <= 32
            or learned >= self.config.max_engine_ids_per_source
        ):
            self._reject(RejectReason.UNKNOWN_USER)
            return False
        usm.learn_engine(user, eid)
        self._learned[source] = learned + 1
        log.info("trap receiver: learnt SNMPv3 engine id %s from %s", eid.hex(), source)
        return True

    def _accept(
        self, ip: str, interp: Interpretation, received_at: float, version: str, name: str, inform: bool
    ) -> None:
        self.decoded += 1
        key = (ip, interp.kind.value)
        child = self._received_children.get(key)
        if child is None:
            child = self._received_children[key] = self.metrics.received.labels(ip, interp.kind.value)
        child.inc()
        event = TrapEvent(
            source_ip=ip,
            kind=interp.kind,
            if_index=interp.if_index,
            admin_status=interp.admin_status,
            oper_status=interp.oper_status,
            received_at=received_at,
            version=version,
            user_or_community_name=name,
            trap_oid=interp.trap_oid,
            inform=inform,
        )
        coalescer = self._coalescer
        if not coalescer.has(ip) and self._bucket(ip).take(self._clock()):
            self._emit(event)
            return
        if interp.kind is TrapKind.OTHER:
            self._reject(RejectReason.RATE_LIMITED)
            return
        stored, replaced = coalescer.put(event)
        if not stored:
            self._reject(RejectReason.RATE_LIMITED)
        elif replaced:
            self.metrics.coalesced.inc()

    def _emit(self, event: TrapEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("trap event handler failed for a %s trap from %s", event.kind, event.source_ip)


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for `size` bytes of receive buffer; with CAP_NET_ADMIN, SO_RCVBUFFORCE passes the
    net.core.rmem_max cap. Returns the effective size the kernel reports (Linux doubles it)."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    done = False
    if force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            done = True
        except OSError:
            done = False
    if not done:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    effective = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if effective < size:
        log.warning(
            "trap socket receive buffer is %d bytes, less than the %d requested: raise net.core.rmem_max",
            effective,
            size,
        )
    return effective
