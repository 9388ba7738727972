"""Fuzzing the trap path (issue 11, "keep what holds"): the BER decoder and `handle_datagram` take
arbitrary and mutated datagrams (hypothesis, and seeded mutations of real net-snmp traps of every
version) with only `BerError` or a counted refusal as outcome, within a bounded CPU time per datagram,
and no datagram without the right community or a valid USM key ever changes a link."""

from __future__ import annotations

import contextlib
import gc
import random
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sitivmon.app.config import parse_config
from sitivmon.engine.poll import TargetPoll
from sitivmon.monitor import Monitor
from sitivmon.readings import LinkState
from sitivmon.snmp import ber
from sitivmon.traps.config import resolve_trap_auth
from sitivmon.traps.events import TrapEvent, TrapKind
from sitivmon.traps.receiver import TrapReceiver
from tests.traps import hostile
from tests.traps import netsnmp as ns
from tests.traps.test_receiver import COMMUNITY, CREDENTIALS, ENGINE, make_config

WORST_CPU_S = 0.05
"""Generous bound on one datagram's CPU time (the costliest well-formed v1/v2c one takes ~4 ms)."""

DECODERS: list[Callable[[bytes], object]] = [ber.decode_message, ber.message_header, ber.decode_v3_header]
V3_GOOD = ["-u", "trapuser", "-l", "authPriv", "-a", "SHA", "-A", "authpass123", "-x", "AES", "-X", "privpass123"]


def capture_corpus() -> dict[str, bytes]:
    """Real net-snmp datagrams of every kind the receiver handles, good and bad credentials."""
    link = ns.link_varbinds(3, 1, 2)
    specs = {
        "v1-good": ("snmptrap", ["-v", "1", "-c", COMMUNITY, "HOST", "1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "2",
                                 "0", "", *link]),
        "v2c-good": ("snmptrap", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.LINK_DOWN, *link]),
        "inform-good": ("snmpinform", ["-v", "2c", "-c", COMMUNITY, "HOST", "", ns.LINK_DOWN, *link]),
        "v3-good": ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, *V3_GOOD, "HOST", "", ns.LINK_DOWN, *link]),
        "v3-authonly-good": ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, "-u", "authonly", "-l", "authNoPriv",
                                          "-a", "SHA-256", "-A", "authonly-pass", "HOST", "", ns.LINK_DOWN, *link]),
        "v1-bad": ("snmptrap", ["-v", "1", "-c", "public", "HOST", "1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "2",
                                "0", "", *link]),
        "v2c-bad": ("snmptrap", ["-v", "2c", "-c", "n0t-public-Xy8", "HOST", "", ns.LINK_DOWN, *link]),
        "v3-stranger": ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, "-u", "stranger", "-l", "authNoPriv", "-a",
                                     "SHA", "-A", "whatever123", "HOST", "", ns.LINK_DOWN, *link]),
        "v3-wrong-key": ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, "-u", "trapuser", "-l", "authPriv", "-a",
                                      "SHA", "-A", "WRONGpass123", "-x", "AES", "-X", "privpass123", "HOST", "",
                                      ns.LINK_DOWN, *link]),
        "v3-noauth-claims-authpriv": ("snmptrap", ["-v", "3", "-e", "0x" + ENGINE, "-u", "olduser", "-l",
                                                   "noAuthNoPriv", "HOST", "", ns.LINK_DOWN, *link]),
    }  # fmt: skip
    return {name: ns.capture(tool, args) for name, (tool, args) in specs.items()}


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return capture_corpus()


def mutations(seed_packets: list[bytes], count: int, seed: int) -> Iterator[bytes]:
    """Seeded structural mutations: flips, overwrites with boundary bytes, insertions, deletions,
    truncations, duplications and splices, one to four per datagram."""
    rng = random.Random(seed)
    specials = [0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF, 0x30, 0x06, 0x04, 0x02, 0xA4, 0xA6, 0xA7]
    for _ in range(count):
        data = bytearray(rng.choice(seed_packets))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            i = rng.randrange(len(data))
            op = rng.randrange(7)
            if op == 0:
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[i] = rng.choice(specials)
            elif op == 2:
                data[i:i] = bytes(rng.choice(specials) for _ in range(rng.randint(1, 8)))
            elif op == 3:
                del data[i : i + rng.randint(1, 8)]
            elif op == 4:
                del data[i:]
            elif op == 5:
                j = rng.randrange(len(data))
                data[i:i] = data[j : j + rng.randint(1, 64)]
            else:
                other = rng.choice(seed_packets)
                data = data[:i] + other[rng.randrange(len(other)) :]
        yield bytes(data)


class Rig:
    """A real receiver wired to a monitor the way the daemon wires them, with one link that is up."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events: list[TrapEvent] = []
        cfg = parse_config(
            'communes: [{id: givors, name: Givors, insee: "69091"}]\n'
            "credentials: {v2: {version: 2c, community: public}}\n"
            'targets: [{name: sw1, address: "127.0.0.1", credentials: v2}]\n'
            "links: [{id: givors-1, commune: givors, target: sw1, interface: {index: 3}}]\n"
        )
        self.monitor = Monitor(cfg)
        tables = {"ifDescr": {"3": b"eth1"}, "ifAdminStatus": {"3": 1}, "ifOperStatus": {"3": 1}}
        self.monitor.on_poll(cfg.targets[0], TargetPoll(target="sw1", at=1.0, duration=0.0, tables=tables))
        assert self.monitor.links["givors-1"].state is LinkState.UP
        trap_cfg = make_config(max_engine_ids_per_source=2)
        self.receiver = TrapReceiver(trap_cfg, resolve_trap_auth(trap_cfg, CREDENTIALS), self.on_event,
                                     registry=self.registry)  # fmt: skip
        self.worst = 0.0

    def on_event(self, event: TrapEvent) -> None:  # what Daemon._on_trap does
        self.events.append(event)
        if event.kind.is_link:
            self.monitor.on_link_trap(event.source_ip, event.if_index, event.kind is TrapKind.LINK_UP, 2.0,
                                      admin_status=event.admin_status, oper_status=event.oper_status)  # fmt: skip

    def feed(self, data: bytes) -> None:
        # The cyclic GC is held off while one datagram is timed: in a full test run a collection of the
        # whole suite's heap (~0.2 s) would otherwise be billed to whichever datagram triggered it.
        gc.disable()
        try:
            t0 = time.thread_time()
            self.receiver.handle_datagram(data, ("127.0.0.1", 40000), time.monotonic())  # must never raise
            self.worst = max(self.worst, time.thread_time() - t0)
        finally:
            gc.enable()

    @property
    def link_state(self) -> LinkState:
        return self.monitor.links["givors-1"].state


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_decoders_raise_only_ber_error_on_arbitrary_bytes(data: bytes) -> None:
    for decode in DECODERS:
        gc.disable()  # a collection of the whole suite's heap is not this decoder's cost (see Rig.feed)
        try:
            t0 = time.thread_time()
            with contextlib.suppress(ber.BerError):
                decode(data)
            spent = time.thread_time() - t0
        finally:
            gc.enable()
        assert spent < WORST_CPU_S


def tlv_tree(depth: int = 3) -> st.SearchStrategy[bytes]:
    """BER-shaped input: TLVs with SNMP's tags (and a few others), nested, lengths mostly right."""
    tags = st.sampled_from([0x02, 0x04, 0x05, 0x06, 0x30, 0x40, 0x41, 0x43, 0x46, 0x80, 0xA4, 0xA6, 0xA7, 0x1F])
    leaf = st.builds(lambda t, b: ber.tlv(t, b), tags, st.binary(max_size=40))
    oid = st.builds(lambda b: ber.tlv(ber.OBJECT_IDENTIFIER, b), st.binary(min_size=1, max_size=60))
    if depth == 0:
        return st.one_of(leaf, oid)
    return st.one_of(leaf, oid, st.builds(lambda t, kids: ber.tlv(t, b"".join(kids)), tags,
                                          st.lists(tlv_tree(depth - 1), max_size=6)))  # fmt: skip


@pytest.fixture(scope="module")
def stranger_rig() -> Rig:
    return Rig()


@pytest.fixture(scope="module")
def member_rig() -> Rig:
    return Rig()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tlv_tree(), min_size=1, max_size=4), st.sampled_from([0, 1, 3, 2]), st.binary(max_size=16))
def test_structured_messages_through_handle_datagram(
    stranger_rig: Rig, parts: list[bytes], version: int, community: bytes
) -> None:
    """SEQUENCE { version, community, arbitrary TLVs }: a stranger's structure never raises nor changes
    a link (the receiver's community is not among these 16-byte-or-less random strings' likely values)."""
    data = ber.tlv(ber.SEQUENCE, ber.encode_integer(version) + ber.tlv(ber.OCTET_STRING, community) + b"".join(parts))
    rig = stranger_rig
    rig.feed(data)
    assert rig.worst < WORST_CPU_S
    if community != COMMUNITY.encode():
        assert rig.events == [] and rig.link_state is LinkState.UP


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=200), st.integers(0, 2**32 + 5), st.integers(0, 600))
def test_valid_community_with_hostile_pdus_never_raises(
    member_rig: Rig, tail: bytes, request_id: int, n_varbinds: int
) -> None:
    """Even with the right community, whatever follows is bounded and refused without an exception."""
    rig = member_rig
    vbs = [((1, 3, 6, 1, 4, 1, 9, i), tail[: i % 50]) for i in range(n_varbinds)]
    for data in (hostile.v2c_raw(COMMUNITY.encode(), tail),
                 ber.encode_v2c_notification(COMMUNITY.encode(), request_id % 2**31, vbs)):  # fmt: skip
        rig.feed(data)
    assert rig.worst < WORST_CPU_S


def test_mutated_real_traps(corpus: dict[str, bytes]) -> None:
    """20,000 mutations of real net-snmp traps: never an exception, bounded CPU per datagram, and a
    datagram mutated from a refused one (wrong community, unknown user, wrong key, clear text naming an
    authPriv user) never changes the link."""
    bad = [v for k, v in corpus.items() if not k.endswith("-good")]
    good = [v for k, v in corpus.items() if k.endswith("-good")]
    rig = Rig()
    for data in [*bad, *mutations(bad, 12_000, seed=11)]:
        rig.feed(data)
    assert rig.events == [], rig.events[:3]
    assert rig.link_state is LinkState.UP
    bad_worst = rig.worst
    rig = Rig()
    for data in mutations(good, 8_000, seed=12):
        rig.feed(data)
    rejected = sum(
        rig.registry.get_sample_value("sitivmon_traps_rejected_total", {"reason": r}) or 0
        for r in ("decode_error", "unknown_community", "unknown_user", "auth_failed", "decryption_error",
                  "not_in_time_window", "unsupported_security_level")
    )  # fmt: skip
    print(f"worst CPU per datagram: refused corpus {bad_worst * 1000:.2f} ms, valid corpus "
          f"{rig.worst * 1000:.2f} ms; {len(rig.events)} accepted, {rejected:.0f} refused of 8000")  # fmt: skip
    assert max(bad_worst, rig.worst) < WORST_CPU_S
    assert rig.events, "some mutations (e.g. of a value byte) stay valid traps"
