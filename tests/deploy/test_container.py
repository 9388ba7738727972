"""deploy/container/Containerfile: structure the issue asks for, and a health check that really runs.

No container engine or registry is reachable here, so the image is not built: the Containerfile is
parsed (continuation lines, JSON exec forms) and its HEALTHCHECK command is executed for real on the
host's Python, against a closed port (must fail). The success path runs in test_live.py against a
real sitivmon.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy/container/Containerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and backslash continuations joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, args = buf.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        buf = ""
    return out


INSTR = instructions(CONTAINERFILE.read_text())


def final_stage() -> list[tuple[str, str]]:
    starts = [i for i, (k, _) in enumerate(INSTR) if k == "FROM"]
    return INSTR[starts[-1] :]


def healthcheck_argv(port: int | None = None) -> list[str]:
    (args,) = [a for k, a in final_stage() if k == "HEALTHCHECK"]
    cmd = args[args.index("CMD") + 3 :].strip()
    argv: list[str] = json.loads(cmd)
    if port is not None:
        argv = [a.replace("127.0.0.1:9811", f"127.0.0.1:{port}") for a in argv]
    return argv


def test_instruction_parser() -> None:
    parsed = instructions('# c\nFROM a AS b\nRUN x \\\n && y\n\nCMD ["z"]\n')
    assert parsed == [("FROM", "a AS b"), ("RUN", "x   && y"), ("CMD", '["z"]')]


def test_multi_stage_with_named_build_stage_copied_from() -> None:
    froms = [a for k, a in INSTR if k == "FROM"]
    assert len(froms) >= 2
    stages = {m.group(1) for a in froms if (m := re.search(r"\bAS\s+(\S+)", a, re.I))}
    copies = [a for k, a in final_stage() if k == "COPY" and "--from=" in a]
    assert copies and all(re.search(r"--from=(\S+)", c).group(1) in stages for c in copies)  # type: ignore[union-attr]
    # No pip, compiler or source tree in the runtime stage.
    assert not any(k == "RUN" and "pip install" in a for k, a in final_stage())


def test_base_images_pinned_and_same_python_in_both_stages() -> None:
    args = {k.split("=")[0]: k.split("=", 1)[1] for i, a in INSTR if i == "ARG" for k in [a]}
    image = args["PYTHON_IMAGE"]
    assert re.search(r":\d+\.\d+", image), image
    assert all(a.startswith("${PYTHON_IMAGE}") for k, a in INSTR if k == "FROM")


def test_runs_as_non_root_numeric_user() -> None:
    users = [a for k, a in final_stage() if k == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_state_directory_is_a_volume_owned_by_that_user() -> None:
    (volume,) = [a for k, a in final_stage() if k == "VOLUME"]
    assert "/var/lib/sitivmon" in json.loads(volume)
    uid = [a for k, a in final_stage() if k == "USER"][-1].split(":")[0]
    assert any(k == "RUN" and f"-o {uid}" in a and "/var/lib/sitivmon" in a for k, a in final_stage())
    # The compose config and the image agree on the state directory.
    assert "state_dir: /var/lib/sitivmon" in (ROOT / "deploy/compose/sitivmon/sitivmon.yaml").read_text()


def test_entrypoint_and_cmd_run_the_daemon_listening_beyond_loopback() -> None:
    entry = json.loads(next(a for k, a in final_stage() if k == "ENTRYPOINT"))
    cmd = json.loads(next(a for k, a in final_stage() if k == "CMD"))
    assert entry == ["sitivmon"]
    assert cmd[:3] == ["run", "--config", "/etc/sitivmon/sitivmon.yaml"]
    assert cmd[cmd.index("--listen") + 1] == "0.0.0.0:9811"


def test_healthcheck_probes_healthy_endpoint() -> None:
    argv = healthcheck_argv()
    assert argv[0] == "python"
    assert "http://127.0.0.1:9811/-/healthy" in " ".join(argv)


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    argv = healthcheck_argv(free_port())
    r = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "Connection refused" in r.stderr


def test_build_context_ignore_file_keeps_the_context_small() -> None:
    ignore = (CONTAINERFILE.parent / "Containerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*"
    copied = {p for k, a in INSTR if k == "COPY" and "--from" not in a for p in a.split()[:-1]}
    for path in copied:
        assert f"!{path.rstrip('/')}" in ignore or f"!{path}" in ignore or f"!{path}/" in ignore, path
