"""The gufo-snmp client and `sitivmon poll` against a real snmpd on loopback: v2c, every v3 security
level and protocol net-snmp accepts, and the failures an operator meets (wrong community, user, keys)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sitivmon.agents.snmpd import V3User
from sitivmon.config.model import Credential
from sitivmon.engine.poll import poll_target
from sitivmon.links.interfaces import interface_rows
from sitivmon.profiles import BUILTIN_PROFILES
from sitivmon.profiles.model import Kind, Profile, Scalar
from sitivmon.readings import Anomaly
from sitivmon.snmp.client import PollError, PollErrorReason, WalkStop
from sitivmon.snmp.gufo import GufoClient
from tests.support import agents

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"

CREDENTIALS = agents.all_credentials()
CREDENTIALS["v1"] = {"version": "1", "community": agents.COMMUNITY}  # GETNEXT walks, no Counter64


def client(agent: agents.Agent, cred: dict[str, Any], *, timeout: float = 1.0, retries: int = 0) -> GufoClient:
    return GufoClient(
        agent.host, agent.port, Credential.model_validate(cred), timeout=timeout, retries=retries, max_repetitions=20
    )


@pytest.mark.parametrize("name", list(CREDENTIALS))
async def test_get_and_walk_with_each_credential(snmp_agent: agents.Agent, name: str) -> None:
    c = client(snmp_agent, CREDENTIALS[name])
    values = await c.get_many([SYS_UPTIME])
    assert isinstance(values[SYS_UPTIME], int) and values[SYS_UPTIME] > 0
    walk = await c.walk(IF_NAME, max_varbinds=10_000)
    names = {v.decode() if isinstance(v, bytes) else v for v in walk.rows.values()}
    assert "lo" in names
    assert walk.stopped is None and walk.requests >= 1
    await c.close()


async def test_interfaces_profile_over_v3_authpriv(snmp_agent: agents.Agent) -> None:
    c = client(snmp_agent, CREDENTIALS["v3-sha512aes256"])
    poll = await poll_target(
        c, "loopback", [BUILTIN_PROFILES["interfaces"]], version="3", deadline_s=5, max_varbinds=100_000
    )
    assert poll.ok, poll.error
    lo = next(i for i, v in poll.tables["ifName"].items() if v == b"lo")
    assert isinstance(poll.tables["ifHCInOctets"][lo], int)  # Counter64 decoded
    assert poll.tables["ifOperStatus"][lo] == 1
    assert isinstance(poll.scalars["sysUpTime"], int)
    assert poll.walk_stops == [] and poll.varbinds > 20


async def test_interfaces_profile_over_v1_reads_32_bit_counters(snmp_agent: agents.Agent) -> None:
    c = client(snmp_agent, CREDENTIALS["v1"])
    poll = await poll_target(
        c, "loopback", [BUILTIN_PROFILES["interfaces"]], version="1", deadline_s=5, max_varbinds=100_000
    )
    assert poll.ok, poll.error
    assert "ifHCInOctets" not in poll.tables  # no Counter64 in SNMPv1
    rows = interface_rows(poll.tables)
    lo = next(r for r in rows.values() if r.name == "lo")
    assert lo.counters["in_octets"].bits == 32


SYS_NAME = "1.3.6.1.2.1.1.5.0"
ABSENT = "1.3.6.1.2.1.1.99.0"  # no such scalar in SNMPv2-MIB's system group
SCALARS = Profile(
    name="scalars",
    scalars=(
        Scalar("sysUpTime", SYS_UPTIME, Kind.GAUGE),
        Scalar("absentThing", ABSENT, Kind.GAUGE),
        Scalar("sysName", SYS_NAME, Kind.INFO),
    ),
)


@pytest.mark.parametrize("name", ["v1", "v2c"])
async def test_one_absent_scalar_keeps_the_others(snmp_agent: agents.Agent, name: str) -> None:
    """SNMPv1 answers noSuchName for the whole GET when one object is absent: the others (sysUpTime,
    which reboot detection needs) are read again without it, and the absent one is counted."""
    c = client(snmp_agent, CREDENTIALS[name])
    for _ in range(2):  # the second poll asks the known-absent OID apart
        poll = await poll_target(c, "loopback", [SCALARS], version=name.removeprefix("v"), deadline_s=5,
                                 max_varbinds=100)  # fmt: skip
        assert poll.ok, poll.error
        assert isinstance(poll.scalars["sysUpTime"], int) and poll.scalars["sysUpTime"] > 0
        assert isinstance(poll.scalars["sysName"], bytes) and poll.scalars["sysName"]
        assert "absentThing" not in poll.scalars
        assert poll.anomalies == [Anomaly("missing_object", "absentThing", f"the agent has no absentThing ({ABSENT})")]
    await c.close()


async def test_v2c_walk_matches_snmpwalk(snmp_agent: agents.Agent) -> None:
    """Same rows as net-snmp's own snmpbulkwalk (the reference implementation)."""
    exe = agents.netns.run("sh", "-c", "command -v snmpbulkwalk", check=False).stdout.strip()
    if not exe:
        pytest.skip("snmpbulkwalk is not installed")
    proc = await asyncio.create_subprocess_exec(
        exe, "-v2c", "-c", snmp_agent.community, "-On", "-Oq", "-Ov", snmp_agent.address, IF_DESCR,
        stdout=asyncio.subprocess.PIPE, env={"MIBS": "", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(proc.communicate(), 20)
    expected = [line.strip().strip('"') for line in stdout.decode().splitlines() if line.strip()]
    walk = await client(snmp_agent, CREDENTIALS["v2c"]).walk(IF_DESCR, max_varbinds=10_000)
    rows = sorted(walk.rows.items(), key=lambda kv: int(kv[0]))
    got = [v.decode() if isinstance(v, bytes) else str(v) for _, v in rows]
    assert got == expected


def _wrong(user: str, **changes: str) -> dict[str, Any]:
    base = next(u for u in agents.V3_USERS if u.name == user)
    fields = {
        "name": base.name,
        "auth_protocol": base.auth_protocol,
        "auth_password": base.auth_password,
        "priv_protocol": base.priv_protocol,
        "priv_password": base.priv_password,
    }
    fields.update(changes)
    return agents.credential_for(V3User(**fields))  # type: ignore[arg-type]


FAILURES = [
    ("wrong community", {"version": "2c", "community": "not-the-community"}, PollErrorReason.TIMEOUT),
    ("unknown user", _wrong("shaauth", name="mallory"), PollErrorReason.AUTH),
    ("wrong auth password", _wrong("sha256auth", auth_password="wrong-auth-password"), PollErrorReason.AUTH),
    ("wrong auth protocol", _wrong("sha512auth", auth_protocol="MD5"), PollErrorReason.AUTH),
    ("wrong priv password", _wrong("shaaes", priv_password="wrong-priv-password"), PollErrorReason.TIMEOUT),
    ("security level below the user's", _wrong("shaaes", priv_protocol="", priv_password=""), PollErrorReason.AUTH),
]


@pytest.mark.parametrize(("cred", "reason"), [(c, r) for _, c, r in FAILURES], ids=[n for n, _, _ in FAILURES])
async def test_failures_have_a_reason(snmp_agent: agents.Agent, cred: dict[str, Any], reason: PollErrorReason) -> None:
    c = client(snmp_agent, {k: v for k, v in cred.items() if v}, timeout=0.3)
    with pytest.raises(PollError) as info:
        await c.get_many([SYS_UPTIME])
    assert info.value.reason is reason, info.value
    for secret in agents.all_secrets():
        assert secret not in str(info.value)


async def test_poll_reports_failure_without_raising(snmp_agent: agents.Agent) -> None:
    c = client(snmp_agent, {"version": "2c", "community": "nope-nope"}, timeout=0.2, retries=1)
    poll = await poll_target(
        c, "loopback", [BUILTIN_PROFILES["interfaces"]], version="2c", deadline_s=3, max_varbinds=1000
    )
    assert poll.error is not None and poll.error.reason is PollErrorReason.TIMEOUT
    assert 0.35 < poll.duration < 1.5  # one retry: two timeouts


async def test_deadline_bounds_a_slow_poll(snmp_agent: agents.Agent) -> None:
    c = client(snmp_agent, {"version": "2c", "community": "nope-nope"}, timeout=1.0, retries=5)
    poll = await poll_target(
        c, "loopback", [BUILTIN_PROFILES["interfaces"]], version="2c", deadline_s=0.4, max_varbinds=1000
    )
    assert poll.error is not None and poll.error.reason is PollErrorReason.DEADLINE
    assert poll.duration < 0.8


async def test_varbind_cap_drops_the_column_not_the_target(snmp_agent: agents.Agent) -> None:
    """A device with more rows than the cap allows (a 3,700-interface controller against 100k) used to
    fail the whole poll; now the column that would go past the cap is left out, and says so."""
    c = client(snmp_agent, CREDENTIALS["v2c"])
    interfaces = len((await c.walk(IF_DESCR, max_varbinds=10_000)).rows)
    cap = 3 * interfaces + 1  # ifDescr, ifSpeed and ifAdminStatus fit; ifOperStatus goes past the cap
    profile = BUILTIN_PROFILES["interfaces"]
    poll = await poll_target(c, "loopback", [profile], version="2c", deadline_s=5, max_varbinds=cap)
    assert poll.ok, poll.error
    assert list(poll.tables) == ["ifDescr", "ifSpeed", "ifAdminStatus"]
    assert all(len(rows) == interfaces for rows in poll.tables.values())
    dropped = [c.name for c in profile.columns_for("2c")][3:]
    assert poll.walk_stops == [(name, WalkStop.VARBIND_CAP) for name in dropped]
    assert [(a.reason, a.subject) for a in poll.anomalies] == [("varbind_cap", name) for name in dropped]
    assert f"past {cap} varbinds" in poll.anomalies[0].detail
    assert poll.varbinds <= 1 + cap  # sysUpTime and the cap: no column is read past it

    # The monitor keeps the target up, counts the dropped columns and reports them once.
    from sitivmon.app.config import SitivmonConfig
    from sitivmon.monitor import Monitor

    config = SitivmonConfig.model_validate({
        "credentials": {"v2c": CREDENTIALS["v2c"]},
        "targets": [{"name": "loopback", "address": snmp_agent.address, "credentials": "v2c"}],
    })  # fmt: skip
    monitor = Monitor(config)
    monitor.on_poll(config.targets[0], poll)
    status = monitor.targets["loopback"]
    assert status.up is True
    assert status.errors["varbind_cap"] == len(dropped)
    assert status.anomalies["varbind_cap"] == len(dropped)


async def test_unreachable_port(snmp_agent: agents.Agent) -> None:
    """Nothing listens on the port: ICMP port unreachable comes back at once (or the request times out)."""
    dead = agents.Agent(snmp_agent.snmpd, "127.0.0.1", agents.free_udp_port())
    c = client(dead, CREDENTIALS["v2c"], timeout=0.3)
    with pytest.raises(PollError) as info:
        await c.get_many([SYS_UPTIME])
    assert info.value.reason in (PollErrorReason.UNREACHABLE, PollErrorReason.TIMEOUT)


# --- sitivmon poll ----------------------------------------------------------------------------------------

BAD_COMMUNITY = "bad-" + agents.COMMUNITY[::-1]


def poll_config(tmp_path: Path, agent: agents.Agent, *, timeout: str = "1s") -> Path:
    """One target per credential (all of CREDENTIALS, plus a wrong community and an unknown user)."""
    doc = agents.base_config(tmp_path / "state", interval="5s", timeout=timeout)
    doc["credentials"] = dict(CREDENTIALS)
    doc["credentials"]["bad-community"] = {"version": "2c", "community": BAD_COMMUNITY}
    doc["credentials"]["unknown-user"] = _wrong("sha512aes256", name="mallory")
    for name in doc["credentials"]:
        agents.add_target(doc, f"t-{name}", agent.address, name)
        agents.add_link(doc, f"lo-{name}", "givors", f"t-{name}", name="lo")
    return agents.write_config(tmp_path / "poll.yaml", doc)


def sitivmon_many(*argvs: list[str], timeout: float = 60) -> list[tuple[int, str, str]]:
    """Run several `python -m sitivmon ...` at once (each starts an interpreter: in parallel the
    whole set costs about one start); (exit code, stdout, stderr) for each."""
    env = agents._clean_env(None)
    procs = [
        subprocess.Popen([sys.executable, "-m", "sitivmon", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for argv in argvs
    ]  # fmt: skip
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


TWICE = ("v3-sha512aes256", "v1")  # polled twice by `sitivmon poll`: deltas over HC and 32-bit counters


def test_poll_command_with_every_credential(tmp_path: Path, snmp_agent: agents.Agent) -> None:
    config = poll_config(tmp_path, snmp_agent)
    names = list(CREDENTIALS)
    runs = sitivmon_many(*[
        ["poll", "--config", str(config), "--target", f"t-{n}", "--samples", "2" if n in TWICE else "1"]
        for n in names
    ])  # fmt: skip
    for name, (code, stdout, stderr) in zip(names, runs, strict=True):
        assert code == 0, f"{name}: {stderr}{stdout}"
        report = json.loads(stdout)
        assert report["error"] is None and report["target"] == f"t-{name}"
        (link,) = report["polls"][-1]["links"]
        assert (link["interface"], link["state"], link["resolve_error"]) == ("lo", "up", None), name
        # the raw counters behind each series, and which counter was used: no Counter64 in SNMPv1
        source = "32-bit" if name == "v1" else "HC"
        for series, raw in (("receive_bytes", "in_octets"), ("transmit_bytes", "out_octets")):
            (used,) = link["counters"][series]
            assert (used["counter"], used["source"]) == (raw, source), name
            assert isinstance(used["raw"], int) and used["raw"] > 0
        assert {c["counter"] for c in link["counters"]["receive_packets"]} >= {"in_ucast"}
        if len(report["polls"]) == 2:
            delta = link["delta_since_previous"]
            assert delta is not None and delta["receive_bytes"] >= 0 and set(delta) >= {"transmit_bytes"}
            (first,) = report["polls"][0]["links"]
            for series in ("receive_bytes", "transmit_bytes"):
                # lo moves far less than 2^32 bytes in 2 s: the delta is the raw counters' difference
                raw_delta = link["counters"][series][0]["raw"] - first["counters"][series][0]["raw"]
                assert delta[series] == raw_delta, (name, series)
        for secret in agents.all_secrets():
            assert secret not in stdout + stderr


def test_poll_command_failures_and_usage_errors(tmp_path: Path, snmp_agent: agents.Agent) -> None:
    config = poll_config(tmp_path, snmp_agent, timeout="0.3s")
    (community, user, unknown) = sitivmon_many(
        ["poll", "--config", str(config), "--target", "t-bad-community", "--samples", "1"],
        ["poll", "--config", str(config), "--target", "t-unknown-user", "--samples", "1"],
        ["poll", "--config", str(config), "--target", "nope", "--samples", "1"],
    )
    assert community[0] == 1
    assert json.loads(community[1])["error"] == "timeout: no response from agent"
    assert user[0] == 1
    assert json.loads(user[1])["error"] == "auth: authentication or privacy failed"
    assert unknown[0] == 2 and unknown[1] == ""
    assert "unknown target 'nope'" in unknown[2]
    for _, stdout, stderr in (community, user):
        for secret in [BAD_COMMUNITY, *agents.all_secrets()]:
            assert secret not in stdout + stderr


def test_poll_command_over_v1_keeps_scalars_beside_an_absent_one(tmp_path: Path, snmp_agent: agents.Agent) -> None:
    """`sitivmon poll` on an SNMPv1 agent lacking one scalar of a profile: sysUpTime and the links are
    still read, and the absent object is shown as a missing_object anomaly."""
    doc = agents.base_config(tmp_path / "state", interval="5s", timeout="1s")
    doc["profiles"] = {
        "sys": {"scalars": [
            {"name": "absent", "oid": ABSENT, "type": "gauge"},
            {"name": "uptime", "oid": SYS_UPTIME, "type": "gauge"},
        ]},
    }  # fmt: skip
    agents.add_target(doc, "t-v1", snmp_agent.address, "v1", CREDENTIALS["v1"])
    doc["targets"][0]["profiles"] = ["interfaces", "sys"]
    agents.add_link(doc, "lo-v1", "givors", "t-v1", name="lo")
    config = agents.write_config(tmp_path / "poll.yaml", doc)
    ((code, stdout, stderr),) = sitivmon_many(["poll", "--config", str(config), "--target", "t-v1", "--samples", "1"])
    assert code == 0, stderr + stdout
    (entry,) = json.loads(stdout)["polls"]
    assert entry["anomalies"] == [
        {"reason": "missing_object", "subject": "sys:absent", "detail": f"the agent has no sys:absent ({ABSENT})"}
    ]
    (link,) = entry["links"]
    assert (link["interface"], link["state"], link["resolve_error"]) == ("lo", "up", None)
    assert link["counters"]["receive_bytes"][0]["source"] == "32-bit"
