"""Month reports for a running configuration: compute, serve frozen months, close months.

Shared by `sitivmon report` and the HTTP API so both give the same document for the same month. The
allocation file and the root config are read (and hashed) on every call: the hash in a report is the
hash of the very bytes that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sitivmon.allocation.archive import CloseOutcome, ReportArchivePort, open_report_archive
from sitivmon.allocation.archive_postgres import PostgresReportArchive
from sitivmon.allocation.config import parse_allocation, read_allocation_file
from sitivmon.allocation.engine import UsageDocument, allocate, parse_usage
from sitivmon.allocation.report import build_report, indicator_rows, period_header, sha256_bytes, substance
from sitivmon.config.model import Commune, Link
from sitivmon.usage.backends import UsageStoreFactory, usage_reader_factory
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.port import StoreError
from sitivmon.usage.service import build_document

MonthUsage = Callable[[str], Any]
"""The usage document (JSON-like, numbers as int or Decimal) of a month."""


class InputError(Exception):
    """Bad input from the user (configuration, month, files): exit 2 with this (located) message."""


class UsageUnavailable(RuntimeError):
    """The usage store cannot be read (not the user's input): exit 1."""


def usage_for_month(
    open_store: UsageStoreFactory,
    communes: Sequence[Commune],
    timezone: str,
    links: Sequence[Link],
    month: str,
) -> dict[str, Any]:
    """The usage store's document of `month` (the JSON of `sitivmon usage`, as Python objects).

    The single place where the usage store plugs into `sitivmon report` and the HTTP API: a store
    error is `UsageUnavailable`, a bad month or timezone `InputError`.
    """
    try:
        return build_document(open_store, communes, timezone, links, month)
    except StoreError as exc:
        raise UsageUnavailable(str(exc)) from None
    except ValueError as exc:
        raise InputError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class CurrentReport:
    report: dict[str, Any]
    # Set when the month is closed and today's computation would give other figures.
    stale_warning: str | None = None


class ReportService:
    """Reports of one configuration. `usage_for_month` is the usage store's document for a month."""

    def __init__(
        self,
        *,
        communes: Sequence[Commune],
        timezone: str,
        allocation_path: Path,
        config_path: Path | None,
        usage_for_month: MonthUsage,
        archive: ReportArchivePort,
    ) -> None:
        self.communes = list(communes)
        self.timezone = timezone
        self.allocation_path = allocation_path
        self.config_path = config_path
        self.usage_for_month = usage_for_month
        self.archive = archive

    def _usage(self, month: str) -> UsageDocument:
        return parse_usage(
            self.usage_for_month(month),
            self.communes,
            month=month,
            timezone=self.timezone,
            source=f"usage document for {month}",
        )

    def usage(self, month: str) -> dict[str, Any]:
        """The month's usage figures as the reports show them (validated, values as exact text)."""
        doc = self._usage(month)
        return {**period_header(doc), "indicators": indicator_rows(doc)}

    def fresh(self, month: str) -> dict[str, Any]:
        """Today's provisional computation of the month, whatever is archived."""
        allocation_bytes = read_allocation_file(self.allocation_path)
        config = parse_allocation(allocation_bytes, self.communes, source=str(self.allocation_path))
        usage = self._usage(month)
        result = allocate(config, usage, self.communes)
        config_sha = sha256_bytes(self.config_path.read_bytes()) if self.config_path else None
        return build_report(usage, result, config_sha256=config_sha, allocation_sha256=sha256_bytes(allocation_bytes))

    def current(self, month: str) -> CurrentReport:
        """The latest closed revision if the month is closed (exactly as stored), else a provisional one."""
        latest = self.archive.latest(month)
        if latest is None:
            return CurrentReport(self.fresh(month))
        frozen = latest.report
        warning = None
        try:
            if substance(self.fresh(month)) != substance(frozen):
                warning = (
                    f"{month} is closed at revision {latest.revision}; today's figures differ: "
                    f"`sitivmon report close` records them as revision {latest.revision + 1}"
                )
        except Exception as exc:  # the frozen revision stands whatever happens to today's inputs
            warning = f"{month} is closed at revision {latest.revision}; recomputing it failed: {exc}"
        return CurrentReport(frozen, warning)

    def close(self, month: str, *, now: datetime | None = None) -> CloseOutcome:
        return self.archive.close(self.fresh(month), now=now)


def service_from_config(
    *,
    config_path: Path,
    state_dir: Path,
    timezone: str,
    communes: Sequence[Commune],
    links: Sequence[Link],
    allocation: Path | None,
    usage_settings: UsageSettings,
    usage: MonthUsage | None = None,
) -> ReportService:
    """The report service of a loaded root config (the daemon's API and `sitivmon report`).

    `allocation` is the configured allocation file, relative to the config file's folder; `usage`
    replaces the configured usage store's document (tests, usage files). Raises `InputError` when no
    allocation file is configured.
    """
    if allocation is None:
        raise InputError(f"{config_path}: allocation: no allocation file is configured")
    allocation_path = allocation if allocation.is_absolute() else config_path.parent / allocation
    if usage is None:
        open_store = usage_reader_factory(usage_settings, state_dir)
        communes, links = list(communes), list(links)

        def usage(month: str) -> Any:
            return usage_for_month(open_store, communes, timezone, links, month)

    return ReportService(
        communes=communes,
        timezone=timezone,
        allocation_path=allocation_path,
        config_path=config_path,
        usage_for_month=usage,
        archive=(
            PostgresReportArchive(usage_settings.dsn)
            if usage_settings.store == "postgresql" and usage_settings.dsn is not None
            else open_report_archive(state_dir)
        ),
    )
