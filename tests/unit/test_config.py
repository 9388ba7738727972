"""Configuration: the example loads, overrides and secrets resolve, every error is located, `check` exits
0/2 and never prints a secret."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sitivmon.app.cli import main
from sitivmon.app.config import ConfigError, load_config, parse_config
from sitivmon.config.model import AuthProtocol, PrivProtocol, Side
from tests.support.agents import COMMUNES, REPO

SECRET_COMMUNITY = "Zq8-community-" + os.urandom(4).hex()
SECRET_AUTH = "Zq8-auth-" + os.urandom(4).hex()
SECRET_PRIV = "Zq8-priv-" + os.urandom(4).hex()

# The example of the foundation issue: the eight communes, a v2c community from the environment, a v3
# user whose keys are files, a core router and two commune switches, links found by name, alias,
# description and index, one seen from the core side.
EXAMPLE = """\
listen: 127.0.0.1:9811
state_dir: var
timezone: Europe/Paris
log: {format: json, level: info}
poll:
  interval: 1m
  timeout: 5s
  retries: 2
  max_repetitions: 25
  jitter: 0.5

communes:
  - {id: givors, name: Givors, insee: "69091"}
  - {id: grigny, name: Grigny, insee: "69096"}
  - {id: pierre-benite, name: Pierre-Bénite, insee: "69152"}
  - {id: rive-de-gier, name: Rive-de-Gier, insee: "42186"}
  - {id: vaulx-en-velin, name: Vaulx-en-Velin, insee: "69256"}
  - {id: venissieux, name: Vénissieux, insee: "69259"}
  - {id: corbas, name: Corbas, insee: 69273}
  - {id: saint-chamond, name: Saint-Chamond, insee: "42207"}

credentials:
  syndicate-v2c:
    version: 2c
    community: ${SITIVMON_TEST_COMMUNITY}
  core-v3:
    version: 3
    username: sitivmon
    auth_protocol: SHA-512
    auth_password: file:${SECRETS_DIR}/auth
    priv_protocol: AES-256
    priv_password: file:${SECRETS_DIR}/priv

targets:
  - name: core-givors
    address: 192.0.2.1
    credentials: core-v3
    poll: {interval: 30s, timeout: 3s}
  - name: sw-venissieux
    address: "192.0.2.20:1161"
    credentials: syndicate-v2c
    commune: venissieux
  - name: sw-corbas
    address: "[2001:db8::30]:161"
    credentials: syndicate-v2c
    commune: corbas

links:
  - {id: givors-fibre, commune: givors, target: core-givors, interface: {name: xe-0/0/1}, capacity: 10Gbit}
  - {id: grigny-fibre, commune: grigny, target: core-givors, interface: {alias: "GRIGNY fibre"}, capacity: 1Gbit}
  - {id: pierre-benite-fibre, commune: pierre-benite, target: core-givors, interface: {descr: "xe-0/0/3"}}
  - id: venissieux-uplink
    commune: venissieux
    target: sw-venissieux
    interface: {index: 49}
    side: commune
    capacity: 1Gbit
  - id: corbas-uplink
    commune: corbas
    target: core-givors
    interface: {name: ge-0/0/7}
    side: core
    capacity: 100Mbit
    maintenance: true
    description: Liaison Corbas, en travaux
"""


@pytest.fixture
def secrets_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("SITIVMON_")]:
        monkeypatch.delenv(key)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "auth").write_text(SECRET_AUTH + "\n")
    (secrets / "priv").write_text(SECRET_PRIV + "\r\n")
    monkeypatch.setenv("SITIVMON_TEST_COMMUNITY", SECRET_COMMUNITY)
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    return tmp_path


def write(tmp_path: Path, text: str, name: str = "sitivmon.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def example_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE)
    return doc


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# --- the example ---------------------------------------------------------------------------------


def test_example_loads(secrets_env: Path) -> None:
    config = load_config(write(secrets_env, EXAMPLE))
    assert [c.id for c in config.communes] == [c[0] for c in COMMUNES]
    assert config.communes[6].insee == "69273"  # an integer INSEE code is read as its 5 digits
    assert config.state_dir == (secrets_env / "var").resolve()  # relative to the file's folder
    assert config.poll.interval == 60.0 and config.poll.timeout == 5.0 and config.poll.jitter == 0.5
    assert config.log.format == "json"

    v2c = config.credentials["syndicate-v2c"]
    assert v2c.version == "2c" and v2c.security_level == "community"
    assert v2c.community is not None and v2c.community.get_secret_value() == SECRET_COMMUNITY
    v3 = config.credentials["core-v3"]
    assert v3.version == "3" and v3.security_level == "authPriv"
    assert (v3.auth_protocol, v3.priv_protocol) == (AuthProtocol.SHA512, PrivProtocol.AES256)
    assert v3.auth_password is not None and v3.auth_password.get_secret_value() == SECRET_AUTH
    assert v3.priv_password is not None and v3.priv_password.get_secret_value() == SECRET_PRIV  # \r\n cut

    core, sw, corbas = config.targets
    assert (core.host, core.port, core.commune) == ("192.0.2.1", 161, "shared")
    assert (sw.host, sw.port) == ("192.0.2.20", 1161)
    assert (corbas.host, corbas.port) == ("2001:db8::30", 161)
    assert config.poll_settings(core).interval == 30.0 and config.poll_settings(core).retries == 2
    assert config.poll_settings(sw).interval == 60.0

    links = {link.id: link for link in config.links}
    assert links["givors-fibre"].capacity == 1_250_000_000
    assert links["grigny-fibre"].interface.describe() == "alias=GRIGNY fibre"
    assert links["pierre-benite-fibre"].capacity is None
    assert links["venissieux-uplink"].interface.index == 49
    assert links["corbas-uplink"].side is Side.CORE and links["corbas-uplink"].maintenance
    assert links["corbas-uplink"].capacity == 12_500_000


def test_example_communes_match_shared_list() -> None:
    shared = REPO.parent / "shared" / "communes.csv"
    if not shared.exists():
        pytest.skip(f"{shared} is not beside the checkout")
    with shared.open(encoding="utf-8") as f:
        rows = [(r["id"], r["name"], r["insee"]) for r in csv.DictReader(f)]
    assert rows == list(COMMUNES)
    assert [(c["id"], c["name"], str(c["insee"])) for c in example_doc()["communes"]] == rows


def test_shipped_example_config_loads(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """config/sitivmon.yaml, the example operators start from, with its secrets from the environment."""
    example = REPO / "config" / "sitivmon.yaml"
    monkeypatch.setenv("SITIVMON_CAMPUS_COMMUNITY", SECRET_COMMUNITY)
    monkeypatch.setenv("SITIVMON_DC_AUTH", SECRET_AUTH)
    monkeypatch.setenv("SITIVMON_DC_PRIV", SECRET_PRIV)
    config = load_config(example)
    assert [c.id for c in config.communes] == [c[0] for c in COMMUNES]
    assert {link.commune for link in config.links} == {c[0] for c in COMMUNES}
    assert all(link.side is Side.CORE and link.capacity for link in config.links)
    dc = config.credentials["dc-v3"]
    assert dc.security_level == "authPriv" and dc.priv_password is not None
    assert dc.priv_password.get_secret_value() == SECRET_PRIV
    assert main(["check", "--config", str(example)]) == 0
    out, err = capsys.readouterr()
    assert "OK (8 communes" in out and err == ""
    for secret in (SECRET_COMMUNITY, SECRET_AUTH, SECRET_PRIV):
        assert secret not in out + err


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.poll.interval == 60.0 and config.links == [] and config.timezone == "Europe/Paris"


# --- environment overrides -------------------------------------------------------------------------


def test_env_overrides_poll_interval_keeping_the_rest(secrets_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITIVMON_POLL__INTERVAL", "30s")
    monkeypatch.setenv("SITIVMON_LISTEN", "0.0.0.0:9900")
    config = load_config(write(secrets_env, EXAMPLE))
    assert config.poll.interval == 30.0
    assert config.poll.timeout == 5.0 and config.poll.jitter == 0.5  # merged, not replaced
    assert config.listen == "0.0.0.0:9900"


def test_env_override_is_validated_and_located(secrets_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITIVMON_POLL__INTERVAL", "soon")
    with pytest.raises(ConfigError) as info:
        load_config(write(secrets_env, EXAMPLE))
    assert [str(i).split(" (line")[0] for i in info.value.issues] == [
        "poll.interval: invalid duration <value>: use e.g. 30s, 5m, 1h, 250ms"
    ]


def test_env_override_below_timeout_is_refused(secrets_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITIVMON_POLL__INTERVAL", "2s")
    with pytest.raises(ConfigError) as info:
        load_config(write(secrets_env, EXAMPLE))
    assert "poll: timeout (5s) must not exceed interval (2s)" in str(info.value)


# --- secrets ----------------------------------------------------------------------------------------


def test_secrets_never_in_repr_dump_or_json(secrets_env: Path) -> None:
    config = load_config(write(secrets_env, EXAMPLE))
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        for secret in (SECRET_COMMUNITY, SECRET_AUTH, SECRET_PRIV):
            assert secret not in text


def test_inline_secret_is_secretstr(tmp_path: Path) -> None:
    config = parse_config("credentials: {c: {version: 2c, community: 12345678}}\n")
    community = config.credentials["c"].community
    assert community is not None and community.get_secret_value() == "12345678"
    assert "12345678" not in repr(config.credentials["c"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "${SITIVMON_TEST_UNSET_VAR}",
            "credentials.c.community: environment variable SITIVMON_TEST_UNSET_VAR is not set",
        ),
        (
            "file:/nonexistent/sitivmon/secret",
            "credentials.c.community: cannot read secret file /nonexistent/sitivmon/secret: No such file or directory",
        ),
    ],
)
def test_unresolvable_secret_is_located(value: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITIVMON_TEST_UNSET_VAR", raising=False)
    with pytest.raises(ConfigError) as info:
        parse_config(f"credentials:\n  c:\n    version: 2c\n    community: {value}\n")
    assert [str(i) for i in info.value.issues] == [f"{message} (line 4)"]


def test_errors_near_secrets_do_not_echo_them(secrets_env: Path) -> None:
    """A secret in the wrong place, or failing a rule, is reported without its value."""
    doc = example_doc()
    short = "Zq8-" + os.urandom(1).hex()  # 8 > len >= 6: too short for RFC 3414
    doc["credentials"]["core-v3"]["auth_password"] = short
    doc["credentials"]["bad-v2"] = {"version": "2c", "community": SECRET_COMMUNITY, "username": "x"}
    doc["credentials"]["bad-v3"] = {"version": "3", "username": "u", "community": SECRET_COMMUNITY}
    doc["credentials"]["typo"] = {"version": "2c", "comunity": SECRET_COMMUNITY}
    doc["credentials"]["wrong-type"] = {"version": "2c", "community": [SECRET_COMMUNITY]}
    doc["credentials"]["bad-version"] = {"version": SECRET_PRIV, "community": SECRET_COMMUNITY}
    with pytest.raises(ConfigError) as info:
        parse_config(dump(doc))
    text = str(info.value)
    assert len(info.value.issues) >= 6, text
    for secret in (short, SECRET_COMMUNITY, SECRET_PRIV, SECRET_AUTH):
        assert secret not in text


# --- located errors ------------------------------------------------------------------------------------


def _mutate(path: str, value: Any) -> Any:
    """A mutation of the example document: set `path` (dotted, [i] for items) to `value`."""

    def apply(doc: dict[str, Any]) -> None:
        parts = path.replace("[", ".").replace("]", "").split(".")
        node: Any = doc
        for p in parts[:-1]:
            node = node[int(p)] if p.isdigit() else node[p]
        last = parts[-1]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return apply


_DELETE = object()


def _append(section: str, item: Any) -> Any:
    def apply(doc: dict[str, Any]) -> None:
        doc[section].append(item)

    return apply


LINK4 = {"id": "venissieux-2", "commune": "venisieux", "target": "sw-venissieux", "interface": {"index": 50}}

LOCATED = [
    ("links[3].commune", _mutate("links[3].commune", "venisieux"), "links[3].commune: unknown commune <value>"),
    ("unknown root key", _mutate("pol", {"interval": "1m"}), "pol: unknown key"),
    ("unknown nested key", _mutate("targets[1].comunity", "x"), "targets[1].comunity: unknown key"),
    ("unknown poll key", _mutate("poll.intervall", "1m"), "poll.intervall: unknown key"),
    (
        "bad duration",
        _mutate("poll.interval", "5 minutes"),
        "poll.interval: invalid duration <value>: use e.g. 30s, 5m, 1h, 250ms",
    ),
    ("zero duration", _mutate("targets[0].poll.interval", "0s"), "targets[0].poll.interval: duration must be positive"),
    ("nan duration", _mutate("poll.timeout", float("nan")), "poll.timeout: duration must be a finite number"),
    ("bad capacity", _mutate("links[0].capacity", "10Gb"), "links[0].capacity: invalid capacity <value>"),
    ("float capacity", _mutate("links[0].capacity", 1.5e9), "links[0].capacity: a capacity is a number with a unit"),
    ("duplicate link id", _mutate("links[1].id", "givors-fibre"), "links[1].id: duplicate <value>"),
    ("duplicate target", _mutate("targets[2].name", "sw-venissieux"), "targets[2].name: duplicate <value>"),
    ("duplicate commune", _mutate("communes[7].id", "corbas"), "communes[7].id: duplicate <value>"),
    ("duplicate insee", _mutate("communes[1].insee", "69091"), "communes[1].insee: duplicate INSEE code <value>"),
    (
        "unknown credentials",
        _mutate("targets[1].credentials", "nope"),
        "targets[1].credentials: unknown credentials <value>",
    ),
    ("unknown target", _mutate("links[2].target", "core-lyon"), "links[2].target: unknown target <value>"),
    (
        "unknown profile",
        _mutate("targets[0].profiles", ["interfaces", "ups"]),
        "targets[0].profiles[1]: unknown profile <value>",
    ),
    (
        "unknown target commune",
        _mutate("targets[2].commune", "lyon"),
        "targets[2].commune: unknown commune <value> (or 'shared')",
    ),
    ("reserved commune", _mutate("communes[0].id", "shared"), "communes[0].id: this id is reserved"),
    ("bad id", _mutate("links[0].id", "Givors Fibre"), "links[0].id: <value> is not a valid id"),
    ("bad insee", _mutate("communes[2].insee", "6915"), "communes[2].insee: String should match pattern"),
    (
        "two selectors",
        _mutate("links[0].interface", {"name": "a", "index": 3}),
        "links[0].interface: give exactly one of name, alias, descr, index",
    ),
    ("no selector", _mutate("links[0].interface", {}), "links[0].interface: give exactly one of"),
    ("missing key", _mutate("links[1].target", _DELETE), "links[1].target: required key is missing"),
    ("bad side", _mutate("links[4].side", "middle"), "links[4].side: Input should be 'commune' or 'core'"),
    ("bad port", _mutate("targets[1].address", "192.0.2.20:70000"), "targets[1].address: port 70000 out of range"),
    ("bad timezone", _mutate("timezone", "Europe/Lyon"), "timezone: unknown timezone <value>"),
    ("timeout over interval", _mutate("poll.timeout", "2m"), "poll: timeout (120s) must not exceed interval (60s)"),
    (
        "bad version",
        _mutate("credentials.syndicate-v2c.version", "4"),
        "credentials.syndicate-v2c.version: Input should be",
    ),
    (
        "v3 auth without password",
        _mutate("credentials.core-v3.auth_password", _DELETE),
        "credentials.core-v3: 'auth_protocol' and 'auth_password' go together",
    ),
    (
        "v3 priv without password",
        _mutate("credentials.core-v3.priv_password", _DELETE),
        "credentials.core-v3: 'priv_protocol' and 'priv_password' go together",
    ),
    (
        "v3 priv without auth",
        lambda d: [d["credentials"]["core-v3"].pop(k) for k in ("auth_protocol", "auth_password")],
        "credentials.core-v3: privacy (authPriv) needs authentication too",
    ),
    (
        "v3 without username",
        _mutate("credentials.core-v3.username", _DELETE),
        "credentials.core-v3: SNMP v3 needs 'username'",
    ),
    (
        "v3 with community",
        _mutate("credentials.core-v3.community", "x"),
        "credentials.core-v3: SNMP v3 takes a USM user, not 'community'",
    ),
    (
        "v3 short password",
        _mutate("credentials.core-v3.auth_password", "short"),
        "credentials.core-v3: 'auth_password' must have at least 8 characters (RFC 3414)",
    ),
    (
        "v3 unknown auth protocol",
        _mutate("credentials.core-v3.auth_protocol", "SHA-1024"),
        "credentials.core-v3.auth_protocol: Input should be",
    ),
    (
        "v3 unknown priv protocol",
        _mutate("credentials.core-v3.priv_protocol", "3DES"),
        "credentials.core-v3.priv_protocol: Input should be",
    ),
    (
        "v2c without community",
        _mutate("credentials.syndicate-v2c.community", _DELETE),
        "credentials.syndicate-v2c: SNMP v2c needs 'community'",
    ),
    (
        "v2c with user",
        _mutate("credentials.syndicate-v2c.username", "bob"),
        "credentials.syndicate-v2c: SNMP v2c takes only 'community', not v3 user settings",
    ),
    ("fifth link's commune (appended)", _append("links", LINK4), "links[5].commune: unknown commune <value>"),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in LOCATED], ids=[n for n, _, _ in LOCATED])
def test_errors_are_located(secrets_env: Path, mutate: Any, expected: str) -> None:
    doc = example_doc()
    mutate(doc)
    with pytest.raises(ConfigError) as info:
        parse_config(dump(doc), "sitivmon.yaml", secrets_env)
    messages = [str(i) for i in info.value.issues]
    assert any(m.startswith(expected) for m in messages), messages
    assert all("(line " in m for m in messages), messages  # every problem points into the file


def test_target_poll_override_timeout_over_interval_is_located(secrets_env: Path) -> None:
    """A per-target override that makes timeout exceed interval must be an error, not a crash."""
    doc = example_doc()
    doc["targets"][1]["poll"] = {"timeout": "90s"}  # the global interval is 60 s
    with pytest.raises(ConfigError) as info:
        parse_config(dump(doc), "sitivmon.yaml", secrets_env)
    assert [str(i).split(" (line")[0] for i in info.value.issues] == [
        "targets[1].poll.timeout: timeout (90s) must not exceed the target's interval (60s)"
    ]


def test_line_numbers_point_at_the_key(secrets_env: Path) -> None:
    text = EXAMPLE.replace("commune: corbas\n    target: core-givors", "commune: corbass\n    target: core-givors")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "sitivmon.yaml", secrets_env)
    (issue,) = info.value.issues
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "commune: corbass" in t)
    assert str(issue) == f"links[4].commune: unknown commune <value> (line {line})"


def test_all_errors_are_reported_at_once(secrets_env: Path) -> None:
    doc = example_doc()
    doc["links"][0]["commune"] = "lyon"
    doc["links"][1]["target"] = "nowhere"
    doc["targets"][1]["credentials"] = "nope"
    with pytest.raises(ConfigError) as info:
        parse_config(dump(doc), "sitivmon.yaml", secrets_env)
    assert len(info.value.issues) == 3
    assert str(info.value).startswith("sitivmon.yaml: 3 error(s)\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("poll: {interval: 1m\n", "<root>: YAML syntax:"),
        ("- a\n- b\n", "<root>: the file must be a mapping of settings (line 1)"),
        ("links: [\n  {id: a, commune: givors}\n  oops\n", "<root>: YAML syntax:"),
    ],
)
def test_yaml_problems_are_located(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value.issues[0]).startswith(expected)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert str(info.value.issues[0]) == "<root>: cannot read: No such file or directory"


# --- sitivmon check -------------------------------------------------------------------------------------


def test_check_ok_exit_0(secrets_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(secrets_env, EXAMPLE)
    assert main(["check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (8 communes, 3 targets, 5 links)\n" and err == ""
    for secret in (SECRET_COMMUNITY, SECRET_AUTH, SECRET_PRIV):
        assert secret not in out + err


def test_check_bad_exit_2_located_on_stderr(secrets_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = example_doc()
    doc["links"][3]["commune"] = "venisieux"
    path = write(secrets_env, dump(doc))
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "venisieux" in t)
    assert err == (
        f"{path}: invalid configuration (1 error(s))\n  links[3].commune: unknown commune <value> (line {line})\n"
    )


def test_check_refusing_secrets_does_not_print_them(secrets_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = example_doc()
    doc["credentials"]["core-v3"]["priv_password"] = "short"
    doc["credentials"]["leak"] = {"version": "3", "username": "u", "community": SECRET_COMMUNITY}
    path = write(secrets_env, dump(doc))
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: invalid configuration (2 error(s))\n")
    assert "credentials.core-v3: 'priv_password' must have at least 8 characters (RFC 3414)" in err
    for secret in (SECRET_COMMUNITY, SECRET_AUTH, SECRET_PRIV, "short"):
        assert secret not in err


def test_check_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_as_a_command(secrets_env: Path) -> None:
    """The real entry point, in its own process: exit codes and streams as a shell sees them."""
    good = write(secrets_env, EXAMPLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITIVMON_")}
    env |= {"SITIVMON_TEST_COMMUNITY": SECRET_COMMUNITY, "SECRETS_DIR": str(secrets_env / "secrets")}
    r = subprocess.run(
        [sys.executable, "-m", "sitivmon", "check", "--config", str(good)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert "OK (8 communes, 3 targets, 5 links)" in r.stdout
    env.pop("SITIVMON_TEST_COMMUNITY")
    r = subprocess.run(
        [sys.executable, "-m", "sitivmon", "check", "--config", str(good)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert "credentials.syndicate-v2c.community: environment variable SITIVMON_TEST_COMMUNITY is not set" in r.stderr
    for secret in (SECRET_COMMUNITY, SECRET_AUTH, SECRET_PRIV):
        assert secret not in r.stdout + r.stderr
