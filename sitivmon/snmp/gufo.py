"""gufo-snmp behind `SnmpClient`.

gufo-snmp's public iterators yield one varbind per `await`; at hundreds of thousands of varbinds per
second that per-item coroutine is most of the cost. The walk here drives the library's socket one
*response* at a time (`send_get_bulk`/`recv_get_bulk`) and absorbs the whole batch in one call, while
session set-up (v3 engine discovery and key localisation) stays in gufo's `SnmpSession`. GETs are
sent and received the same way, so that every request has one deadline and its datagram is peeked at
(size, error-status: `sitivmon.snmp.status`) before gufo decodes it. This uses the session's `_sock`,
`_fd` and `_send`: pinned to gufo-snmp 0.13 in pyproject, covered by the tests.

What gufo-snmp 0.13 does not do, done here: a genErr/tooBig response fails the request (gufo reads it
as empty); an answer over its 4,080-byte receive buffer makes the walk ask for fewer repetitions; a
Rust decoder panic (a BaseException) is a `decode` failure; stale datagrams do not extend a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from gufo.snmp import (
    Aes128Key,
    Aes192Key,
    Aes256Key,
    DesKey,
    Md5Key,
    NoSuchInstance,
    Sha1Key,
    Sha224Key,
    Sha256Key,
    Sha384Key,
    Sha512Key,
    SnmpAuthError,
    SnmpDecodeError,
    SnmpError,
    SnmpVersion,
    User,
)
from gufo.snmp._fast import GetIter
from gufo.snmp.aio.client import SnmpSession

from sitivmon.config.model import AuthProtocol, Credential, PollSettings, PrivProtocol, Target
from sitivmon.snmp.client import PollError, PollErrorReason, SnmpClient, Value, WalkResult, is_native_panic
from sitivmon.snmp.status import NO_SUCH_NAME, TOO_BIG, response_status, status_name
from sitivmon.snmp.v1get import get_v1
from sitivmon.snmp.walkguard import absorb_batch

T = TypeVar("T")
Batch = list[tuple[str, Value] | None]

log = logging.getLogger("sitivmon.snmp")

# gufo-snmp 0.13 receives into a fixed 4,080-byte buffer (src/buf/buffer.rs MAX_SIZE; its `recv_buffer`
# option is the socket's SO_RCVBUF, not this): a longer datagram is cut and fails to decode.
LIBRARY_MAX_DATAGRAM = 4080
_PEEK_BYTES = 512  # enough for the header up to error-status, v3 USM parameters included
_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_TRUNC  # MSG_TRUNC: the datagram's real size (Linux)

V3_REFRESH_AFTER_S = 100.0  # well inside the 150 s time window of RFC 3414

_AUTH_KEYS = {
    AuthProtocol.MD5: Md5Key,
    AuthProtocol.SHA: Sha1Key,
    AuthProtocol.SHA224: Sha224Key,
    AuthProtocol.SHA256: Sha256Key,
    AuthProtocol.SHA384: Sha384Key,
    AuthProtocol.SHA512: Sha512Key,
}
_PRIV_KEYS = {
    PrivProtocol.DES: DesKey,
    PrivProtocol.AES: Aes128Key,
    PrivProtocol.AES128: Aes128Key,
    PrivProtocol.AES192: Aes192Key,
    PrivProtocol.AES256: Aes256Key,
}


def _user(cred: Credential) -> User:
    auth_key = None
    priv_key = None
    if cred.auth_protocol is not None and cred.auth_password is not None:
        auth_key = _AUTH_KEYS[cred.auth_protocol](cred.auth_password.get_secret_value().encode())
    if cred.priv_protocol is not None and cred.priv_password is not None:
        priv_key = _PRIV_KEYS[cred.priv_protocol](cred.priv_password.get_secret_value().encode())
    return User(name=cred.username or "", auth_key=auth_key, priv_key=priv_key)


def _session(host: str, port: int, cred: Credential, timeout: float, max_repetitions: int) -> SnmpSession:
    if cred.version == "3":
        return SnmpSession(
            addr=host, port=port, user=_user(cred), version=SnmpVersion.v3,
            timeout=timeout, max_repetitions=max_repetitions,
        )
    version = SnmpVersion.v1 if cred.version == "1" else SnmpVersion.v2c
    community = cred.community.get_secret_value() if cred.community else ""
    return SnmpSession(
        addr=host, port=port, community=community, version=version,
        timeout=timeout, max_repetitions=max_repetitions,
    )


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Shrink(PollError):
    """A GETBULK answer the library cannot take whole (over its buffer, or tooBig): ask again with
    fewer repetitions; at one repetition it is the poll's error as it stands."""


def _classify(exc: BaseException) -> PollError:
    """Map the library's exceptions onto the fixed reasons; details never include credentials."""
    if isinstance(exc, PollError):
        return exc
    if is_native_panic(exc):
        return PollError(PollErrorReason.DECODE, "malformed response (the decoder panicked)")
    if isinstance(exc, TimeoutError):
        return PollError(PollErrorReason.TIMEOUT, "no response from agent")
    if isinstance(exc, SnmpAuthError):
        return PollError(PollErrorReason.AUTH, "authentication or privacy failed")
    if isinstance(exc, SnmpDecodeError):
        return PollError(PollErrorReason.DECODE, "malformed response")
    if isinstance(exc, NoSuchInstance):
        return PollError(PollErrorReason.NO_SUCH_OBJECT, "no such object")
    if isinstance(exc, SnmpError):
        return PollError(PollErrorReason.OTHER, f"snmp error: {type(exc).__name__}")
    if isinstance(exc, OSError):
        return PollError(PollErrorReason.UNREACHABLE, exc.strerror or type(exc).__name__)
    return PollError(PollErrorReason.OTHER, type(exc).__name__)


class GufoClient:
    """One agent, one UDP socket; requests on it are sequential (the engine never overlaps them).

    Requests are sent and received here, on gufo's socket, rather than through `SnmpSession`: its
    `_recv` restarts the timeout on every datagram that is not the answer (a stale answer every 0.2 s
    held a GET until the poll's deadline), and it cannot tell an error-status or an oversized answer
    from an empty one. Each attempt here has one deadline, `timeout` after the send, and each datagram
    is peeked at (size and error-status) before gufo decodes it.
    """

    def __init__(
        self, host: str, port: int, cred: Credential, *, timeout: float, retries: int, max_repetitions: int
    ) -> None:
        self._session = _session(host, port, cred, timeout, max_repetitions)
        self._where = f"{host}:{port}"
        self._timeout = timeout
        self._retries = retries
        self._max_repetitions = max_repetitions  # lowered for good when the agent's answers do not fit
        self._bulk = cred.version != "1"
        self._v1 = cred.version == "1"
        self._v1_missing: set[str] = set()  # OIDs the v1 agent lacked at the last GET
        self._v3 = cred.version == "3"
        self._ready = False
        self._last_io = 0.0
        self._peek_sock: socket.socket | None = None
        self._head = bytearray(_PEEK_BYTES)
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0  # of the GETBULK awaited now (loop time): see `_walk_bulk`
        self._alarm: asyncio.TimerHandle | None = None

    async def _ensure_ready(self) -> None:
        """Discover the v3 engine once, and learn its clock again after a silence.

        gufo re-sends the engine time of the last response unchanged; an agent rejects a request more
        than 150 s outside its time window (RFC 3414 §3.2), so a target polled every 5 minutes would
        fail every poll without this refresh.
        """
        stale = self._v3 and time.monotonic() - self._last_io > V3_REFRESH_AFTER_S
        if not self._ready or stale:
            await self._retry(self._refresh)
            self._ready = True
            self._last_io = time.monotonic()

    async def _refresh(self) -> None:
        # gufo's own exchange (engine discovery, then the clock: two round trips at most), bounded
        # whole so that stale datagrams cannot hold it past its timeout.
        async with asyncio.timeout(2 * self._timeout):
            await self._session.refresh()

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except TimeoutError as exc:
                attempt += 1
                if attempt > self._retries:
                    raise _classify(exc) from None
            except PollError:
                raise
            except Exception as exc:
                raise _classify(exc) from None
            except BaseException as exc:
                if not is_native_panic(exc):
                    raise  # cancellation, exit
                raise _classify(exc) from None

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_alarm(self) -> None:
        """The walk's one timer: fails the awaited response once its request's deadline has passed,
        or sleeps again until it (the deadline moves on with every request; see `_walk_bulk`)."""
        loop = asyncio.get_running_loop()
        self._alarm = None
        if loop.time() < self._deadline:
            self._alarm = loop.call_at(self._deadline, self._on_alarm)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The socket's reader, registered once for a whole walk (two epoll_ctl calls, not two per
        response)."""
        fd = self._session._fd
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, self._on_readable)
        try:
            yield
        finally:
            loop.remove_reader(fd)
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None

    def _peek(self) -> int:
        """Size of the datagram gufo will read next, read without taking it; its first bytes stay in
        `_head` for `_status` (parsed only when an answer is empty: the hot path does not pay for it)."""
        sock = self._peek_sock
        if sock is None:
            sock = self._peek_sock = socket.socket(fileno=os.dup(self._session._fd))
        try:
            return sock.recv_into(self._head, _PEEK_BYTES, _PEEK_FLAGS)
        except ConnectionRefusedError:
            raise TimeoutError from None  # as gufo maps it: ICMP port unreachable, tried again

    def _status(self, size: int) -> int | None:
        """error-status of the datagram peeked last.

        It is that of the first queued datagram: when a stale answer precedes the awaited one, gufo
        skips it and the status read may be the stale one's. It is therefore used only when the decoded
        answer is itself empty (an error response carries no values), never to fail one that has them.
        """
        return response_status(bytes(self._head[: min(size, _PEEK_BYTES)]), size)

    async def _attempt(self, send: Callable[[], None], recv: Callable[[], T]) -> tuple[T, int]:
        """One request, sent once, answered within `timeout` of the send whatever else arrives (the
        reader must be registered: `_reading`). Returns gufo's decoding and the datagram's size."""
        loop = asyncio.get_running_loop()
        try:
            send()
        except BlockingIOError:
            await self._session._send(send)
        deadline = loop.time() + self._timeout
        while True:
            waiter = self._waiter = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            try:
                size = self._peek()
                return recv(), size
            except BlockingIOError:
                continue  # nothing, or not the awaited response (a late one): same deadline
            except SnmpDecodeError as exc:
                raise _undecodable(exc, size) from None
            except BaseException as exc:
                if not is_native_panic(exc):
                    raise
                raise _undecodable(exc, size) from None

    async def get_many(self, oids: Sequence[str]) -> dict[str, Value]:
        """Values of the OIDs the agent has; an absent one is left out (never fails the others)."""
        await self._ensure_ready()
        if self._v1:
            values, missing, _ = await get_v1(self._get_group, oids, self._v1_missing)
            self._v1_missing = missing
        else:
            values = await self._get_group(list(oids))
        self._last_io = time.monotonic()
        return values

    async def _get_group(self, oids: list[str]) -> dict[str, Value]:
        sock = self._session._sock

        async def get() -> dict[str, Value]:
            values, size = await self._attempt(lambda: sock.send_get_many(oids), sock.recv_get_many)
            if len(values) < len(oids):
                _check_status(self._status(size))
            return values

        with self._reading():
            return await self._retry(get)

    async def walk(self, column_oid: str, max_varbinds: int) -> WalkResult:
        await self._ensure_ready()
        if self._bulk:
            return await self._walk_bulk(column_oid, max_varbinds)
        result = WalkResult()
        sock = self._session._sock
        ctx = GetIter(column_oid)

        def recv() -> Batch:
            try:
                return [sock.recv_get_next(ctx)]
            except (StopIteration, StopAsyncIteration, NoSuchInstance):
                return [None]

        async def getnext() -> Batch:
            batch, size = await self._attempt(lambda: sock.send_get_next(ctx), recv)
            if batch[0] is None:
                _check_status(self._status(size))  # noSuchName is v1's end of the MIB; anything else fails
            return batch

        last: tuple[int, ...] | None = None
        done = False
        with self._reading():
            while not done:
                batch = await self._retry(getnext)
                result.requests += 1
                last, done = absorb_batch(column_oid, batch, result, last, max_varbinds)
        self._last_io = time.monotonic()
        return result

    async def _walk_bulk(self, column_oid: str, max_varbinds: int) -> WalkResult:
        """GETBULK walk with the socket's reader registered once per column and one future per response.

        gufo's `_recv` costs add_reader + remove_reader (two epoll_ctl calls) and `asyncio.wait_for`
        (a second future and a timer) per response, plus closures and coroutines: most of the walk's
        CPU at 25 varbinds per response. So `_attempt` and `_retry` are inlined here: same retries,
        deadline, peek and errors. Nor is a timer set and cancelled per response (a TimerHandle, a heap
        push and a cancel, ~2 µs of a ~45 µs request): each request moves `_deadline`, and one timer
        (`_on_alarm`) per walk wakes at the deadline it was set for, sleeps again until the current
        one, or fails the awaited response; `_reading` cancels it when the column is done.

        An answer the library cannot take whole (over its 4,080-byte buffer, or tooBig from the agent)
        restarts the column with half the repetitions, down to one, as managers do; the lower figure is
        kept for this agent's later polls (logged once per change). A single varbind over the buffer
        still fails, as `decode`.
        """
        session = self._session
        sock = session._sock
        timeout = self._timeout
        peek = self._peek
        loop = asyncio.get_running_loop()
        reps = self._max_repetitions
        requests = 0
        why = ""
        size = 0
        with self._reading():
            while True:  # the column, from its start, at `reps` repetitions
                ctx = GetIter(column_oid, reps)
                result = WalkResult(requests=requests)
                last: tuple[int, ...] | None = None
                try:
                    while True:
                        attempt = 0
                        while True:  # one request, sent again on timeout
                            try:
                                try:
                                    sock.send_get_bulk(ctx)
                                except BlockingIOError:
                                    await session._send(functools.partial(sock.send_get_bulk, ctx))
                                self._deadline = loop.time() + timeout
                                while True:
                                    waiter = self._waiter = loop.create_future()
                                    if self._alarm is None:
                                        self._alarm = loop.call_at(self._deadline, self._on_alarm)
                                    try:
                                        await waiter
                                    finally:
                                        self._waiter = None
                                    try:
                                        size = peek()
                                        batch = sock.recv_get_bulk(ctx)
                                        break
                                    except BlockingIOError:
                                        continue  # nothing, or not the awaited response (a late one)
                                    except StopAsyncIteration:
                                        _check_status(self._status(size))
                                        batch = []  # only endOfMibView/noSuch*: the agent's view ends here
                                        break
                                break
                            except TimeoutError as exc:
                                attempt += 1
                                if attempt > self._retries:
                                    raise _classify(exc) from None
                            except PollError:
                                raise
                            except SnmpDecodeError as exc:
                                raise _undecodable(exc, size) from None
                            except Exception as exc:
                                raise _classify(exc) from None
                            except BaseException as exc:
                                if not is_native_panic(exc):
                                    raise  # cancellation, exit
                                raise _undecodable(exc, size) from None
                        if not batch:
                            break
                        result.requests += 1
                        last, done = absorb_batch(column_oid, batch, result, last, max_varbinds)
                        if done:
                            break
                    break
                except _Shrink as exc:
                    if reps == 1:
                        raise PollError(exc.reason, exc.detail) from None
                    requests = result.requests + 1
                    why = exc.detail
                    reps = max(1, reps // 2)
        if reps < self._max_repetitions:
            log.warning(
                "agent %s: GETBULK answers did not fit (%s): max-repetitions lowered from %d to %d",
                self._where, why, self._max_repetitions, reps,
            )  # fmt: skip
            self._max_repetitions = reps
        self._last_io = time.monotonic()
        return result

    async def close(self) -> None:
        """gufo's socket is closed when the session is collected; our duplicate of it, now."""
        self._ready = False
        if self._peek_sock is not None:
            self._peek_sock.close()
            self._peek_sock = None


def _undecodable(exc: BaseException, size: int) -> PollError:
    """A datagram gufo could not decode (an error or a native panic): too large for its buffer (then
    ask for less), or broken."""
    if size > LIBRARY_MAX_DATAGRAM:
        return _too_large(size)
    return _classify(exc)


def _too_large(size: int) -> _Shrink:
    return _Shrink(
        PollErrorReason.DECODE,
        f"response of {size} bytes, over the {LIBRARY_MAX_DATAGRAM} bytes the SNMP library can read",
    )


def _check_status(status: int | None) -> None:
    """Fail an empty answer that carried an error-status: genErr or tooBig is not an empty MIB.
    noSuchName is left to the caller's reading of an absent object (SNMPv1: split GET, end of walk)."""
    if status is None or status in (0, NO_SUCH_NAME):
        return
    detail = f"agent answered error-status {status_name(status)}"
    if status == TOO_BIG:
        raise _Shrink(PollErrorReason.OTHER, detail)
    raise PollError(PollErrorReason.OTHER, detail)


def gufo_factory(target: Target, cred: Credential, settings: PollSettings) -> SnmpClient:
    """The production `ClientFactory`: one gufo session per target."""
    return GufoClient(
        target.host, target.port, cred, timeout=settings.timeout, retries=settings.retries,
        max_repetitions=settings.max_repetitions,
    )
