"""The gufo adapter against the raw-UDP hostile agent, request by request: what each fault becomes.

The daemon-level suite (tests/hostile/test_misbehaving_agents.py) counts reasons per target; here the
adapter is driven directly, so the failure's reason, its timing and the retries can be asserted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from sitivmon.config.model import Credential
from sitivmon.snmp.client import PollError, PollErrorReason
from sitivmon.snmp.gufo import GufoClient
from tests.support import agents, hostile_agent
from tests.support.hostile_agent import COMMUNITY, WIDE_ROWS
from tests.support.procs import ManagedProcess

IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
MODES = ["polite", "cut_length", "gen_err", "too_big", "wide_rows", "huge_value", "stale_drip", "v1_nosuchname"]


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    work = tmp_path_factory.mktemp("gufo-hostile")
    ports_file = work / "ports.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(agents.REPO), os.environ.get("PYTHONPATH", "")]))
    proc = ManagedProcess([sys.executable, "-m", "tests.support.hostile_agent", str(ports_file), *MODES],
                          work / "hostile.log", env)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not Path(ports_file).exists():
            assert proc.alive() and time.monotonic() < deadline, proc.output()[-2000:]
            time.sleep(0.05)
        yield json.loads(ports_file.read_text())
    finally:
        proc.stop()


def client(ports: dict[str, int], mode: str, *, version: str = "2c", timeout: float = 0.5, retries: int = 0,
           max_repetitions: int = 25) -> GufoClient:  # fmt: skip
    cred = Credential.model_validate({"version": version, "community": COMMUNITY.decode()})
    return GufoClient("127.0.0.1", ports[mode], cred, timeout=timeout, retries=retries, max_repetitions=max_repetitions)


async def test_decoder_panic_is_a_decode_failure(ports: dict[str, int]) -> None:
    c = client(ports, "cut_length")
    with pytest.raises(PollError) as get:
        await c.get_many([SYS_UPTIME])  # raised pyo3's PanicException (a BaseException) before
    with pytest.raises(PollError) as walk:
        await c.walk(IF_DESCR, 1000)
    assert get.value.reason is walk.value.reason is PollErrorReason.DECODE
    polite = client(ports, "polite")
    assert (await polite.walk(IF_DESCR, 1000)).rows == {"1": b"eth0"}


@pytest.mark.parametrize("mode", ["gen_err", "too_big"])
async def test_error_status_fails_the_get(ports: dict[str, int], mode: str) -> None:
    with pytest.raises(PollError) as err:
        await client(ports, mode).get_many([SYS_UPTIME])  # returned {} (an empty MIB) before
    assert err.value.reason is PollErrorReason.OTHER
    assert ("genErr(5)" if mode == "gen_err" else "tooBig(1)") in err.value.detail


@pytest.mark.parametrize("mode", ["gen_err", "too_big"])
async def test_error_status_fails_the_walk(ports: dict[str, int], mode: str) -> None:
    c = client(ports, mode)
    started = time.monotonic()
    with pytest.raises(PollError) as err:
        await c.walk(IF_DESCR, 1000)  # ended empty before
    assert err.value.reason is PollErrorReason.OTHER
    assert time.monotonic() - started < 0.4, "tooBig halves repetitions on immediate answers, no timeout"


async def test_v1_no_such_name_still_reads_as_absent(ports: dict[str, int]) -> None:
    c = client(ports, "v1_nosuchname", version="1")
    assert await c.get_many([SYS_UPTIME, IF_DESCR + ".1"]) == {}
    assert (await c.walk(IF_DESCR, 1000)).rows == {}


async def test_wide_rows_are_read_with_fewer_repetitions(
    ports: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    c = client(ports, "wide_rows")
    with caplog.at_level(logging.WARNING, logger="sitivmon.snmp"):
        first = await c.walk(IF_DESCR, 1000)  # failed as decode (a 5.5 KB answer) before
        second = await c.walk(IF_DESCR, 1000)
    expected = {str(i): f"port {i} ".encode().ljust(200, b".") for i in range(1, WIDE_ROWS + 1)}
    assert first.rows == expected and second.rows == expected
    lowered = [r.getMessage() for r in caplog.records if "max-repetitions lowered" in r.getMessage()]
    assert len(lowered) == 1 and "from 25 to 12" in lowered[0], lowered  # once: remembered for later polls
    # 12 x ~230 B fits in 4,080 B: 30 rows in 3 requests; the first walk also paid for the refused one.
    assert second.requests == 3 and first.requests == 4


async def test_a_single_varbind_over_the_library_buffer_still_fails_as_decode(ports: dict[str, int]) -> None:
    c = client(ports, "huge_value")
    with pytest.raises(PollError) as err:
        await c.walk(IF_DESCR, 1000)
    assert err.value.reason is PollErrorReason.DECODE and "over the 4080 bytes" in err.value.detail
    with pytest.raises(PollError):
        await c.walk(IF_DESCR, 1000)  # not remembered at one repetition: it did not help


@pytest.mark.parametrize("retries", [0, 1])
async def test_stale_answers_do_not_extend_the_timeout(ports: dict[str, int], retries: int) -> None:
    c = client(ports, "stale_drip", timeout=0.5, retries=retries)
    started = time.monotonic()
    with pytest.raises(PollError) as err:
        await c.get_many([SYS_UPTIME])  # a stale answer every 0.2 s held the GET ~1.5 s per attempt
    elapsed = time.monotonic() - started
    assert err.value.reason is PollErrorReason.TIMEOUT
    assert 0.5 * (retries + 1) - 0.05 <= elapsed < 0.5 * (retries + 1) + 0.3, elapsed


class TooBigAbove:
    """An agent that answers tooBig to a GETBULK over `limit` repetitions, as one whose answers would
    not fit its buffers, and correctly otherwise (the hostile agent's device); records what it is asked."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.asked: list[int] = []  # max-repetitions of each GETBULK
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        mib = hostile_agent.wide_device(time.time() - 1000)
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            req = hostile_agent.parse(data)
            if req.pdu == hostile_agent.GETBULK:
                self.asked.append(req.max_repetitions)
                if req.max_repetitions > self.limit:
                    vbs = [hostile_agent.varbind(o, 0x05, None) for o in req.oids]
                    self.sock.sendto(hostile_agent.response(req, vbs, hostile_agent.TOO_BIG, 0), peer)
                    continue
            self.sock.sendto(hostile_agent.response(req, *hostile_agent.answer(req, mib)), peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


async def test_too_big_getbulk_is_asked_again_with_fewer_repetitions() -> None:
    agent = TooBigAbove(limit=8)
    try:
        cred = Credential.model_validate({"version": "2c", "community": COMMUNITY.decode()})
        port = agent.sock.getsockname()[1]
        c = GufoClient("127.0.0.1", port, cred, timeout=0.5, retries=0, max_repetitions=25)
        first = await c.walk(IF_DESCR, 1000)  # ended empty (tooBig read as an empty column) before
        asked_first = list(agent.asked)
        second = await c.walk(IF_DESCR, 1000)
    finally:
        agent.close()
    assert len(first.rows) == len(second.rows) == hostile_agent.WIDE_ROWS
    # The first answer (tooBig, no values) is asked for once more, peeked at this time (`_BulkWalk`
    # reads answers without a peek until one has no values); then 12, then 6 for the rest.
    assert asked_first[:4] == [25, 25, 12, 6] and set(asked_first[3:]) == {6}, asked_first
    assert set(agent.asked[len(asked_first) :]) == {6}, "the lower figure is kept for later polls"


async def test_answers_are_read_without_a_peek_until_one_has_no_values() -> None:
    """A column whose answers all have values is read with no peek (a system call less an answer):
    each request asked once, the peek's socket never made. A column that ends the agent's view ends
    on an answer without values (endOfMibView: gufo returns the same for an error-status): that
    answer is asked for once more, peeked at, and the column is read that way at later polls, so the
    extra request is paid once, not at every poll."""
    mib = hostile_agent.wide_device(time.time() - 1000)
    last = max(mib)[:-1]  # the column holding the view's last object (ifCounterDiscontinuityTime)
    column = ".".join(map(str, last))
    agent = TooBigAbove(limit=1000)
    try:
        cred = Credential.model_validate({"version": "2c", "community": COMMUNITY.decode()})
        c = GufoClient("127.0.0.1", agent.sock.getsockname()[1], cred, timeout=0.5, retries=0, max_repetitions=10)
        plain = await c.walk(IF_DESCR, 1000)
        asked = [len(agent.asked)]
        peek_sock = c._peek_sock
        first = await c.walk(column, 1000)
        asked.append(len(agent.asked))
        second = await c.walk(column, 1000)
        asked.append(len(agent.asked))
    finally:
        agent.close()
    assert len(plain.rows) == hostile_agent.WIDE_ROWS and asked[0] == plain.requests == 4 and peek_sock is None
    rows = sum(1 for oid in mib if oid[: len(last)] == last)
    assert len(first.rows) == len(second.rows) == rows >= 1
    walk = -(-rows // 10) + 1  # answers with rows, then one with none (gufo skips endOfMibView values)
    assert (asked[1] - asked[0], asked[2] - asked[1]) == (walk + 1, walk), asked
    assert c._peek_sock is not None


@pytest.mark.parametrize("retries", [0, 1])
async def test_stale_answers_do_not_extend_a_walk_timeout(ports: dict[str, int], retries: int) -> None:
    """The walk's one timer per column (`_BulkWalk._on_alarm`) fails the awaited response at its
    request's deadline, retries included, whatever stale datagrams arrive meanwhile."""
    c = client(ports, "stale_drip", timeout=0.5, retries=retries)
    started = time.monotonic()
    with pytest.raises(PollError) as err:
        await c.walk(IF_DESCR, 1000)
    elapsed = time.monotonic() - started
    assert err.value.reason is PollErrorReason.TIMEOUT
    assert 0.5 * (retries + 1) - 0.05 <= elapsed < 0.5 * (retries + 1) + 0.3, elapsed


class Slow(TooBigAbove):
    """Answers every request `delay` seconds late (never tooBig): a walk of many requests lasts far
    longer than one request's timeout."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        super().__init__(limit=1000)

    def serve(self) -> None:
        mib = hostile_agent.wide_device(time.time() - 1000)
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            req = hostile_agent.parse(data)
            self.asked.append(req.max_repetitions)
            time.sleep(self.delay)
            self.sock.sendto(hostile_agent.response(req, *hostile_agent.answer(req, mib)), peer)


async def test_the_deadline_is_per_request_not_per_walk() -> None:
    """Each GETBULK moves the deadline: 30 answers 30 ms late each, 0.2 s timeout, one repetition
    per request: the walk lasts ~1 s and succeeds (a timer armed once per walk and never moved on
    would fail it at 0.2 s)."""
    agent = Slow(delay=0.03)
    try:
        cred = Credential.model_validate({"version": "2c", "community": COMMUNITY.decode()})
        c = GufoClient("127.0.0.1", agent.sock.getsockname()[1], cred, timeout=0.2, retries=0, max_repetitions=1)
        started = time.monotonic()
        walk = await c.walk(IF_DESCR, 1000)
        elapsed = time.monotonic() - started
    finally:
        agent.close()
    assert len(walk.rows) == hostile_agent.WIDE_ROWS and walk.requests >= hostile_agent.WIDE_ROWS
    assert elapsed > 0.2 * 3, elapsed


# The GETBULK walk runs in the socket's reader callback and one timer (`sitivmon.snmp.gufo._BulkWalk`):
# what a callback does after its walk is over, or raises, is invisible to the awaiting coroutine. These
# run on both loops (uvloop is the daemon's) and watch the loop's exception handler, which is where an
# exception escaping a callback would land.
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


Body = Callable[[], Coroutine[Any, Any, None]]


def on_loop(factory: Callable[[], asyncio.AbstractEventLoop], body: Body) -> list[str]:
    """Run `body` on a fresh loop; return what reached the loop's exception handler."""
    escaped: list[str] = []
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.get_loop().set_exception_handler(lambda _loop, ctx: escaped.append(repr(ctx)))
        runner.run(body())
    return escaped


def v2c(port: int, *, timeout: float, max_repetitions: int) -> GufoClient:
    cred = Credential.model_validate({"version": "2c", "community": COMMUNITY.decode()})
    return GufoClient("127.0.0.1", port, cred, timeout=timeout, retries=1, max_repetitions=max_repetitions)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancelled_walk_leaves_nothing_running(loop: str) -> None:
    """Cancelled mid-column (the poll's deadline), a walk sends nothing more: neither the late answer
    (read by the reader) nor the request's timeout (the timer, then a retry) drives it on."""
    agent = Slow(delay=0.05)
    try:
        c = v2c(agent.sock.getsockname()[1], timeout=0.15, max_repetitions=1)

        async def body() -> None:
            await c.walk(SYS_UPTIME.rsplit(".", 1)[0], 1000)  # session ready: the cancellation hits the column
            asked = len(agent.asked)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.12):  # in the middle of the third request
                    await c.walk(IF_DESCR, 1000)
            sent = len(agent.asked) - asked
            assert 1 <= sent <= 3, sent
            assert not asyncio.get_running_loop().remove_reader(c._session._fd), "the reader was left registered"
            await asyncio.sleep(0.5)  # past the late answer and the request's timeout, retry included
            assert len(agent.asked) - asked == sent, "a request was sent after the walk was cancelled"
            walk = await c.walk(IF_DESCR, 1000)  # the late answer, queued, is skipped
            assert len(walk.rows) == hostile_agent.WIDE_ROWS

        assert on_loop(LOOPS[loop], body) == []
    finally:
        agent.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_exceptions_in_the_callback_fail_the_walk_not_the_loop(ports: dict[str, int], loop: str) -> None:
    """A native panic, an error-status, a timeout, a too-large answer and a bug in the walk's guards
    (here a cap of the wrong type) each end the walk as the coroutine walk ended it; none escapes into
    the loop, and the client walks on afterwards."""

    async def body() -> None:
        failures = [("cut_length", PollErrorReason.DECODE), ("gen_err", PollErrorReason.OTHER),
                    ("stale_drip", PollErrorReason.TIMEOUT), ("huge_value", PollErrorReason.DECODE)]  # fmt: skip
        for mode, reason in failures:
            with pytest.raises(PollError) as err:
                await client(ports, mode, timeout=0.2, retries=1).walk(IF_DESCR, 1000)
            assert err.value.reason is reason, (mode, err.value)
        c = client(ports, "polite")
        with pytest.raises(TypeError):
            await c.walk(IF_DESCR, None)  # type: ignore[arg-type]
        assert not asyncio.get_running_loop().remove_reader(c._session._fd)
        assert (await c.walk(IF_DESCR, 1000)).rows == {"1": b"eth0"}

    assert on_loop(LOOPS[loop], body) == []


class Echo(TooBigAbove):
    """Answers every request at once, and sends every answer twice more: again just before the next
    answer, and 20 ms later (after the walk's last request, when no walk is running). Each copy
    carries a request-id the client no longer awaits."""

    def __init__(self) -> None:
        self.timers: list[threading.Timer] = []
        super().__init__(limit=1000)

    def serve(self) -> None:
        mib = hostile_agent.wide_device(time.time() - 1000)
        previous: tuple[bytes, Any] | None = None
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            req = hostile_agent.parse(data)
            self.asked.append(req.max_repetitions)
            if previous is not None:
                self.sock.sendto(*previous)
            out = hostile_agent.response(req, *hostile_agent.answer(req, mib))
            self.sock.sendto(out, peer)
            previous = (out, peer)
            timer = threading.Timer(0.02, self.sock.sendto, previous)
            timer.start()
            self.timers.append(timer)

    def close(self) -> None:
        super().close()
        for timer in self.timers:
            timer.cancel()


@pytest.mark.parametrize("loop", LOOPS)
def test_late_answers_around_the_walks_are_skipped(loop: str) -> None:
    """Copies of earlier answers, arriving during a walk and between walks (the reader is then not
    registered: they wait in the socket's buffer), are skipped: every walk reads its column whole, in
    as many requests as without them."""
    agent = Echo()
    try:
        c = v2c(agent.sock.getsockname()[1], timeout=0.5, max_repetitions=7)
        expected = {str(i): f"port {i} ".encode().ljust(200, b".") for i in range(1, hostile_agent.WIDE_ROWS + 1)}

        async def body() -> None:
            for k, pause in enumerate((0.0, 0.0, 0.05, 0.0)):
                walk = await c.walk(IF_DESCR, 1000)
                assert walk.rows == expected and walk.requests == 5, walk.requests  # 30 rows, 7 a request
                assert len(agent.asked) == 5 * (k + 1), agent.asked  # no request sent twice
                await asyncio.sleep(pause)

        assert on_loop(LOOPS[loop], body) == []
    finally:
        agent.close()
