"""Render a report document as json, csv (RFC 4180), csv-fr (French spreadsheets) or xlsx.

Output is deterministic bytes for a given document (the xlsx zip carries fixed timestamps), so that
golden files and the stored SHA-256 of a closed month mean something.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter

from sitivmon.allocation.arithmetic import cents_to_euros

Format = Literal["json", "csv", "csv-fr", "xlsx"]
FORMATS: tuple[Format, ...] = ("json", "csv", "csv-fr", "xlsx")
SECTIONS = ("allocations", "parts", "indicators", "projects", "controls", "header")
CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "csv-fr": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
EURO_FORMAT = '#,##0.00 "€"'
FIXED_ZIP_TIME = (2000, 1, 1, 0, 0, 0)
FIXED_DOC_TIME = datetime(2000, 1, 1)


def render_json(report: dict[str, Any]) -> bytes:
    """Canonical JSON: stable key order as built, UTF-8, two-space indent, final newline."""
    return (json.dumps(report, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


# ---------------------------------------------------------------- tables (shared by csv and xlsx)

Kind = Literal["text", "int", "decimal", "euros", "ratio", "bool", "code"]


@dataclass(frozen=True, slots=True)
class Column:
    en: str
    fr: str
    kind: Kind
    get: Callable[[dict[str, Any]], Any]


def _c(en: str, fr: str, kind: Kind, key: str | None = None) -> Column:
    k = key or en
    return Column(en, fr, kind, lambda row: row[k])


_WHO = (_c("commune", "commune", "text"), _c("insee", "insee", "code"))
_SPLIT = (  # how a commune's amount came out of a basis: allocation lines and the parts of mixed projects
    _c("basis", "base", "text"),
    _c("basis_value", "valeur_base", "decimal"),
    _c("share", "part", "decimal"),
    _c("amount_eur", "montant_eur", "euros", "amount_cents"),
    _c("amount_cents", "montant_centimes", "int"),
    _c("rounding_adjustment_cents", "ajustement_arrondi_centimes", "int"),
    _c("fallback_used", "repli", "bool"),
)

TABLES: dict[str, tuple[str, Sequence[Column]]] = {
    "allocations": ("Répartition", (_c("project", "projet", "text"), *_WHO, *_SPLIT)),
    "parts": (  # the parts of mixed projects ("part fixe, part variable"), one row per part and commune
        "Parts",
        (
            _c("project", "projet", "text"),
            Column("part", "part_n", "int", lambda r: r["part"] + 1),
            *_WHO,
            _c("weight", "poids", "decimal"),
            *_SPLIT,
        ),
    ),
    "indicators": (
        "Indicateurs",
        (
            _c("commune", "commune", "text"),
            _c("insee", "insee", "code"),
            _c("indicator", "indicateur", "text"),
            Column("direction", "sens", "text", lambda r: r["direction"] or ""),
            _c("value", "valeur", "decimal"),
            _c("unit", "unite", "text"),
            _c("coverage", "couverture", "ratio"),
            Column("gaps", "trous", "int", lambda r: len(r["gaps"])),
        ),
    ),
    "projects": (
        "Projets",
        (
            _c("project", "projet", "text"),
            _c("budget_eur", "budget_eur", "euros", "budget_cents"),
            _c("basis", "base", "text"),
            _c("basis_used", "base_appliquee", "text"),
            _c("fallback_used", "repli", "bool"),
            Column("fallback_reason", "motif_repli", "text", lambda r: r["fallback_reason"] or ""),
        ),
    ),
    "controls": (
        "Contrôles",
        (
            _c("project", "projet", "text"),
            _c("budget_eur", "budget_eur", "euros", "budget_cents"),
            _c("sum_eur", "somme_eur", "euros", "sum_cents"),
            _c("difference_cents", "ecart_centimes", "int"),
            _c("ok", "ok", "bool"),
        ),
    ),
}


def section_rows(report: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The rows of a table section; `parts` is derived from the allocation lines of mixed projects."""
    if section == "parts":
        return [
            {"project": a["project"], "commune": a["commune"], "insee": a["insee"], **part}
            for a in report["allocations"]
            for part in a.get("parts", ())
        ]
    rows: list[dict[str, Any]] = report[section]
    return rows


def _header_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    h = report["header"]
    rows = [
        ("month", h["month"]),
        ("timezone", h["timezone"]),
        ("period_start", h["period"]["start"]),
        ("period_end", h["period"]["end"]),
        ("period_start_utc", h["period"]["start_utc"]),
        ("period_end_utc", h["period"]["end_utc"]),
        ("sitivmon_version", h["sitivmon_version"]),
        ("config_sha256", h["config_sha256"] or ""),
        ("allocation_sha256", h["allocation_sha256"]),
    ]
    if "usage_sha256" in h:
        rows.append(("usage_sha256", h["usage_sha256"]))
    rows += [("status", h["status"]), ("revision", str(h["revision"]))]
    if "closed_at" in h:
        rows.append(("closed_at", h["closed_at"]))
    return rows


# ---------------------------------------------------------------- csv


def _csv_cell(kind: Kind, value: Any, french: bool) -> str:
    if value is None:  # no figure at all: an empty cell, not a zero
        return ""
    if kind == "euros":
        return cents_to_euros(int(value), "," if french else ".")
    if kind == "bool":
        return ("oui" if value else "non") if french else ("true" if value else "false")
    if kind in ("decimal", "ratio"):
        return str(value).replace(".", ",") if french else str(value)
    return str(value)


def render_csv(report: dict[str, Any], *, french: bool, section: str = "allocations") -> bytes:
    """One section as a table. csv: RFC 4180 (comma, CRLF, dot decimals, UTF-8).

    csv-fr: UTF-8 with BOM, `;`, decimal comma, CRLF, so that a French Excel or LibreOffice opens the
    amounts and INSEE codes as numbers without an import dialog.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";" if french else ",", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    if section == "header":
        writer.writerow(["champ", "valeur"] if french else ["field", "value"])
        writer.writerows(_header_rows(report))
    else:
        if section not in TABLES:
            raise ValueError(f"unknown section {section!r} (one of {', '.join(SECTIONS)})")
        _, columns = TABLES[section]
        writer.writerow([c.fr if french else c.en for c in columns])
        for row in section_rows(report, section):
            writer.writerow([_csv_cell(c.kind, c.get(row), french) for c in columns])
    text = buf.getvalue()
    return ("\ufeff" + text).encode("utf-8") if french else text.encode("utf-8")


# ---------------------------------------------------------------- xlsx


def _xlsx_cell(kind: Kind, value: Any) -> tuple[Any, str | None]:
    if value is None:
        return None, None
    if kind == "euros":
        return Decimal(int(value)).scaleb(-2), EURO_FORMAT
    if kind == "int":
        return int(value), "0"
    if kind == "decimal":
        return Decimal(value), "General"
    if kind == "ratio":
        return Decimal(value), "0.0%"
    if kind == "code":
        return (int(value), "00000") if str(value).isdigit() else (str(value), None)
    if kind == "bool":
        return bool(value), None
    return str(value), None


def _deterministic_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed entry timestamps so equal workbooks are equal bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            dst.writestr(entry, src.read(info.filename))
    return out.getvalue()


def render_xlsx(report: dict[str, Any]) -> bytes:
    """One sheet per section; amounts are numbers in a euro format, INSEE codes numbers shown on 5 digits."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Rapport"
    ws.append(["champ", "valeur"])
    for key, value in _header_rows(report):
        ws.append([key, value])
    ws.column_dimensions["A"].width = 20
    ws.column_dimensions["B"].width = 70
    for section in ("indicators", "allocations", "parts", "projects", "controls"):
        rows = section_rows(report, section)
        if section == "parts" and not rows:
            continue  # no mixed project this month: no empty sheet
        title, columns = TABLES[section]
        sheet = wb.create_sheet(title)
        sheet.append([c.fr for c in columns])
        for r, row in enumerate(rows, start=2):
            for col, c in enumerate(columns, start=1):
                value, fmt = _xlsx_cell(c.kind, c.get(row))
                cell = sheet.cell(row=r, column=col, value=value)
                if fmt is not None:
                    cell.number_format = fmt
        for col, c in enumerate(columns, start=1):
            sheet.column_dimensions[sheet.cell(row=1, column=col).column_letter].width = max(12, len(c.fr) + 2)
        sheet.freeze_panes = "A2"
    wb.properties.creator = "sitivmon"
    wb.properties.created = FIXED_DOC_TIME
    wb.properties.modified = FIXED_DOC_TIME
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).write_data()
    return _deterministic_zip(raw.getvalue())


def render(report: dict[str, Any], fmt: str, *, section: str = "allocations") -> bytes:
    """The report in `fmt`; `section` picks the table for the csv formats (json and xlsx hold them all)."""
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report, french=False, section=section)
    if fmt == "csv-fr":
        return render_csv(report, french=True, section=section)
    if fmt == "xlsx":
        return render_xlsx(report)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
