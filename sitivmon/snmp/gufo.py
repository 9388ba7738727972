"""gufo-snmp behind `SnmpClient`.

gufo-snmp's public iterators yield one varbind per `await`; at hundreds of thousands of varbinds per
second that per-item coroutine is most of the cost. The walk here drives the library's socket one
*response* at a time (`send_get_bulk`/`recv_get_bulk`) and absorbs the whole batch in one call, while
session set-up (v3 engine discovery and key localisation) stays in gufo's `SnmpSession`. This uses the
session's `_sock`, `_send` and `_recv`: pinned to gufo-snmp 0.13 in pyproject, covered by the tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
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

from sitivmon.config.model import AuthProtocol, Credential, PrivProtocol
from sitivmon.snmp.client import PollError, PollErrorReason, Value, WalkResult
from sitivmon.snmp.v1get import get_v1
from sitivmon.snmp.walkguard import absorb_batch

T = TypeVar("T")

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


def _classify(exc: BaseException) -> PollError:
    """Map the library's exceptions onto the fixed reasons; details never include credentials."""
    if isinstance(exc, PollError):
        return exc
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
    """One agent, one UDP socket; requests on it are sequential (the engine never overlaps them)."""

    def __init__(
        self, host: str, port: int, cred: Credential, *, timeout: float, retries: int, max_repetitions: int
    ) -> None:
        self._session = _session(host, port, cred, timeout, max_repetitions)
        self._retries = retries
        self._max_repetitions = max_repetitions
        self._bulk = cred.version != "1"
        self._v1 = cred.version == "1"
        self._v1_missing: set[str] = set()  # OIDs the v1 agent lacked at the last GET
        self._v3 = cred.version == "3"
        self._ready = False
        self._last_io = 0.0

    async def _ensure_ready(self) -> None:
        """Discover the v3 engine once, and learn its clock again after a silence.

        gufo re-sends the engine time of the last response unchanged; an agent rejects a request more
        than 150 s outside its time window (RFC 3414 §3.2), so a target polled every 5 minutes would
        fail every poll without this refresh.
        """
        stale = self._v3 and time.monotonic() - self._last_io > V3_REFRESH_AFTER_S
        if not self._ready or stale:
            await self._retry(self._session.refresh)
            self._ready = True
            self._last_io = time.monotonic()

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
        return await self._retry(lambda: self._session.get_many(oids))

    async def walk(self, column_oid: str, max_varbinds: int) -> WalkResult:
        await self._ensure_ready()
        if self._bulk:
            return await self._walk_bulk(column_oid, max_varbinds)
        result = WalkResult()
        session = self._session
        sock = session._sock
        ctx = GetIter(column_oid)
        last: tuple[int, ...] | None = None
        done = False
        while not done:

            async def getnext() -> list[tuple[str, Value] | None]:
                await session._send(lambda: sock.send_get_next(ctx))
                try:
                    return [await session._recv(lambda: sock.recv_get_next(ctx))]
                except (StopIteration, StopAsyncIteration, NoSuchInstance):
                    return [None]

            batch = await self._retry(getnext)
            result.requests += 1
            last, done = absorb_batch(column_oid, batch, result, last, max_varbinds)
        self._last_io = time.monotonic()
        return result

    async def _walk_bulk(self, column_oid: str, max_varbinds: int) -> WalkResult:
        """GETBULK walk with the socket's reader registered once per column and one future per response.

        gufo's `_recv` costs add_reader + remove_reader (two epoll_ctl calls) and `asyncio.wait_for`
        (a second future and a timer) per response, plus our closures and `_retry` coroutine: most of
        the walk's CPU at 25 varbinds per response. Same retries, timeout and errors as `_retry`.
        """
        session = self._session
        sock = session._sock
        fd = session._fd
        timeout = session._timeout
        loop = asyncio.get_running_loop()
        ctx = GetIter(column_oid, self._max_repetitions)
        result = WalkResult()
        waiter: asyncio.Future[None] | None = None

        def on_readable() -> None:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        last: tuple[int, ...] | None = None
        loop.add_reader(fd, on_readable)
        try:
            while True:
                attempt = 0
                while True:  # one request, sent again on timeout
                    try:
                        try:
                            sock.send_get_bulk(ctx)
                        except BlockingIOError:
                            await session._send(lambda: sock.send_get_bulk(ctx))
                        deadline = loop.time() + timeout
                        while True:
                            waiter = loop.create_future()
                            timer = loop.call_at(deadline, _expire, waiter)
                            try:
                                await waiter
                            finally:
                                timer.cancel()
                                waiter = None
                            try:
                                batch = sock.recv_get_bulk(ctx)
                                break
                            except BlockingIOError:
                                continue  # not the awaited response (a late one): keep waiting
                            except StopAsyncIteration:
                                batch = []  # only endOfMibView/noSuch*: the agent's view ends here
                                break
                        break
                    except TimeoutError as exc:
                        attempt += 1
                        if attempt > self._retries:
                            raise _classify(exc) from None
                    except PollError:
                        raise
                    except Exception as exc:
                        raise _classify(exc) from None
                if not batch:
                    break
                result.requests += 1
                last, done = absorb_batch(column_oid, batch, result, last, max_varbinds)
                if done:
                    break
        finally:
            loop.remove_reader(fd)
        self._last_io = time.monotonic()
        return result

    async def close(self) -> None:
        """Sockets are closed when the session is collected; nothing to flush."""
        self._ready = False
