"""`sitivmon usage`: the real command on a real configuration file and store."""

from __future__ import annotations

import csv
import io
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from sitivmon.cli import main
from sitivmon.usage.backends import open_usage_store, usage_reader_factory
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.periods import month_range
from sitivmon.usage.service import build_document
from sitivmon.usage.store import SqliteUsageStore

from .support import communes, pick, poll_link, record

M = month_range("2026-10")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sitivmon.yaml"
    doc = {
        "state_dir": "var",
        "timezone": "Europe/Paris",
        "communes": [{"id": c.id, "name": c.name, "insee": c.insee} for c in communes()],
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def fill(config: Path) -> None:
    from sitivmon.config import load_config

    state = Path(load_config(config).state_dir)
    with open_usage_store(UsageSettings(), state) as s:
        record(s, poll_link("venissieux", "l1", M.start - 283, M.end + 600, 300, lambda t: int(t * 10)))


def test_json_is_the_document(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(config)
    assert main(["usage", "--config", str(config), "--month", "2026-10", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out, parse_float=Decimal)
    assert pick(doc, "venissieux", "traffic_volume", "in")["value"] == 10 * 745 * 3600
    assert doc["period"]["start"] == "2026-10-01T00:00:00+02:00"


def test_build_document_matches_the_command(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sitivmon.config import load_config

    fill(config)
    main(["usage", "--config", str(config), "--month", "2026-10", "--format", "json"])
    c = load_config(config)
    doc = build_document(usage_reader_factory(c.usage, c.state_dir), c.communes, c.timezone, c.links, "2026-10")
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(doc))


def test_csv_and_table(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(config)
    assert main(["usage", "--config", str(config), "--month", "2026-10", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    row = next(
        r
        for r in rows
        if r["commune"] == "venissieux" and r["indicator"] == "traffic_volume" and r["direction"] == "in"
    )
    assert row["value"] == str(10 * 745 * 3600) and row["coverage"] == "1.000000" and row["insee"] == "69259"
    assert main(["usage", "--config", str(config), "--month", "2026-10"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("2026-10 (Europe/Paris)") and "venissieux" in table


def test_no_store_yet_is_a_month_without_data_and_creates_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["usage", "--config", str(config), "--month", "2026-10", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(i["coverage"] == "0" or Decimal(i["coverage"]) == 0 for i in doc["indicators"])
    assert not (config.parent / "var").exists()


@pytest.mark.parametrize("month", ["2026-13", "octobre", "2026-1"])
def test_bad_month_exits_2_with_a_located_message(config: Path, month: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--config", str(config), "--month", month]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--month" in captured.err and month in captured.err


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--config", str(tmp_path / "missing.yaml"), "--month", "2026-10"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: Mars/Olympus\n")
    assert main(["usage", "--config", str(bad), "--month", "2026-10"]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_the_installed_command(config: Path) -> None:
    import subprocess

    fill(config)
    exe = Path(sys.executable).parent / "sitivmon"
    if not exe.exists():
        pytest.skip("the sitivmon entry point is not installed in this environment")
    out = subprocess.run(
        [str(exe), "usage", "--config", str(config), "--month", "2026-10", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert pick(json.loads(out), "venissieux", "traffic_volume", "in")["value"] == 10 * 745 * 3600


def test_a_month_that_has_not_ended_is_provisional(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10 #13: `usage` called the running month complete. Through the real command and clock."""
    import time

    from sitivmon.usage.periods import month_of

    current = month_of(time.time(), "Europe/Paris")
    for label, provisional in ((current.label, True), ("2026-10", False)):
        assert main(["usage", "--config", str(config), "--month", label, "--format", "json"]) == 0
        period = json.loads(capsys.readouterr().out)["period"]
        assert (period["provisional"], period["complete"]) == (provisional, not provisional), label
        assert main(["usage", "--config", str(config), "--month", label, "--format", "csv"]) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert rows and {r["status"] for r in rows} == {"provisional" if provisional else "final"}
        assert main(["usage", "--config", str(config), "--month", label]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert ("PROVISIONAL" in first) == provisional, first


def test_provisional_until_the_end_in_the_configured_timezone() -> None:
    """Table: the same instant is inside October in Paris and after it in UTC."""
    from sitivmon.usage.indicators import usage_document

    store = SqliteUsageStore(Path(":memory:"))
    paris, utc = month_range("2026-10", "Europe/Paris"), month_range("2026-10", "UTC")
    for month, now, provisional in (
        (paris, paris.start, True),
        (paris, paris.end - 1, True),
        (paris, paris.end, False),  # 2026-11-01T00:00+01:00 = 2026-10-31T23:00Z
        (utc, paris.end, True),  # still October in UTC
        (utc, utc.end - 1, True),
        (utc, utc.end, False),
    ):
        doc = usage_document(store, communes(), month, now=now)
        assert doc["period"]["provisional"] is provisional, (month.timezone, now)


@pytest.mark.parametrize("month", ["2026-10\n", " 2026-10", "2026-10 ", "0000-01", "9999-12"])
def test_other_spellings_of_a_month_exit_2(config: Path, month: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--config", str(config), "--month", month]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--month" in captured.err and repr(month) in captured.err
