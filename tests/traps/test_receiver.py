"""The receiver against real net-snmp senders: v1, v2c, v3 traps, INFORMs acknowledged, rejections."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from sitivmon.config.model import Credential
from sitivmon.snmp import ber
from sitivmon.traps.config import TrapConfig, TrapV3User, resolve_trap_auth
from sitivmon.traps.events import TrapEvent, TrapKind
from sitivmon.traps.receiver import TrapReceiver
from tests.traps import netsnmp as ns

ENGINE = "8000000001020304"
COMMUNITY = "n0t-public-Xy7"


CREDENTIALS = {
    name: Credential.model_validate(spec)
    for name, spec in {
        "communes-v2": {"version": "2c", "community": COMMUNITY},
        "v3-sha-aes": {"version": "3", "username": "trapuser", "auth_protocol": "SHA", "auth_password": "authpass123",
                       "priv_protocol": "AES", "priv_password": "privpass123"},
        "v3-sha256-auth": {"version": "3", "username": "authonly", "auth_protocol": "SHA256",
                           "auth_password": "authonly-pass"},
        "v3-md5-des": {"version": "3", "username": "olduser", "auth_protocol": "MD5", "auth_password": "oldauthpass",
                       "priv_protocol": "DES", "priv_password": "oldprivpass"},
    }.items()
}  # fmt: skip


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


class Harness:
    def __init__(self, receiver: TrapReceiver, events: list[TrapEvent], registry: CollectorRegistry) -> None:
        self.receiver = receiver
        self.events = events
        self.registry = registry

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.receiver.address[1]}"

    async def tool(self, tool: str, args: list[str]) -> int:
        argv = [a.replace("HOST", self.host) for a in args]
        if tool == "snmpinform":
            argv = ["-t", "1", "-r", "2", *argv]
        r = await asyncio.to_thread(ns.run_tool, tool, argv)
        return r.returncode

    async def wait_events(self, n: int, timeout: float = 5.0) -> list[TrapEvent]:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events) < n and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self.events


def make_config(**kw: object) -> TrapConfig:
    base: dict[str, object] = {
        "port": 0,
        "allowed_sources": ["127.0.0.0/8"],
        "communities": ["communes-v2"],
        "v3_users": [TrapV3User(credential=c, engine_ids=[ENGINE] if c == "v3-md5-des" else [])
                     for c in ("v3-sha-aes", "v3-sha256-auth", "v3-md5-des")],
    }  # fmt: skip
    base.update(kw)
    return TrapConfig.model_validate(base)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    cfg = make_config()
    receiver = TrapReceiver(cfg, resolve_trap_auth(cfg, CREDENTIALS), events.append, registry=registry)
    async with receiver:
        yield Harness(receiver, events, registry)


V3_SHA_AES = ["-u", "trapuser", "-l", "authPriv", "-a", "SHA", "-A", "authpass123", "-x", "AES", "-X", "privpass123"]


@pytest.mark.parametrize(
    ("tool", "args", "version", "name"),
    [
        ("snmptrap", ["-v", "1", "-c", COMMUNITY, "HOST", "1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "2", "0", "",
                      *ns.link_varbinds(7, 1, 2)], "v1", "communes-v2"),
        ("snmptrap", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.LINK_DOWN, *ns.link_varbinds(7, 1, 2)],
         "v2c", "communes-v2"),
        ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, *V3_SHA_AES, "HOST", "", ns.LINK_DOWN,
                      *ns.link_varbinds(7, 1, 2)], "v3", "trapuser"),
        ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, "-u", "olduser", "-l", "authPriv", "-a", "MD5", "-A",
                      "oldauthpass", "-x", "DES", "-X", "oldprivpass", "HOST", "", ns.LINK_DOWN,
                      *ns.link_varbinds(7, 1, 2)], "v3", "olduser"),
        ("snmptrap", ["-v", "3", "-e", "0x80000000aabbccdd", "-u", "authonly", "-l", "authNoPriv", "-a", "SHA-256",
                      "-A", "authonly-pass", "HOST", "", ns.LINK_DOWN, *ns.link_varbinds(7, 1, 2)], "v3", "authonly"),
    ],
    ids=["v1", "v2c", "v3-sha-aes-learnt-engine", "v3-md5-des-configured-engine", "v3-sha256-authnopriv"],
)  # fmt: skip
async def test_link_down_trap(harness: Harness, tool: str, args: list[str], version: str, name: str) -> None:
    assert await harness.tool(tool, args) == 0
    (event,) = await harness.wait_events(1)
    assert (event.source_ip, event.kind, event.if_index, event.version) == ("127.0.0.1", TrapKind.LINK_DOWN, 7, version)
    assert event.user_or_community_name == name
    if version != "v1":
        assert (event.admin_status, event.oper_status) == (1, 2)
    assert value(harness.registry, "sitivmon_traps_received_total", source="127.0.0.1", type="linkDown") == 1


async def test_v2c_inform_is_acknowledged(harness: Harness) -> None:
    rc = await harness.tool("snmpinform", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.LINK_UP,
                                           *ns.link_varbinds(4, 1, 1)])  # fmt: skip
    assert rc == 0, "snmpinform exits 0 only when acknowledged"
    (event,) = await harness.wait_events(1)
    assert (event.kind, event.if_index, event.oper_status, event.inform) == (TrapKind.LINK_UP, 4, 1, True)


async def test_v3_inform_is_acknowledged_after_discovery(harness: Harness) -> None:
    rc = await harness.tool("snmpinform", ["-v", "3", *V3_SHA_AES, "HOST", "", ns.LINK_DOWN,
                                           *ns.link_varbinds(9, 1, 2)])  # fmt: skip
    assert rc == 0
    events = await harness.wait_events(1)
    assert [(e.kind, e.if_index, e.version, e.inform) for e in events] == [(TrapKind.LINK_DOWN, 9, "v3", True)]
    assert value(harness.registry, "sitivmon_traps_rejected_total", reason="unknown_engine_id") == 0


async def test_cold_and_warm_start(harness: Harness) -> None:
    assert await harness.tool("snmptrap", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.COLD_START]) == 0
    assert await harness.tool("snmptrap", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.WARM_START]) == 0
    events = await harness.wait_events(2)
    assert [e.kind for e in events] == [TrapKind.COLD_START, TrapKind.WARM_START]


@pytest.mark.parametrize(
    ("tool", "args", "reason"),
    [
        ("snmptrap", ["-v", "2c", "-c", "public", "HOST", "", ns.LINK_DOWN, *ns.link_varbinds(1, 1, 2)],
         "unknown_community"),
        ("snmptrap", ["-v", "1", "-c", "wrong", "HOST", "1.3.6.1.4.1.9", "127.0.0.1", "2", "0", ""],
         "unknown_community"),
        ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, "-u", "stranger", "-l", "authNoPriv", "-a", "SHA", "-A",
                      "whatever123", "HOST", "", ns.LINK_DOWN], "unknown_user"),
        ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, "-u", "trapuser", "-l", "authPriv", "-a", "SHA", "-A",
                      "WRONGpass123", "-x", "AES", "-X", "privpass123", "HOST", "", ns.LINK_DOWN], "auth_failed"),
    ],
    ids=["v2c-community", "v1-community", "v3-user", "v3-password"],
)  # fmt: skip
async def test_rejected_and_counted(harness: Harness, tool: str, args: list[str], reason: str) -> None:
    assert await harness.tool(tool, args) == 0
    for _ in range(100):
        if value(harness.registry, "sitivmon_traps_rejected_total", reason=reason):
            break
        await asyncio.sleep(0.02)
    assert value(harness.registry, "sitivmon_traps_rejected_total", reason=reason) == 1
    assert harness.events == []


async def test_inform_with_wrong_community_is_not_acknowledged(harness: Harness) -> None:
    rc = await harness.tool("snmpinform", ["-v", "2c", "-c", "public", "HOST", "", ns.LINK_DOWN])
    assert rc != 0
    assert value(harness.registry, "sitivmon_traps_rejected_total", reason="unknown_community") >= 1


async def test_unknown_source_rejected_before_decoding() -> None:
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    cfg = make_config(allowed_sources=["192.0.2.0/24"])
    async with TrapReceiver(cfg, resolve_trap_auth(cfg, CREDENTIALS), events.append, registry=registry) as r:
        h = Harness(r, events, registry)
        assert await h.tool("snmptrap", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.LINK_DOWN]) == 0
        await asyncio.sleep(0.3)
    assert events == []
    assert value(registry, "sitivmon_traps_rejected_total", reason="unknown_source") == 1


async def test_target_hosts_are_the_default_allowed_sources() -> None:
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    cfg = make_config(allowed_sources=[])
    auth = resolve_trap_auth(cfg, CREDENTIALS)
    r = TrapReceiver(cfg, auth, events.append, registry=registry, target_hosts=["localhost", "192.0.2.9"])
    async with r:
        assert r.source_allowed("127.0.0.1") and r.source_allowed("192.0.2.9")
        assert not r.source_allowed("192.0.2.10") and not r.source_allowed("not-an-ip")


async def test_secrets_never_logged(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await harness.tool("snmptrap", ["-v", "2c", "-c", "public", "HOST", "", ns.LINK_DOWN])
    await harness.tool("snmptrap", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.LINK_DOWN])
    await harness.tool("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, *V3_SHA_AES, "HOST", "", ns.LINK_DOWN])
    await harness.wait_events(2)
    text = caplog.text + repr(harness.events)
    for secret in (COMMUNITY, "authpass123", "privpass123", "public"):
        assert secret not in text


async def test_flood_coalesces_link_state_and_drops_other(caplog: pytest.LogCaptureFixture) -> None:
    """Over the per-source rate, link traps collapse to the latest state per ifIndex; none is lost."""
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    now = [1000.0]
    cfg = make_config(rate_limit_per_source=10, rate_burst=5)
    r = TrapReceiver(cfg, resolve_trap_auth(cfg, CREDENTIALS), events.append, registry=registry,
                     clock=lambda: now[0])  # fmt: skip
    addr = ("127.0.0.5", 5000)

    def trap(if_index: int, up: bool) -> bytes:
        oid = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4 if up else 3)
        return ber.encode_v2c_notification(COMMUNITY.encode(), 1, [
            ((1, 3, 6, 1, 2, 1, 1, 3, 0), 1), ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), oid),
            ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, if_index), if_index),
            ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, if_index), 1 if up else 2)])  # fmt: skip

    other_oid = (1, 3, 6, 1, 4, 1, 9, 0, 1)
    other = ber.encode_v2c_notification(COMMUNITY.encode(), 1, [
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), 1), ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), other_oid)])  # fmt: skip
    final: dict[int, bool] = {}
    for i in range(1000):
        idx, up = i % 20, (i // 20) % 2 == 0
        final[idx] = up
        r.handle_datagram(trap(idx, up), addr, now[0])
        if i % 50 == 0:
            r.handle_datagram(other, addr, now[0])
    r.process_pending(0)
    assert len(events) == 5  # the burst: 4 link traps and the first "other"
    for _ in range(10):  # 10 s later: tokens for everything pending (20 interfaces)
        now[0] += 1.0
        r.process_pending(0)
    latest: dict[int | None, TrapKind] = {}
    for e in events:
        if e.kind.is_link:
            latest[e.if_index] = e.kind
    assert latest == {i: TrapKind.LINK_UP if up else TrapKind.LINK_DOWN for i, up in final.items()}
    assert value(registry, "sitivmon_traps_received_total", source="127.0.0.5", type="linkUp") + value(
        registry, "sitivmon_traps_received_total", source="127.0.0.5", type="linkDown"
    ) == 1000
    assert value(registry, "sitivmon_traps_rejected_total", reason="rate_limited") == 19
    # 4 delivered at once, 20 interfaces stored once each, every other one superseded a stored state
    assert value(registry, "sitivmon_traps_coalesced_total") == 1000 - 4 - 20
    # another source is not throttled by the first
    r.handle_datagram(trap(1, False), ("127.0.0.6", 1), now[0])
    assert events[-1].source_ip == "127.0.0.6"


def test_resolve_errors_are_located() -> None:
    with pytest.raises(ValueError, match=r"traps.communities\[0\]: unknown credential 'nope'"):
        resolve_trap_auth(TrapConfig(communities=["nope"]), CREDENTIALS)
    with pytest.raises(ValueError, match=r"traps.v3_users\[0\].credential: 'communes-v2' is not an SNMPv3 user"):
        resolve_trap_auth(TrapConfig(v3_users=[TrapV3User(credential="communes-v2")]), CREDENTIALS)
    with pytest.raises(ValueError, match="hexadecimal"):
        TrapV3User(credential="x", engine_ids=["zz"])
    cfg = TrapConfig()
    assert (cfg.host, cfg.port) == ("127.0.0.1", 9162)
    assert isinstance(TrapConfig(allowed_sources=["10.0.0.0/8"]).allowed_sources[0], ipaddress.IPv4Network)


async def test_receive_buffer_reported(harness: Harness) -> None:
    assert harness.receiver.rcvbuf_effective >= 65536
    assert value(harness.registry, "sitivmon_traps_receive_buffer_bytes") == harness.receiver.rcvbuf_effective
