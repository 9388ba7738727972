"""deploy/compose/ha: PostgreSQL, two replicas, Prometheus with replica labels, VictoriaMetrics optional.

No container engine runs here, so the example is checked piece by piece with the real programs the
containers run (tests/deploy/compose_layout.py lays each service's mounts out as it sees them):
`sitivmon run`'s own argument parser on each replica's command and `sitivmon check` on the shared
configuration with its secrets where the container has them; promtool on both Prometheus files; a real
Prometheus started on the file shows the relabelling gives both replicas one `instance` and their
`replica` label; and the compose file is cross-checked (services, secrets, volumes, ports, names).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sitivmon.app.cli import build_parser
from sitivmon.app.config import replica_problems
from sitivmon.usage.config import UsageSettings
from tests.deploy.compose_layout import HA_DIR, ROOT, bind_mounts, in_root, load_compose, materialize, secret_mounts
from tests.support.procs import free_port, managed, require_binary, wait_tcp

DOC = load_compose(HA_DIR)
REPLICAS = {"sitivmon-1a": "a", "sitivmon-1b": "b"}
SERVICES = {*REPLICAS, "postgres", "prometheus", "victoriametrics", "grafana"}
CONFIG = HA_DIR / "sitivmon/sitivmon.yaml"
PROM_FILES = ("prometheus.yml", "prometheus.remote-write.yml")
# What the operator puts in the secrets (secrets/README.md), for the checks that need values.
SECRET_VALUES = {
    "snmp-community": "test-community",
    "usage-dsn": "postgresql://sitivmon:s3cret-pw@postgres:5432/sitivmon",
}


def svc(name: str) -> dict[str, Any]:
    service: dict[str, Any] = DOC["services"][name]
    return service


def prom_config(name: str = "prometheus.yml") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((HA_DIR / "prometheus" / name).read_text())
    return doc


def flag(command: list[str], name: str) -> str:
    """Value of `--name=value` or `-name=value` in a command list."""
    return next(a.split("=", 1)[1] for a in command if a.lstrip("-").startswith(f"{name}="))


def host_ports(service: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(host address, host port, protocol) of a service's published ports, short syntax."""
    out = []
    for spec in service.get("ports", []):
        mapping, _, proto = str(spec).partition("/")
        parts = mapping.split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((address, int(parts[-2]), proto or "tcp"))
    return out


# --- The compose file --------------------------------------------------------------------------------


def test_services() -> None:
    assert set(DOC["services"]) == SERVICES


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_bind_mount_source_exists_and_is_read_only(service: str) -> None:
    for m in bind_mounts(service, DOC, HA_DIR):
        assert m.source.exists(), f"{service}: {m.source} mounted at {m.target} does not exist"
        assert m.read_only, f"{service}: {m.target} should be :ro"


def test_secrets_are_files_under_secrets_documented_and_never_committed() -> None:
    readme = (HA_DIR / "secrets/README.md").read_text()
    for name, spec in DOC["secrets"].items():
        assert spec["file"] == f"./secrets/{name}", name
        assert f"`{name}`" in readme, f"secrets/README.md does not explain {name}"
    used = {s if isinstance(s, str) else s["source"] for v in DOC["services"].values() for s in v.get("secrets", [])}
    assert used == set(DOC["secrets"])
    r = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "deploy/compose/ha/secrets/usage-dsn"], check=False
    )
    assert r.returncode == 0, "a secret file created in deploy/compose/ha/secrets/ would not be ignored by git"


def test_images_pinned_and_replicas_built_from_the_containerfile() -> None:
    for name, service in DOC["services"].items():
        if name in REPLICAS:
            build = service["build"]
            assert (HA_DIR / build["context"]).resolve() == ROOT
            assert (ROOT / build["dockerfile"]).is_file()
        else:
            assert re.search(r":v?\d+\.\d+(\.\d+)?$", service["image"]), f"{name}: pin a version"


def test_named_volumes_declared_and_each_replica_has_its_own_state() -> None:
    for service in DOC["services"].values():
        for vol in service.get("volumes", []):
            src = str(vol).split(":")[0]
            if not src.startswith((".", "/")):
                assert src in DOC["volumes"], src
    states = {
        str(v).split(":")[0] for r in REPLICAS for v in svc(r)["volumes"] if str(v).endswith(":/var/lib/sitivmon")
    }
    assert len(states) == len(REPLICAS), "two replicas must not share one state directory"


def test_published_ports_do_not_collide_and_admin_ports_stay_on_loopback() -> None:
    published = [(p, proto) for s in DOC["services"].values() for _, p, proto in host_ports(s)]
    assert len(published) == len(set(published)), published
    for name in ("prometheus", "victoriametrics"):
        assert all(addr == "127.0.0.1" for addr, _, _ in host_ports(svc(name))), name
    assert not host_ports(svc("postgres")), "PostgreSQL is reached by the replicas only"
    containerfile = (ROOT / "deploy/container/Containerfile").read_text()
    for r in REPLICAS:
        assert [str(p).split(":")[-1] for p in svc(r)["ports"]] == ["1162/udp"], r
        assert re.search(r"^EXPOSE .*\b1162/udp", containerfile, re.M)


# --- The two replicas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(REPLICAS))
def test_replica_command_is_accepted_by_sitivmon_run(service: str) -> None:
    """The command is parsed by sitivmon's own parser: a misspelt flag or replica name fails here."""
    args = build_parser().parse_args(svc(service)["command"])
    assert args.func.__name__ == "cmd_run"
    assert args.replica == REPLICAS[service]
    assert str(args.config) == "/etc/sitivmon/sitivmon.yaml"
    assert {m.target.as_posix(): m.source for m in bind_mounts(service, DOC, HA_DIR)}[str(args.config)] == CONFIG
    secrets = {m.target.as_posix() for m in secret_mounts(service, DOC, HA_DIR)}
    assert secrets == {f"/run/secrets/{n}" for n in SECRET_VALUES}
    assert svc(service)["read_only"] is True and svc(service)["cap_drop"] == ["ALL"]
    assert svc(service)["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_replicas_differ_by_name_state_and_trap_port_only() -> None:
    a, b = (dict(svc(r)) for r in sorted(REPLICAS))
    for key in ("command", "volumes", "ports"):
        a.pop(key), b.pop(key)
    assert a == b
    command_a, command_b = (svc(r)["command"] for r in sorted(REPLICAS))
    assert command_a[:-1] == command_b[:-1] and command_a[-1] != command_b[-1]


def _run_in_private_run_secrets(values: Mapping[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """Run argv with /run/secrets holding `values`, in a private mount namespace (as the container has it)."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare to mount /run/secrets privately")
    writes = " && ".join(f"printf %s {shlex.quote(v)} > /run/secrets/{n}" for n, v in values.items())
    script = f"mount -t tmpfs tmpfs /run && mkdir -p /run/secrets && {writes} && exec {shlex.join(argv)}"
    return subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True, timeout=120
    )


def test_config_passes_sitivmon_check_with_the_secrets() -> None:
    sitivmon = str(Path(sys.executable).with_name("sitivmon"))
    r = _run_in_private_run_secrets(SECRET_VALUES, sitivmon, "check", "--config", str(CONFIG))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK (8 communes, 1 targets, 8 links)" in r.stdout


def test_sitivmon_check_refuses_a_bad_dsn_secret_without_showing_it() -> None:
    """The check above has teeth, and a mistyped DSN file is named without its (secret) content."""
    sitivmon = str(Path(sys.executable).with_name("sitivmon"))
    bad = {**SECRET_VALUES, "usage-dsn": "sitivmon:hunter2-pw@postgres"}
    r = _run_in_private_run_secrets(bad, sitivmon, "check", "--config", str(CONFIG))
    assert r.returncode != 0, r.stdout
    assert "dsn" in r.stdout + r.stderr
    assert "hunter2" not in r.stdout + r.stderr


def test_config_uses_the_shared_postgresql_store_so_replicas_are_allowed() -> None:
    """`sitivmon run --replica` refuses a store the replicas cannot share; the check above cannot see
    the replica (it is on the command line), so ask the same rule here."""
    doc = yaml.safe_load(CONFIG.read_text())
    assert doc["usage"] == {"store": "postgresql", "dsn": "file:/run/secrets/usage-dsn"}
    assert "replica" not in doc and "shard" not in doc, "the replica is on each command line"
    usage = UsageSettings.model_construct(**doc["usage"])  # the DSN file exists only in the container
    assert [p for r in REPLICAS.values() for p in replica_problems(r, usage)] == []
    assert list(replica_problems("a", UsageSettings())), "the rule has teeth: SQLite is refused"


def test_dsn_of_the_readme_names_the_postgres_service_user_and_database() -> None:
    readme = (HA_DIR / "secrets/README.md").read_text()
    (template,) = re.findall(r"printf '(postgresql://[^']+)'", readme)
    url = urlsplit(template.replace("%s", "pw"))
    env = svc("postgres")["environment"]
    assert url.hostname == "postgres" and url.port == 5432
    assert url.username == env["POSTGRES_USER"] and url.path == f"/{env['POSTGRES_DB']}"
    assert env["POSTGRES_PASSWORD_FILE"] in {m.target.as_posix() for m in secret_mounts("postgres", DOC, HA_DIR)}
    assert url.username in svc("postgres")["healthcheck"]["test"]


# --- Prometheus -----------------------------------------------------------------------------------------


def test_prometheus_config_selected_by_default_and_alternative_are_both_mounted() -> None:
    arg = flag(svc("prometheus")["command"], "config.file")
    m = re.fullmatch(r"/etc/prometheus/\$\{SITIVMON_PROMETHEUS_CONFIG:-(?P<default>[\w.-]+)\}", arg)
    assert m and m.group("default") == "prometheus.yml", arg
    mounted = {t.target.as_posix(): t.source for t in bind_mounts("prometheus", DOC, HA_DIR)}
    for name in PROM_FILES:
        assert mounted[f"/etc/prometheus/{name}"] == HA_DIR / "prometheus" / name


@pytest.mark.parametrize("name", PROM_FILES)
def test_prometheus_config_passes_promtool(name: str, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    root = materialize("prometheus", tmp_path, compose_dir=HA_DIR)
    path = in_root(root, f"/etc/prometheus/{name}")
    r = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 2 rule files found" in r.stdout + r.stderr, r.stdout + r.stderr
    for rf in prom_config(name)["rule_files"]:
        assert in_root(root, f"/etc/prometheus/{rf}").resolve().parent == ROOT / "deploy/prometheus"


def test_remote_write_file_is_the_default_plus_remote_write_to_victoriametrics() -> None:
    plain, remote = prom_config(), prom_config("prometheus.remote-write.yml")
    (rw,) = remote.pop("remote_write")
    assert "remote_write" not in plain
    assert remote == plain, "prometheus.remote-write.yml drifted from prometheus.yml"
    url = urlsplit(rw["url"])
    vm = svc("victoriametrics")
    assert url.hostname == "victoriametrics" and url.path == "/api/v1/write"
    assert flag(vm["command"], "httpListenAddr") == f":{url.port}"
    assert vm["profiles"] == ["long-term"], "VictoriaMetrics is optional"


def test_scrape_targets_are_the_replicas_on_their_listen_port() -> None:
    job = next(j for j in prom_config()["scrape_configs"] if j["job_name"] == "sitivmon")
    (static,) = job["static_configs"]
    expected = []
    for r in sorted(REPLICAS):
        command = svc(r)["command"]
        expected.append(f"{r}:{command[command.index('--listen') + 1].rsplit(':', 1)[1]}")
    assert sorted(static["targets"]) == expected


def test_grafana_datasource_and_dashboards_resolve_in_this_stack(tmp_path: Path) -> None:
    root = materialize("grafana", tmp_path, compose_dir=HA_DIR)
    ds = yaml.safe_load(next(in_root(root, "/etc/grafana/provisioning/datasources").glob("*.yaml")).read_text())
    (source,) = ds["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname in DOC["services"]
    assert flag(svc(str(url.hostname))["command"], "web.listen-address") == f":{url.port}"
    home = svc("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert in_root(root, home).is_file()


def _targets(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10) as r:
        active: list[dict[str, Any]] = json.load(r)["data"]["activeTargets"]
    return active


def test_real_prometheus_labels_both_replicas_as_one_instance(tmp_path: Path) -> None:
    """Prometheus itself applies the relabelling: the replicas' names do not resolve here, but the
    targets page shows the labels their samples would carry."""
    binary = require_binary("prometheus")
    root = materialize("prometheus", tmp_path / "root", compose_dir=HA_DIR)
    port = free_port()
    argv = [
        binary,
        f"--config.file={in_root(root, '/etc/prometheus/prometheus.yml')}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with managed(argv, tmp_path / "prometheus.log") as proc:
        wait_tcp("127.0.0.1", port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                found = [t for t in _targets(base) if t["labels"].get("job") == "sitivmon"]
            except OSError:
                found = []
            if len(found) == len(REPLICAS):
                break
            time.sleep(0.5)
        labels = sorted(
            ({k: v for k, v in t["labels"].items() if k != "job"} for t in found), key=lambda x: x["replica"]
        )
        assert labels == [
            {"instance": "shard-1", "shard": "1", "replica": "a"},
            {"instance": "shard-1", "shard": "1", "replica": "b"},
        ], proc.output()
