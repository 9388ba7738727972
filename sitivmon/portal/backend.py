"""The portal's backend made from what the daemon already runs: the report service and the monitor.

Kept apart from the routes so that the routes can be tested on any backend, and so that the daemon (the
composition root) wires the portal with one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sitivmon.allocation.config import ApiToken
from sitivmon.allocation.formats import render
from sitivmon.allocation.report import scope_report
from sitivmon.allocation.service import ReportService
from sitivmon.monitor import Monitor
from sitivmon.portal.app import LinkRow, PortalBackend, ReportView
from sitivmon.portal.auth import Account, account_for
from sitivmon.portal.views import CommuneRef


def accounts_from_tokens(tokens: Sequence[ApiToken]) -> list[Account]:
    return [account_for(t.name, t.scope, t.role, t.digest()) for t in tokens]


def report_download(report: dict[str, Any], flavor: str, section: str, scope: str | None) -> bytes:
    """The bytes the API serves for the same month, format, section and scope."""
    doc = scope_report(report, scope) if scope is not None else report
    return render(doc, flavor, section=section)


def link_rows(monitor: Monitor) -> list[LinkRow]:
    polled = {name: status.last_success for name, status in monitor.targets.items()}
    return [
        LinkRow(
            commune=rt.link.commune,
            link=rt.link.id,
            target=rt.link.target,
            interface=rt.interface,
            state=rt.state.value,
            admin_up=rt.admin_up,
            maintenance=rt.link.maintenance,
            since=rt.last_change,
            last_poll=polled.get(rt.link.target),
        )
        for rt in monitor.links.values()
    ]


def daemon_backend(
    *,
    service: Callable[[], ReportService],
    monitor: Callable[[], Monitor],
    tokens: Callable[[], Sequence[ApiToken]],
) -> PortalBackend:
    """A backend reading the running daemon; each call asks for the current config, so reloads apply."""
    cache: dict[str, Any] = {}

    def accounts() -> list[Account]:
        now = tokens()
        if cache.get("tokens") is not now:  # hash the tokens once per configuration, not per request
            cache["tokens"], cache["accounts"] = now, accounts_from_tokens(now)
        found: list[Account] = cache["accounts"]
        return found

    def report(month: str) -> ReportView:
        current = service().current(month)
        return ReportView(current.report, current.stale_warning)

    def close(month: str, now: datetime) -> Any:
        return service().close(month, now=now)

    return PortalBackend(
        accounts=accounts,
        communes=lambda: [CommuneRef(c.id, c.name, c.insee) for c in monitor().config.communes],
        timezone=lambda: monitor().config.timezone,
        report=report,
        fresh=lambda month: service().fresh(month),
        revisions=lambda month: service().archive.revisions(month),
        close=close,
        usage=lambda month: service().usage(month),
        download=report_download,
        links=lambda: link_rows(monitor()),
    )
