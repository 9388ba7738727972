"""`sitivmon allocate` (pure, from a usage file) and `sitivmon report [close]` (from the configuration).

Every input is read and validated, and the output rendered in memory, before anything is written: a bad
input exits 2 with located messages and leaves no file behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sitivmon.allocation.archive import MonthNotEnded
from sitivmon.allocation.config import (
    AllocationConfigError,
    CommuneLike,
    parse_allocation,
    read_allocation_file,
)
from sitivmon.allocation.engine import (
    UsageDocumentError,
    allocate,
    communes_from_usage,
    load_usage_json,
    parse_usage,
)
from sitivmon.allocation.formats import FORMATS, SECTIONS, render
from sitivmon.allocation.report import build_report, sha256_bytes
from sitivmon.allocation.service import InputError, ReportService, UsageUnavailable
from sitivmon.usage.periods import parse_month

ServiceFor = Callable[[Path], ReportService]
"""The report service of the root config at a path (`service.service_from_config` on what the root CLI
loaded); raises `InputError` when the config does not load or configures no allocation file."""

CommunesFor = Callable[[Path], tuple[Sequence[CommuneLike], str]]
"""The communes and timezone of the root config at a path; raises `InputError` when it does not load."""


def _month(text: str) -> str:
    """The one spelling of a month (`parse_month`): `2026-10\\n` must not name another archive key."""
    try:
        parse_month(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _write_output(data: bytes, output: Path | None) -> None:
    """Write atomically (temp file then rename) so a reader never sees half a report."""
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_binary_target(fmt: str, output: Path | None) -> None:
    if fmt == "xlsx" and output is None and sys.stdout.isatty():
        raise InputError("--format xlsx needs --output FILE (or a redirection): it is binary")


def _run(body: Callable[[], int]) -> int:
    try:
        return body()
    except (InputError, AllocationConfigError, UsageDocumentError, MonthNotEnded, LookupError) as exc:
        print(f"sitivmon: {exc}", file=sys.stderr)
        return 2
    except UsageUnavailable as exc:
        print(f"sitivmon: usage store: {exc}", file=sys.stderr)
        return 1


def _allocate(args: argparse.Namespace, communes_for: CommunesFor) -> int:
    def body() -> int:
        _check_binary_target(args.format, args.output)
        try:
            usage_bytes = args.usage.read_bytes()
        except OSError as exc:
            raise InputError(f"{args.usage}: cannot read: {exc.strerror or exc}") from None
        try:
            usage_data = load_usage_json(usage_bytes)
        except ValueError as exc:
            raise InputError(f"{args.usage}: not valid JSON: {exc}") from None
        timezone = None
        config_sha = None
        communes: Sequence[CommuneLike]
        if args.config is not None:
            communes, timezone = communes_for(args.config)
            config_sha = sha256_bytes(args.config.read_bytes())
        else:
            communes = communes_from_usage(usage_data, source=str(args.usage))
        allocation_bytes = read_allocation_file(args.allocation)
        config = parse_allocation(allocation_bytes, communes, source=str(args.allocation))
        usage = parse_usage(usage_data, communes, month=args.month, timezone=timezone, source=str(args.usage))
        result = allocate(config, usage, communes)
        report = build_report(
            usage,
            result,
            config_sha256=config_sha,
            allocation_sha256=sha256_bytes(allocation_bytes),
            usage_sha256=sha256_bytes(usage_bytes),
        )
        _write_output(render(report, args.format, section=args.section), args.output)
        return 0

    return _run(body)


def _report(
    args: argparse.Namespace,
    service_for: ServiceFor,
    clock: Callable[[], datetime],
) -> int:
    def body() -> int:
        _check_binary_target(args.format, args.output)
        service = service_for(args.config)
        if args.action == "close":
            outcome = service.close(args.month, now=clock())
            rev = outcome.revision
            if outcome.created:
                print(f"{args.month}: closed as revision {rev.revision} (sha256 {rev.sha256})", file=sys.stderr)
            else:
                unchanged = f"unchanged since revision {rev.revision} (sha256 {rev.sha256})"
                print(f"{args.month}: {unchanged}, nothing stored", file=sys.stderr)
            if args.output is not None:
                _write_output(render(rev.report, args.format, section=args.section), args.output)
            return 0
        current = service.current(args.month)
        data = render(current.report, args.format, section=args.section)
        if current.stale_warning:
            print(f"sitivmon: warning: {current.stale_warning}", file=sys.stderr)
        _write_output(data, args.output)
        return 0

    return _run(body)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="json", help="output format (default json)")
    p.add_argument(
        "--section",
        choices=SECTIONS,
        default="allocations",
        help="table written by the csv formats (json and xlsx hold every section)",
    )
    p.add_argument("--output", type=Path, help="write to FILE (atomically) instead of standard output")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    service_for: ServiceFor,
    communes_for: CommunesFor,
    clock: Callable[[], datetime] = _utc_now,
) -> None:
    """Add `allocate` and `report` (with `report close`); handlers are in `func` and return exit codes.

    The root CLI loads the configuration: `service_for` and `communes_for` give what these commands
    take from it."""
    p = subparsers.add_parser(
        "allocate",
        help="split project budgets from a usage file (pure computation)",
        description="Allocate every project's budget between communes from a usage JSON file.",
    )
    p.add_argument("--allocation", type=Path, required=True, help="allocation file (keys and projects)")
    p.add_argument("--usage", type=Path, required=True, help="usage JSON, as written by `sitivmon usage`")
    p.add_argument("--config", type=Path, help="root config: communes and timezone to check the files against")
    p.add_argument("--month", type=_month, help="refuse a usage file of another month")
    _add_output_args(p)
    p.set_defaults(func=lambda a: _allocate(a, communes_for))

    r = subparsers.add_parser(
        "report",
        help="usage and allocation of a month; `report close` freezes it",
        description="Usage plus allocation for a month. A closed month is served as frozen; "
        "`report close` freezes it, or records a new revision with a diff when the figures changed.",
    )
    r.add_argument("action", nargs="?", choices=["close"], help="close: freeze the month as a new revision")
    r.add_argument("--config", type=Path, required=True, help="root configuration file")
    r.add_argument("--month", type=_month, required=True, help="YYYY-MM")
    _add_output_args(r)
    r.set_defaults(func=lambda a: _report(a, service_for, clock))
