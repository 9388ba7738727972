"""gufo-snmp behind `SnmpClient`.

gufo-snmp's public iterators yield one varbind per `await`; at hundreds of thousands of varbinds per
second that per-item coroutine is most of the cost. The walk here drives the library's socket one
*response* at a time (`send_get_bulk`/`recv_get_bulk`), from the socket's reader callback (`_BulkWalk`:
no future or task wake-up per response), and absorbs the whole batch in one call, while session set-up
(v3 engine discovery and key localisation) stays in gufo's `SnmpSession`. GETs are sent and received
the same way, so that every request has one deadline and its datagram is peeked at (size,
error-status: `sitivmon.snmp.status`) before gufo decodes it. This uses the session's `_sock`, `_fd`
and `_send`: pinned to gufo-snmp 0.13 in pyproject, covered by the tests.

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
        self._careful: set[str] = set()  # columns whose answers are peeked at first (`_BulkWalk.careful`)
        self._waiter: asyncio.Future[None] | None = None

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
        """GETBULK walk of one column, driven from the socket's reader callback (`_BulkWalk`).

        The coroutine sends nothing and reads nothing per response: it registers the reader once
        per column, starts the exchange and awaits one future, resolved when the column is done or
        failed (or, rarely, when a send would block: gufo's `_send` then waits for the socket here
        and the exchange goes on). This drops, per response, a future, a task wake-up and the
        resumption of the poll's chain of four coroutines: ~7k of the ~237k instructions of a
        25-varbind request (gufo's decoding is half of them, `absorb_batch` ~40 %), and more of its
        CPU time than that (bench/README.md, issue 15 afternoon).

        An answer the library cannot take whole (over its 4,080-byte buffer, or tooBig from the agent)
        restarts the column with half the repetitions, down to one, as managers do; the lower figure is
        kept for this agent's later polls (logged once per change). A single varbind over the buffer
        still fails, as `decode`.
        """
        session = self._session
        loop = asyncio.get_running_loop()
        walk = _BulkWalk(self, column_oid, max_varbinds, loop)
        fd = session._fd
        loop.add_reader(fd, walk.on_readable)
        try:
            walk.request()
            while True:
                outcome = await walk.future
                if outcome is not None:
                    break
                # A send would have blocked (the socket's buffer is full): gufo's `_send` waits for it
                # to drain. Meanwhile the callbacks idle (their future is done): no timeout, no read.
                try:
                    await session._send(functools.partial(session._sock.send_get_bulk, walk.ctx))
                except BaseException as exc:
                    if not isinstance(exc, Exception) and not is_native_panic(exc):
                        raise  # cancellation, exit
                    walk.future = loop.create_future()
                    walk.recover(exc)
                else:
                    walk.future = loop.create_future()
                    walk.sent()
        finally:
            walk.close()
            loop.remove_reader(fd)
        if walk.reps < self._max_repetitions:
            log.warning(
                "agent %s: GETBULK answers did not fit (%s): max-repetitions lowered from %d to %d",
                self._where, walk.why, self._max_repetitions, walk.reps,
            )  # fmt: skip
            self._max_repetitions = walk.reps
        self._last_io = time.monotonic()
        return outcome

    async def close(self) -> None:
        """gufo's socket is closed when the session is collected; our duplicate of it, now."""
        self._ready = False
        if self._peek_sock is not None:
            self._peek_sock.close()
            self._peek_sock = None


class _BulkWalk:
    """One column's GETBULK exchange, run by the socket's reader callback and one timer.

    Per response, `on_readable` lets gufo decode the datagram, absorbs the batch and sends the next
    request; `future` is resolved once, with the column's `WalkResult` or its failure (None: a send
    would block, see `GufoClient._walk_bulk`). The datagram's size and error-status (a peek: a
    system call per answer, ~1 % of the daemon at 500 links per agent) are needed only to read an
    answer gufo did not return values for: the first such answer is asked for again, and from then
    on every answer of that column, at this poll and the later ones, is peeked at before gufo takes
    it (`careful`), as `_attempt` does. So an agent is asked once more per column at most, once: an
    agent whose view ends with a column walked (its answer there has no values) pays that request
    once, not at every poll. The rules are those of `GufoClient._attempt`/`_retry` for one request,
    unchanged:

    * each request has one deadline, `timeout` after its send; a datagram that is not the awaited
      answer (gufo raises BlockingIOError: a late or stale one) is skipped and does not extend it;
    * on a timeout the request is sent again, `retries` times, then the column fails as `timeout`;
    * an answer over the library's buffer, or tooBig, restarts the column at half the repetitions
      (`reps`, `why`: the caller keeps the lower figure); at one repetition it fails as it stands;
    * an empty answer with an error-status fails (genErr...); decode errors and native panics fail
      as `decode`; other exceptions as `_classify` maps them, or as they are (a bug in the guards).

    Nothing raised here reaches the loop: every exception ends in `future`. Once `future` is done
    (finished, failed, or cancelled by the awaiting coroutine's cancellation) the callbacks do
    nothing, and `close` cancels the timer (the caller removes the reader).

    The timer is not set and cancelled per request (a TimerHandle, a heap push and a cancel, ~2 µs
    of a ~45 µs request): each send moves `deadline`, and the one timer wakes at the deadline it was
    set for, sleeps again until the current one, or times the request out.
    """

    __slots__ = (
        "alarm", "attempt", "careful", "client", "column", "ctx", "deadline", "future", "last", "loop",
        "max_varbinds", "peek", "reps", "result", "retries", "size", "sock", "timeout", "why",
    )  # fmt: skip

    def __init__(
        self, client: GufoClient, column_oid: str, max_varbinds: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.client = client
        self.sock = client._session._sock
        self.peek = client._peek
        self.loop = loop
        self.column = column_oid
        self.max_varbinds = max_varbinds
        self.timeout = client._timeout
        self.retries = client._retries
        self.reps = client._max_repetitions
        self.why = ""
        self.future: asyncio.Future[WalkResult | None] = loop.create_future()
        self.alarm: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.attempt = 0
        self.size = 0  # of the datagram peeked last (a decoding failure of a larger one asks for less)
        self.careful = column_oid in client._careful  # peek at each answer first (`_ask_carefully`)
        self._restart(0)

    def _restart(self, requests: int) -> None:
        """The column from its start, at `reps` repetitions."""
        self.ctx = GetIter(self.column, self.reps)
        self.result = WalkResult(requests=requests)
        self.last: tuple[int, ...] | None = None
        self.attempt = 0

    def request(self) -> None:
        """Send the current request (again): its deadline starts now. A failure to send is handled as
        any failure of the request (`recover`)."""
        while True:
            try:
                self.sock.send_get_bulk(self.ctx)
            except BlockingIOError:
                self.future.set_result(None)  # the coroutine sends it when the socket drains
                return
            except BaseException as exc:
                failure = self._verdict(exc)
                if failure is not None:
                    self._fail(failure)
                    return
                continue  # again (a timeout with retries left), or the column's restart
            self.sent()
            return

    def sent(self) -> None:
        self.deadline = self.loop.time() + self.timeout
        if self.alarm is None:
            self.alarm = self.loop.call_at(self.deadline, self._on_alarm)

    def recover(self, exc: BaseException) -> None:
        """A failure of the request: send it again or restart the column, or fail the walk."""
        failure = self._verdict(exc)
        if failure is None:
            self.request()
        else:
            self._fail(failure)

    def _verdict(self, exc: BaseException) -> BaseException | None:
        """What a request's exception means: None to send again (a timeout with retries left, or an
        answer too large: the column restarted at fewer repetitions), else the walk's failure. In the
        order of `GufoClient._retry`'s handlers."""
        failure: BaseException
        if isinstance(exc, TimeoutError):
            self.attempt += 1
            if self.attempt <= self.retries:
                return None
            failure = _classify(exc)
        elif isinstance(exc, PollError):
            failure = exc
        elif isinstance(exc, SnmpDecodeError):
            failure = _undecodable(exc, self.size)
        elif isinstance(exc, Exception):
            failure = _classify(exc)
        elif is_native_panic(exc):
            failure = _undecodable(exc, self.size)
        else:
            return exc  # cancellation, exit: as they are
        if isinstance(failure, _Shrink):
            if self.reps == 1:
                return PollError(failure.reason, failure.detail)
            self.why = failure.detail
            self.reps = max(1, self.reps // 2)
            self._restart(self.result.requests + 1)
            return None
        return failure

    def on_readable(self) -> None:
        """The reader: one datagram, taken if it is the awaited answer, then the next request."""
        future = self.future
        if future.done():
            return  # finished, failed or cancelled; or a send is blocked (the coroutine has it)
        careful = self.careful
        try:
            if careful:
                self.size = self.peek()
            batch = self.sock.recv_get_bulk(self.ctx)
        except BlockingIOError:
            return  # nothing, or not the awaited response (a late one): same deadline
        except StopAsyncIteration:
            if not careful:
                self._ask_carefully()
                return
            try:
                _check_status(self.client._status(self.size))
            except BaseException as exc:
                self.recover(exc)
                return
            future.set_result(self.result)  # only endOfMibView/noSuch*: the agent's view ends here
            return
        except BaseException as exc:
            if not careful and (isinstance(exc, Exception) or is_native_panic(exc)):
                self._ask_carefully()
            else:
                self.recover(exc)  # cancellation, exit: as they are (`_verdict`)
            return
        if not batch:
            future.set_result(self.result)
            return
        result = self.result
        result.requests += 1
        try:
            self.last, done = absorb_batch(self.column, batch, result, self.last, self.max_varbinds)
        except BaseException as exc:
            self._fail(exc)  # a bug in the guards: the walk's failure, as it was
            return
        if done:
            future.set_result(result)
            return
        self.attempt = 0
        self.request()

    def _ask_carefully(self) -> None:
        """gufo took an answer without returning values (an empty or error answer, one it could not
        decode or that was over its buffer, a refused port): what it was is gone with it. Send the
        request again (a new deadline) and peek at every answer from now on, so that this one is read
        as `_attempt` reads it: size, error-status, then the verdict. The column's later walks on
        this agent peek from their start."""
        self.careful = True
        self.client._careful.add(self.column)
        self.request()

    def _on_alarm(self) -> None:
        self.alarm = None
        if self.future.done():
            return  # `sent` sets it again after a blocked send
        if self.loop.time() < self.deadline:
            self.alarm = self.loop.call_at(self.deadline, self._on_alarm)
            return
        self.recover(TimeoutError())

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, StopIteration):  # a future refuses it; in a coroutine it was this (PEP 479)
            exc = RuntimeError("StopIteration raised during the walk")
        self.future.set_exception(exc)

    def close(self) -> None:
        """No callback acts after this (the caller removes the reader): the timer is cancelled, and
        a future still pending (the coroutine was cancelled while a send was blocked) is cancelled."""
        if self.alarm is not None:
            self.alarm.cancel()
            self.alarm = None
        self.future.cancel()  # a no-op once done


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
