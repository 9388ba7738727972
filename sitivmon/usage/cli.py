"""`sitivmon usage --config FILE --month YYYY-MM [--format table|json|csv]`.

Reads the store without writing anything (read-only connection, no migration, no file created) and
prints the indicators document; the JSON is the allocation engine's input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import UsageStoreFactory
from .port import StoreError
from .service import build_document

if TYPE_CHECKING:  # config.model imports this package's settings: a runtime import would be a cycle
    from sitivmon.config.model import Commune, Link


@dataclass(frozen=True, slots=True)
class UsageInputs:
    """What `sitivmon usage` takes from the root configuration, which the root CLI loads."""

    open_store: UsageStoreFactory
    communes: Sequence[Commune]
    timezone: str
    links: Sequence[Link]


InputsFor = Callable[[Path], UsageInputs]
"""The inputs of the root config at a path; raises (a located message) when it does not load."""


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


def run(args: argparse.Namespace, inputs_for: InputsFor) -> int:
    try:
        inputs = inputs_for(Path(args.config))
    except Exception as exc:  # the loader's errors carry their location
        print(f"--config {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        doc = build_document(inputs.open_store, inputs.communes, inputs.timezone, inputs.links, args.month)
    except ValueError as exc:
        print(f"--month {args.month}: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # e.g. a corrupt chunk, named with its location
        print(f"usage store: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(doc, args.format))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *, inputs_for: InputsFor) -> None:
    """Add `usage`; `inputs_for` loads the root config (the root CLI's, or a test's)."""
    p = subparsers.add_parser("usage", help="monthly usage indicators per commune")
    p.add_argument("--config", required=True, type=Path, help="sitivmon configuration file")
    p.add_argument("--month", required=True, help="calendar month YYYY-MM in the configured timezone")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(func=lambda a: run(a, inputs_for))
