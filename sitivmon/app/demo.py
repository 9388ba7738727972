"""`sitivmon demo`: build local agents, write a demo config, run the daemon on it until interrupted.

With root and network namespaces: one snmpd in its own namespace whose interfaces are veth links
named after the communes, with UDP traffic flowing through them at different rates, so the counters
move. Without: one snmpd on loopback serving this machine's own interfaces.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import secrets
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sitivmon.agents.netns import Lab, create_lab, netns_available
from sitivmon.agents.scripted import DEMO_CONFIG_YAML, demo_tables, registrations
from sitivmon.agents.snmpd import Snmpd, SnmpdSpec, snmpd_path
from sitivmon.aio import run
from sitivmon.app.config import load_config
from sitivmon.app.daemon import run_daemon
from sitivmon.logs import setup_logging

COMMUNES = [
    ("givors", "Givors", "69091"),
    ("grigny", "Grigny", "69096"),
    ("pierre-benite", "Pierre-Bénite", "69152"),
    ("rive-de-gier", "Rive-de-Gier", "42186"),
    ("vaulx-en-velin", "Vaulx-en-Velin", "69256"),
    ("venissieux", "Vénissieux", "69259"),
    ("corbas", "Corbas", "69273"),
    ("saint-chamond", "Saint-Chamond", "42207"),
]
DEMO_COMMUNITY = "sitivmon-demo"


def load_communes() -> list[tuple[str, str, str]]:
    """The syndicate's communes from ../shared/communes.csv when present, else the built-in list."""
    for candidate in (Path("../shared/communes.csv"), Path(__file__).resolve().parents[3] / "shared/communes.csv"):
        if candidate.is_file():
            with candidate.open(encoding="utf-8") as f:
                return [(r["id"], r["name"], r["insee"]) for r in csv.DictReader(f)]
    return COMMUNES


def ifname(commune_id: str) -> str:
    ascii_id = unicodedata.normalize("NFKD", commune_id).encode("ascii", "ignore").decode()
    return ascii_id.replace("-", "")[:12] + "0"


DEMO_ROLES = (
    ("finance", "syndicate", None),
    ("venissieux-dsi", "venissieux", None),
    ("noc", "syndicate", "operations"),
)


def demo_tokens(state_dir: Path) -> dict[str, str]:
    """Fresh portal tokens for this demo run: the config keeps their SHA-256, the operator sees them once
    (and in a 0600 file next to the config), as a real deployment would hand them out."""
    tokens = {name: f"demo-{name}-{secrets.token_urlsafe(18)}" for name, _, _ in DEMO_ROLES}
    path = state_dir / "portal-tokens.txt"
    path.write_text("".join(f"{name}\t{token}\n" for name, token in tokens.items()))
    path.chmod(0o600)
    return tokens


def api_section(tokens: dict[str, str]) -> dict[str, object]:
    entries: list[dict[str, object]] = []
    for name, scope, role in DEMO_ROLES:
        entry: dict[str, object] = {
            "name": name,
            "scope": scope,
            "token_sha256": hashlib.sha256(tokens[name].encode()).hexdigest(),
        }
        if role is not None:
            entry["role"] = role
        entries.append(entry)
    return {"tokens": entries}


def demo_config(state_dir: Path, listen: str, agent: str, links: list[dict[str, object]]) -> dict[str, object]:
    communes = load_communes()
    return {
        "listen": listen,
        "state_dir": str(state_dir),
        "poll": {"interval": "10s", "timeout": "3s", "retries": 1, "jitter": 0.2},
        # A secret file, as in production, so that `sitivmon usage`/`poll` read the same config as is.
        "credentials": {"demo-v2": {"version": "2c", "community": f"file:{state_dir / 'community'}"}},
        "communes": [{"id": i, "name": n, "insee": c} for i, n, c in communes],
        "targets": [{"name": "demo-core", "address": agent, "credentials": "demo-v2", "profiles": ["interfaces"]}],
        "links": links,
    }


@contextlib.contextmanager
def namespace_agents(workdir: Path) -> Iterator[tuple[str, list[dict[str, object]]]]:
    lab: Lab = create_lab("demo")
    procs: list[subprocess.Popen[bytes]] = []
    agent: Snmpd | None = None
    try:
        links: list[dict[str, object]] = []
        to_agent: list[str] = []
        to_peer: list[str] = []
        for n, (cid, name, _insee) in enumerate(load_communes()):
            link = lab.add_link(ifname(cid), alias=f"Commune: {name} [1G] {{circuit-{n + 1:02d}}}")
            side = "core" if n % 2 else "commune"
            links.append(
                {
                    "id": f"{cid}-fibre-1",
                    "commune": cid,
                    "target": "demo-core",
                    "interface": {"name": link.name},
                    "side": side,
                    "capacity": "1Gbit",
                }
            )
            to_agent.append(f"{link.agent_addr}:{(n + 1) * 40_000}")
            to_peer.append(f"{link.peer_addr}:{(8 - n) * 25_000}")
        agent = Snmpd(
            SnmpdSpec(port=161, address=lab.agent_addr, communities=(DEMO_COMMUNITY,), netns=lab.agent_ns),
            workdir,
        )
        for ns, plan in ((lab.peer_ns, to_agent), (lab.agent_ns, to_peer)):
            argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "sitivmon.app.demotraffic"]
            for item in plan:
                argv += ["--to", item]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield f"{lab.agent_addr}:161", links
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        if agent is not None:
            agent.stop()
        lab.destroy()


@contextlib.contextmanager
def loopback_agent(workdir: Path) -> Iterator[tuple[str, list[dict[str, object]]]]:
    from socket import SOCK_DGRAM, socket

    with socket(type=SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = Snmpd(SnmpdSpec(port=port, communities=(DEMO_COMMUNITY,)), workdir)
    try:
        links: list[dict[str, object]] = [
            {"id": "givors-loopback", "commune": "givors", "target": "demo-core", "interface": {"name": "lo"}}
        ]
        yield f"127.0.0.1:{port}", links
    finally:
        agent.stop()


@contextlib.contextmanager
def datacenter_agent(workdir: Path) -> Iterator[dict[str, Any]]:
    """A datacenter host on loopback: this machine's HOST-RESOURCES/UCD tables plus scripted PDU
    outlets, VMs, sensors and NAS volumes whose values move, with attribution rules for the communes."""
    from socket import SOCK_DGRAM, socket

    with socket(type=SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tables = demo_tables(workdir)
    agent = Snmpd(SnmpdSpec(port=port, communities=(DEMO_COMMUNITY,), pass_persist=registrations(tables)), workdir)
    try:
        profiles_dir = Path(__file__).resolve().parents[2] / "config" / "profiles"
        doc = yaml.safe_load(DEMO_CONFIG_YAML.format(port=port, profiles_dir=profiles_dir, credentials="demo-v2"))
        yield doc
    finally:
        agent.stop()


def cmd_demo(args: argparse.Namespace) -> int:

    setup_logging("plain", "info")
    if snmpd_path() is None:
        print("snmpd is not installed: run `bash scripts/dev demo`, which installs it.", file=sys.stderr)
        return 2
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    agents_dir = state_dir / "agents"
    agents_dir.mkdir(exist_ok=True)
    secret = state_dir / "community"
    secret.write_text(DEMO_COMMUNITY)
    secret.chmod(0o600)
    reason = netns_available()
    agents = namespace_agents(agents_dir) if reason is None else loopback_agent(agents_dir)
    if reason is not None:
        print(f"note: {reason}; the demo polls this machine's own interfaces instead", file=sys.stderr)
    with agents as (agent, links), datacenter_agent(agents_dir) as datacenter:
        config_path = state_dir / "demo.yaml"
        doc = demo_config(state_dir, args.listen, agent, links)
        targets = doc["targets"]
        assert isinstance(targets, list)
        targets.extend(datacenter.pop("targets"))
        doc.update(datacenter)
        allocation = state_dir / "allocation.yaml"
        shutil.copy(Path(__file__).resolve().parents[2] / "config" / "allocation.yaml", allocation)
        doc["allocation"] = str(allocation)
        tokens = demo_tokens(state_dir)
        doc["api"] = api_section(tokens)
        config_path.write_text(
            "# Written by `sitivmon demo`; the SNMP community is in the file next to it.\n"
            + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
        )
        config = load_config(config_path)
        print(
            f"\nsitivmon demo: {len(config.targets)} agent(s), {len(config.links)} links, config {config_path}\n"
            f"  metrics:   http://{args.listen}/metrics\n"
            f"  usage:     .venv/bin/sitivmon usage --config {config_path} --month $(date +%Y-%m)\n"
            f"  one poll:  .venv/bin/sitivmon poll --config {config_path} --target demo-core  (or dc-demo)\n"
            f"  portal:    http://{args.listen}/ui/  sign in with one of these tokens "
            f"(also in {state_dir / 'portal-tokens.txt'}):\n"
            + "".join(f"             {name:<15} {token}\n" for name, token in tokens.items())
            + "  stop with Ctrl-C\n",
            flush=True,
        )
        return run(run_daemon(config_path, config, args.listen))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo", help="run the daemon on a demo config with local SNMP agents")
    demo.add_argument("--listen", default="127.0.0.1:9811")
    demo.add_argument("--state-dir", type=Path, default=Path("var/demo"))
    demo.set_defaults(func=cmd_demo)
