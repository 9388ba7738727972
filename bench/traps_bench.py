"""Trap receiver bench: offered load from a paced sender process over loopback UDP.

Not a test; prints figures. Usage:
    .venv/bin/python bench/traps_bench.py [--rate 10000] [--seconds 5] [--sources 20] [--ifaces 50] [--peer]

The sender pre-encodes v2c linkDown/linkUp traps for sources x interfaces (sources are distinct
loopback addresses 127.0.1.x) and sends them interleaved at `--rate` per second in 1 ms slices.
The receiver is sitivmon's TrapReceiver in this process; we measure what it accepted, its CPU
seconds (this process only: the sender is another process), the kernel's UDP receive-buffer drops,
and whether the final state of every (source, ifIndex) is the last one sent ("lost link events").
With --peer, pysnmp's stock NotificationReceiver gets the same load in a child process for a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sitivmon.snmp import ber
from sitivmon.traps.config import CommunityAuth, TrapAuth, TrapConfig
from sitivmon.traps.events import TrapEvent, TrapKind
from sitivmon.traps.receiver import TrapReceiver

COMMUNITY = b"bench-community"


def packets(sources: int, ifaces: int, total: int) -> tuple[list[tuple[int, bytes]], dict[tuple[str, int], bool]]:
    """(source index, datagram) in send order, and the final up/down per (source ip, ifIndex)."""
    out: list[tuple[int, bytes]] = []
    final: dict[tuple[str, int], bool] = {}
    cache: dict[tuple[int, bool], bytes] = {}
    for i in range(total):
        s = i % sources
        idx = 1 + (i // sources) % ifaces
        up = (i // (sources * ifaces)) % 2 == 1
        key = (idx, up)
        pkt = cache.get(key)
        if pkt is None:
            oid = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4 if up else 3)
            pkt = cache[key] = ber.encode_v2c_notification(COMMUNITY, 1000 + idx, [
                ((1, 3, 6, 1, 2, 1, 1, 3, 0), 4242), ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), oid),
                ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, idx), idx), ((1, 3, 6, 1, 2, 1, 2, 2, 1, 7, idx), 1),
                ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, idx), 1 if up else 2)])  # fmt: skip
        out.append((s, pkt))
        final[(f"127.0.1.{s + 1}", idx)] = up
    return out, final


def sender(port: int, rate: int, seconds: float, sources: int, ifaces: int, start: mp.Event) -> None:  # type: ignore[valid-type]
    pkts, _ = packets(sources, ifaces, int(rate * seconds))
    socks = []
    for s in range(sources):
        sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sk.bind((f"127.0.1.{s + 1}", 0))
        socks.append(sk)
    dest = ("127.0.0.1", port)
    start.wait()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    per_ms = rate / 1000.0
    sent = 0
    n = len(pkts)
    while sent < n:
        due = min(n, int((time.perf_counter() - t0) * 1000 * per_ms) + 1)
        while sent < due:
            s, p = pkts[sent]
            with contextlib.suppress(BlockingIOError):
                socks[s].sendto(p, dest)
            sent += 1
        time.sleep(0.0005)
    print(f"  sender: {n} traps in {time.perf_counter() - t0:.2f} s "
          f"({n / (time.perf_counter() - t0):.0f}/s offered)", flush=True)  # fmt: skip


def udp_rcvbuf_errors() -> int:
    lines = Path("/proc/net/snmp").read_text().splitlines()
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("RcvbufErrors")])


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def bench_sitivmon(args: argparse.Namespace) -> dict[str, float]:
    total = int(args.rate * args.seconds)
    _, expected = packets(args.sources, args.ifaces, total)
    latest: dict[tuple[str, int], bool] = {}
    count = [0]

    def on_event(e: TrapEvent) -> None:
        count[0] += 1
        if e.if_index is not None and e.kind.is_link:
            latest[(e.source_ip, e.if_index)] = e.kind is TrapKind.LINK_UP

    cfg = TrapConfig(port=0, allowed_sources=["127.0.0.0/8"], communities=["bench"])
    auth = TrapAuth(communities=(CommunityAuth("bench", SecretStr(COMMUNITY.decode())),))
    registry = CollectorRegistry()
    receiver = TrapReceiver(cfg, auth, on_event, registry=registry)
    async with receiver:
        port = receiver.address[1]
        start = mp.Event()
        proc = mp.Process(target=sender, args=(port, args.rate, args.seconds, args.sources, args.ifaces, start))
        proc.start()
        await asyncio.sleep(1.0)  # sender pre-encodes
        drops0, cpu0, t0 = udp_rcvbuf_errors(), cpu(), time.perf_counter()
        start.set()
        while proc.is_alive():
            await asyncio.sleep(0.05)
            pass
        # wait for the decoder to finish and the coalesced states to be released
        idle_since = time.perf_counter()
        last = receiver.decoded
        while time.perf_counter() - idle_since < 1.0:
            await asyncio.sleep(0.05)
            if receiver.decoded != last or receiver.pending_coalesced:
                last = receiver.decoded
                idle_since = time.perf_counter()
        elapsed = time.perf_counter() - t0
        cpu_s = cpu() - cpu0
        drops = udp_rcvbuf_errors() - drops0
        proc.join()
    lost = sum(1 for k, up in expected.items() if latest.get(k) != up)
    rej = {s.labels["reason"]: s.value for m in registry.collect() for s in m.samples
           if s.name == "sitivmon_traps_rejected_total" and s.value}  # fmt: skip
    coalesced = registry.get_sample_value("sitivmon_traps_coalesced_total") or 0
    print(f"  sitivmon: SO_RCVBUF effective {receiver.rcvbuf_effective} bytes")
    print(f"  sitivmon: decoded {receiver.decoded}/{total} ({100 * receiver.decoded / total:.2f} %), "
          f"events delivered {count[0]}, coalesced {coalesced:.0f}, rejected {rej or 0}")  # fmt: skip
    print(f"  sitivmon: kernel UDP RcvbufErrors during run: {drops}")
    print(f"  sitivmon: CPU {cpu_s:.2f} s for {elapsed:.2f} s wall -> {receiver.decoded / cpu_s:.0f} traps/CPU-s")
    print(f"  sitivmon: final link states wrong (lost link events): {lost} of {len(expected)}")
    return {"decoded": receiver.decoded, "total": total, "cpu": cpu_s, "lost": lost}


def peer_receiver(port_q: mp.Queue, duration: float, result_q: mp.Queue) -> None:  # type: ignore[type-arg]
    """pysnmp 7's stock NotificationReceiver on its asyncio transport (default socket buffer)."""
    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import ntfrcv

    async def main() -> None:
        eng = engine.SnmpEngine()
        transport = udp.UdpTransport().open_server_mode(("127.0.0.1", 0))
        config.add_transport(eng, udp.DOMAIN_NAME, transport)
        config.add_v1_system(eng, "bench", COMMUNITY.decode())
        count = [0]

        def cb(*_a: object) -> None:
            count[0] += 1

        ntfrcv.NotificationReceiver(eng, cb)
        await asyncio.sleep(0.3)
        sock = transport.transport.get_extra_info("socket")
        port_q.put(sock.getsockname()[1])
        c0 = cpu()
        last, idle = -1, 0.0
        t_end = time.perf_counter() + duration
        while time.perf_counter() < t_end or idle < 1.0:
            await asyncio.sleep(0.1)
            idle = idle + 0.1 if count[0] == last else 0.0
            last = count[0]
            if time.perf_counter() > t_end + 30:
                break
        result_q.put((count[0], cpu() - c0))

    asyncio.run(main())


def bench_peer(args: argparse.Namespace) -> dict[str, float]:
    total = int(args.rate * args.seconds)
    port_q: mp.Queue[int] = mp.Queue()
    result_q: mp.Queue[tuple[int, float]] = mp.Queue()
    rp = mp.Process(target=peer_receiver, args=(port_q, args.seconds + 2.5, result_q))
    rp.start()
    port = port_q.get(timeout=30)
    start = mp.Event()
    sp = mp.Process(target=sender, args=(port, args.rate, args.seconds, args.sources, args.ifaces, start))
    sp.start()
    time.sleep(1.0)
    drops0 = udp_rcvbuf_errors()
    start.set()
    sp.join()
    got, cpu_s = result_q.get(timeout=120)
    rp.join()
    drops = udp_rcvbuf_errors() - drops0
    print(f"  pysnmp stock: received {got}/{total} ({100 * got / total:.2f} %), kernel drops {drops}, "
          f"CPU {cpu_s:.2f} s -> {got / cpu_s:.0f} traps/CPU-s")  # fmt: skip
    return {"decoded": got, "total": total, "cpu": cpu_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sources", type=int, default=20)
    p.add_argument("--ifaces", type=int, default=50)
    p.add_argument("--peer", action="store_true", help="also measure pysnmp's stock receiver")
    args = p.parse_args()
    print(f"offered: {args.rate}/s for {args.seconds} s, {args.sources} sources x {args.ifaces} interfaces, "
          f"CPUs: {os.cpu_count()}")  # fmt: skip
    print("sitivmon TrapReceiver:")
    ours = asyncio.run(bench_sitivmon(args))
    if args.peer:
        print("pysnmp stock NotificationReceiver (same load):")
        peer = bench_peer(args)
        ratio = (ours["decoded"] / ours["cpu"]) / (peer["decoded"] / peer["cpu"]) if peer["decoded"] else float("inf")
        print(f"ratio traps/CPU-s sitivmon vs pysnmp stock: {ratio:.1f}x")


if __name__ == "__main__":
    main()
