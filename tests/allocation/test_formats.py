"""Golden files for every format, and the byte-level promises of each (BOM, separators, CRLF, numbers)."""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal
from typing import Any

import openpyxl
import pytest

from sitivmon.allocation.config import AllocationConfig
from sitivmon.allocation.engine import UsageDocument, allocate
from sitivmon.allocation.formats import EURO_FORMAT, render
from sitivmon.allocation.report import build_report

from .conftest import COMMUNES, GOLDEN

UPDATE = os.environ.get("SITIVMON_UPDATE_GOLDEN") == "1"


def golden_report(usage: UsageDocument, config: AllocationConfig) -> dict[str, Any]:
    return build_report(
        usage,
        allocate(config, usage, COMMUNES),
        config_sha256="c" * 64,
        allocation_sha256="a" * 64,
        version="0.0.0-golden",
    )


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_bytes(data)
    assert path.exists(), f"missing golden file {path}: run with SITIVMON_UPDATE_GOLDEN=1 and review it"
    assert data == path.read_bytes(), f"{name} differs from its golden file (SITIVMON_UPDATE_GOLDEN=1 to update)"


def xlsx_dump(data: bytes) -> bytes:
    """A readable text view of a workbook: every cell's value, type and number format."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    out = []
    for ws in wb.worksheets:
        out.append(f"== {ws.title}")
        for row in ws.iter_rows():
            for cell in row:
                if cell.value is not None:
                    out.append(f"{cell.coordinate}\t{type(cell.value).__name__}\t{cell.value!r}\t{cell.number_format}")
    return ("\n".join(out) + "\n").encode()


@pytest.mark.parametrize(
    ("fmt", "section", "name"),
    [
        ("json", "allocations", "report-2026-10.json"),
        ("csv", "allocations", "report-2026-10.csv"),
        ("csv-fr", "allocations", "report-2026-10.fr.csv"),
        ("csv", "indicators", "report-2026-10-indicators.csv"),
        ("csv-fr", "controls", "report-2026-10-controls.fr.csv"),
        ("csv-fr", "header", "report-2026-10-header.fr.csv"),
    ],
)
def test_golden_text_formats(
    fmt: str, section: str, name: str, usage_doc: UsageDocument, example_allocation: AllocationConfig
) -> None:
    check_golden(name, render(golden_report(usage_doc, example_allocation), fmt, section=section))


def test_golden_xlsx(usage_doc: UsageDocument, example_allocation: AllocationConfig) -> None:
    report = golden_report(usage_doc, example_allocation)
    data = render(report, "xlsx")
    assert data == render(report, "xlsx"), "xlsx bytes must be deterministic"
    check_golden("report-2026-10.xlsx.txt", xlsx_dump(data))
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Rapport", "Indicateurs", "Répartition", "Projets", "Contrôles"]
    sheet = wb["Répartition"]
    amount = sheet.cell(row=2, column=7)
    assert isinstance(amount.value, int | float) and amount.number_format == EURO_FORMAT
    assert isinstance(sheet.cell(row=2, column=3).value, int)  # INSEE as a number


def test_json_report_contents(usage_doc: UsageDocument, example_allocation: AllocationConfig) -> None:
    report = json.loads(render(golden_report(usage_doc, example_allocation), "json"))
    header = report["header"]
    assert header["period"] == {
        "start": "2026-10-01T00:00:00+02:00",
        "end": "2026-11-01T00:00:00+01:00",
        "start_utc": "2026-09-30T22:00:00Z",
        "end_utc": "2026-10-31T23:00:00Z",
    }
    assert header["status"] == "provisional" and header["revision"] == 0
    assert all(c["ok"] and c["difference_cents"] == 0 for c in report["controls"])
    line = report["allocations"][0]
    assert set(line) >= {
        "project",
        "commune",
        "insee",
        "basis",
        "share",
        "amount_cents",
        "rounding_adjustment_cents",
        "fallback_used",
    }
    grigny = [r for r in report["indicators"] if r["commune"] == "grigny"]
    assert grigny[0]["gaps"] and grigny[0]["coverage"] == "0.9952"
    energy = next(p for p in report["projects"] if p["basis"] == "usage:energy")
    assert energy["fallback_used"] and "corbas" in energy["fallback_reason"]


def test_csv_fr_bytes(usage_doc: UsageDocument, example_allocation: AllocationConfig) -> None:
    report = golden_report(usage_doc, example_allocation)
    data = render(report, "csv-fr")
    assert data.startswith(b"\xef\xbb\xbf")
    text = data[3:].decode("utf-8")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    head = rows[0]
    assert head[:3] == ["projet", "commune", "insee"]
    for row, line in zip(rows[1:], report["allocations"], strict=True):
        euros = row[head.index("montant_eur")]
        assert "," in euros and "." not in euros
        assert Decimal(euros.replace(",", ".")) * 100 == line["amount_cents"]
        assert row[head.index("insee")].isdigit()
    plain = render(report, "csv")
    assert not plain.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(plain.decode(), newline="")))
    assert rows[0][6] == "amount_eur" and rows[1][6] == f"{report['allocations'][0]['amount_cents'] / 100:.2f}"
