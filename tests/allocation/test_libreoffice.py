"""LibreOffice Calc (headless) opens our csv-fr and xlsx exports as numbers equal, to the cent, to the JSON.

This is the check finance cares about: what a French spreadsheet shows is what the report says.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from sitivmon.allocation.config import AllocationConfig
from sitivmon.allocation.engine import UsageDocument, allocate
from sitivmon.allocation.formats import render
from sitivmon.allocation.report import build_report
from tests.support.procs import require_binary

from .conftest import COMMUNES

FR_FR, EN_US = 1036, 1033


def convert(soffice: str, src: Path, outdir: Path, *, infilter: str | None = None) -> Path:
    """Open `src` in Calc and save it as xlsx in `outdir`, with a private profile for this test."""
    profile = outdir.parent / "lo-profile"
    argv = [soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore"]
    if infilter:
        argv.append(f"--infilter={infilter}")
    argv += ["--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(outdir), str(src)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    out = outdir / (src.stem + ".xlsx")
    assert done.returncode == 0 and out.exists(), f"soffice failed: {done.stdout}\n{done.stderr}"
    return out


def first_sheet_rows(path: Path) -> list[tuple[Any, ...]]:
    sheet = openpyxl.load_workbook(path).worksheets[0]
    return list(sheet.iter_rows(values_only=True))


def cents(value: Any) -> int:
    """A number read back from a spreadsheet, in cents; fails unless it is a number with at most 2 decimals."""
    assert isinstance(value, int | float) and not isinstance(value, bool), f"not a number: {value!r}"
    scaled = Decimal(repr(value)) * 100
    assert scaled == scaled.to_integral_value(), f"{value!r} is not a whole number of cents"
    return int(scaled)


@pytest.fixture
def soffice() -> str:
    return require_binary("soffice")


@pytest.fixture
def report(usage_doc: UsageDocument, example_allocation: AllocationConfig) -> dict[str, Any]:
    return build_report(
        usage_doc,
        allocate(example_allocation, usage_doc, COMMUNES),
        config_sha256=None,
        allocation_sha256="a" * 64,
    )


def check_allocations_sheet(rows: list[tuple[Any, ...]], report: dict[str, Any], amount_col: str) -> None:
    head = list(rows[0])
    body = rows[1:]
    assert len(body) == len(report["allocations"])
    for row, line in zip(body, report["allocations"], strict=True):
        assert cents(row[head.index(amount_col)]) == line["amount_cents"], (row, line)
        assert row[head.index("insee")] == int(line["insee"])  # the INSEE code opens as a number
        share = row[head.index("part" if "part" in head else "share")]
        assert isinstance(share, float) and abs(Decimal(repr(share)) - Decimal(line["share"])) < Decimal("1e-9")


def test_csv_fr_opens_as_numbers_in_french_calc(soffice: str, report: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "allocations-fr.csv"
    src.write_bytes(render(report, "csv-fr"))
    out = convert(soffice, src, tmp_path / "out", infilter=f"CSV:59,34,76,1,,{FR_FR}")
    rows = first_sheet_rows(out)
    check_allocations_sheet(rows, report, "montant_eur")
    controls = tmp_path / "controls-fr.csv"
    controls.write_bytes(render(report, "csv-fr", section="controls"))
    rows = first_sheet_rows(convert(soffice, controls, tmp_path / "out2", infilter=f"CSV:59,34,76,1,,{FR_FR}"))
    for row, control in zip(rows[1:], report["controls"], strict=True):
        assert cents(row[1]) == cents(row[2]) == control["budget_cents"] == control["sum_cents"]


def test_plain_csv_opens_as_numbers_in_english_calc(soffice: str, report: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "allocations.csv"
    src.write_bytes(render(report, "csv"))
    out = convert(soffice, src, tmp_path / "out", infilter=f"CSV:44,34,76,1,,{EN_US}")
    rows = first_sheet_rows(out)
    check_allocations_sheet(rows, report, "amount_eur")


def test_xlsx_read_back_by_calc_equals_the_json(soffice: str, report: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "report.xlsx"
    src.write_bytes(render(report, "xlsx"))
    out = convert(soffice, src, tmp_path / "out")
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Rapport", "Indicateurs", "Répartition", "Projets", "Contrôles"]
    sheet = wb["Répartition"]
    check_allocations_sheet(list(sheet.iter_rows(values_only=True)), report, "montant_eur")
    assert "€" in sheet.cell(row=2, column=7).number_format
    controls = list(wb["Contrôles"].iter_rows(values_only=True))[1:]
    for row, control in zip(controls, report["controls"], strict=True):
        assert cents(row[1]) == control["budget_cents"] and cents(row[2]) == control["sum_cents"]
