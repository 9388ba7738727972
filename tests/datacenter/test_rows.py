"""Pure row extraction: sensor scale and precision, index labels, lookups, duplicate names."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sitivmon.datacenter.rows import extract, sensor_value, split_index, table_rows
from sitivmon.profiles.user import compile_profile, parse_profiles


@pytest.mark.parametrize(
    ("raw", "scale", "precision", "expected"),
    [(2105, 9, 1, "210.5"), (235, 9, 1, "23.5"), (1500, 8, 0, "1.5"), (3, 10, 0, "3000"), (-12, 9, 0, "-12"),
     (4567, 8, 2, "0.04567")],
)
def test_sensor_value(raw: int, scale: int, precision: int, expected: str) -> None:
    assert sensor_value(raw, scale, precision) == Decimal(expected)


def test_split_index() -> None:
    parts = [("slot", "integer"), ("name", "string"), ("rest", "implied")]
    assert split_index("3.2.65.66.67.68", parts) == {"slot": "3", "name": "AB", "rest": "CD"}
    assert split_index("3.5.65", parts) is None  # string longer than the suffix


PROFILE = parse_profiles(
    {
        "pdu": {
            "resource": "outlet",
            "indexes": [{"label": "bank", "type": "integer"}, {"label": "outlet_index"}],
            "lookups": [{"label": "bank_name", "column": "bankName", "index": ["bank"]}],
            "columns": [
                {"name": "outletName", "oid": "1.3.6.1.4.1.99.1.1.2", "type": "info", "measure": "name"},
                {"name": "watts", "oid": "1.3.6.1.4.1.99.1.1.3", "type": "gauge", "scale": "0.1",
                 "measure": "power_watts"},
                {"name": "volts", "oid": "1.3.6.1.4.1.99.1.1.4", "type": "gauge"},
                {"name": "bankName", "oid": "1.3.6.1.4.1.99.2.1.2", "type": "info"},
            ],
        }
    }
)["pdu"]


def test_table_rows_with_lookup_and_scale() -> None:
    profile = compile_profile("pdu", PROFILE)
    tables = {
        "pdu:outletName": {"1.1": b"VEN-a", "1.2": b"VEN-a", "2.1": b""},
        "pdu:watts": {"1.1": 1234, "1.2": 10, "2.1": 55},
        "pdu:volts": {"1.1": 230},
        "pdu:bankName": {"1": b"Bank A", "2": b"Bank B"},
    }
    rows = table_rows(profile, tables)
    assert [(r.name, r.measures["power_watts"], dict(r.labels)) for r in rows] == [
        ("VEN-a", Decimal("123.4"), {"bank": "1", "outlet_index": "1", "bank_name": "Bank A"}),
        ("VEN-a", Decimal("1.0"), {"bank": "1", "outlet_index": "2", "bank_name": "Bank A"}),
        ("2.1", Decimal("5.5"), {"bank": "2", "outlet_index": "1", "bank_name": "Bank B"}),  # unnamed: index
    ]
    assert rows[0].extra == (("volts", rows[0].extra[0][1], Decimal(230)),)
    unique, _ = extract([profile], tables, {})
    assert [r.name for r in unique] == ["VEN-a#1.1", "VEN-a#1.2", "2.1"]  # same name: told apart
