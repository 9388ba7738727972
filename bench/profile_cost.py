"""Polling cost of each profile against a real snmpd: varbinds, requests, wall and CPU time per poll.

    .venv/bin/python bench/profile_cost.py [--polls 20] [--outlets 24] [--vms 60] [--max-repetitions 25]

snmpd serves HOST-RESOURCES-MIB, UCD-SNMP-MIB and IF-MIB for this machine; the PDU, VM and sensor
tables come from the scripted pass_persist agent (`sitivmon.agents.scripted`), the same one the tests
and the demo use. pass_persist answers one varbind per script round trip, so those tables cost more
per varbind on snmpd's side than a real PDU or hypervisor would; the client-side CPU time is the
daemon's own cost. CPU is this process's (the poller's), wall is the poll as the scheduler sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitivmon.agents.scripted import (  # noqa: E402
    Outlet,
    Sensor,
    Vm,
    pdu_values,
    scripted_table,
    sensor_values,
    vm_values,
)
from sitivmon.agents.snmpd import Snmpd, SnmpdSpec  # noqa: E402
from sitivmon.app.config import parse_config  # noqa: E402
from sitivmon.config.model import Credential  # noqa: E402
from sitivmon.config.profiles import profile_table  # noqa: E402
from sitivmon.datacenter.handler import DatacenterHandler  # noqa: E402
from sitivmon.engine.poll import poll_target  # noqa: E402
from sitivmon.snmp.gufo import GufoClient  # noqa: E402
from tests.support.procs import free_udp_port  # noqa: E402

PROFILES = ["interfaces", "host_resources", "ucd", "entity_sensors", "apc_pdu_outlets", "vm_inventory"]


async def measure(port: int, profile_name: str, polls: int, max_repetitions: int) -> dict[str, float]:
    config = parse_config(
        "profile_files: [profiles/apc_pdu_outlets.yaml, profiles/vm_inventory.yaml]\n"
        "credentials: {lab: {version: 2c, community: public}}\n"
        f"targets: [{{name: bench, address: '127.0.0.1:{port}', credentials: lab, profiles: [{profile_name}]}}]\n",
        "<bench>",
        REPO / "config",
    )
    profile = profile_table(config, REPO / "config")[profile_name]
    handler = DatacenterHandler(config, config.attribution, base_dir=REPO / "config")
    cred = Credential.model_validate({"version": "2c", "community": "public"})
    client = GufoClient("127.0.0.1", port, cred, timeout=2.0, retries=1, max_repetitions=max_repetitions)
    walls, cpus, handle_cpus = [], [], []
    varbinds = requests = 0
    for i in range(polls + 1):
        cpu0 = time.process_time()
        result = await poll_target(client, "bench", [profile], version="2c", deadline_s=30, max_varbinds=1_000_000)
        cpu1 = time.process_time()
        if result.error is not None:
            raise SystemExit(f"{profile_name}: {result.error}")
        handler.on_poll(config.targets[0], result)
        out: list[str] = []
        handler.render(out)
        cpu2 = time.process_time()
        if i == 0:
            continue  # the first poll pays the session set-up
        walls.append(result.duration)
        cpus.append(cpu1 - cpu0)
        handle_cpus.append(cpu2 - cpu1)
        varbinds, requests = result.varbinds, result.requests
    await client.close()
    return {
        "varbinds": varbinds,
        "requests": requests,
        "wall_ms": statistics.median(walls) * 1000,
        "cpu_ms": statistics.median(cpus) * 1000,
        "handle_ms": statistics.median(handle_cpus) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--outlets", type=int, default=24)
    parser.add_argument("--vms", type=int, default=60)
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--max-repetitions", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sitivmon-bench-") as tmp:
        work = Path(tmp)
        sens, names = sensor_values(
            [Sensor(f"PSU{i}", 6, 1800 + i, precision=1, entity_class=6) for i in range(args.sensors)]
        )
        tables = [
            scripted_table(work / "s", "pdu", "1.3.6.1.4.1.318.1.1.26.9.4.3.1",
                           pdu_values([Outlet(f"VEN-{i}", 100 + i, 1000 + i) for i in range(args.outlets)])),
            scripted_table(work / "s", "vms", "1.3.6.1.4.1.6876.2.1.1",
                           vm_values([Vm(f"GIV-vm-{i}", 2, 4096) for i in range(args.vms)])),
            scripted_table(work / "s", "sensors", "1.3.6.1.2.1.99.1.1.1", sens),
            scripted_table(work / "s", "names", "1.3.6.1.2.1.47.1.1.1.1", names),  # entPhysicalName and Class
        ]
        spec = SnmpdSpec(port=free_udp_port(), pass_persist=[t.registration for t in tables],
                         extra=["includeAllDisks 10%"])
        with Snmpd(spec, work / "agent"):
            print(f"snmpd on 127.0.0.1:{spec.port}, SNMPv2c, max-repetitions {args.max_repetitions}, "
                  f"median of {args.polls} polls; {args.outlets} outlets, {args.vms} VMs, {args.sensors} sensors")
            header = ("profile", "varbinds", "requests", "wall ms", "poll CPU ms", "handle CPU ms")
            print(f"{header[0]:<17}{header[1]:>9}{header[2]:>9}{header[3]:>9}{header[4]:>12}{header[5]:>14}")
            for name in PROFILES:
                r = asyncio.run(measure(spec.port, name, args.polls, args.max_repetitions))
                print(f"{name:<17}{r['varbinds']:>9.0f}{r['requests']:>9.0f}{r['wall_ms']:>9.2f}"
                      f"{r['cpu_ms']:>12.2f}{r['handle_ms']:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
