"""`sitivmon usage --config FILE --month YYYY-MM [--format table|json|csv]`.

Reads the store without writing anything (read-only connection, no migration, no file created) and
prints the indicators document; the JSON is the allocation engine's input.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from sitivmon.readings import Quantity, UsageKey

from .config import UsageSettings
from .indicators import usage_document
from .periods import month_range
from .store import SCHEMA_VERSION, UsageStore


def link_keys(config: Any) -> list[UsageKey]:
    """Series the configuration expects (each link: traffic in/out and state)."""
    keys = []
    for link in getattr(config, "links", []) or []:
        for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT, Quantity.LINK_UP):
            keys.append(UsageKey(link.commune, link.id, q))
    return keys


def db_path(config: Any) -> Path:
    settings = getattr(config, "usage", None) or UsageSettings()
    return Path(config.state_dir) / settings.db_filename


class StoreError(Exception):
    pass


def build_document(config: Any, month: str, now: float | None = None) -> dict[str, Any]:
    """The usage document for `month` from the configuration's store (testable without the CLI).

    Raises ValueError for a bad month or timezone, StoreError for an unusable store. A missing store
    is a month with no data at all (every indicator with coverage 0), not an error. A month that has
    not ended at `now` (default: the clock) is marked provisional.
    """
    try:
        period = month_range(month, config.timezone)
    except ZoneInfoNotFoundError as exc:
        raise ValueError(f"unknown timezone {config.timezone!r}") from exc
    path = db_path(config)
    store = UsageStore(path, read_only=True) if path.exists() else UsageStore(Path(":memory:"))
    try:
        if not 1 <= store.schema_version() <= SCHEMA_VERSION:  # older versions stay readable
            raise StoreError(f"{path}: schema version {store.schema_version()}, expected {SCHEMA_VERSION}")
        return usage_document(store, config.communes, period, link_keys(config), now=now)
    finally:
        store.close()


COLUMNS = ["commune", "insee", "indicator", "direction", "value", "unit", "coverage", "gaps", "gap_buckets", "status"]


def status(doc: dict[str, Any]) -> str:
    """`provisional` until the month has ended in its timezone (its figures still grow), else `final`."""
    return "provisional" if doc["period"].get("provisional", True) else "final"


def _rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    state = status(doc)
    for i in doc["indicators"]:
        rows.append(
            [
                i["commune"],
                i["insee"],
                i["indicator"],
                i["direction"] or "",
                "" if i["value"] is None else str(i["value"]),
                i["unit"],
                i["coverage"],
                str(len(i["gaps"])),
                str(sum(g["buckets"] for g in i["gaps"])),
                state,
            ]
        )
    return rows


def render(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    rows = _rows(doc)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
        return buf.getvalue()
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]
    lines = [f"{doc['month']} ({doc['timezone']}) {doc['period']['start']} .. {doc['period']['end']}"]
    if status(doc) == "provisional":
        lines[0] += f"  PROVISIONAL: the month has not ended (it ends at {doc['period']['end']})"
    lines.append("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        load_config = importlib.import_module("sitivmon.app.config").load_config
        config = load_config(Path(args.config))
    except FileNotFoundError as exc:
        print(f"--config {args.config}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # pydantic/YAML errors carry their location
        print(f"--config {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        doc = build_document(config, args.month)
    except ValueError as exc:
        print(f"--month {args.month}: {exc}", file=sys.stderr)
        return 2
    except (StoreError, sqlite3.DatabaseError) as exc:  # e.g. a corrupt chunk, named with its location
        print(f"usage store: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(doc, args.format))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("usage", help="monthly usage indicators per commune")
    p.add_argument("--config", required=True, type=Path, help="sitivmon configuration file")
    p.add_argument("--month", required=True, help="calendar month YYYY-MM in the configured timezone")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(func=run, handler=run)
