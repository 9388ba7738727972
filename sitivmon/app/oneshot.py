"""`sitivmon poll`: poll one target now and show what the daemon would make of it (debugging aid)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sitivmon.app.config import SitivmonConfig
from sitivmon.config.profiles import profile_lookup
from sitivmon.datacenter.handler import DatacenterHandler
from sitivmon.engine.poll import poll_target
from sitivmon.links.interfaces import oriented_series
from sitivmon.links.state import LinkRuntime
from sitivmon.monitor import Monitor
from sitivmon.snmp.gufo import gufo_factory


def raw_counters(rt: LinkRuntime) -> dict[str, list[dict[str, Any]]]:
    """Per commune-oriented series, the device counters it is computed from on this poll: the raw
    value as read, and whether it came from the 64-bit HC column or the 32-bit one (whose wraps
    normalisation handles). A delta is only as good as these; without them a wrong delta could not
    be told from a wrong counter."""
    if rt.snapshot is None or rt.resolve_error is not None:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for raw, counter in sorted(rt.snapshot.counters.items()):
        for series, weight in oriented_series({raw: 1}, rt.link.side).items():
            if weight:
                source = "HC" if counter.bits == 64 else "32-bit"
                out.setdefault(series, []).append({"counter": raw, "source": source, "raw": counter.value})
    return out


async def poll_once(
    config: SitivmonConfig, target_name: str, *, base_dir: Path | None = None, samples: int = 2, pause_s: float = 2.0
) -> dict[str, Any]:
    target = config.target_by_name()[target_name]
    settings = config.poll_settings(target)
    cred = config.credentials[target.credentials]
    datacenter = DatacenterHandler(config, config.attribution, base_dir=base_dir)
    monitor = Monitor(config, handlers=[datacenter])
    client = gufo_factory(target, cred, settings)
    lookup = profile_lookup(config, base_dir)
    profiles = [lookup(p) for p in target.profiles]
    report: dict[str, Any] = {"target": target.name, "address": target.address, "error": None, "polls": []}
    previous: dict[str, dict[str, int]] = {}
    for i in range(max(1, samples)):
        if i:
            await asyncio.sleep(pause_s)
        poll = await poll_target(
            client,
            target.name,
            profiles,
            version=cred.version,
            deadline_s=settings.interval,
            max_varbinds=settings.max_varbinds,
        )
        monitor.on_poll(target, poll)
        entry: dict[str, Any] = {
            "duration_s": round(poll.duration, 4),
            "varbinds": poll.varbinds,
            "requests": poll.requests,
            "walk_stops": [f"{c}: {s.value}" for c, s in poll.walk_stops],
            "anomalies": [{"reason": a.reason, "subject": a.subject, "detail": a.detail} for a in poll.anomalies],
        }
        if poll.error is not None:
            entry["error"] = str(poll.error)
            report["error"] = str(poll.error)
        links = []
        for rt in monitor.links_of(target.name):
            before = previous.get(rt.link.id)
            links.append(
                {
                    "link": rt.link.id,
                    "commune": rt.link.commune,
                    "side": rt.link.side.value,
                    "interface": rt.interface,
                    "if_index": rt.if_index,
                    "alias": rt.alias,
                    "state": rt.state.value,
                    "admin_up": rt.admin_up,
                    "capacity_bytes_per_s": rt.capacity_bytes_per_s,
                    "port_speed_bytes_per_s": rt.speed_bytes_per_s,
                    "resolve_error": rt.resolve_error,
                    # What was read, and from which column width: 64 = HC counter, 32 = the 32-bit one.
                    "raw_counters": (
                        {k: {"value": c.value, "bits": c.bits} for k, c in sorted(rt.snapshot.counters.items())}
                        if rt.snapshot is not None
                        else None
                    ),
                    "delta_since_previous": (
                        {k: v - before[k] for k, v in rt.totals.items()} if before is not None else None
                    ),
                    "counters": raw_counters(rt),
                }
            )
            previous[rt.link.id] = dict(rt.totals)
        entry["links"] = links
        status = monitor.targets.get(target.name)
        # Every value set aside so far on this target (links and profiles too), by reason, as /metrics counts.
        entry["anomaly_counts"] = dict(sorted(status.anomalies.items())) if status is not None else {}
        rendered: list[str] = []
        datacenter.render(rendered)
        mark = f'target="{target.name}"'
        entry["datacenter_samples"] = [
            line for chunk in rendered for line in chunk.splitlines() if mark in line and not line.startswith("#")
        ]
        report["polls"].append(entry)
    await client.close()
    return report
