"""`sitivmon report [close]` with `usage.store: postgresql`: usage read and months archived in the
database, the same bytes as with SQLite, and the archive's rows refused to UPDATE by the server."""

from __future__ import annotations

import argparse
import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml

from sitivmon.allocation import cli
from sitivmon.allocation.service import ReportService, service_from_config
from sitivmon.app.config import load_config
from sitivmon.config.model import Commune
from sitivmon.usage.backends import open_usage_store, usage_change_stamp
from sitivmon.usage.periods import month_range
from tests.support.agents import REPO
from tests.usage.support import communes, poll_link, record

NOW = datetime(2026, 11, 5, 9, 30, tzinfo=UTC)
M = month_range("2026-10")
ENV = "SITIVMON_TEST_REPORT_DSN"


def run(*argv: str | Path) -> int:
    """`sitivmon report` on a real root config, its usage from the configured store, at a fixed clock."""

    def service_for(path: Path) -> ReportService:
        config = load_config(path)
        return service_from_config(
            config_path=path, state_dir=config.state_dir, timezone=config.timezone, communes=config.communes,
            links=config.links, allocation=config.allocation, usage_settings=config.usage,
        )

    def communes_for(path: Path) -> tuple[list[Commune], str]:
        config = load_config(path)
        return list(config.communes), config.timezone

    parser = argparse.ArgumentParser(prog="sitivmon")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub, service_for=service_for, communes_for=communes_for, clock=lambda: NOW)
    args = parser.parse_args([str(a) for a in argv])
    code: int = args.func(args)
    return code


def root(tmp: Path, usage: dict[str, str] | None) -> Path:
    tmp.mkdir()
    shutil.copy(REPO / "config" / "allocation.yaml", tmp / "allocation.yaml")
    doc = {
        "state_dir": "var",
        "timezone": "Europe/Paris",
        "communes": [{"id": c.id, "name": c.name, "insee": c.insee} for c in communes()],
        "allocation": "allocation.yaml",
        "links": [{"id": "ven-l1", "commune": "venissieux", "target": "core", "interface": {"name": "eth1"}},
                  {"id": "giv-g1", "commune": "givors", "target": "core", "interface": {"name": "eth2"}}],
        "targets": [{"name": "core", "address": "192.0.2.1", "credentials": "c"}],
        "credentials": {"c": {"version": "2c", "community": "public-test"}},
    }
    if usage:
        doc["usage"] = usage
    path = tmp / "sitivmon.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def test_report_and_close_give_the_same_bytes_on_both_backends(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, postgres_dsn)
    configs = [root(tmp_path / "lite", None), root(tmp_path / "pg", {"store": "postgresql", "dsn": f"${{{ENV}}}"})]
    batches = list(poll_link("venissieux", "ven-l1", M.start - 100, M.end + 600, 300, lambda t: int(t * 10)))
    batches += list(poll_link("givors", "giv-g1", M.start + 86_400, M.end - 7200, 300, lambda t: int(t * 3)))
    for cfg in configs:
        config = load_config(cfg)
        with open_usage_store(config.usage, config.state_dir) as s:
            record(s, batches)
    outputs: list[list[bytes]] = []
    for cfg in configs:
        got = []
        for step in ((), ("close",), ("close",), ()):
            out = cfg.parent / "r.json"
            assert run("report", *step, "--config", cfg, "--month", "2026-10", "--output", out) == 0, cfg
            got.append(out.read_bytes())
        config_sha = hashlib.sha256(cfg.read_bytes()).hexdigest().encode()  # the configs differ in `usage:`
        assert all(config_sha in g for g in got)
        outputs.append([g.replace(config_sha, b"<config>") for g in got])
        err = capsys.readouterr().err
        assert "closed as revision 1" in err and "unchanged since revision 1" in err
    assert outputs[0] == outputs[1]
    assert b'"status": "final"' in outputs[1][3] and b'"revision": 1' in outputs[1][3]
    assert b"venissieux" in outputs[1][0]

    pg = load_config(configs[1])
    stamp = usage_change_stamp(pg.usage, pg.state_dir)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM report_revision").fetchone() == (1,)
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
            conn.execute("UPDATE report_revision SET content = '\\x00'")
        conn.execute("INSERT INTO report_revision VALUES ('2026-09', 1, 's', '\\x01', NULL, 'x')")
    assert usage_change_stamp(pg.usage, pg.state_dir) != stamp  # a new revision invalidates cached reports
    assert not (configs[1].parent / "var").exists()  # nothing of the PostgreSQL installation on disk
