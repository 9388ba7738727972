"""deploy/compose: the stack's files exist, agree with each other, and load in the real tools.

No container engine is available, so each service's configuration is laid out as the container
sees it (tests/deploy/compose_layout.py) and checked by the program the container runs:
promtool for Prometheus, amtool for Alertmanager, mosquitto itself (started on a free loopback port,
with a real authenticated publish/subscribe). Grafana is not packaged here: its provisioning files
are checked for the paths and datasource they must name.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
import yaml

from tests.dashboards.promql import load_dashboards
from tests.deploy.compose_layout import (
    COMPOSE_DIR,
    ROOT,
    bind_mounts,
    in_root,
    load_compose,
    materialize,
    secret_mounts,
)
from tests.support.procs import free_port, managed, require_binary, wait_tcp

SERVICES = {"sitivmon", "prometheus", "alertmanager", "grafana", "mosquitto"}
DOC = load_compose()


def listen_port(service: str) -> int:
    cmd = DOC["services"][service]["command"]
    return int(cmd[cmd.index("--listen") + 1].rsplit(":", 1)[1])


def test_services() -> None:
    assert set(DOC["services"]) == SERVICES


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_bind_mount_source_exists(service: str) -> None:
    for m in bind_mounts(service, DOC):
        assert m.source.exists(), f"{service}: {m.source} mounted at {m.target} does not exist"
        assert m.read_only or m.target.as_posix() == "/var/lib/sitivmon", f"{service}: {m.target} should be :ro"


def test_secrets_are_files_under_secrets_and_documented() -> None:
    readme = (COMPOSE_DIR / "secrets/README.md").read_text()
    for name, spec in DOC["secrets"].items():
        assert spec["file"] == f"./secrets/{name}", name
        assert f"`{name}`" in readme, f"secrets/README.md does not explain {name}"
    used = {
        s if isinstance(s, str) else s["source"] for svc in DOC["services"].values() for s in svc.get("secrets", [])
    }
    assert used == set(DOC["secrets"])


def test_images_pinned_and_sitivmon_built_from_the_containerfile() -> None:
    for name, svc in DOC["services"].items():
        if name == "sitivmon":
            build = svc["build"]
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert context == ROOT
            assert (context / build["dockerfile"]).is_file()
        else:
            image = svc["image"]
            assert re.search(r":v?\d+\.\d+(\.\d+)?$", image), f"{name}: pin a version, not {image}"


def test_named_volumes_declared() -> None:
    for svc in DOC["services"].values():
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            if not src.startswith((".", "/")):
                assert src in DOC["volumes"], src


def test_sitivmon_listens_where_prometheus_scrapes_and_traps_are_published() -> None:
    port = listen_port("sitivmon")
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus/prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "sitivmon")
    assert job["static_configs"][0]["targets"] == [f"sitivmon:{port}"]
    containerfile = (ROOT / "deploy/container/Containerfile").read_text()
    assert re.search(rf"^EXPOSE .*\b{port}/tcp", containerfile, re.M)
    assert "162:1162/udp" in DOC["services"]["sitivmon"]["ports"]
    assert re.search(r"^EXPOSE .*\b1162/udp", containerfile, re.M)
    sv = DOC["services"]["sitivmon"]
    assert sv["read_only"] is True and sv["cap_drop"] == ["ALL"]


def test_sitivmon_config_references_compose_secrets() -> None:
    text = (COMPOSE_DIR / "sitivmon/sitivmon.yaml").read_text()
    for ref in re.findall(r"file:(/run/secrets/[\w-]+)", text):
        assert ref in {m.target.as_posix() for m in secret_mounts("sitivmon", DOC)}, ref
    cfg = yaml.safe_load(text)
    assert cfg["state_dir"] == "/var/lib/sitivmon"
    communes = {c["id"] for c in cfg["communes"]}
    assert len(communes) == 8


# --- Prometheus ------------------------------------------------------------------------------------


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    root = materialize("prometheus", tmp_path)
    cmd = DOC["services"]["prometheus"]["command"]
    config = next(a.split("=", 1)[1] for a in cmd if a.startswith("--config.file="))
    r = subprocess.run([promtool, "check", "config", str(in_root(root, config))], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_prometheus_config_fails_promtool_when_a_rule_file_is_broken(tmp_path: Path) -> None:
    """The check has teeth: the same layout with a broken rule file is rejected."""
    promtool = require_binary("promtool")
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: rate(x\n")
    root = materialize(
        "prometheus",
        tmp_path / "root",
        {"/etc/prometheus/rules/alerts.yml": broken, "/etc/prometheus/rules/recording.yml": broken},
    )
    r = subprocess.run(
        [promtool, "check", "config", str(in_root(root, "/etc/prometheus/prometheus.yml"))],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0


def test_prometheus_rule_files_are_the_mounted_ones() -> None:
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus/prometheus.yml").read_text())
    mounted = {m.target.as_posix() for m in bind_mounts("prometheus", DOC)}
    for rf in prom["rule_files"]:
        assert f"/etc/prometheus/{rf}" in mounted, rf
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


# --- Alertmanager ----------------------------------------------------------------------------------


def test_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    root = materialize("alertmanager", tmp_path)
    r = subprocess.run(
        [amtool, "check-config", str(in_root(root, "/etc/alertmanager/alertmanager.yml"))],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_alertmanager_reads_its_password_from_the_compose_secret() -> None:
    cfg = yaml.safe_load((COMPOSE_DIR / "alertmanager/alertmanager.yml").read_text())
    targets = {m.target.as_posix() for m in secret_mounts("alertmanager", DOC)}
    assert cfg["global"]["smtp_auth_password_file"] in targets
    assert "smtp_auth_password" not in cfg["global"]


# --- Grafana ---------------------------------------------------------------------------------------


def test_grafana_datasource_provisioning_points_at_prometheus() -> None:
    doc = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/datasources/sitivmon.yaml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["isDefault"] is True
    prom_cmd = DOC["services"]["prometheus"]["command"]
    port = next(a for a in prom_cmd if a.startswith("--web.listen-address=")).rsplit(":", 1)[1]
    assert ds["url"] == f"http://prometheus:{port}"


def test_grafana_dashboard_provider_path_holds_the_five_dashboards(tmp_path: Path) -> None:
    doc = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/dashboards/sitivmon.yaml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    root = materialize("grafana", tmp_path)
    path = in_root(root, provider["options"]["path"])
    assert sorted(p.name for p in path.glob("*.json")) == sorted(load_dashboards())
    home = DOC["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert in_root(root, home).is_file()
    # Provisioning directories Grafana reads are the mounted ones.
    for sub in ("datasources", "dashboards"):
        assert any(in_root(root, f"/etc/grafana/provisioning/{sub}").glob("*.yaml"))


def test_grafana_admin_password_comes_from_a_secret() -> None:
    env = DOC["services"]["grafana"]["environment"]
    targets = {m.target.as_posix() for m in secret_mounts("grafana", DOC)}
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] in targets
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env


# --- Mosquitto -------------------------------------------------------------------------------------


def _mosquitto_conf_for_test(conf: str, port: int, root: Path) -> str:
    """The mounted config with the listener moved to a free loopback port and paths under root."""
    out = []
    for line in conf.splitlines():
        if re.match(r"^listener\s+1883\s*$", line):
            line = f"listener {port} 127.0.0.1"
        line = re.sub(
            r"(/mosquitto/\S*)", lambda m: str(in_root(root, m.group(1))) + "/" * m.group(1).endswith("/"), line
        )
        out.append(line)
    return "\n".join(out) + "\n"


async def _roundtrip(port: int, password: str) -> bytes:
    async with aiomqtt.Client("127.0.0.1", port, username="sitivmon", password=password, timeout=5) as client:
        await client.subscribe("sitivmon/test")
        await client.publish("sitivmon/test", b"hello", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                return bytes(message.payload)
    raise AssertionError("no message")


async def _anonymous(port: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, timeout=5) as client:
        await client.publish("sitivmon/test", b"x")


@pytest.fixture
def world_traversable_tmp() -> Iterator[Path]:
    """A temporary directory mosquitto's own user can reach (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="sitivmon-mqtt-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_mosquitto_config_loads_and_authenticates(world_traversable_tmp: Path) -> None:
    tmp_path = world_traversable_tmp
    mosquitto = require_binary("mosquitto")
    passwd_tool = require_binary("mosquitto_passwd")
    passwd = tmp_path / "passwd"
    subprocess.run([passwd_tool, "-c", "-b", str(passwd), "sitivmon", "s3cret-test"], check=True)
    root = materialize("mosquitto", tmp_path / "root", {"/mosquitto/config/passwd": passwd})
    data = in_root(root, "/mosquitto/data")
    data.mkdir(parents=True)
    if os.geteuid() == 0:  # mosquitto drops root for its own user, which must read and write these
        user = pwd.getpwnam("mosquitto")
        for p in (passwd, data):
            os.chown(p, user.pw_uid, user.pw_gid)
        passwd.chmod(0o600)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(_mosquitto_conf_for_test(in_root(root, "/mosquitto/config/mosquitto.conf").read_text(), port, root))
    with managed([mosquitto, "-c", str(conf)], tmp_path / "mosquitto.log") as proc:
        wait_tcp("127.0.0.1", port)
        assert asyncio.run(_roundtrip(port, "s3cret-test")) == b"hello"
        with pytest.raises(aiomqtt.MqttError):
            asyncio.run(_anonymous(port))
        assert proc.alive(), proc.output()
    log = (tmp_path / "mosquitto.log").read_text()
    assert "Error" not in log, log
    assert "not authorised" in log, log  # the anonymous client was turned away by the broker


def test_sitivmon_config_passes_sitivmon_check() -> None:
    """`sitivmon check` on the compose config, with its secrets where the container has them:
    /run/secrets is a tmpfs in a private mount namespace holding throwaway values."""
    sitivmon = Path(sys.executable).with_name("sitivmon")
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare to mount /run/secrets privately")
    writes = " && ".join(f"printf test-value > {m.target.as_posix()}" for m in secret_mounts("sitivmon", DOC))
    script = (
        f"mount -t tmpfs tmpfs /run && mkdir -p /run/secrets && {writes} && "
        f'exec "{sitivmon}" check --config "{COMPOSE_DIR / "sitivmon/sitivmon.yaml"}"'
    )
    r = subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
