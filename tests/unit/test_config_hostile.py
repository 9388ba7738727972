"""Hostile or careless configuration files: alias bombs, recursive and deep documents, duplicate keys,
reserved ids, a bad trap engine ID, and values that must never be echoed back in error messages.
Each is a located `check` error, found fast and in bounded memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sitivmon.allocation.api import SYNDICATE
from sitivmon.app.config import ConfigError, parse_config
from sitivmon.config.loader import MAX_DOCUMENT_BYTES
from tests.support.agents import REPO, _clean_env
from tests.unit.test_config import EXAMPLE, dump, example_doc, secrets_env, write

__all__ = ["secrets_env"]  # the fixture, imported to be used here


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """`levels` levels of `width` aliases each ("billion laughs"): about 1.3 KB for 9 x 9, 9^10 strings
    once expanded."""
    lines = ["lol0: &a0 [" + ", ".join('"lol"' for _ in range(width)) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &a{i} {{" + ", ".join(f"entry{j}: *a{i - 1}" for j in range(width)) + "}")
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    limit = 1536 * 1024 * 1024  # the bomb used to take several GB: fail fast instead of swapping
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


_MEASURE = """
import json, sys, time, tracemalloc
from sitivmon.app.config import ConfigError, parse_config
text = open(sys.argv[1], encoding="utf-8").read()
tracemalloc.start()
started = time.perf_counter()
try:
    parse_config(text, "bomb.yaml")
    issues = []
except ConfigError as exc:
    issues = [str(i) for i in exc.issues]
elapsed = time.perf_counter() - started
print(json.dumps({"elapsed": elapsed, "peak": tracemalloc.get_traced_memory()[1], "issues": issues}))
"""


def test_alias_bomb_is_refused_fast_in_bounded_memory(tmp_path: Path) -> None:
    """Nine levels of nine aliases (1.3 KB): before, `check` ran 78 s and died of MemoryError at 6 GB."""
    text = alias_bomb()
    assert 1000 < len(text) < 1400
    path = write(tmp_path, text, "bomb.yaml")
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=60,
        env=_clean_env(None), preexec_fn=_limit_memory, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert len(result["issues"]) == 1
    assert result["issues"][0].startswith("<root>: aliases expand the document beyond 1,000,000 values")
    assert "(line " in result["issues"][0]
    assert result["elapsed"] < 0.5, result
    assert result["peak"] < 8 * 1024 * 1024, result


def test_check_refuses_an_alias_bomb_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, alias_bomb(), "bomb.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "sitivmon", "check", "--config", str(path)], capture_output=True, text=True,
        timeout=60, env=_clean_env(None), preexec_fn=_limit_memory, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "aliases expand the document beyond" in proc.stderr


def test_ordinary_aliases_and_merge_keys_still_load_and_locate(secrets_env: Path) -> None:
    """Anchors used as operators do (a shared poll block, a merged link template) keep working; an error
    inside an aliased block is reported at the key that uses it."""
    text = EXAMPLE.replace("    poll: {interval: 30s, timeout: 3s}", "    poll: &fast {interval: 30s, timeout: 3s}")
    text = text.replace("    commune: venissieux\n", "    commune: venissieux\n    poll: *fast\n", 1)
    config = parse_config(text, "sitivmon.yaml", secrets_env)
    assert [t.poll.interval for t in config.targets[:2]] == [30.0, 30.0]
    bad = text.replace("&fast {interval: 30s, timeout: 3s}", "&fast {interval: 30s, timeout: 3s, retries: 99}")
    with pytest.raises(ConfigError) as info:
        parse_config(bad, "sitivmon.yaml", secrets_env)
    lines = bad.splitlines()
    anchor = next(i for i, t in enumerate(lines, 1) if "&fast" in t)
    alias = next(i for i, t in enumerate(lines, 1) if "poll: *fast" in t)
    located = sorted(str(i) for i in info.value.issues)
    assert located == [
        f"targets[0].poll.retries: Input should be less than or equal to 10 (line {anchor})",
        f"targets[1].poll.retries: Input should be less than or equal to 10 (line {alias})",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("poll: &p {interval: 1m, self: *p}\n", "<root>: an alias refers to the node that contains it"),
        ("links: " + "[" * 3000 + "]" * 3000 + "\n", "<root>: the document is nested too deeply"),
    ],
    ids=["recursive", "deep"],
)
def test_recursive_and_deep_documents_are_located_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value.issues[0]).startswith(expected)


def test_oversized_document_is_refused_before_parsing() -> None:
    text = "# " + "x" * MAX_DOCUMENT_BYTES + "\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert [str(i) for i in info.value.issues] == ["<root>: the file is larger than 16 MiB"]


def test_duplicate_credential_is_a_located_error(secrets_env: Path) -> None:
    """YAML keeps the last of two equal keys: a second credential of the same name silently replaced the
    first (and with it, what every target using that name authenticates with)."""
    text = EXAMPLE.replace(
        "  core-v3:\n",
        "  syndicate-v2c:\n    version: 2c\n    community: other-${SITIVMON_TEST_COMMUNITY}\n  core-v3:\n",
    )
    lines = text.splitlines()
    first, second = [i for i, t in enumerate(lines, 1) if t == "  syndicate-v2c:"]
    with pytest.raises(ConfigError) as info:
        parse_config(text, "sitivmon.yaml", secrets_env)
    assert [str(i) for i in info.value.issues] == [
        f"credentials.syndicate-v2c: duplicate key (first at line {first}): YAML would keep only the last "
        f"(line {second})"
    ]


def test_every_duplicate_key_is_reported_where_it_is() -> None:
    text = "poll:\n  interval: 1m\n  interval: 2m\nlinks:\n  - {id: a, id: b}\npoll: {}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert [str(i).split(":")[0] + f" {i.line}" for i in info.value.issues] == [
        "poll.interval 3",
        "links[0].id 5",
        "poll 6",
    ]


def test_a_commune_may_not_take_the_syndicate_wide_scope_id(secrets_env: Path) -> None:
    """An API token scoped `syndicate` sees every commune: a commune of that id would be confused with it."""
    doc = example_doc()
    doc["communes"][2]["id"] = SYNDICATE
    for link in doc["links"]:
        if link["commune"] == "pierre-benite":
            link["commune"] = SYNDICATE
    with pytest.raises(ConfigError) as info:
        parse_config(dump(doc), "sitivmon.yaml", secrets_env)
    (issue,) = info.value.issues
    assert str(issue).startswith("communes[2].id: this id is reserved") and issue.line


@pytest.mark.parametrize(
    ("engine_id", "ok"),
    [
        ("zz-not-hex", False),
        ("8000", False),  # shorter than the 5 octets of RFC 3411
        ("80" * 33, False),
        ("0x80001f8804736974697601", True),
        ("80001F8804736974697601", True),
    ],
)
def test_trap_engine_id_is_checked(engine_id: str, ok: bool) -> None:
    """A bad `traps.engine_id` passed `check` and then stopped the daemon at start."""
    text = f'traps:\n  engine_id: "{engine_id}"\n'
    if ok:
        config = parse_config(text)
        assert config.traps.engine_id == engine_id.lower().removeprefix("0x")
        assert bytes.fromhex(config.traps.engine_id)
        return
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    (issue,) = info.value.issues
    assert str(issue).startswith("traps.engine_id: ") and issue.line == 2
    assert engine_id not in str(issue)


# --- values are never echoed ------------------------------------------------------------------------

MARK = "Zq9echo" + os.urandom(3).hex()


def _set(path: str, value: Any) -> Any:
    def apply(doc: dict[str, Any]) -> None:
        parts = [int(p) if p.isdigit() else p for p in path.replace("[", ".").replace("]", "").split(".")]
        node: Any = doc
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if isinstance(p, str) else node[p]
        node[parts[-1]] = value

    return apply


# (field kind, where, the value written there): every value holds MARK, which must not be printed.
ECHO_CASES = [
    ("identifier", "links[0].id", f"Bad {MARK}"),
    ("ip address", "targets[1].address", f"{MARK}.example:161"),
    ("ip address port", "targets[1].address", f"[2001:db8::{MARK}]"),
    ("enum", "links[4].side", MARK),
    ("literal", "credentials.syndicate-v2c.version", MARK),
    ("protocol enum", "credentials.core-v3.auth_protocol", MARK),
    ("integer", "poll.retries", MARK),
    ("boolean", "links[4].maintenance", MARK),
    ("duration", "poll.interval", f"5 {MARK}"),
    ("capacity", "links[0].capacity", f"10{MARK}"),
    ("timezone", "timezone", f"Europe/{MARK}"),
    ("listen", "listen", MARK),
    ("network list", "traps.allowed_sources", [f"10.0.0.0/{MARK}"]),
    ("engine id", "traps.engine_id", MARK),
    ("engine id list", "traps.v3_users", [{"credential": "core-v3", "engine_ids": [MARK]}]),
    ("insee", "communes[0].insee", MARK),
    ("reference: commune", "links[1].commune", MARK),
    ("reference: credentials", "targets[0].credentials", MARK),
    ("reference: target", "links[2].target", MARK),
    ("reference: profile", "targets[0].profiles", ["interfaces", MARK]),
    ("reference: trap community", "traps.communities", [MARK]),
]


@pytest.mark.parametrize(("where", "value"), [(w, v) for _, w, v in ECHO_CASES], ids=[k for k, _, _ in ECHO_CASES])
def test_refused_values_are_never_echoed(secrets_env: Path, where: str, value: Any) -> None:
    """A secret pasted into the wrong field must not come back in `check` output or a reload answer:
    the error is located, and the value is not in it (pydantic's messages quote some inputs, our
    validators and cross-checks quoted others)."""
    doc = example_doc()
    _set(where, value)(doc)
    with pytest.raises(ConfigError) as info:
        parse_config(dump(doc), "sitivmon.yaml", secrets_env)
    text = str(info.value)
    assert MARK not in text
    head = where.split("[")[0].split(".")[0]
    assert any(str(i).startswith(head) and i.line for i in info.value.issues), text


@pytest.mark.parametrize("written", ["4", "010", "1.10", "yes"])
@pytest.mark.parametrize("key", ["descr", "name", "alias"])
def test_unquoted_numeric_selector_says_to_quote_it(key: str, written: str) -> None:
    """`descr: 4` was refused with "Input should be a valid string", which does not say what to do."""
    text = f"links:\n  - id: a\n    commune: x\n    target: t\n    interface: {{{key}: {written}}}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    located = [str(i) for i in info.value.issues if i.loc[:3] == ("links", 0, "interface")]
    assert located == [
        f'links[0].interface.{key}: write it in quotes, e.g. {key}: "…": unquoted, YAML reads it as a number '
        "(or a boolean) and may change it (010 becomes 8, 1.10 becomes 1.1, yes becomes true) (line 5)"
    ]
    quoted = text.replace(f"{key}: {written}", f'{key}: "{written}"')
    with pytest.raises(ConfigError) as info:
        parse_config(quoted)  # only the unknown commune and target remain
    assert not [i for i in info.value.issues if i.loc[:3] == ("links", 0, "interface")]
