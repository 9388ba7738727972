"""`sitivmon store migrate`: an installation's SQLite history moved to PostgreSQL, `sitivmon usage`
identical before and after, for every month."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pydantic import SecretStr

from sitivmon.allocation.archive import ReportArchive
from sitivmon.allocation.archive_postgres import PostgresReportArchive
from sitivmon.app.cli import main
from sitivmon.usage.store import COMPACT_EVERY, SqliteUsageStore
from tests.postgres.test_report_archive import NOW, fresh
from tests.support.postgres import PostgresServer
from tests.usage.support import communes, poll_link, record

ENV = "SITIVMON_TEST_MIGRATE_DSN"
MONTHS = ["2026-08", "2026-09", "2026-10"]
T0 = 1_786_000_000  # 2026-08-06


def config(path: Path, usage: dict[str, Any] | None = None) -> Path:
    doc: dict[str, Any] = {
        "state_dir": "var",
        "timezone": "Europe/Paris",
        "communes": [{"id": c.id, "name": c.name, "insee": c.insee} for c in communes()],
    }
    if usage:
        doc["usage"] = usage
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def usage_outputs(cfg: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    out = {}
    for month in MONTHS:
        for fmt in ("json", "csv"):
            assert main(["usage", "--config", str(cfg), "--month", month, "--format", fmt]) == 0, month
            out[f"{month}.{fmt}"] = capsys.readouterr().out
    return out


@pytest.fixture
def installation(tmp_path: Path) -> Path:
    """A SQLite store as a daemon leaves it: two months and more of two links (an outage in one), open
    buckets and baselines, a chunk from schema v1 (no CRC) and one quarantined chunk."""
    cfg = config(tmp_path / "lite.yaml")
    db = tmp_path / "var" / "usage.sqlite3"
    batches = list(poll_link("venissieux", "l1", T0, T0 + 75 * 86_400, 300, lambda t: int(t * 10),
                             down=[(T0 + 20 * 86_400, T0 + 21 * 86_400)]))
    batches += list(poll_link("givors", "g1", T0 + 3 * 86_400, T0 + 70 * 86_400, 60,
                              lambda t: int(t * t) % 2**50, lambda t: int(t) * 3))
    batches.sort(key=lambda b: b.at)
    # As the daemon writes: closed buckets merged into their chunk a twelfth of the series at a time,
    # so the store holds pending closed buckets that a verbatim copy of the chunks would miss.
    # The last batches are flushed one by one, as the daemon does every few minutes.
    head, tail = batches[:-40], batches[-40:]
    with SqliteUsageStore(db, compact_every=COMPACT_EVERY) as s:
        for n in range(0, len(head), 5000):
            record(s, head[n : n + 5000])
        for batch in tail:
            record(s, [batch])
    pending = sqlite3.connect(db).execute("SELECT count(*) FROM closed_bucket").fetchone()[0]
    assert pending > 0
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("UPDATE chunk SET crc = NULL WHERE rowid = (SELECT min(rowid) FROM chunk)")
    raw.execute("INSERT INTO chunk_corrupt SELECT week, series_id, data, crc, 1.5, 'checksum mismatch'"
                " FROM chunk WHERE rowid = (SELECT max(rowid) FROM chunk)")
    raw.close()
    archive = ReportArchive(tmp_path / "var" / "reports.sqlite")  # two closed months, one revised
    archive.close(fresh("2026-09", storage_cents=500), now=NOW)
    archive.close(fresh("2026-10"), now=NOW)
    archive.close(fresh("2026-10", storage_cents=700), now=NOW)
    return cfg


def test_migrate_moves_the_history_without_changing_one_figure(
    installation: Path, postgres_server: PostgresServer, postgres_dsn: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    before = usage_outputs(installation, capsys)
    assert '"traffic_volume"' in before["2026-09.json"]
    db = tmp_path / "var" / "usage.sqlite3"
    monkeypatch.setenv(ENV, postgres_dsn)
    code = main(["store", "migrate", "--from", f"sqlite:{db}", "--to", f"postgresql:${{{ENV}}}",
                 "--config", str(installation)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "history digest equal" in out.err
    assert "copied 3 report revisions of 2 closed months" in out.err
    assert "`sitivmon usage` identical on both stores for 3 months (2026-08..2026-10)" in out.err
    assert postgres_server.password not in out.err + out.out
    pg_cfg = config(tmp_path / "pg.yaml", {"store": "postgresql", "dsn": f"${{{ENV}}}"})
    assert usage_outputs(pg_cfg, capsys) == before
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM chunk WHERE crc IS NULL").fetchone() == (1,)
        assert conn.execute("SELECT count(*), min(reason) FROM chunk_corrupt").fetchone() == (1, "checksum mismatch")
        copied = conn.execute("SELECT count(*) FROM chunk").fetchone()
    lite = sqlite3.connect(db)
    assert copied == lite.execute("SELECT count(*) FROM chunk").fetchone()
    lite.close()
    frozen = ReportArchive(tmp_path / "var" / "reports.sqlite")
    pg_archive = PostgresReportArchive(SecretStr(postgres_dsn))
    for month in ("2026-09", "2026-10"):
        assert pg_archive.revisions(month) == frozen.revisions(month)
    assert [r.revision for r in pg_archive.revisions("2026-10")] == [1, 2]

    # A second run refuses to touch a database that already holds usage.
    code = main(["store", "migrate", "--from", f"sqlite:{db}", "--to", f"postgresql:${{{ENV}}}"])
    out = capsys.readouterr()
    assert code == 1 and "already holds usage" in out.err
    assert postgres_server.password not in out.err + out.out
    assert usage_outputs(pg_cfg, capsys) == before


def test_migrate_refuses_bad_endpoints_without_echoing_them(
    installation: Path, postgres_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "var" / "usage.sqlite3"
    secret_dsn = postgres_server.dsn("x")
    assert main(["store", "migrate", "--from", str(db), "--to", f"postgresql:{secret_dsn}"]) == 2
    assert "--from: expected sqlite:..." in capsys.readouterr().err
    keywords = f"host=127.0.0.1 port={postgres_server.port} password={postgres_server.password}"
    assert main(["store", "migrate", "--from", f"sqlite:{db}", "--to", keywords]) == 2
    err = capsys.readouterr().err
    assert "--to: expected postgresql:..." in err and postgres_server.password not in err
    assert main(["store", "migrate", "--from", f"sqlite:{db}", "--to", secret_dsn]) == 1  # a URI is its own prefix
    err = capsys.readouterr().err
    assert "postgresql://127.0.0.1:" in err and '"x" does not exist' in err and postgres_server.password not in err
    monkeypatch.delenv(ENV, raising=False)
    assert main(["store", "migrate", "--from", f"sqlite:{db}", "--to", f"postgresql:${{{ENV}}}"]) == 2
    assert f"environment variable {ENV} is not set" in capsys.readouterr().err
    assert main(["store", "migrate", "--from", f"sqlite:{tmp_path}/nothing.sqlite3",
                 "--to", f"postgresql:{postgres_server.dsn()}"]) == 1
    err = capsys.readouterr().err
    assert "no SQLite usage store there" in err and postgres_server.password not in err
    nodb = postgres_server.dsn("nodb")
    assert main(["store", "migrate", "--from", f"sqlite:{db}", "--to", f"postgresql:{nodb}"]) == 1
    err = capsys.readouterr().err
    assert "store migrate: postgresql://127.0.0.1:" in err and postgres_server.password not in err


def test_a_schema_1_store_migrates_too(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store written by schema 1 (no CRC column, no quarantine table) is read as it is, not upgraded."""
    cfg = config(tmp_path / "lite.yaml")
    db = tmp_path / "var" / "usage.sqlite3"
    with SqliteUsageStore(db) as s:
        record(s, poll_link("corbas", "c1", T0 + 40 * 86_400, T0 + 50 * 86_400, 300, lambda t: int(t) * 7))
    raw = sqlite3.connect(db, isolation_level=None)  # back to schema 1, as an old sitivmon left it
    raw.execute("DROP TABLE chunk_corrupt")
    raw.execute("ALTER TABLE chunk DROP COLUMN crc")
    raw.execute("DROP TABLE closed_bucket")
    raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.close()
    before = usage_outputs(cfg, capsys)
    monkeypatch.setenv(ENV, postgres_dsn)
    code = main(["store", "migrate", "--from", f"sqlite:{db}", "--to", f"postgresql:${{{ENV}}}", "--config", str(cfg)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "schema v1" in out.err and "no report archive" in out.err
    pg_cfg = config(tmp_path / "pg.yaml", {"store": "postgresql", "dsn": f"${{{ENV}}}"})
    assert usage_outputs(pg_cfg, capsys) == before
    doc = json.loads(before["2026-09.json"])
    volume = next(i for i in doc["indicators"] if i["commune"] == "corbas" and i["indicator"] == "traffic_volume"
                  and i["direction"] == "in")
    assert volume["value"] > 0  # the history was there to move
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) = count(*) FILTER (WHERE crc IS NULL) FROM chunk").fetchone() == (True,)
    lite = sqlite3.connect(db)
    assert lite.execute("SELECT value FROM meta").fetchone() == ("1",)  # the source is left as it was
    lite.close()
