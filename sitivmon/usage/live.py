"""Month-to-date usage indicators on /metrics, computed from the store and cached.

Computing the indicators reads the month's buckets (about 1 s for a thousand links), so a scrape
serves the cached families and the computation runs at most every `refresh_s` seconds (the daemon:
in a thread of its own, `background`), with a read-only store of its own opened for each refresh
(`UsageStoreFactory`; SQLite: WAL readers never block the writer). A refresh reads the month
`batch` series at a time and folds each piece into the communes' figures before reading the next
(`compute_indicators_folded`): its memory is one piece's buckets plus a few hundred bytes per series,
not every series' month (1.3 GiB for the daemon at 20,000 links, issue 15)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sitivmon.config.model import Commune
from sitivmon.readings import UsageKey

from .backends import UsageStoreFactory
from .indicators import (
    LEAD_IN_BUCKETS,
    Held,
    Indicator,
    compute_indicators,
    compute_indicators_folded,
    lead_in_of,
)
from .periods import BUCKET_S, bucket_start, month_of
from .port import StoreError, StoreMissing, StoreUnavailable, UsageStorePort

log = logging.getLogger(__name__)

VALUE = "sitivmon_usage_month_to_date"
COVERAGE = "sitivmon_usage_month_to_date_coverage_ratio"
REFRESHED = "sitivmon_usage_month_to_date_refresh_timestamp_seconds"


class UsageLiveCollector(Collector):
    """Register with `registry.register(UsageLiveCollector(...))` on the daemon's registry."""

    batch = 1000
    """Series read and folded at a time by a refresh: its memory is one piece's buckets (a month of
    1,000 series is tens of MB) plus a few hundred bytes of scans per series, instead of every
    series' month at once (1.3 GiB at 20,000 links, issue 15)."""

    def __init__(
        self,
        open_store: UsageStoreFactory,
        communes: Sequence[Commune],
        timezone: str = "Europe/Paris",
        links: Iterable[UsageKey] = (),
        *,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        background: bool = False,
    ) -> None:
        """`background`: a scrape never waits for a refresh; it serves the figures it has (none until
        the first refresh ends) and starts a refresh in a thread of its own when they are stale. The
        daemon uses it: a refresh reads every series of the month (seconds at thousands of links),
        which must not hold up /metrics. Without it, or with `refresh_s` 0 (figures computed for every
        scrape, as tests ask), a scrape refreshes stale figures itself.

        `open_store` opens a read-only store (`backends.usage_reader_factory`); the collector closes it
        after each refresh."""
        self.open_store = open_store
        self.communes = list(communes)
        self.timezone = timezone
        self.links = list(links)
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._at: float | None = None
        self._seen_store = False  # a store existed once: its disappearance is not "no usage"
        self.background = background
        self._thread: threading.Thread | None = None
        self._generation = 0  # bumped by follow(): a refresh started before it does not count

    def describe(self) -> Iterable[Metric]:
        """Names only, so that registering does not touch the database."""
        return [
            GaugeMetricFamily(VALUE, "", labels=["commune", "indicator", "direction", "unit"]),
            GaugeMetricFamily(COVERAGE, "", labels=["commune", "indicator", "direction"]),
            GaugeMetricFamily(REFRESHED, ""),
        ]

    def follow(self, communes: Sequence[Commune], timezone: str, links: Iterable[UsageKey]) -> None:
        """Adopt a reloaded configuration (its links decide the coverage); takes effect at the next refresh."""
        with self._lock:
            self.communes, self.timezone, self.links = list(communes), timezone, list(links)
            self._at = None
            self._generation += 1

    def refresh(self) -> None:
        now = self._clock()
        month = month_of(now, self.timezone)
        end = min(month.end, bucket_start(now) + BUCKET_S)
        value = GaugeMetricFamily(
            VALUE,
            "Month-to-date usage indicator per commune (unit in the label; see docs/usage.md)",
            labels=["commune", "indicator", "direction", "unit"],
        )
        cov = GaugeMetricFamily(
            COVERAGE,
            "Share of expected samples received so far this month for the indicator (0..1)",
            labels=["commune", "indicator", "direction"],
        )
        n = (end - month.start) // BUCKET_S
        communes = [c.id for c in self.communes]
        try:
            store = self.open_store()
        except StoreMissing as exc:
            if self._seen_store:  # deleted under the daemon: zeros would be a lie (the recorder rebuilds it)
                raise StoreUnavailable(f"{exc}: it has disappeared") from exc
            inds = compute_indicators({}, communes, month.start, n)
        else:
            self._seen_store = True
            with store:
                inds = self._compute(store, communes, month.start, end)
        for ind in inds:
            direction = ind.direction or ""
            if ind.value is not None:
                value.add_metric([ind.commune, ind.indicator, direction, ind.unit], float(ind.value))
            cov.add_metric([ind.commune, ind.indicator, direction], float(ind.coverage))
        stamp = GaugeMetricFamily(REFRESHED, "When the month-to-date usage gauges were computed")
        stamp.add_metric([], now)
        self._families = [value, cov, stamp]
        self._at = now

    def _compute(self, store: UsageStorePort, communes: list[str], start: int, end: int) -> list[Indicator]:
        """The month's indicators, folded `batch` series at a time (`compute_indicators_folded`): the
        figures of `compute_indicators` over the whole month, with one piece's buckets in memory."""
        n = (end - start) // BUCKET_S
        if not n:
            return compute_indicators_folded(store.month_series_batches(start, end, self.links), communes, start, 0)
        held: dict[UsageKey, Held] = {}  # readings just before the month cover its start (`lead_in`)
        with contextlib.closing(store.month_series_batches(start - LEAD_IN_BUCKETS * BUCKET_S, start)) as before:
            for piece in before:
                held.update(lead_in_of(piece))
        with contextlib.closing(store.month_series_batches(start, end, self.links, batch=self.batch)) as pieces:
            return compute_indicators_folded(pieces, communes, start, n, held)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background refresh under way; True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _refresh_in_background(self) -> None:
        generation = self._generation
        try:
            self.refresh()
        except Exception as exc:  # StoreError and anything else: keep the figures, retry next period
            with self._lock:
                self._at = self._clock()
            log.warning("usage month-to-date refresh failed: %s", exc)
        with self._lock:
            if generation != self._generation:
                self._at = None  # the configuration changed meanwhile: refresh again at the next scrape

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = list(self._families)  # what a background scrape serves, whatever the refresh does
            stale = self._at is None or self._clock() - self._at >= self.refresh_s
            if stale and self.background and self.refresh_s > 0:  # 0: fresh figures on every scrape
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._refresh_in_background, name="usage-live-refresh", daemon=True
                    )
                    self._thread.start()
            elif stale:
                try:
                    self.refresh()
                except StoreError as exc:  # keep serving the previous figures, retry next period
                    self._at = self._clock()
                    log.warning("usage month-to-date refresh failed: %s", exc)
                families = list(self._families)
        yield from families
