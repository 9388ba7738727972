"""The daemon's own health, on an injected prometheus_client registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from sitivmon import __version__


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        Info("sitivmon_build", "Version of the running sitivmon.", registry=registry).info({"version": __version__})
        self.reloads = Counter(
            "sitivmon_config_reloads_total", "Configuration reload attempts by result.", ["result"], registry=registry
        )
        self.config_ok = Gauge(
            "sitivmon_config_last_reload_successful", "1 when the last reload succeeded.", registry=registry
        )
        self.config_ok.set(1)
        self.config_loaded = Gauge(
            "sitivmon_config_last_reload_success_timestamp_seconds", "When the config was last loaded.",
            registry=registry,
        )
        self.poll_lag = Histogram(
            "sitivmon_poll_start_lag_seconds", "Delay between a poll's scheduled time and its start.",
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60), registry=registry,
        )
        self.polls_skipped = Counter(
            "sitivmon_polls_skipped_total", "Scheduled polls skipped because the previous one was still running.",
            ["target"], registry=registry,
        )
        self.scrape_seconds = Histogram(
            "sitivmon_metrics_render_seconds", "Time to render the bulk series for a scrape.",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5), registry=registry,
        )
        self.http_errors = Counter(
            "sitivmon_http_requests_rejected_total",
            "HTTP requests refused (bad or missing token, scope, reload gate), by status and reason.",
            ["status", "reason"], registry=registry,
        )
        self.http_connections = Gauge(
            "sitivmon_http_connections", "HTTP connections open (capped; see sitivmon/app/http.py).", registry=registry
        )
        self.http_connections_dropped = Counter(
            "sitivmon_http_connections_dropped_total",
            "HTTP connections closed by the server to stay answerable (limit_evicted, limit_refused, header_timeout).",
            ["reason"], registry=registry,
        )
