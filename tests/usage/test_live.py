"""Month-to-date gauges on an injected registry, cached between scrapes."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from sitivmon.usage.backends import UsageStoreFactory, usage_reader_factory
from sitivmon.usage.config import UsageSettings
from sitivmon.usage.live import UsageLiveCollector
from sitivmon.usage.periods import month_range
from sitivmon.usage.store import SqliteUsageStore

from .support import communes, link_keys, poll_link, record


def readers(state_dir: Path, filename: str = "usage.sqlite3") -> UsageStoreFactory:
    """What the daemon gives the collector: read-only stores of the configured backend."""
    return usage_reader_factory(UsageSettings(db_filename=filename), state_dir)


M = month_range("2026-10")


def test_month_to_date_value_and_coverage(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    now = [float(M.start + 2 * 86400)]  # two days into the month
    with SqliteUsageStore(path) as s:
        record(s, poll_link("venissieux", "l1", M.start - 283, now[0] - 1, 300, lambda t: int(t * 10)))
    reg = CollectorRegistry()
    col = UsageLiveCollector(
        readers(tmp_path), communes(), "Europe/Paris", link_keys("venissieux", "l1"), refresh_s=60, clock=lambda: now[0]
    )
    reg.register(col)
    labels = {"commune": "venissieux", "indicator": "traffic_volume", "direction": "in", "unit": "bytes"}
    value = reg.get_sample_value("sitivmon_usage_month_to_date", labels)
    # the last poll was at now-1-...: everything up to it is counted, to the byte
    last = M.start - 283 + 300 * ((now[0] - 1 - (M.start - 283)) // 300)
    assert value == (last - M.start) * 10
    cov = reg.get_sample_value(
        "sitivmon_usage_month_to_date_coverage_ratio",
        {"commune": "venissieux", "indicator": "traffic_volume", "direction": "in"},
    )
    assert cov is not None and 0.99 < cov <= 1.0
    assert (
        reg.get_sample_value(
            "sitivmon_usage_month_to_date_coverage_ratio", {"commune": "corbas", "indicator": "energy", "direction": ""}
        )
        == 0.0
    )
    text = generate_latest(reg).decode()
    assert (
        'sitivmon_usage_month_to_date{commune="givors",direction="in",indicator="traffic_volume",unit="bytes"} 0.0'
        in text
    )

    # cached: new data is not read until refresh_s has passed
    with SqliteUsageStore(path) as s:
        record(s, poll_link("venissieux", "l1", last, last + 600, 300, lambda t: int(t * 10)))
    assert reg.get_sample_value("sitivmon_usage_month_to_date", labels) == value
    now[0] += 700  # past refresh_s, and past the new readings
    assert reg.get_sample_value("sitivmon_usage_month_to_date", labels) == value + 6000


def test_no_database_yet(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    reg.register(UsageLiveCollector(readers(tmp_path, "absent.sqlite3"), communes(), clock=lambda: float(M.start + 10)))
    assert (
        reg.get_sample_value(
            "sitivmon_usage_month_to_date_coverage_ratio",
            {"commune": "givors", "indicator": "traffic_volume", "direction": "out"},
        )
        == 0.0
    )
    assert not (tmp_path / "absent.sqlite3").exists()


def test_deleted_store_keeps_the_last_figures_instead_of_zeros(tmp_path: Path) -> None:
    """Before: a deleted database read as "no usage": every month-to-date value became 0."""
    path = tmp_path / "usage.sqlite3"
    now = [float(M.start + 86400)]
    with SqliteUsageStore(path) as s:
        record(s, poll_link("venissieux", "l1", M.start + 17, now[0] - 1, 300, lambda t: int(t * 10)))
    reg = CollectorRegistry()
    reg.register(
        UsageLiveCollector(
            readers(tmp_path),
            communes(),
            "Europe/Paris",
            link_keys("venissieux", "l1"),
            refresh_s=60,
            clock=lambda: now[0],
        )
    )
    labels = {"commune": "venissieux", "indicator": "traffic_volume", "direction": "in", "unit": "bytes"}
    value = reg.get_sample_value("sitivmon_usage_month_to_date", labels)
    assert value is not None and value > 0
    for p in tmp_path.glob("usage.sqlite3*"):
        p.unlink()
    now[0] += 120
    assert reg.get_sample_value("sitivmon_usage_month_to_date", labels) == value


def one_link_two_days(
    tmp_path: Path, now: list[float], *, background: bool = False
) -> tuple[CollectorRegistry, UsageLiveCollector]:
    """A store with one link polled from the month's start to `now`, and a collector on it (registered)
    that refreshes every 60 s of the `now` clock."""
    with SqliteUsageStore(tmp_path / "usage.sqlite3") as s:
        record(s, poll_link("venissieux", "l1", M.start + 17, now[0] - 1, 300, lambda t: int(t * 10)))
    reg = CollectorRegistry()
    col = UsageLiveCollector(
        readers(tmp_path), communes(), "Europe/Paris", link_keys("venissieux", "l1"), refresh_s=60,
        clock=lambda: now[0], background=background,
    )  # fmt: skip
    reg.register(col)
    return reg, col


def test_background_refresh_never_holds_up_a_scrape(tmp_path: Path) -> None:
    """The daemon's collector serves the figures it has and refreshes stale ones in its own thread, so
    a refresh (seconds at thousands of links) never holds up /metrics."""
    path = tmp_path / "usage.sqlite3"
    now = [float(M.start + 2 * 86400)]
    reg, col = one_link_two_days(tmp_path, now, background=True)
    labels = {"commune": "venissieux", "indicator": "traffic_volume", "direction": "in", "unit": "bytes"}
    assert reg.get_sample_value("sitivmon_usage_month_to_date", labels) is None  # first refresh under way
    assert col.wait(30)
    value = reg.get_sample_value("sitivmon_usage_month_to_date", labels)
    assert value is not None and value > 0
    with SqliteUsageStore(path) as s:
        record(s, poll_link("venissieux", "l1", now[0] - 1, now[0] + 599, 300, lambda t: int(t * 10)))
    now[0] += 700
    assert reg.get_sample_value("sitivmon_usage_month_to_date", labels) == value  # served, refresh started
    assert col.wait(30)
    assert reg.get_sample_value("sitivmon_usage_month_to_date", labels) > value


def test_each_refresh_and_its_cpu_time_are_counted(tmp_path: Path) -> None:
    """The refresh's CPU time is exposed (a counter): at thousands of links it is one of the daemon's
    larger costs. Cached scrapes add nothing; a refresh that fails counts too."""
    now = [float(M.start + 2 * 86400)]
    reg, _ = one_link_two_days(tmp_path, now)

    def counted() -> tuple[float | None, float | None]:
        return (
            reg.get_sample_value("sitivmon_usage_month_to_date_refreshes_total"),
            reg.get_sample_value("sitivmon_usage_month_to_date_refresh_cpu_seconds_total"),
        )

    n1, cpu1 = counted()
    assert n1 == 1 and cpu1 is not None and cpu1 > 0
    assert counted() == (1, cpu1)  # served from the cache: no refresh
    now[0] += 120
    n2, cpu2 = counted()
    assert n2 == 2 and cpu2 is not None and cpu2 > cpu1
    for p in tmp_path.glob("usage.sqlite3*"):
        p.unlink()
    now[0] += 120
    n3, cpu3 = counted()  # the store has gone: the refresh fails, the last figures stay
    assert n3 == 3 and cpu3 is not None and cpu3 >= cpu2
    assert "sitivmon_usage_month_to_date_refresh_cpu_seconds_total" in generate_latest(reg).decode()


def test_series_scanned_from_the_week_start_are_counted(tmp_path: Path) -> None:
    """A refresh scans each series of the current week from its start once, then only the buckets since
    the previous refresh: the counter of series scanned from the start shows an operator (and the
    poll bench) whether the refreshes stay incremental. The scan is kept up to the buckets settled
    (`settle_s`): a poll straddling the end of the newest closed bucket does not send its series back
    to a scan from the start; a late correction of an earlier bucket does, and counts."""
    path = tmp_path / "usage.sqlite3"
    now = [float(M.start + 2 * 86400)]
    reg, col = one_link_two_days(tmp_path, now)
    col.settle_s = 300 + 30  # the poll interval, then a flush
    name = "sitivmon_usage_month_to_date_rescanned_series_total"
    first = reg.get_sample_value(name)
    assert first == 3  # the link's series (traffic in and out, link up), once each
    with SqliteUsageStore(path) as s:  # its first interval ends 1 s into the bucket the last one closed
        record(s, poll_link("venissieux", "l1", now[0] - 1, now[0] + 599, 300, lambda t: int(t * 10)))
    now[0] += 700
    assert reg.get_sample_value(name) == first  # new buckets only: nothing scanned from the start again
    with SqliteUsageStore(path) as s:  # a correction to a bucket the previous refresh had kept
        record(s, poll_link("venissieux", "l1", now[0] - 7200, now[0] - 6300, 300, lambda t: int(t * 7)))
    now[0] += 700
    assert reg.get_sample_value(name) == first + 3  # its polls carry traffic and the link state: all three


def test_a_refresh_keeping_unsettled_buckets_scans_them_all_again(tmp_path: Path) -> None:
    """Without `settle_s` the scan is kept up to the newest closed bucket, and the poll that straddles
    its end (written after the refresh) changes it: both traffic series are scanned from the week's
    start again. What the daemon met when its refreshes fell just after a bucket's end (issue 15)."""
    path = tmp_path / "usage.sqlite3"
    now = [float(M.start + 2 * 86400)]
    reg, _ = one_link_two_days(tmp_path, now)
    name = "sitivmon_usage_month_to_date_rescanned_series_total"
    assert reg.get_sample_value(name) == 3
    with SqliteUsageStore(path) as s:
        record(s, poll_link("venissieux", "l1", now[0] - 1, now[0] + 599, 300, lambda t: int(t * 10)))
    now[0] += 700
    assert reg.get_sample_value(name) == 5
