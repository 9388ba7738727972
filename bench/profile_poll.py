"""Where sitivmon's CPU per varbind goes: one agent, the real poll path, in-process, stage by stage.

Stages, each timed with process CPU time over `--polls` polls of a real snmpd in a namespace:
  walk    `poll_target` with the real `GufoClient` (gufo decode, asyncio, `absorb_batch`)
  fold    `Monitor.on_poll` (interface rows, link resolution, counter normalisation)
  render  one /metrics body (`exposition.render`), as the once-per-cycle scrape does
then a cProfile of the walk and of the fold (top functions by own time). It runs on the daemon's own
event loop (`sitivmon.aio.run`, uvloop), so the figures are those of the shipped poll path.

Run as root:  .venv/bin/python bench/profile_poll.py [--interfaces 500 --links 50 --polls 20]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from poll_bench import COMMUNITY, RESULTS, agents, preflight  # noqa: E402

from sitivmon.aio import run as daemon_run  # noqa: E402  (the daemon's loop: uvloop)


def build(addr: str, links: int, max_rep: int) -> Any:
    from sitivmon.app.config import SitivmonConfig

    return SitivmonConfig.model_validate(
        {
            "state_dir": "/tmp/sitivmon-profile-state",
            "poll": {"interval": "10s", "timeout": "5s", "retries": 1, "max_repetitions": max_rep},
            "credentials": {"bench": {"version": "2c", "community": COMMUNITY}},
            "communes": [{"id": "bench", "name": "Bench", "insee": "69123"}],
            "targets": [{"name": "agent0", "address": f"{addr}:161", "credentials": "bench"}],
            "links": [
                {"id": f"agent0-b{k}", "commune": "bench", "target": "agent0", "interface": {"name": f"b{k}"}}
                for k in range(links)
            ],
        }
    )


async def stages(config: Any, polls: int, profile: bool) -> dict[str, Any]:
    from sitivmon.engine.poll import poll_target
    from sitivmon.exposition import LabelCache, render
    from sitivmon.monitor import Monitor
    from sitivmon.profiles import BUILTIN_PROFILES
    from sitivmon.snmp.gufo import GufoClient

    target = config.targets[0]
    cred = config.credentials["bench"]
    settings = config.poll_settings(target)
    client = GufoClient(
        target.host,
        target.port,
        cred,
        timeout=settings.timeout,
        retries=settings.retries,
        max_repetitions=settings.max_repetitions,
    )
    profiles = [BUILTIN_PROFILES[p] for p in target.profiles]
    monitor = Monitor(config)
    cache = LabelCache()

    async def one() -> Any:
        return await poll_target(
            client, target.name, profiles, version=cred.version, deadline_s=9.0, max_varbinds=settings.max_varbinds
        )

    for _ in range(2):  # warm-up: session, snmpd caches, counter baselines
        monitor.on_poll(target, await one())
    walk = fold = rend = 0.0
    varbinds = requests = 0
    pw = cProfile.Profile(time.process_time) if profile else None
    pf = cProfile.Profile(time.process_time) if profile else None
    for _ in range(polls):
        t = time.process_time()
        if pw:
            pw.enable()
        poll = await one()
        if pw:
            pw.disable()
        walk += time.process_time() - t
        assert poll.ok, poll.error
        varbinds += poll.varbinds
        requests += poll.requests
        t = time.process_time()
        if pf:
            pf.enable()
        monitor.on_poll(target, poll)
        if pf:
            pf.disable()
        fold += time.process_time() - t
        t = time.process_time()
        render(monitor, cache)
        rend += time.process_time() - t
    await client.close()
    up = sum(1 for rt in monitor.links.values() if rt.state.value == "up")
    out: dict[str, Any] = {
        "polls": polls,
        "varbinds": varbinds,
        "requests": requests,
        "links_up": up,
        "us_per_varbind": {
            "walk": walk / varbinds * 1e6,
            "fold": fold / varbinds * 1e6,
            "render": rend / varbinds * 1e6,
            "total": (walk + fold + rend) / varbinds * 1e6,
        },
        "us_per_request_walk": walk / requests * 1e6,
    }
    if profile and pw and pf:
        out["top_walk"] = top(pw, varbinds)
        out["top_fold"] = top(pf, varbinds)
    return out


def top(prof: cProfile.Profile, varbinds: int, n: int = 15) -> list[dict[str, Any]]:
    """Own time per function (cProfile inflates small Python calls: read as shares, not absolutes)."""
    st = pstats.Stats(prof, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:n]  # type: ignore[attr-defined]
    return [
        {"function": f"{Path(fn).name}:{line}({name})", "calls": v[1], "share": round(v[2] / total, 4)}
        for (fn, line, name), v in rows
    ]


def show(title: str, res: dict[str, Any]) -> None:
    us = res["us_per_varbind"]
    print(f"{title}: {res['varbinds']} varbinds in {res['requests']} requests, links up {res['links_up']}")
    print(
        f"  CPU µs/varbind: walk {us['walk']:.3f}  fold {us['fold']:.3f}  render {us['render']:.3f}  "
        f"total {us['total']:.3f}   (walk per request {res['us_per_request_walk']:.1f} µs)"
    )
    for key in ("top_walk", "top_fold"):
        if key in res:
            print(f"  cProfile {key[4:]} (own-time share):")
            for row in res[key][:14]:
                print(f"    {row['share'] * 100:5.1f}%  {row['calls']:>8}  {row['function']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interfaces", type=int, default=500)
    p.add_argument("--links", type=int, default=50)
    p.add_argument("--polls", type=int, default=10, help="polls per round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (medians are reported)")
    p.add_argument("--max-repetitions", type=int, default=25)
    p.add_argument("--no-cprofile", action="store_true")
    args = p.parse_args(argv)
    binary, reason = preflight()
    if binary is None:
        print(f"profile_poll: cannot run here: {reason}", file=sys.stderr)
        return 2

    results: dict[str, Any] = {}
    with agents(1, args.interfaces) as ags:
        config = build(ags[0].addr, args.links, args.max_repetitions)
        # Timing runs without the profiler, several rounds (the machine is shared and its load drifts);
        # each stage's median over the rounds is reported. Then one profiled run.
        runs = [daemon_run(stages(config, args.polls, False)) for _ in range(args.rounds)]
        best = dict(runs[0])
        best["us_per_varbind"] = {
            k: statistics.median(r["us_per_varbind"][k] for r in runs) for k in best["us_per_varbind"]
        }
        best["us_per_varbind_min"] = {k: min(r["us_per_varbind"][k] for r in runs) for k in best["us_per_varbind"]}
        best["us_per_request_walk"] = statistics.median(r["us_per_request_walk"] for r in runs)
        best["rounds"] = len(runs)
        if not args.no_cprofile:
            prof = daemon_run(stages(config, max(3, args.polls // 4), True))
            best["top_walk"], best["top_fold"] = prof["top_walk"], prof["top_fold"]
        results["current"] = best
        print(f"medians over {args.rounds} rounds of {args.polls} polls")
        show("current", best)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile_poll-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"params": vars(args), "results": results}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
