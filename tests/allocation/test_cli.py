"""`sitivmon allocate` and `sitivmon report [close]`: outputs, exit codes, nothing written on bad input,
closed months frozen with revisions and diffs."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sitivmon.allocation import cli
from sitivmon.allocation.archive import open_report_archive
from sitivmon.allocation.config import CommuneLike
from sitivmon.allocation.engine import load_usage_json
from sitivmon.allocation.service import InputError, ReportService, service_from_config
from sitivmon.config import ConfigError, SitivmonConfig, load_config

from .conftest import EXAMPLE_ALLOCATION, USAGE_FILE

NOW = datetime(2026, 11, 5, 9, 30, tzinfo=UTC)


def usage_from_files(config: SitivmonConfig, month: str) -> Any:
    """The usage of these tests: `usage-<month>.json` beside the state directory."""
    path = Path(config.state_dir).parent / f"usage-{month}.json"
    if not path.exists():
        raise LookupError(f"no usage for {month}")
    return load_usage_json(path.read_bytes())


def loaded(path: Path) -> SitivmonConfig:
    """The root config through the real loader, as the root CLI loads it."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise InputError(str(exc)) from None


def run(*argv: str | Path, store: bool = False) -> int:
    """The commands on a real root config; usage from `usage_from_files`, or the real (empty) usage
    store with `store`."""

    def service_for(path: Path) -> ReportService:
        config = loaded(path)
        return service_from_config(
            config_path=path,
            state_dir=config.state_dir,
            timezone=config.timezone,
            communes=config.communes,
            links=config.links,
            allocation=config.allocation,
            usage_settings=config.usage,
            usage=None if store else lambda month: usage_from_files(config, month),
        )

    def communes_for(path: Path) -> tuple[list[CommuneLike], str]:
        config = loaded(path)
        return list(config.communes), config.timezone

    parser = argparse.ArgumentParser(prog="sitivmon")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub, service_for=service_for, communes_for=communes_for, clock=lambda: NOW)
    args = parser.parse_args([str(a) for a in argv])
    code: int = args.func(args)
    return code


# ---------------------------------------------------------------- allocate


def test_allocate_writes_every_format(tmp_path: Path) -> None:
    for fmt in ("json", "csv", "csv-fr", "xlsx"):
        out = tmp_path / f"out.{fmt}"
        assert (
            run(
                "allocate",
                "--allocation",
                EXAMPLE_ALLOCATION,
                "--usage",
                USAGE_FILE,
                "--format",
                fmt,
                "--output",
                out,
            )
            == 0
        )
        assert out.stat().st_size > 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["header"]["usage_sha256"] and report["header"]["config_sha256"] is None
    assert all(c["ok"] for c in report["controls"])
    assert not list(tmp_path.glob(".out*")), "no temporary file left behind"


def test_allocate_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("allocate", "--allocation", EXAMPLE_ALLOCATION, "--usage", USAGE_FILE, "--format", "csv") == 0
    assert capsys.readouterr().out.startswith("project,commune,insee,")


def test_allocate_checks_against_the_root_config(tmp_path: Path, root_config: Path) -> None:
    out = tmp_path / "a.json"
    assert (
        run(
            "allocate",
            "--allocation",
            EXAMPLE_ALLOCATION,
            "--usage",
            USAGE_FILE,
            "--config",
            root_config,
            "--month",
            "2026-10",
            "--output",
            out,
        )
        == 0
    )
    assert json.loads(out.read_text())["header"]["config_sha256"]


def _bad_allocation(tmp_path: Path, change: Any) -> Path:
    data = yaml.safe_load(EXAMPLE_ALLOCATION.read_text())
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _bad_usage(tmp_path: Path, change: Any) -> Path:
    data = json.loads(USAGE_FILE.read_text())
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


BAD_ALLOCATIONS = {
    "key not 100 %": (
        lambda d: d["keys"]["population"].update(givors="9.02%"),
        "keys.population: shares sum to 99.99 %, not exactly 100 %",
    ),
    "unknown commune": (
        lambda d: d["keys"]["equal"].update(lyon=0),
        "keys.equal.lyon: unknown commune 'lyon'",
    ),
    "unknown indicator": (
        lambda d: d["projects"][1].update(basis="usage:trafic"),
        "projects[1].basis: unknown indicator 'trafic'",
    ),
    "negative budget": (
        lambda d: d["projects"][2].update(budget="-12.00"),
        "projects[2].budget: must not be negative, got -12.00",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ALLOCATIONS))
def test_allocate_bad_allocation_exits_2_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, message = BAD_ALLOCATIONS[case]
    bad = _bad_allocation(tmp_path, change)
    out = tmp_path / "out.csv"
    assert run("allocate", "--allocation", bad, "--usage", USAGE_FILE, "--format", "csv-fr", "--output", out) == 2
    assert f"{bad}: {message}" in capsys.readouterr().err
    assert not out.exists()


BAD_USAGES = {
    "another month": (
        lambda d: d.update(month="2026-09"),
        "month: the file is for 2026-09, not 2026-10",
    ),
    "missing commune": (
        lambda d: d.update(indicators=[r for r in d["indicators"] if r["commune"] != "saint-chamond"]),
        "indicators: no rows for commune(s) saint-chamond",
    ),
}


@pytest.mark.parametrize("case", list(BAD_USAGES))
def test_allocate_bad_usage_exits_2_and_writes_nothing(
    case: str, tmp_path: Path, root_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, message = BAD_USAGES[case]
    bad = _bad_usage(tmp_path, change)
    out = tmp_path / "out.xlsx"
    code = run(
        "allocate",
        "--allocation",
        EXAMPLE_ALLOCATION,
        "--usage",
        bad,
        "--config",
        root_config,
        "--month",
        "2026-10",
        "--format",
        "xlsx",
        "--output",
        out,
    )
    assert code == 2
    assert f"{bad}: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_allocate_unreadable_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "u.json").write_text("{not json")
    assert run("allocate", "--allocation", EXAMPLE_ALLOCATION, "--usage", tmp_path / "u.json") == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert run("allocate", "--allocation", tmp_path / "nope.yaml", "--usage", USAGE_FILE) == 2
    assert "cannot read" in capsys.readouterr().err


# ---------------------------------------------------------------- report and close


def _report(root_config: Path, *extra: str | Path) -> int:
    return run("report", *extra, "--config", root_config, "--month", "2026-10")


@pytest.fixture
def with_usage(root_config: Path) -> Path:
    target = root_config.parent / "usage-2026-10.json"
    shutil.copy(USAGE_FILE, target)
    return target


def test_report_provisional_then_closed_then_revised(
    root_config: Path, with_usage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert _report(root_config, "--output", out) == 0
    provisional = json.loads(out.read_text())
    assert provisional["header"]["status"] == "provisional" and provisional["header"]["revision"] == 0
    assert len(provisional["header"]["config_sha256"]) == 64

    assert _report(root_config, "close") == 0
    assert "closed as revision 1" in capsys.readouterr().err
    assert _report(root_config, "--output", out) == 0
    first = out.read_bytes()
    frozen = json.loads(first)
    assert frozen["header"]["status"] == "final" and frozen["header"]["revision"] == 1
    assert frozen["header"]["closed_at"] == "2026-11-05T09:30:00Z"
    assert frozen["allocations"] == provisional["allocations"]

    # Closing again with the same figures stores nothing.
    assert _report(root_config, "close") == 0
    assert "unchanged since revision 1" in capsys.readouterr().err

    # Corrected usage: the closed month is still served as frozen, with a warning...
    data = json.loads(with_usage.read_text())
    for row in data["indicators"]:
        if row["indicator"] == "storage" and row["commune"] == "venissieux":
            row["value"] = row["value"] * 2
    with_usage.write_text(json.dumps(data))
    assert _report(root_config, "--output", out) == 0
    assert out.read_bytes() == first
    assert "today's figures differ" in capsys.readouterr().err

    # ...until closing records revision 2 with its diff; revision 1 is untouched.
    assert _report(root_config, "close", "--output", out) == 0
    assert "closed as revision 2" in capsys.readouterr().err
    second = json.loads(out.read_text())
    assert second["header"]["revision"] == 2
    changes = second["changes"]
    assert changes["previous_revision"] == 1
    storage = [c for c in changes["allocations"] if c["project"] == "Stockage mutualisé"]
    assert {c["commune"] for c in storage} == {
        c["commune"] for c in frozen["allocations"] if c["project"] == "Stockage mutualisé"
    }
    assert sum(c["delta_cents"] for c in storage) == 0
    assert next(c for c in storage if c["commune"] == "venissieux")["delta_cents"] > 0
    assert [c["commune"] for c in changes["indicators"]] == ["venissieux"]

    archive = open_report_archive(root_config.parent / "var")
    revisions = archive.revisions("2026-10")
    assert [r.revision for r in revisions] == [1, 2]
    assert revisions[0].content == first
    assert all(hashlib.sha256(r.content).hexdigest() == r.sha256 for r in revisions)


def test_a_config_edit_that_moves_no_figure_is_not_a_new_revision(
    root_config: Path, with_usage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _report(root_config, "close") == 0
    root_config.write_text(root_config.read_text() + "# a comment: the file's hash changes, no figure does\n")
    assert _report(root_config) == 0
    assert "differ" not in capsys.readouterr().err
    assert _report(root_config, "close") == 0
    assert "unchanged since revision 1" in capsys.readouterr().err


def test_closed_month_is_served_even_without_usage(root_config: Path, with_usage: Path, tmp_path: Path) -> None:
    assert _report(root_config, "close") == 0
    with_usage.unlink()
    out = tmp_path / "r.json"
    assert _report(root_config, "--output", out) == 0
    assert json.loads(out.read_text())["header"]["revision"] == 1


def test_archive_refuses_update_and_delete(root_config: Path, with_usage: Path) -> None:
    assert _report(root_config, "close") == 0
    db = sqlite3.connect(root_config.parent / "var" / "reports.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("UPDATE revisions SET content = x'00'")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("DELETE FROM revisions")
    db.close()


def test_report_bad_inputs_exit_2_and_write_nothing(
    root_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.csv"
    assert _report(root_config, "--format", "csv-fr", "--output", out) == 2  # no usage for the month
    assert "no usage for 2026-10" in capsys.readouterr().err
    shutil.copy(USAGE_FILE, root_config.parent / "usage-2026-09.json")
    assert run("report", "--config", root_config, "--month", "2026-09", "--output", out) == 2
    assert "month: the file is for 2026-10, not 2026-09" in capsys.readouterr().err
    (root_config.parent / "allocation.yaml").write_text("keys: {k: {givors: 0.5}}\nprojects: []\n")
    shutil.copy(USAGE_FILE, root_config.parent / "usage-2026-10.json")
    assert _report(root_config, "close", "--output", out) == 2
    assert "keys.k: shares sum to 50 %, not exactly 100 %" in capsys.readouterr().err
    assert not out.exists()
    assert open_report_archive(root_config.parent / "var").latest("2026-10") is None


def test_month_argument_is_validated(root_config: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run("report", "--config", root_config, "--month", "2026-1")
    assert exc.value.code == 2


def test_report_with_the_real_usage_store_and_no_data_falls_back_everywhere(root_config: Path, tmp_path: Path) -> None:
    """The real `sitivmon.usage` document of a month without any data: null values, coverage 0."""
    out = tmp_path / "r.json"
    assert (
        run(
            "report", "--config", root_config, "--month", "2026-10", "--output", out, store=True
        )
        == 0
    )
    report = json.loads(out.read_text())
    usage_projects = [p for p in report["projects"] if p["basis"].startswith("usage:")]
    assert usage_projects and all(p["fallback_used"] for p in usage_projects)
    assert all(c["ok"] for c in report["controls"])
    for fmt in ("csv-fr", "xlsx"):
        assert (
            run(
                "report",
                "--config",
                root_config,
                "--month",
                "2026-10",
                "--format",
                fmt,
                "--section",
                "indicators",
                "--output",
                tmp_path / f"r.{fmt}",
                store=True,
            )
            == 0
        )


# ---------------------------------------------------------------- month labels and unfinished months (issue 10 #13)


def _current_month(timezone: str = "Europe/Paris") -> str:
    import time

    from sitivmon.usage.periods import month_of

    return month_of(time.time(), timezone).label


@pytest.mark.parametrize("month", ["2026-10\n", "2026-10 ", " 2026-10", "0000-01", "9999-12", "2026-1"])
def test_report_close_refuses_other_spellings_of_a_month(
    root_config: Path, month: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report close --month $'2026-10\\n'` created revision 1 under a key `--month 2026-10` never sees."""
    from sitivmon.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", "close", "--config", str(root_config), "--month", month])
    assert exc.value.code == 2 and "--month" in capsys.readouterr().err
    assert not (root_config.parent / "var" / "reports.sqlite").exists()


def test_report_close_refuses_a_month_that_has_not_ended(root_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the real CLI and clock: the current month (and a later one) cannot be frozen as final."""
    from sitivmon.cli import main
    from sitivmon.usage.periods import month_range

    current = _current_month()
    year, month = map(int, current.split("-"))
    later = f"{year + 1:04d}-{month:02d}"
    for label in (current, later):
        assert main(["report", "close", "--config", str(root_config), "--month", label]) == 2
        err = capsys.readouterr().err
        end = month_range(label, "Europe/Paris")
        assert f"{label} has not ended in Europe/Paris" in err
        assert f"it ends at {end.local_iso(end.end)}" in err
    assert open_report_archive(root_config.parent / "var").latest(current) is None
    # a month that is over closes, through the same command
    assert main(["report", "close", "--config", str(root_config), "--month", "2026-10"]) == 0
    assert "closed as revision 1" in capsys.readouterr().err


def test_archive_refuses_month_labels_it_would_never_find_again(root_config: Path) -> None:
    archive = open_report_archive(root_config.parent / "var")
    for label in ("2026-10\n", "2026-10-01", "0000-01"):
        with pytest.raises(ValueError, match="month"):
            archive.latest(label)
        with pytest.raises(ValueError, match="month"):
            archive.revisions(label)


def test_allocate_usage_with_a_duplicate_insee_code_is_a_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two communes of a usage file sharing an INSEE code gave a traceback from the arithmetic."""
    from sitivmon.cli import main

    data = json.loads(USAGE_FILE.read_text(encoding="utf-8"))
    givors = next(r["insee"] for r in data["indicators"] if r["commune"] == "givors")
    for r in data["indicators"]:
        if r["commune"] == "grigny":
            r["insee"] = givors
    first_grigny = next(i for i, r in enumerate(data["indicators"]) if r["commune"] == "grigny")
    usage = tmp_path / "usage.json"
    usage.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "out.json"
    code = main(["allocate", "--allocation", str(EXAMPLE_ALLOCATION), "--usage", str(usage), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"indicators[{first_grigny}].insee: '{givors}' of grigny is already the INSEE code of givors" in err
    assert err.count("already the INSEE code") == 1  # once per commune, not once per row
    assert not out.exists()
