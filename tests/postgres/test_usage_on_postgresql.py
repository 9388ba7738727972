"""`usage.store: postgresql` end to end: the config, the recorder through a server outage, and
`sitivmon usage` giving the same output as on SQLite for the same polls."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from sitivmon.app.cli import main
from sitivmon.app.config import ConfigError, parse_config
from sitivmon.usage.backends import open_usage_store, usage_change_stamp
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.indicators import usage_document
from sitivmon.usage.periods import month_range
from sitivmon.usage.postgres import PostgresUsageStore
from sitivmon.usage.recorder import UsageRecorder
from sitivmon.usage.store import SqliteUsageStore
from tests.support.postgres import PostgresServer
from tests.usage.support import communes, link_keys, pick, poll_link, record

M = month_range("2026-10")
V = "venissieux"
ENV = "SITIVMON_TEST_USAGE_DSN"


def base_doc(state: str = "var") -> dict[str, Any]:
    return {
        "state_dir": state,
        "timezone": "Europe/Paris",
        "communes": [{"id": c.id, "name": c.name, "insee": c.insee} for c in communes()],
    }


def pg_settings(dsn: str, **kw: float) -> UsageSettings:
    return UsageSettings.model_validate({"store": "postgresql", "dsn": dsn, **kw})


# -- config ------------------------------------------------------------------------------------------------


def test_postgresql_needs_a_dsn_and_a_dsn_needs_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="dsn is required when store is postgresql"):
        parse_config(yaml.safe_dump({**base_doc(), "usage": {"store": "postgresql"}}))
    secret = "postgresql://u:Sekr3t-pw-a81@db.example:5432/usage"
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump({**base_doc(), "usage": {"dsn": secret}}))
    assert "dsn is set but store is sqlite" in str(info.value) and "Sekr3t" not in str(info.value)
    monkeypatch.setenv(ENV, secret)
    config = parse_config(yaml.safe_dump({**base_doc(), "usage": {"store": "postgresql", "dsn": f"${{{ENV}}}"}}))
    assert config.usage.dsn is not None and config.usage.dsn.get_secret_value() == secret
    assert "Sekr3t" not in repr(config.usage) and "Sekr3t" not in str(config.usage.model_dump())


def test_check_and_config_errors_never_show_the_dsn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "postgresql://u:Sekr3t-pw-b52@db.example:5432/usage"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base_doc(), "usage": {"store": "postgresql", "dsn": secret,
                                                            "flush_interval_s": -1}}))
    assert main(["check", "--config", str(path)]) == 2
    out = capsys.readouterr()
    assert "flush_interval_s" in out.err + out.out
    assert "Sekr3t" not in out.err + out.out
    path.write_text(yaml.safe_dump({**base_doc(), "usage": {"store": "postgresql",
                                                            "dsn": "host=db password=Sekr3t-pw-c99 oops"}}))
    assert main(["check", "--config", str(path)]) == 2
    out = capsys.readouterr()
    assert "dsn is not a libpq connection string" in out.err + out.out
    assert "Sekr3t" not in out.err + out.out and "oops" not in out.err + out.out
    path.write_text(yaml.safe_dump({**base_doc(), "usage": {"store": "postgresql", "dsn": secret}}))
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert "Sekr3t" not in out.err + out.out


def test_the_factory_builds_the_postgresql_store(postgres_dsn: str, tmp_path: Path) -> None:
    settings = pg_settings(postgres_dsn)
    store = open_usage_store(settings, tmp_path / "state", connect=False)
    assert isinstance(store, PostgresUsageStore) and not store.is_open
    store.open()
    before = usage_change_stamp(settings, tmp_path / "state")
    assert before == usage_change_stamp(settings, tmp_path / "state")  # cacheable while nothing is written
    record(store, poll_link(V, "l1", M.start, M.start + 900, 300, lambda t: int(t)))
    assert usage_change_stamp(settings, tmp_path / "state") != before
    store.close()
    assert not (tmp_path / "state").exists()  # nothing on disk for a PostgreSQL store


# -- the recorder through an outage -----------------------------------------------------------------------


def counter(t: float) -> int:
    return int((t - M.start) * 1000) + int((t - M.start) ** 2) // 7


async def test_the_recorder_keeps_polls_while_the_server_is_down_and_writes_them_exactly(
    postgres_server: PostgresServer, postgres_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fast = {"flush_interval_s": 0.05, "busy_timeout_s": 0.2, "retry_initial_s": 0.05, "retry_max_s": 0.2}
    settings = pg_settings(postgres_dsn, **fast)
    reg = CollectorRegistry()
    batches = list(poll_link(V, "l1", M.start + 1000, M.start + 20000, 60, counter))
    async with UsageRecorder(open_usage_store(settings, tmp_path, connect=False), reg, settings) as rec:
        for b in batches[:100]:
            rec.submit(b)
        assert await rec.flush()
        await asyncio.to_thread(postgres_server.stop)
        try:
            for b in batches[100:200]:
                rec.submit(b)
            assert not await rec.flush()
            assert (reg.get_sample_value("sitivmon_usage_write_errors_total", {"error": "StoreUnavailable"}) or 0) >= 1
        finally:
            await asyncio.to_thread(postgres_server.start)
        for b in batches[200:]:
            rec.submit(b)
        for _ in range(100):
            if await rec.flush():
                break
            await asyncio.sleep(0.1)
        assert reg.get_sample_value("sitivmon_usage_pending_batches") == 0
    with open_usage_store(settings, tmp_path, read_only=True) as s:
        doc = usage_document(s, communes(), M, link_keys(V, "l1"))
    assert pick(doc, V, "traffic_volume", "in")["value"] == counter(batches[-1].at) - counter(M.start + 1000)
    assert postgres_server.password not in caplog.text
    assert "postgresql://127.0.0.1:" in caplog.text  # the outage was logged, naming the server


# -- the same answers as SQLite ----------------------------------------------------------------------------


def polls() -> list[Any]:
    """Two links over the month, one with an outage (gaps) and one starting late (coverage < 1)."""
    a = list(poll_link(V, "l1", M.start - 283, M.end + 600, 300, lambda t: int(t * 10),
                       down=[(M.start + 86_400, M.start + 90_000)]))
    b = list(poll_link("givors", "g1", M.start + 5 * 86_400, M.end - 3600, 60, lambda t: int(t * t) % 2**40,
                       lambda t: int(t) * 3))
    return a + b


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_sitivmon_usage_prints_the_same_on_both_backends(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    lite_cfg, pg_cfg = tmp_path / "lite.yaml", tmp_path / "pg.yaml"
    lite_cfg.write_text(yaml.safe_dump(base_doc("lite")))
    monkeypatch.setenv(ENV, postgres_dsn)
    pg_cfg.write_text(yaml.safe_dump({**base_doc("pgstate"), "usage": {"store": "postgresql", "dsn": f"${{{ENV}}}"}}))
    batches = polls()
    with SqliteUsageStore(tmp_path / "lite" / "usage.sqlite3") as lite, open_usage_store(
        pg_settings(postgres_dsn), tmp_path
    ) as pgs:
        for n in range(0, len(batches), 997):  # several flushes, closing buckets in between
            record(lite, batches[n : n + 997])
            record(pgs, batches[n : n + 997])
    outputs = []
    for cfg in (lite_cfg, pg_cfg):
        assert main(["usage", "--config", str(cfg), "--month", "2026-10", "--format", fmt]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "venissieux" in outputs[0] and "givors" in outputs[0]


def test_sitivmon_usage_with_the_server_down_fails_without_the_password(
    postgres_server: PostgresServer, postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = tmp_path / "pg.yaml"
    monkeypatch.setenv(ENV, postgres_dsn)
    cfg.write_text(yaml.safe_dump({**base_doc(), "usage": {"store": "postgresql", "dsn": f"${{{ENV}}}"}}))
    with open_usage_store(pg_settings(postgres_dsn), tmp_path) as s:
        record(s, polls()[:50])
    postgres_server.stop()
    try:
        code = main(["usage", "--config", str(cfg), "--month", "2026-10"])
    finally:
        postgres_server.start()
    out = capsys.readouterr()
    assert code == 1
    assert "usage store: postgresql://127.0.0.1:" in out.err
    assert postgres_server.password not in out.err + out.out
