"""Where sitivmon's CPU per varbind goes: one agent, the real poll path, in-process, stage by stage.

Stages, each timed with process CPU time over `--polls` polls of a real snmpd in a namespace:
  walk    `poll_target` with the real `GufoClient` (gufo decode, asyncio, `absorb_batch`)
  fold    `Monitor.on_poll` (interface rows, link resolution, counter normalisation)
  render  one /metrics body (`exposition.render`), as the once-per-cycle scrape does
then a cProfile of the walk and of the fold (top functions by own time). It runs on the daemon's own
event loop (`sitivmon.aio.run`, uvloop), so the figures are those of the shipped poll path.

Run as root:  .venv/bin/python bench/profile_poll.py [--interfaces 500 --links 50 --polls 20]
Before/after:  .venv/bin/python bench/profile_poll.py --roots /tmp/before-X . --links 500 --rounds 7
  each round runs every checkout's stages in its own subprocess (that checkout's `sitivmon`, this
  file's stages), against the same snmpd, alternating the order round by round (the machine's load
  drifts); medians per checkout are printed side by side with their ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# The checkout whose `sitivmon` is measured: this one, or the one a `--roots` parent names.
ROOT = Path(os.environ.get("PROFILE_POLL_ROOT") or BENCH.parent)
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from sitivmon.aio import run as daemon_run  # noqa: E402  (the daemon's loop: uvloop)

COMMUNITY = "public"  # poll_bench's (imported lazily: it puts its own checkout first on sys.path)


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
    walk = fold = rend = walk_user = 0.0
    varbinds = requests = 0
    pw = cProfile.Profile(time.process_time) if profile else None
    pf = cProfile.Profile(time.process_time) if profile else None
    for _ in range(polls):
        t = time.process_time()
        u = os.times().user
        if pw:
            pw.enable()
        poll = await one()
        if pw:
            pw.disable()
        walk += time.process_time() - t
        walk_user += os.times().user - u  # the Python side; the rest is the kernel's (sendto into the veth)
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
            "walk_user": walk_user / varbinds * 1e6,
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


def child(addr: str, args: argparse.Namespace) -> int:
    """One round for the parent's `--roots`: this process imported ROOT's `sitivmon`."""
    import sitivmon

    config = build(addr, args.links, args.max_repetitions)
    res = daemon_run(stages(config, args.polls, False))
    res["sitivmon"] = str(Path(sitivmon.__file__).resolve().parent.parent)
    print(json.dumps(res))
    return 0


def compare(roots: list[Path], addr: str, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds alternating the checkouts' order; medians per checkout."""
    runs: dict[Path, list[dict[str, Any]]] = {r: [] for r in roots}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", addr, "--links", str(args.links),
            "--polls", str(args.polls), "--max-repetitions", str(args.max_repetitions)]  # fmt: skip
    for i in range(args.rounds):
        for root in roots if i % 2 == 0 else list(reversed(roots)):
            env = dict(os.environ, PROFILE_POLL_ROOT=str(root), PYTHONPATH=str(root))
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{root}: {done.stderr[-2000:]}")
            res = json.loads(done.stdout.strip().splitlines()[-1])
            assert Path(res["sitivmon"]) == root, (res["sitivmon"], root)
            runs[root].append(res)
    out: dict[str, Any] = {}
    keys = ("walk", "walk_user", "fold", "render", "total")
    print(f"medians over {args.rounds} alternating rounds of {args.polls} polls, CPU µs/varbind")
    print(f"  {'checkout':40} " + " ".join(f"{k:>9}" for k in keys) + "   walk µs/request")
    for root in roots:
        med = {k: statistics.median(r["us_per_varbind"][k] for r in runs[root]) for k in keys}
        req = statistics.median(r["us_per_request_walk"] for r in runs[root])
        out[str(root)] = {"us_per_varbind": med, "us_per_request_walk": req, "runs": runs[root]}
        print(f"  {str(root)[-40:]:40} " + " ".join(f"{med[k]:9.3f}" for k in keys) + f"   {req:8.1f}")
    if len(roots) == 2:
        a, b = (out[str(r)]["us_per_varbind"] for r in roots)
        print(f"  {'ratio (second / first)':40} " + " ".join(f"{b[k] / a[k]:9.3f}" for k in keys))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interfaces", type=int, default=500)
    p.add_argument("--links", type=int, default=50)
    p.add_argument("--polls", type=int, default=10, help="polls per round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (medians are reported)")
    p.add_argument("--max-repetitions", type=int, default=25)
    p.add_argument("--no-cprofile", action="store_true")
    p.add_argument("--roots", nargs="+", type=Path, help="checkouts to compare, round by round (no cProfile)")
    p.add_argument("--child", metavar="ADDR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args)
    from poll_bench import RESULTS, agents, preflight

    binary, reason = preflight()
    if binary is None:
        print(f"profile_poll: cannot run here: {reason}", file=sys.stderr)
        return 2

    results: dict[str, Any] = {}
    with agents(1, args.interfaces) as ags:
        if args.roots:
            results["compare"] = compare([r.resolve() for r in args.roots], ags[0].addr, args)
            args.roots = [str(r) for r in args.roots]
            RESULTS.mkdir(parents=True, exist_ok=True)
            out = RESULTS / f"profile_poll-compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
            out.write_text(json.dumps({"params": vars(args), "results": results}, indent=2) + "\n")
            print(f"\nwrote {out}")
            return 0
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
