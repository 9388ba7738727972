"""SNMPv3 gates (issue 11, item 2): an engine ID is learnt only from a message that authenticates, a
forgery costs microseconds and leaves nothing behind, and clear-text messages that no credential
allows are refused before pysnmp decodes them. Senders are the real net-snmp tools."""

from __future__ import annotations

import asyncio
import os
import socket
import time

from prometheus_client import CollectorRegistry

from sitivmon.config.model import Credential
from sitivmon.traps.config import TrapV3User, resolve_trap_auth
from sitivmon.traps.events import TrapEvent, TrapKind
from sitivmon.traps.receiver import TrapReceiver
from tests.traps import hostile
from tests.traps import netsnmp as ns
from tests.traps.test_receiver import CREDENTIALS, ENGINE, Harness, make_config, value
from tests.traps.test_receiver import harness as harness  # the fixture

AUTHONLY = ["-u", "authonly", "-l", "authNoPriv", "-a", "SHA-256"]


def random_engine() -> str:
    return "0x80000000" + os.urandom(6).hex()


def forged_trap(engine: str, if_index: int = 7) -> bytes:
    """A trap as an attacker who knows the user name (not its key) would send it, from net-snmp."""
    return ns.capture("snmptrap", ["-v", "3", "-e", engine, *AUTHONLY, "-A", "guessed-password", "HOST", "",
                                   ns.LINK_DOWN, *ns.link_varbinds(if_index, 1, 2)])  # fmt: skip


def receiver(registry: CollectorRegistry, events: list[TrapEvent], **kw: object) -> TrapReceiver:
    cfg = make_config(**kw)
    return TrapReceiver(cfg, resolve_trap_auth(cfg, CREDENTIALS), events.append, registry=registry)


async def test_forged_engine_ids_are_not_learnt_and_a_real_new_engine_still_is() -> None:
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    forged_engines = [random_engine() for _ in range(3)]
    forgeries = [forged_trap(e) for e in forged_engines]
    async with receiver(registry, events, max_engine_ids_per_source=3) as r:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for data in forgeries:
                s.sendto(data, r.address)
        h = Harness(r, events, registry)
        for _ in range(200):
            if value(registry, "sitivmon_traps_rejected_total", reason="auth_failed") >= 3:
                break
            await asyncio.sleep(0.01)
        assert value(registry, "sitivmon_traps_rejected_total", reason="auth_failed") == 3
        assert events == []
        # A correctly keyed trap from an engine never seen before: accepted, quota untouched by forgeries.
        real_engine = random_engine()
        assert await h.tool("snmptrap", ["-v", "3", "-e", real_engine, *AUTHONLY, "-A", "authonly-pass", "HOST",
                                         "", ns.LINK_DOWN, *ns.link_varbinds(7, 1, 2)]) == 0  # fmt: skip
        (event,) = await h.wait_events(1)
        assert (event.kind, event.if_index, event.user_or_community_name) == (TrapKind.LINK_DOWN, 7, "authonly")
        assert value(registry, "sitivmon_traps_rejected_total", reason="unknown_user") == 0
        usm = r._usm
        assert usm is not None
        assert usm.has_engine(b"authonly", bytes.fromhex(real_engine[2:]))
        for engine in forged_engines:  # no permanent entry for a forgery
            assert not usm.has_engine(b"authonly", bytes.fromhex(engine[2:]))


def test_a_forgery_costs_no_key_localisation() -> None:
    """Each forgery with a fresh engine ID used to cost ~12 ms of password hashing on the loop."""
    registry = CollectorRegistry()
    r = receiver(registry, [], max_engine_ids_per_source=100)
    forgeries = [forged_trap(random_engine()) for _ in range(8)]
    costs = []
    for data in forgeries:
        t0 = time.perf_counter()
        r.handle_datagram(data, ("127.0.0.1", 5000), time.monotonic())
        costs.append(time.perf_counter() - t0)
    costs.sort()
    print(f"forgery cost: median {costs[4] * 1000:.2f} ms, max {costs[-1] * 1000:.2f} ms")
    assert costs[4] < 0.004
    assert value(registry, "sitivmon_traps_rejected_total", reason="auth_failed") == 8


def test_clear_text_without_a_credential_is_refused_before_pysnmp_decodes_it() -> None:
    """Empty user names with varbinds, and clear-text messages naming an authenticated user, cost a
    bounded walk of the header (pysnmp took 150 ms for 400 varbinds, 1.5 s for 3,000)."""
    registry = CollectorRegistry()
    r = receiver(registry, [])
    engine = bytes.fromhex(ENGINE)
    cases = [
        (hostile.v3_plaintext(b"", 3000), "decode_error"),  # over the message and varbind bounds
        (hostile.v3_plaintext(b"", 400), "unknown_user"),  # not a discovery probe
        (hostile.v3_plaintext(b"", 10, engine_id=engine), "unknown_user"),
        (hostile.v3_plaintext(b"trapuser", 400, engine_id=engine), "unsupported_security_level"),
        (hostile.v3_plaintext(b"olduser", 400, engine_id=engine, flags=0x05), "unsupported_security_level"),
        (hostile.v3_plaintext(b"authonly", 400, engine_id=engine, flags=0x05), "auth_failed"),  # no digest
    ]
    for data, reason in cases:
        before = value(registry, "sitivmon_traps_rejected_total", reason=reason)
        t0 = time.perf_counter()
        r.handle_datagram(data, ("127.0.0.1", 5000), time.monotonic())
        cost = time.perf_counter() - t0
        assert value(registry, "sitivmon_traps_rejected_total", reason=reason) == before + 1, reason
        assert cost < 0.02, f"{reason}: {cost * 1000:.1f} ms"


async def test_clear_text_trap_naming_an_authpriv_user_changes_nothing(harness: Harness) -> None:
    """pysnmp checks security levels only for its own engine: a noAuthNoPriv trap naming an authPriv
    user from a known engine ID used to be accepted and to change a link."""
    args = ["-v", "3", "-e", "0x" + ENGINE, "-u", "olduser", "-l", "noAuthNoPriv", "HOST", "", ns.LINK_DOWN,
            *ns.link_varbinds(3, 1, 2)]  # fmt: skip
    assert await harness.tool("snmptrap", args) == 0
    for _ in range(100):
        if value(harness.registry, "sitivmon_traps_rejected_total", reason="unsupported_security_level"):
            break
        await asyncio.sleep(0.02)
    assert value(harness.registry, "sitivmon_traps_rejected_total", reason="unsupported_security_level") == 1
    assert harness.events == []


async def test_inform_and_trap_still_work_after_the_gates(harness: Harness) -> None:
    """Discovery (empty user name, no varbinds) and time synchronisation still pass the gates."""
    rc = await harness.tool("snmpinform", ["-v", "3", "-u", "trapuser", "-l", "authPriv", "-a", "SHA", "-A",
                                           "authpass123", "-x", "AES", "-X", "privpass123", "HOST", "", ns.LINK_UP,
                                           *ns.link_varbinds(9, 1, 1)])  # fmt: skip
    assert rc == 0
    events = await harness.wait_events(1)
    assert [(e.kind, e.if_index, e.inform) for e in events] == [(TrapKind.LINK_UP, 9, True)]


async def test_user_without_authentication_any_engine_but_bounded() -> None:
    """A noAuthNoPriv credential is matched whatever the engine ID (its messages prove nothing about an
    engine, so nothing is learnt), and its clear-text messages cannot carry hundreds of varbinds."""
    creds = {**CREDENTIALS, "v3-plain": Credential(version="3", username="plainuser")}
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    cfg = make_config(v3_users=[TrapV3User(credential="v3-plain")], max_engine_ids_per_source=0)
    async with TrapReceiver(cfg, resolve_trap_auth(cfg, creds), events.append, registry=registry) as r:
        h = Harness(r, events, registry)
        for _ in range(2):
            args = ["-v", "3", "-e", random_engine(), "-u", "plainuser", "-l", "noAuthNoPriv", "HOST", "", ns.LINK_UP,
                    *ns.link_varbinds(4, 1, 1)]  # fmt: skip
            assert await h.tool("snmptrap", args) == 0
        got = await h.wait_events(2)
        assert [(e.kind, e.if_index, e.user_or_community_name) for e in got] == [(TrapKind.LINK_UP, 4, "plainuser")] * 2
        heavy = hostile.v3_plaintext(b"plainuser", 400, engine_id=bytes.fromhex(random_engine()[2:]))
        t0 = time.perf_counter()
        r.handle_datagram(heavy, ("127.0.0.1", 5000), time.monotonic())
        assert time.perf_counter() - t0 < 0.02
        assert value(registry, "sitivmon_traps_rejected_total", reason="decode_error") == 1
        assert len(events) == 2
