"""CPU per varbind: the sitivmon daemon against Debian's prometheus-snmp-exporter, same agents, same columns.

N network namespaces each hold a real net-snmp snmpd serving about `--interfaces` veth interfaces. The
real daemon (`python -m sitivmon run`) polls them with the `interfaces` profile and has /metrics
scraped once per cycle; then (or at the same time, `--mode together`) the exporter walks the same
columns (bench/snmp_exporter.yml) with one /snmp scrape per agent per cycle. CPU comes from
/proc/<pid>/stat (utime + stime, all threads) over a window of whole cycles after a warm-up cycle, so
start-up costs are out and the idle cost between cycles is in, for both sides alike.

The daemon's first month-to-date refresh is start-up work too (`--first-refresh warm-up`, the default):
it scans every series of the current week from the week's start, once per daemon start, where a refresh
of a daemon that has run for a while scans only the buckets since the previous one. The window opens
after it has ended and half a refresh period after it began, so that it holds the one refresh of a
steady state's period (300 s) whole. `--first-refresh window` opens the window at the first /metrics
scrape, which starts that first refresh: what this bench measured before 2026-12-02.

Ratios are what matter (shared 2-core machine): the goal is sitivmon <= 0.5x the exporter's CPU per
varbind. Prints a table and writes bench/results/poll_bench-<time>.json (and latest.json).

Run as root from the repository:  .venv/bin/python bench/poll_bench.py [--agents 4 --interfaces 500]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
EXPORTER_CANDIDATES = ("/usr/bin/prometheus-snmp-exporter", "/usr/bin/snmp_exporter")
EXPORTER_MODULE = "sitivmon_interfaces"
COMMUNITY = "public"
TICK = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(ROOT))


# --- measurement helpers (pure or /proc only) -------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads) in seconds, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
    return body.decode("utf-8", errors="replace")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)")


def samples(text: str, name: str) -> list[tuple[str, float]]:
    """(labels, value) of every sample of one metric in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if line.startswith(name):
            m = _SAMPLE.match(line)
            if m and m.group(1) == name:
                out.append((m.group(2) or "", float(m.group(3))))
    return out


def per_kvb(cpu: float, varbinds: int) -> float | None:
    return cpu / varbinds * 1000 if varbinds else None


def per_cpu(cpu: float, varbinds: int) -> float | None:
    return varbinds / cpu if cpu > 0 else None


@dataclass
class SideResult:
    side: str
    cycles: int
    window_s: float
    varbinds: int
    cpu_s: float
    snmpd_cpu_s: float | None
    sys_s: float = 0.0
    scrapes: int = 0
    errors: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "cycles": self.cycles,
            "window_s": round(self.window_s, 3),
            "varbinds": self.varbinds,
            "cpu_s": round(self.cpu_s, 3),
            "kernel_cpu_s": round(self.sys_s, 3),
            "cpu_s_per_1000_varbinds": _r(per_kvb(self.cpu_s, self.varbinds)),
            "varbinds_per_cpu_s": _r(per_cpu(self.cpu_s, self.varbinds), 0),
            "snmpd_cpu_s": None if self.snmpd_cpu_s is None else round(self.snmpd_cpu_s, 3),
            "snmpd_cpu_s_per_1000_varbinds": (
                None if self.snmpd_cpu_s is None else _r(per_kvb(self.snmpd_cpu_s, self.varbinds))
            ),
            "scrapes": self.scrapes,
            "errors": self.errors,
            "notes": self.notes,
        }


def _r(v: float | None, nd: int = 5) -> float | None:
    return None if v is None else round(v, nd)


# --- environment -------------------------------------------------------------------------------------


_INTERPRETER = """
import json, sys, sysconfig
args = sysconfig.get_config_var("CONFIG_ARGS") or ""
with open("/proc/self/maps") as maps:
    shared = "libpython" in maps.read()
said = [w for w in ("--enable-optimizations", "--with-lto") if w in args]
build = "interpreter in a shared libpython" if shared else "interpreter linked into the executable"
build += (", configured " + " ".join(said)) if said else (
    ", no PGO/LTO in its configure flags (a distribution may add them)"
)
print(json.dumps({"executable": sys.executable, "version": sys.version.split()[0], "build": build}))
"""


def interpreter(python: str) -> dict[str, str] | None:
    """Path, version and configure flags of the interpreter a daemon runs on: its build moves the daemon's
    CPU by a tenth (bench/README.md, 2026-12-02), so every result names it."""
    try:
        done = subprocess.run([python, "-c", _INTERPRETER], capture_output=True, text=True, timeout=60, check=True)
        info: dict[str, str] = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return info


def daemon_python(args: argparse.Namespace, variant: str) -> str:
    """The interpreter of a variant's daemon: `--base-python` for the base, `--python` for the others."""
    return str(args.base_python if variant == "sitivmon-base" and args.base_python else args.python)


def preflight() -> tuple[str | None, str]:
    """(exporter binary, "") when the bench can run here, else (None, reason)."""
    if os.geteuid() != 0:
        return None, "this benchmark needs root (network namespaces, veth, snmpd on port 161)"
    try:
        from sitivmon.agents.netns import netns_available
        from sitivmon.agents.snmpd import snmpd_path
    except ImportError as exc:
        return None, f"sitivmon is not importable ({exc}): run it with the project's venv (.venv/bin/python)"
    reason = netns_available()
    if reason:
        return None, f"network namespaces are not available: {reason}"
    if snmpd_path() is None:
        return None, "snmpd is not installed (Debian package 'snmpd')"
    exporter = next((p for p in EXPORTER_CANDIDATES if os.path.exists(p)), shutil.which("snmp_exporter"))
    if exporter is None:
        return None, "prometheus-snmp-exporter is not installed (Debian package 'prometheus-snmp-exporter')"
    return exporter, ""


@dataclass
class Agent:
    name: str
    addr: str
    snmpd_pid: int


@contextlib.contextmanager
def agents(count: int, interfaces: int) -> Iterator[list[Agent]]:
    """`count` namespaces with `interfaces` veth interfaces (plus lo and the management veth) and an snmpd."""
    from sitivmon.agents.netns import lab
    from sitivmon.agents.snmpd import Snmpd, SnmpdSpec

    with contextlib.ExitStack() as stack:
        out = []
        for i in range(count):
            made = stack.enter_context(lab())
            made.add_bulk(interfaces)
            spec = SnmpdSpec(port=161, address=made.agent_addr, communities=(COMMUNITY,), netns=made.agent_ns)
            agent = stack.enter_context(Snmpd(spec))
            out.append(Agent(f"agent{i}", made.agent_addr, agent.proc.pid))
        for a in out:
            wait_snmp(a.addr)
        yield out


def wait_snmp(addr: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(
            ["snmpget", "-v2c", f"-c{COMMUNITY}", "-On", "-t1", "-r0", addr, "1.3.6.1.2.1.1.3.0"],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"snmpd at {addr} does not answer from the host")


def snmpd_cpu(ags: list[Agent]) -> float:
    return sum(cpu_seconds(pid) for pid in {a.snmpd_pid for a in ags})  # a process may serve several agents


# --- the two pollers ---------------------------------------------------------------------------------


def sitivmon_config(ags: list[Agent], links: int, interval: float, max_rep: int, state_dir: Path) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:9811",
        "state_dir": str(state_dir),
        "log": {"level": "warning"},
        "traps": {"port": 0},  # the receiver stays on (idle), on a free port: 9162 may be taken here
        "poll": {
            "interval": f"{interval:g}s",
            "timeout": f"{min(5.0, interval):g}s",
            "retries": 1,
            "max_repetitions": max_rep,
        },
        "credentials": {"bench": {"version": "2c", "community": COMMUNITY}},
        "communes": [{"id": "bench", "name": "Bench", "insee": "69123"}],
        "targets": [{"name": a.name, "address": f"{a.addr}:161", "credentials": "bench"} for a in ags],
        "links": [
            {"id": f"{a.name}-b{k}", "commune": "bench", "target": a.name, "interface": {"name": f"b{k}"}}
            for a in ags
            for k in range(links)
        ],
    }


def write_history(config: dict[str, Any], timezone: str = "Europe/Paris") -> None:
    """Start the daemon's store where a daemon that has polled these links for weeks leaves it: every
    link's closed buckets from a week before the month's start (the daemon's default timezone) up to
    now. Once per state directory: a later repeat's daemon finds it with the earlier one's buckets too."""
    import datetime
    import zoneinfo

    from profile_store import write_history as write

    from sitivmon.readings import Quantity, UsageKey

    state = Path(config["state_dir"])
    path = state / "usage.sqlite3"
    if path.exists():
        return
    state.mkdir(parents=True, exist_ok=True)
    now = time.time()
    local = datetime.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(timezone))
    month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = int(month.timestamp()) - 7 * 86_400
    quantities = (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT, Quantity.LINK_UP)
    series = [tuple(UsageKey(link["commune"], link["id"], q) for q in quantities) for link in config["links"]]
    started = time.monotonic()
    interval = float(str(config["poll"]["interval"]).removesuffix("s"))  # as `sitivmon_config` writes it
    weeks = write(path, series, start, int(now), interval)  # type: ignore[arg-type]
    print(
        f"  history: {len(series)} links x 3 series from {time.strftime('%Y-%m-%d %H:%M', time.gmtime(start))} UTC"
        f" ({weeks} weeks) written in {time.monotonic() - started:.0f} s",
        flush=True,
    )


# The daemon as shipped, and the same daemon without usage recording (attribution only: the difference
# between the two is what the usage recorder and the month-to-date gauges cost).
SITIVMON_VARIANTS: dict[str, list[str]] = {
    "sitivmon": ["-m", "sitivmon"],
    "sitivmon-nousage": [str(BENCH / "attribution_daemon.py"), "--"],
    "sitivmon-base": ["-m", "sitivmon"],  # the daemon of the checkout given by --base ("before")
}


class Sitivmon:
    def __init__(
        self,
        variant: str,
        workdir: Path,
        config: dict[str, Any],
        py_spy: str | None,
        spy_out: Path | None,
        *,
        root: Path | None = None,
        tag: str | None = None,
        python: str | None = None,
    ) -> None:
        """`root`: the checkout whose code runs (default this one), put first on PYTHONPATH. `python`:
        the interpreter that runs it (default this bench's, `sys.executable`)."""
        import yaml

        self.port = free_tcp_port()
        name = tag or variant
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115
        self.refreshes: tuple[float, float, float] | None = None
        """Month-to-date refreshes, their CPU-s and the series they scanned from the week's start, last scrape."""
        code = (root or ROOT).resolve()
        entry = SITIVMON_VARIANTS[variant]
        if entry == ["-m", "sitivmon"] and not (code / "sitivmon" / "__main__.py").exists():
            entry = ["-m", "sitivmon.cli"]  # a checkout from before the composition root (sitivmon/app)
        argv = [python or sys.executable, *entry, "run", "--config", str(path)]
        argv += ["--listen", f"127.0.0.1:{self.port}", "--log-level", "warning"]
        env = dict(os.environ, PYTHONPATH=str(code))
        self.proc = subprocess.Popen(
            argv, cwd=code, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.spy: subprocess.Popen[bytes] | None = None
        self._spy_args = (py_spy, spy_out)

    def start_spy(self) -> None:
        py_spy, out = self._spy_args
        if py_spy and out:
            # --gil: only the thread holding the GIL, i.e. where the Python CPU goes. Without it a thread
            # waiting for the GIL (the loop while the refresh or a flush runs, and the reverse) is
            # sampled as busy: shares overstated the threads and the loop's native part (issue 15).
            argv = [py_spy, "record", "--pid", str(self.proc.pid), "--rate", "200", "--format", "raw", "--gil"]
            argv += ["--nonblocking", "--output", str(out)]
            self.spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_spy(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            try:
                self.spy.wait(20)
            except subprocess.TimeoutExpired:
                self.spy.kill()
                self.spy.wait(5)
            self.spy = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sitivmon exited with {self.proc.returncode}; see its log")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url("/-/ready"), timeout=2).close()
                return
            time.sleep(0.2)
        raise TimeoutError("sitivmon did not become ready")

    def scrape(self) -> tuple[int, dict[str, float], int]:
        """(varbinds so far, errors by reason, links up) from one /metrics scrape."""
        text = http_get(self.url("/metrics"))
        varbinds = int(sum(v for _, v in samples(text, "sitivmon_target_varbinds_total")))
        errors: dict[str, float] = {}
        for lab, v in samples(text, "sitivmon_poll_errors_total"):
            reason = re.search(r'reason="([^"]*)"', lab)
            key = reason.group(1) if reason else "?"
            errors[key] = errors.get(key, 0) + v
        up = int(sum(v for _, v in samples(text, "sitivmon_link_up")))
        runs = samples(text, "sitivmon_usage_month_to_date_refreshes_total")
        cpu = samples(text, "sitivmon_usage_month_to_date_refresh_cpu_seconds_total")
        again = samples(text, "sitivmon_usage_month_to_date_rescanned_series_total")
        # (None: a daemon without them; rescanned -1: one without that counter, the base of a comparison)
        self.refreshes = (runs[0][1], cpu[0][1], again[0][1] if again else -1.0) if runs and cpu else None
        return varbinds, errors, up

    def cpu(self) -> tuple[float, float]:
        return cpu_split(self.proc.pid)

    def stop(self) -> None:
        self.stop_spy()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def exporter_config(workdir: Path, max_rep: int) -> Path:
    """bench/snmp_exporter.yml as is, or a copy with another max_repetitions."""
    source = BENCH / "snmp_exporter.yml"
    text = source.read_text()
    if f"max_repetitions: {max_rep}\n" in text:
        return source
    copy = workdir / "snmp_exporter.yml"
    copy.write_text(re.sub(r"max_repetitions: \d+", f"max_repetitions: {max_rep}", text))
    return copy


class Exporter:
    def __init__(self, binary: str, workdir: Path, config: Path, ags: list[Agent]) -> None:
        self.port = free_tcp_port()
        self.log = open(workdir / "exporter.log", "wb")  # noqa: SIM115
        argv = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.agents = ags
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(ags))
        self.samples = 0

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}; see its log")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2).close()
                return
            time.sleep(0.1)
        raise TimeoutError("exporter did not start")

    def _one(self, addr: str) -> tuple[int, int, bool]:
        text = http_get(f"http://127.0.0.1:{self.port}/snmp?target={addr}&module={EXPORTER_MODULE}")
        pdus = samples(text, "snmp_scrape_pdus_returned")
        count = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        ok = bool(pdus) and "An error has occurred" not in text
        return (int(pdus[0][1]) if pdus else 0), count, ok

    def round(self) -> tuple[int, int]:
        """Scrape every agent once, concurrently as Prometheus would; (varbinds, failed scrapes)."""
        results = list(self.pool.map(self._one, [a.addr for a in self.agents]))
        self.samples += sum(r[1] for r in results)
        return sum(r[0] for r in results), sum(1 for r in results if not r[2])

    def cpu(self) -> tuple[float, float]:
        return cpu_split(self.proc.pid)

    def stop(self) -> None:
        self.pool.shutdown(wait=True)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


# --- phases ------------------------------------------------------------------------------------------


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def after_first_refresh(daemons: list[Sitivmon], interval: float, timeout: float = 1800.0) -> None:
    """Return once every daemon's first month-to-date refresh has ended and half a refresh period has
    passed since the scrape that started it, scraping once per cycle meanwhile as before: a window
    one period long that opens then holds the next refresh, a steady state's, whole. A daemon that
    does not expose the refreshes (no usage recording) has none to wait for."""
    from sitivmon.usage.config import UsageSettings

    began = time.monotonic()
    half = UsageSettings().live_refresh_s / 2  # the daemon's default, as the bench's config leaves it
    k = 0
    while True:
        done = all(sv.refreshes is None or sv.refreshes[0] >= 1 for sv in daemons)
        if done and time.monotonic() >= began + half:
            return
        if time.monotonic() > began + timeout:
            raise TimeoutError(f"the first month-to-date refresh has not ended after {timeout:.0f} s")
        k += 1
        sleep_until(began + k * interval)
        for sv in daemons:
            sv.scrape()


def run_phase(
    args: argparse.Namespace,
    ags: list[Agent],
    workdir: Path,
    exporter_bin: str,
    which: tuple[str, ...],
    spy_out: Path | None,
) -> dict[str, SideResult]:
    """Run the named pollers over the same window of whole cycles; one result per poller.

    A daemon's window opens one full cycle after it is ready (every target polled once, so client
    set-up is behind it) and holds `cycles` whole intervals: each target is polled once per interval
    and the /metrics scrape at each interval's end is in the window too. The exporter's window holds
    the same number of intervals, each opened by one concurrent scrape round of every agent.
    """
    interval = args.interval
    cycles = max(1, round(args.duration / interval))
    daemons: dict[str, Sitivmon] = {}
    ex: Exporter | None = None
    try:
        for name in which:
            if name in SITIVMON_VARIANTS:
                config = sitivmon_config(ags, args.links, interval, args.max_repetitions, workdir / f"state-{name}")
                if args.history == "month":
                    write_history(config)
                root = args.base if name == "sitivmon-base" else None
                python = daemon_python(args, name)
                # Only the first daemon of the phase is sampled (the file is named after it): each sampled
                # daemon would write its stacks over the other's.
                spied = spy_out if name == which[0] else None
                daemons[name] = Sitivmon(name, workdir, config, args.py_spy, spied, root=root, python=python)
        for sv in daemons.values():
            sv.wait_ready(timeout=3 * interval + 30)
        if "exporter" in which:
            ex = Exporter(exporter_bin, workdir, exporter_config(workdir, args.max_repetitions), ags)
            ex.wait_ready()
            ex.round()  # warm-up: first walks, connection set-up
        if daemons:
            time.sleep(interval)  # warm-up cycle
            for sv in daemons.values():
                sv.scrape()  # the first /metrics scrape: it starts the first month-to-date refresh
            if args.first_refresh == "warm-up":
                after_first_refresh(list(daemons.values()), interval)
            for sv in daemons.values():
                sv.start_spy()
        t0 = time.monotonic()
        cpu0 = {name: sv.cpu() for name, sv in daemons.items()}
        e_cpu0 = ex.cpu() if ex else (0.0, 0.0)
        d_cpu0 = snmpd_cpu(ags)
        first = {name: sv.scrape() for name, sv in daemons.items()}
        refreshes0 = {name: sv.refreshes for name, sv in daemons.items()}
        last = dict(first)
        e_vb = e_fail = 0
        for k in range(cycles):
            if ex is not None:
                vb, failed = ex.round()
                e_vb += vb
                e_fail += failed
            sleep_until(t0 + (k + 1) * interval)
            for name, sv in daemons.items():
                last[name] = sv.scrape()  # the once-per-cycle /metrics scrape
        window = time.monotonic() - t0
        cpu1 = {name: sv.cpu() for name, sv in daemons.items()}
        e_cpu1 = ex.cpu() if ex else (0.0, 0.0)
        d_cpu = snmpd_cpu(ags) - d_cpu0
        shared_agents = len(which) > 1
        out: dict[str, SideResult] = {}
        for name in daemons:
            (vb0, err0, _), (vb1, err1, up) = first[name], last[name]
            errs = {k: v - err0.get(k, 0) for k, v in err1.items() if v - err0.get(k, 0)}
            user = cpu1[name][0] - cpu0[name][0]
            kernel = cpu1[name][1] - cpu0[name][1]
            res = SideResult(
                name,
                cycles,
                window,
                vb1 - vb0,
                user + kernel,
                None if shared_agents else d_cpu,
                kernel,
                cycles + 1,
                errs,
            )
            res.notes.append(f"links up at the end: {up} of {len(ags) * args.links}")
            r0, r1 = refreshes0[name], daemons[name].refreshes
            if r0 is not None and r1 is not None:
                spent = r1[1] - r0[1]
                res.notes.append(
                    f"month-to-date refreshes in the window: {r1[0] - r0[0]:.0f}, {spent:.2f} CPU-s"
                    f" ({spent / max(user + kernel, 1e-9):.1%} of the daemon's)"
                    + (f", series scanned from the week's start: {r1[2] - r0[2]:.0f}" if min(r0[2], r1[2]) >= 0 else "")
                )
            out[name] = res
        if ex is not None:
            user = e_cpu1[0] - e_cpu0[0]
            kernel = e_cpu1[1] - e_cpu0[1]
            res = SideResult(
                "exporter",
                cycles,
                window,
                e_vb,
                user + kernel,
                None if shared_agents else d_cpu,
                kernel,
                cycles * len(ags),
                {"failed_scrapes": e_fail} if e_fail else {},
            )
            res.notes.append(f"samples exposed: {ex.samples}")
            out["exporter"] = res
        if shared_agents:
            for r in out.values():
                r.notes.append(f"snmpd CPU for all pollers together: {d_cpu:.3f}s")
        return out
    finally:
        for sv in daemons.values():
            sv.stop()
        if ex is not None:
            ex.stop()


def summarise_spy(raw: Path, top: int = 25) -> list[dict[str, Any]]:
    """Self time per function from py-spy's collapsed stacks (`frame;frame;... count`)."""
    if not raw.exists():
        return []
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] = own.get(leaf, 0) + n
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return [{"function": f, "share": round(n / total, 4)} for f, n in ranked] if total else []


# --- main --------------------------------------------------------------------------------------------


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(results: dict[str, SideResult], ratios: dict[str, float | None], goal: float) -> None:
    w = max(13, *(len(name) for name in results))  # 13 keeps the usual two-poller table as it was
    head = (
        f"{'poller':<{w}} {'cycles':>6} {'varbinds':>10} {'CPU s':>7} {'kernel':>7} {'CPU s/1k vb':>12} "
        f"{'vb/CPU s':>10} {'snmpd s/1k vb':>14}"
    )
    print(head)
    print("-" * len(head))
    for r in results.values():
        snmpd = None if r.snmpd_cpu_s is None else per_kvb(r.snmpd_cpu_s, r.varbinds)
        print(
            f"{r.side:<{w}} {r.cycles:>6} {r.varbinds:>10} {r.cpu_s:>7.2f} {r.sys_s:>7.2f} "
            f"{fmt(per_kvb(r.cpu_s, r.varbinds), '12.4f')} {fmt(per_cpu(r.cpu_s, r.varbinds), '10,.0f')} "
            f"{fmt(snmpd, '14.4f')}"
        )
    print()
    for name, ratio in ratios.items():
        if ratio is None:
            continue
        verdict = "MET" if ratio <= goal else "NOT MET"
        label = {"sitivmon": "sitivmon", "sitivmon-base": "sitivmon-base (before)"}.get(name, f"{name} (attribution)")
        print(f"ratio {label}/exporter CPU per varbind: {ratio:.3f}  (goal <= {goal}: {verdict})")
    for r in results.values():
        for note in dict.fromkeys(r.notes):
            print(f"  {r.side}: {note}")
        if r.errors:
            print(f"  {r.side}: errors during the window: {r.errors}")


def merge(a: SideResult | None, b: SideResult) -> SideResult:
    if a is None:
        return b
    snmpd = None if a.snmpd_cpu_s is None or b.snmpd_cpu_s is None else a.snmpd_cpu_s + b.snmpd_cpu_s
    errors = dict(a.errors)
    for k, v in b.errors.items():
        errors[k] = errors.get(k, 0) + v
    return SideResult(
        a.side,
        a.cycles + b.cycles,
        a.window_s + b.window_s,
        a.varbinds + b.varbinds,
        a.cpu_s + b.cpu_s,
        snmpd,
        a.sys_s + b.sys_s,
        a.scrapes + b.scrapes,
        errors,
        a.notes + b.notes,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=4, help="agent namespaces, one snmpd each (default 4)")
    p.add_argument("--interfaces", type=int, default=500, help="veth interfaces per agent (default 500)")
    p.add_argument("--links", type=int, default=50, help="sitivmon links configured per target (default 50)")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per poller and repeat (default 60)")
    p.add_argument("--interval", type=float, default=10.0, help="poll/scrape cycle in seconds (default 10)")
    p.add_argument("--max-repetitions", type=int, default=25, help="GETBULK max-repetitions, both pollers (25)")
    p.add_argument(
        "--mode",
        choices=("sequential", "together"),
        default="sequential",
        help="one poller after the other (snmpd CPU attributable) or all at once",
    )
    p.add_argument("--repeat", type=int, default=1, help="repeat the measurement, alternating the order")
    p.add_argument(
        "--variants",
        default="sitivmon",
        help="comma-separated daemons: " + ", ".join(SITIVMON_VARIANTS) + " (see bench/README.md)",
    )
    p.add_argument(
        "--base", type=Path, default=None, help="checkout of the 'before' code, for the sitivmon-base variant"
    )
    p.add_argument(
        "--history",
        choices=("month", "none"),
        default="month",
        help="usage each daemon's store starts with: the month so far and the week before (default), as a daemon"
        " that has run for days has it; none: an empty store, which leaves out the month-to-date refresh's reads",
    )
    p.add_argument(
        "--first-refresh",
        choices=("warm-up", "window"),
        default="warm-up",
        help="where the daemon's first month-to-date refresh (a scan of every series from its week's start,"
        " once per start) falls: in the warm-up (default; the window then holds one refresh of a steady"
        " state) or in the window (what the bench measured before 2026-12-02)",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter that runs the daemon (default: this bench's). Measure with the one the daemon is"
        " deployed on: Debian 12's python3 or the python:3.11-slim image, both optimised builds (PGO, LTO); a"
        " pyenv build without PGO and with a shared libpython costs the daemon about 11 %% more CPU (bench/README.md)",
    )
    p.add_argument("--base-python", default=None, help="the sitivmon-base variant's interpreter (default: --python)")
    p.add_argument("--goal", type=float, default=0.5, help="target ratio sitivmon/exporter (default 0.5)")
    p.add_argument(
        "--py-spy",
        default=None,
        help="path of py-spy: sample the first daemon of the first window, the thread holding the GIL (--gil)",
    )
    p.add_argument("--output", type=Path, default=None, help="JSON result (default bench/results/poll_bench-*.json)")
    args = p.parse_args(argv)
    for name in ("agents", "interfaces", "repeat"):
        if getattr(args, name) < 1:
            print(f"poll_bench: --{name} must be at least 1", file=sys.stderr)
            return 2
    if args.links > args.interfaces:
        print("poll_bench: --links cannot exceed --interfaces", file=sys.stderr)
        return 2
    if args.interval < 2:
        print("poll_bench: --interval must be at least 2 seconds", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in SITIVMON_VARIANTS]
    if "sitivmon-base" in variants and (args.base is None or not (args.base / "sitivmon").is_dir()):
        print("poll_bench: the sitivmon-base variant needs --base <checkout with a sitivmon/ package>", file=sys.stderr)
        return 2
    if unknown or not variants:
        print(f"poll_bench: --variants: unknown {unknown} (known: {', '.join(SITIVMON_VARIANTS)})", file=sys.stderr)
        return 2
    args.base_python = args.base_python or args.python
    pythons: dict[str, dict[str, str]] = {}
    for name in variants:
        python = daemon_python(args, name)
        info = interpreter(python)
        if info is None:
            print(f"poll_bench: {python} (the {name} daemon's interpreter) does not run", file=sys.stderr)
            return 2
        pythons[name] = info

    exporter_bin, reason = preflight()
    if exporter_bin is None:
        print(f"poll_bench: cannot run here: {reason}", file=sys.stderr)
        return 2

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sides = [*variants, "exporter"]
    totals: dict[str, SideResult | None] = dict.fromkeys(sides)
    runs = []
    spies: dict[str, Path] = {}
    started = time.time()
    for name, info in pythons.items():
        print(f"{name} runs on {info['executable']}: Python {info['version']}, {info['build']}")
    print(f"setting up {args.agents} agents x {args.interfaces} interfaces ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="sitivmon-bench-") as tmp, agents(args.agents, args.interfaces) as ags:
        workdir = Path(tmp)
        for rep in range(args.repeat):
            if args.mode == "together":
                orders: list[tuple[str, ...]] = [tuple(sides)]
            else:
                orders = [(side,) for side in (sides if rep % 2 == 0 else sides[::-1])]
            for which in orders:
                print(
                    f"repeat {rep + 1}/{args.repeat}: measuring {' + '.join(which)} for {args.duration:g}s ...",
                    flush=True,
                )
                spy_out = None
                if args.py_spy and rep == 0 and which[0] != "exporter":
                    spy_out = spies[which[0]] = RESULTS / f"pyspy-{stamp}-{which[0]}.txt"
                phase = run_phase(args, ags, workdir, exporter_bin, which, spy_out)
                for name, res in phase.items():
                    totals[name] = merge(totals[name], res)
                    runs.append({"repeat": rep, **res.as_dict()})
    final = {k: v for k, v in totals.items() if v is not None}
    e = final["exporter"]
    e_per = per_kvb(e.cpu_s, e.varbinds)
    ratios: dict[str, float | None] = {}
    for name in variants:
        s_per = per_kvb(final[name].cpu_s, final[name].varbinds)
        ratios[name] = s_per / e_per if s_per is not None and e_per else None
    print()
    print_table(final, ratios, args.goal)
    spy = {name: summarise_spy(path) for name, path in spies.items()}
    for name, rows in spy.items():
        if rows:
            print(f"\npy-spy, {name}: share of the daemon's samples by leaf function (top 12):")
            for row in rows[:12]:
                print(f"  {row['share'] * 100:5.1f}%  {row['function']}")
    main_ratio = ratios.get("sitivmon")
    result = {
        "bench": "poll_bench",
        "started": started,
        "finished": time.time(),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "interpreters": pythons,
        **{name: final[name].as_dict() for name in sides},
        "ratio_cpu_per_varbind": _r(main_ratio, 4),
        "ratios": {name: _r(r, 4) for name, r in ratios.items()},
        "goal": args.goal,
        "goal_met": None if main_ratio is None else main_ratio <= args.goal,
        "runs": runs,
        "py_spy_top": spy,
    }
    out = args.output or RESULTS / f"poll_bench-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
