"""A small lab of network namespaces: an agent namespace whose interfaces are veth ends with real,
moving kernel counters, a peer namespace holding the other ends, and a management veth from the host.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range) and live only inside namespaces this
process created; nothing leaves the machine. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

_counter = itertools.count()


def run(*argv: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = list(argv)
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def netns_available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"svmprobe{os.getpid()}"
    try:
        r = run("ip", "netns", "add", name, check=False)
    except FileNotFoundError:
        return "iproute2 (ip) is not installed"
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    run("ip", "netns", "del", name, check=False)
    return None


@dataclass(slots=True)
class DataLink:
    """A veth pair: `name` in the agent namespace (what SNMP sees), `peer` in the peer namespace."""

    name: str
    peer: str
    agent_addr: str
    peer_addr: str
    alias: str = ""


@dataclass(slots=True)
class Lab:
    tag: str
    agent_ns: str
    peer_ns: str
    mgmt_host_if: str
    mgmt_host_addr: str
    agent_addr: str
    links: list[DataLink] = field(default_factory=list)
    _subnet: int = 0

    def add_link(self, name: str, alias: str = "", *, quiet: bool = True) -> DataLink:
        """A new interface in the agent namespace, with its other end in the peer namespace."""
        n = len(self.links)
        third, fourth = divmod(n * 4, 256)
        base = f"198.19.{(self._subnet * 64 + third) % 256}"
        agent_addr, peer_addr = f"{base}.{fourth + 1}", f"{base}.{fourth + 2}"
        peer = f"p{self.tag}x{n}"
        run("ip", "link", "add", name, "netns", self.agent_ns, "type", "veth", "peer", "name", peer,
            "netns", self.peer_ns)
        for ns, ifname, addr in ((self.agent_ns, name, agent_addr), (self.peer_ns, peer, peer_addr)):
            if quiet:
                run("sysctl", "-qw", f"net.ipv6.conf.{ifname.replace('.', '/')}.disable_ipv6=1", netns=ns, check=False)
            run("ip", "addr", "add", f"{addr}/30", "dev", ifname, netns=ns)
            run("ip", "link", "set", ifname, "up", netns=ns)
        if alias:
            run("ip", "link", "set", name, "alias", alias, netns=self.agent_ns)
        link = DataLink(name, peer, agent_addr, peer_addr, alias)
        self.links.append(link)
        return link

    def add_bulk(self, count: int, prefix: str = "b") -> None:
        """Many interfaces at once (for the benchmark): veth pairs with both ends in the agent namespace
        (the kernel here has no dummy driver), `count` interfaces in all, counters mostly still."""
        batch = "\n".join(
            f"link add {prefix}{i} type veth peer name {prefix}{i + 1}" for i in range(0, count - count % 2, 2)
        )
        subprocess.run(["ip", "-n", self.agent_ns, "-batch", "-"], input=batch, text=True, check=True,
                       capture_output=True)
        ups = "\n".join(f"link set {prefix}{i} up" for i in range(count - count % 2))
        subprocess.run(["ip", "-n", self.agent_ns, "-batch", "-"], input=ups, text=True, check=True,
                       capture_output=True)

    def set_link(self, name: str, up: bool) -> None:
        """Set the agent-side interface administratively up or down."""
        run("ip", "link", "set", name, "up" if up else "down", netns=self.agent_ns)

    def set_carrier(self, link: DataLink, up: bool) -> None:
        """Set the far end up or down: the agent side keeps admin up and loses (or regains) carrier."""
        run("ip", "link", "set", link.peer, "up" if up else "down", netns=self.peer_ns)

    def kernel_bytes(self, name: str) -> tuple[int, int]:
        """(rx_bytes, tx_bytes) of an agent-side interface, straight from the kernel."""
        rx = run("cat", f"/sys/class/net/{name}/statistics/rx_bytes", netns=self.agent_ns).stdout
        tx = run("cat", f"/sys/class/net/{name}/statistics/tx_bytes", netns=self.agent_ns).stdout
        return int(rx), int(tx)

    def send_udp(self, link: DataLink, payload_bytes: int, count: int, *, to_agent: bool = True) -> None:
        """Send `count` UDP datagrams across the link (peer -> agent by default) and return when sent."""
        src_ns, dst = (self.peer_ns, link.agent_addr) if to_agent else (self.agent_ns, link.peer_addr)
        code = (
            "import socket\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"d=b'x'*{payload_bytes}\n"
            f"for _ in range({count}): s.sendto(d,('{dst}',9))\n"
        )
        run("python3", "-c", code, netns=src_ns)

    def destroy(self) -> None:
        for ns in (self.agent_ns, self.peer_ns):
            run("ip", "netns", "del", ns, check=False)
        run("ip", "link", "del", self.mgmt_host_if, check=False)


def _free_subnet(start: int) -> int:
    """A third octet for 198.18.X.0/30 that no interface on the host uses yet (labs of concurrent
    test sessions, benchmarks and the demo must not share a management subnet)."""
    used = run("ip", "-o", "-4", "addr", "show", check=False).stdout
    for step in range(250):
        candidate = (start + step) % 250
        if f" 198.18.{candidate}." not in used:
            return candidate
    raise RuntimeError("no free 198.18.X.0/30 management subnet left on this host")


def create_lab(tag: str | None = None) -> Lab:
    """Two namespaces and a management veth from the host to the agent namespace."""
    n = next(_counter)
    tag = tag or f"{os.getpid() % 10000}{n}"
    subnet = _free_subnet((os.getpid() + n) % 200)
    agent_ns, peer_ns = f"svma{tag}", f"svmp{tag}"
    host_if, ns_if = f"svmm{tag}", "mgmt0"
    host_addr, agent_addr = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
    for ns in (agent_ns, peer_ns):
        run("ip", "netns", "del", ns, check=False)
        run("ip", "netns", "add", ns)
        run("ip", "link", "set", "lo", "up", netns=ns)
    run("ip", "link", "del", host_if, check=False)
    run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", agent_ns)
    run("ip", "addr", "add", f"{host_addr}/30", "dev", host_if)
    run("ip", "link", "set", host_if, "up")
    run("ip", "addr", "add", f"{agent_addr}/30", "dev", ns_if, netns=agent_ns)
    run("ip", "link", "set", ns_if, "up", netns=agent_ns)
    return Lab(tag, agent_ns, peer_ns, host_if, host_addr, agent_addr, _subnet=subnet % 4)


@contextlib.contextmanager
def lab(tag: str | None = None) -> Iterator[Lab]:
    made = create_lab(tag)
    try:
        yield made
    finally:
        made.destroy()


