"""Usage documents for the rest of the program: the series a configuration expects and a month's document.

Not a CLI module: the daemon (live gauges, reports through the API) and the commands (`sitivmon usage`,
`sitivmon report`) all call these, each with the typed pieces of the configuration it has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfoNotFoundError

from sitivmon.readings import Quantity, UsageKey

from .backends import UsageStoreFactory
from .indicators import usage_document
from .periods import BUCKET_S, month_range
from .port import SeriesMonth, StoreMissing, UsageReader

if TYPE_CHECKING:  # config.model imports this package's settings: a runtime import would be a cycle
    from sitivmon.config.model import Commune, Link


def link_keys(links: Sequence[Link]) -> list[UsageKey]:
    """Series the configuration expects (each link: traffic in/out and state), so that a configured
    link that never reported shows with coverage 0."""
    return [
        UsageKey(link.commune, link.id, q)
        for link in links
        for q in (Quantity.TRAFFIC_IN, Quantity.TRAFFIC_OUT, Quantity.LINK_UP)
    ]


class NoUsageStore:
    """The reader of a store that was never created: every expected series, none with data."""

    location = "no usage store"

    def month_series(self, start: int, end: int, keys: Iterable[UsageKey] = ()) -> dict[UsageKey, SeriesMonth]:
        return {k: SeriesMonth(k, start, (end - start) // BUCKET_S) for k in keys}

    def close(self) -> None:
        pass

    def __enter__(self) -> NoUsageStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


def build_document(
    open_store: UsageStoreFactory,
    communes: Sequence[Commune],
    timezone: str,
    links: Sequence[Link],
    month: str,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The usage document of `month` (the JSON of `sitivmon usage`, the allocation engine's input).

    `open_store` opens the store read-only (`backends.usage_reader_factory`). Raises ValueError for a
    bad month or timezone, the port's `StoreError` for an unusable store. A store never created is a
    month with no data at all (every indicator with coverage 0), not an error. A month that has not
    ended at `now` (default: the clock) is marked provisional.
    """
    try:
        period = month_range(month, timezone)
    except ZoneInfoNotFoundError as exc:
        raise ValueError(f"unknown timezone {timezone!r}") from exc
    store: UsageReader
    try:
        store = open_store()
    except StoreMissing:
        store = NoUsageStore()
    with store:
        return usage_document(store, communes, period, link_keys(links), now=now)
