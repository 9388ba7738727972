"""The /metrics text, read back with prometheus_client's parser: values, labels, escaping, types."""

from __future__ import annotations

import io
from typing import Any

import pytest
from prometheus_client.parser import text_fd_to_metric_families, text_string_to_metric_families

from sitivmon.app.config import SitivmonConfig
from sitivmon.engine.poll import TargetPoll
from sitivmon.exposition import LabelCache, escape, render
from sitivmon.monitor import Monitor
from sitivmon.readings import Anomaly
from sitivmon.snmp.client import PollError, PollErrorReason, WalkStop
from tests.support.agents import COMMUNES, Metrics

T0 = 1_764_320_000.0
ALIAS = 'GIVORS "fibre" \\ lot 3\nsecond line'


def config() -> SitivmonConfig:
    return SitivmonConfig.model_validate({
        "communes": [{"id": i, "name": n, "insee": s} for i, n, s in COMMUNES],
        "credentials": {"v2": {"version": "2c", "community": "not-exposed-1234"}},
        "targets": [{"name": "core-givors", "address": "192.0.2.1", "credentials": "v2"},
                    {"name": "sw-corbas", "address": "192.0.2.30", "credentials": "v2", "commune": "corbas"}],
        "links": [
            {"id": "givors-fibre", "commune": "givors", "target": "core-givors", "interface": {"name": "xe-0/0/1"}},
            {"id": "venissieux-core", "commune": "venissieux", "target": "core-givors", "interface": {"index": 2},
             "side": "core", "capacity": "1Gbit", "maintenance": True},
            {"id": "grigny-missing", "commune": "grigny", "target": "core-givors", "interface": {"name": "nope"}},
            {"id": "corbas-uplink", "commune": "corbas", "target": "sw-corbas", "interface": {"index": 1}},
        ],
    })  # fmt: skip


def poll(
    at: float, in1: int, out1: int, in2: int, out2: int, *, target: str = "core-givors", uptime: int = 360_000
) -> TargetPoll:
    tables: dict[str, dict[str, Any]] = {
        "ifDescr": {"1": "xe-0/0/1", "2": "xe-0/0/2"},
        "ifName": {"1": "xe-0/0/1", "2": "xe-0/0/2"},
        "ifAlias": {"1": ALIAS.encode(), "2": ""},
        "ifAdminStatus": {"1": 1, "2": 1},
        "ifOperStatus": {"1": 1, "2": 2},
        "ifHighSpeed": {"1": 10_000, "2": 1000},
        "ifHCInOctets": {"1": in1, "2": in2},
        "ifHCOutOctets": {"1": out1, "2": out2},
        "ifHCInUcastPkts": {"1": in1 // 1000, "2": in2 // 1000},
    }
    return TargetPoll(
        target=target, at=at, duration=0.012, tables=tables, scalars={"sysUpTime": uptime}, varbinds=19, requests=3
    )


@pytest.fixture
def monitor() -> Monitor:
    cfg = config()
    m = Monitor(cfg)
    core = cfg.target_by_name()["core-givors"]
    m.on_poll(core, poll(T0, 1_000_000, 2_000_000, 50_000, 70_000))
    m.on_poll(core, poll(T0 + 60, 1_600_000, 2_900_000, 51_000, 72_500, uptime=366_000))
    return m


def parsed(m: Monitor) -> Metrics:
    text = render(m, LabelCache())
    assert text.endswith("\n")
    return Metrics(text)


def test_link_counters_values_and_labels(monitor: Monitor) -> None:
    m = parsed(monitor)
    givors = {"commune": "givors", "link": "givors-fibre", "target": "core-givors"}
    assert m.value("sitivmon_link_receive_bytes_total", **givors) == 600_000
    assert m.value("sitivmon_link_transmit_bytes_total", **givors) == 900_000
    assert m.value("sitivmon_link_receive_packets_total", **givors) == 600
    # side=core: what the core interface transmits, the commune receives
    ven = {"commune": "venissieux", "link": "venissieux-core", "target": "core-givors"}
    assert m.value("sitivmon_link_receive_bytes_total", **ven) == 2_500
    assert m.value("sitivmon_link_transmit_bytes_total", **ven) == 1_000
    assert m.value("sitivmon_link_transmit_packets_total", **ven) == 1
    for name in ("sitivmon_link_receive_errors_total", "sitivmon_link_transmit_discards_total"):
        assert m.value(name, **givors) == 0


def test_link_state_gauges(monitor: Monitor) -> None:
    m = parsed(monitor)
    givors = {"commune": "givors", "link": "givors-fibre", "target": "core-givors"}
    ven = {"commune": "venissieux", "link": "venissieux-core", "target": "core-givors"}
    missing = {"commune": "grigny", "link": "grigny-missing", "target": "core-givors"}
    assert m.value("sitivmon_link_up", **givors) == 1
    assert m.value("sitivmon_link_up", **ven) == 0
    assert m.value("sitivmon_link_up", **missing) is None  # unknown: absent, not 0
    assert m.value("sitivmon_link_admin_up", **ven) == 1
    assert m.value("sitivmon_link_speed_bytes", **givors) == 1_250_000_000  # port speed
    assert m.value("sitivmon_link_speed_bytes", **ven) == 125_000_000  # configured capacity
    assert m.value("sitivmon_link_maintenance", **ven) == 1 and m.value("sitivmon_link_maintenance", **givors) == 0
    assert m.value("sitivmon_link_state_changes_total", **givors) == 0  # learning the state is no change
    assert m.value("sitivmon_link_last_change_timestamp_seconds", **givors) == pytest.approx(T0)
    assert m.value("sitivmon_counter_discontinuities_total", **givors) == 0


def test_label_escaping_round_trips(monitor: Monitor) -> None:
    m = parsed(monitor)
    info = m.series("sitivmon_link_info")
    by_link = {dict(k)["link"]: dict(k) for k in info}
    # Device strings lose their control characters (sitivmon.normalize.text); quotes and backslashes stay.
    assert by_link["givors-fibre"]["alias"] == ALIAS.replace("\n", "\ufffd")
    assert by_link["givors-fibre"]["interface"] == "xe-0/0/1"
    assert by_link["grigny-missing"]["interface"] == ""
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_commune_totals_cover_every_commune(monitor: Monitor) -> None:
    m = parsed(monitor)
    rx = {dict(k)["commune"]: v for k, v in m.series("sitivmon_commune_receive_bytes_total").items()}
    assert set(rx) == {c[0] for c in COMMUNES}
    assert rx["givors"] == 600_000 and rx["venissieux"] == 2_500 and rx["corbas"] == 0


def test_target_series(monitor: Monitor) -> None:
    m = parsed(monitor)
    assert m.value("sitivmon_target_up", target="core-givors") == 1
    assert m.value("sitivmon_target_up", target="sw-corbas") is None  # not polled yet
    assert m.value("sitivmon_target_poll_interval_seconds", target="sw-corbas") == 60
    assert m.value("sitivmon_target_last_success_timestamp_seconds", target="core-givors") == pytest.approx(T0 + 60)
    assert m.value("sitivmon_target_varbinds_total", target="core-givors") == 38
    assert m.value("sitivmon_target_poll_duration_seconds", target="core-givors") == pytest.approx(0.012)
    errors = {
        dict(k)["reason"]: v
        for k, v in m.series("sitivmon_poll_errors_total").items()
        if ("target", "core-givors") in k
    }
    assert set(errors) == {r.value for r in PollErrorReason}  # every reason exposed from the start
    assert errors["resolve"] == 2  # the unresolvable link, on each of the two polls
    assert sum(errors.values()) == 2


def test_unresolved_link_counts_every_poll_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """`resolve` stayed at 1 while a link stayed unresolved: the rate said nothing was wrong any more."""
    cfg = config()
    m = Monitor(cfg)
    core = cfg.target_by_name()["core-givors"]
    counts = []
    for i in range(4):
        m.on_poll(core, poll(T0 + 60 * i, 1_000 * i, 2_000 * i, 0, 0))
        counts.append(m.targets["core-givors"].errors["resolve"])
    assert counts == [1, 2, 3, 4]  # grigny-missing, on every poll
    logged = [r for r in caplog.records if "grigny-missing" in r.getMessage()]
    assert len(logged) == 1


def test_failed_poll_and_walk_stop(monitor: Monitor) -> None:
    core = monitor.config.target_by_name()["core-givors"]
    failed = TargetPoll("core-givors", T0 + 120, 0.5, error=PollError(PollErrorReason.TIMEOUT, "no response"))
    monitor.on_poll(core, failed)
    m = parsed(monitor)
    assert m.value("sitivmon_target_up", target="core-givors") == 0
    assert m.value("sitivmon_poll_errors_total", target="core-givors", reason="timeout") == 1
    assert m.value("sitivmon_link_up", commune="givors", link="givors-fibre", target="core-givors") is None
    # the totals stay where they were
    assert (
        m.value("sitivmon_link_receive_bytes_total", commune="givors", link="givors-fibre", target="core-givors")
        == 600_000
    )
    stopped = poll(T0 + 180, 1_700_000, 3_000_000, 52_000, 73_000, uptime=378_000)
    stopped.walk_stops.append(("ifHCInOctets", WalkStop.NONINCREASING))
    monitor.on_poll(core, stopped)
    m = parsed(monitor)
    assert m.value("sitivmon_poll_errors_total", target="core-givors", reason="nonincreasing") == 1
    assert m.value("sitivmon_target_up", target="core-givors") == 1


def test_families_types_and_help(monitor: Monitor) -> None:
    text = render(monitor, LabelCache())
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), "a family is rendered twice"
    kinds = {f.name: f.type for f in families}
    assert kinds["sitivmon_link_receive_bytes"] == "counter"
    assert kinds["sitivmon_poll_errors"] == "counter"
    assert kinds["sitivmon_link_up"] == "gauge"
    assert all(f.documentation for f in families)
    assert "not-exposed-1234" not in text


def test_cache_is_used_per_identity() -> None:
    cache = LabelCache()
    a = cache.closed("givors", "l1", "t1")
    assert a == 'commune="givors",link="l1",target="t1"} '
    assert cache.closed("givors", "l1", "t1") is a
    assert cache.closed("givors", "l1", "t2") != a


def test_device_anomalies_counted_per_reason_and_logged_once_per_subject(
    monitor: Monitor, caplog: pytest.LogCaptureFixture
) -> None:
    core = monitor.config.target_by_name()["core-givors"]
    for i in range(3):
        p = poll(T0 + 120 + 60 * i, 1_700_000, 3_000_000, 52_000, 73_000, uptime=372_000 + 6000 * i)
        p.anomalies.append(Anomaly("speed_implausible", "ifHighSpeed.1", "100000000 Mbit/s is not a port speed"))
        if i == 2:
            p.anomalies.append(Anomaly("speed_implausible", "ifHighSpeed.2", "same, another port"))
        with caplog.at_level("WARNING", logger="sitivmon.monitor"):
            monitor.on_poll(core, p)
    m = parsed(monitor)
    assert m.value("sitivmon_device_anomalies_total", target="core-givors", reason="speed_implausible") == 4
    assert m.value("sitivmon_device_anomalies_total", target="sw-corbas", reason="speed_implausible") is None
    logged = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(logged) == 2 and "ifHighSpeed.1" in logged[0] and "ifHighSpeed.2" in logged[1]


CONTROL_DESCR = "port\r1\x00gi"  # what a misbehaving agent serves in ifDescr/ifName
CONTROL_ALIAS = "vers\rGrigny\x00\x01\x7f\x85\u2028\tfin"


@pytest.mark.parametrize("reader", ["string", "text-stream"])
def test_control_characters_from_an_agent_leave_the_page_parseable(reader: str) -> None:
    """A raw CR or NUL in ifDescr/ifAlias is escaped: the whole page parses, with prometheus_client's
    string parser and read as a text stream (universal newlines, where a raw CR ends the line)."""
    cfg = config()
    m = Monitor(cfg)
    core = cfg.target_by_name()["core-givors"]
    for at in (T0, T0 + 60):  # the link found by ifIndex 2, whose strings the agent garbles
        p = poll(at, 1_000, 2_000, 3_000, 4_000)
        p.tables["ifName"]["2"] = CONTROL_DESCR.encode()
        p.tables["ifAlias"]["2"] = CONTROL_ALIAS.encode()
        m.on_poll(core, p)
    text = render(m, LabelCache())
    assert not any(c in text for c in "\r\x00\x01\x7f\x85\u2028\t")
    if reader == "string":
        families = list(text_string_to_metric_families(text))
    else:
        families = list(text_fd_to_metric_families(io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")))
    samples = [s for f in families for s in f.samples]
    info = [s.labels for s in samples if s.name == "sitivmon_link_info" and s.labels["link"] == "venissieux-core"]
    # Device strings are decoded by one rule first (sitivmon/normalize/text.py: control characters become
    # U+FFFD, NUL padding goes); what remains unprintable (U+2028, tab) is escaped on the page.
    assert info == [{
        "commune": "venissieux", "link": "venissieux-core", "target": "core-givors",
        "interface": "port\ufffd1gi", "alias": "vers\ufffdGrigny\ufffd\ufffd\ufffd\\u2028\\tfin",
    }]  # fmt: skip
    # every sample of the page made it through, not only the lines before the first bad one
    assert len(samples) == sum(1 for line in text.split("\n") if line and not line.startswith("#"))


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('q"b\\s\nn', 'q\\"b\\\\s\\nn'),
        ("cr\r", "cr\\r"),
        ("nul\x00", "nul\\x00"),
        ("tab\t", "tab\\t"),
        ("del\x7f c1\x9f", "del\\x7f c1\\x9f"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("Vénissieux ✓", "Vénissieux ✓"),
        ("\\x00", "\\\\x00"),  # a literal backslash stays distinguishable from an escaped NUL
    ],
)
def test_escape_table(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def reference_links(monitor: Monitor) -> str:
    """The link families as the first renderer wrote them, one f-string per line: the page a kept or
    joined rendering must reproduce byte for byte."""
    from sitivmon.exposition import _LINK_COUNTERS, labels
    from sitivmon.readings import LinkState

    out: list[str] = []
    keyed = [
        (rt, labels(commune=rt.link.commune, link=rt.link.id, target=rt.link.target)) for rt in monitor.links.values()
    ]

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")

    for series, (name, help_text) in _LINK_COUNTERS.items():
        family(name, "counter", help_text)
        out.extend(f"{name}{{{lab}}} {rt.totals[series]}\n" for rt, lab in keyed)
    family("sitivmon_link_up", "gauge", "1 when the link's operational status is up (absent when unknown).")
    out.extend(
        f"sitivmon_link_up{{{lab}}} {1 if rt.state is LinkState.UP else 0}\n"
        for rt, lab in keyed
        if rt.state is not LinkState.UNKNOWN
    )
    family("sitivmon_link_admin_up", "gauge", "1 when the link's administrative status is up.")
    out.extend(f"sitivmon_link_admin_up{{{lab}}} {int(rt.admin_up)}\n" for rt, lab in keyed if rt.admin_up is not None)
    family("sitivmon_link_speed_bytes", "gauge", "Link capacity in bytes per second (configured, else port speed).")
    out.extend(
        f"sitivmon_link_speed_bytes{{{lab}}} {rt.capacity_bytes_per_s}\n"
        for rt, lab in keyed
        if rt.capacity_bytes_per_s
    )
    family("sitivmon_link_state_changes_total", "counter", "Operational state changes seen by polls and traps.")
    out.extend(f"sitivmon_link_state_changes_total{{{lab}}} {rt.state_changes}\n" for rt, lab in keyed)
    family("sitivmon_link_last_change_timestamp_seconds", "gauge", "When the link's state last changed (unix time).")
    out.extend(
        f"sitivmon_link_last_change_timestamp_seconds{{{lab}}} {rt.last_change:.3f}\n"
        for rt, lab in keyed
        if rt.last_change is not None
    )
    family("sitivmon_link_maintenance", "gauge", "1 while the configuration marks the link under maintenance.")
    out.extend(f"sitivmon_link_maintenance{{{lab}}} {int(rt.link.maintenance)}\n" for rt, lab in keyed)
    family(
        "sitivmon_counter_discontinuities_total",
        "counter",
        "Polls whose counters were reset, or clamped for exceeding capacity, on this link.",
    )
    out.extend(f"sitivmon_counter_discontinuities_total{{{lab}}} {rt.discontinuities}\n" for rt, lab in keyed)
    family("sitivmon_link_info", "gauge", "Link identity: the interface it resolved to on its target.")
    out.extend(
        f'sitivmon_link_info{{{lab},interface="{escape(rt.interface)}",alias="{escape(rt.alias)}"}} 1\n'
        for rt, lab in keyed
    )
    return "".join(out)  # fmt: skip


ODD = ['q"uote', "back\\slash", "new\nline", "cr\rtab\t", "nul\x00del\x7f", "c1\x85", "ls\u2028", "é✓😀", "", '\\"\\n']


def test_pages_from_a_long_lived_cache_stay_byte_identical_through_changes(monitor: Monitor) -> None:
    """One cache across scrapes (as the daemon keeps it), the model changed between them in every way
    a rendered value can change: each page equals the line-by-line rendering, so no kept family is
    served stale (-0.0 after 0.0 included: equal as floats, written differently)."""
    from sitivmon.exposition import render_links
    from sitivmon.readings import LinkState, StateSource

    cache = LabelCache()
    rts = list(monitor.links.values())
    core = monitor.config.target_by_name()["core-givors"]
    seen: set[str] = set()

    def check() -> None:
        out: list[str] = []
        render_links(monitor, cache, out)
        page = "".join(out)
        assert page.startswith(reference_links(monitor))
        seen.add(page)

    def set_alias(rt: Any, value: str) -> None:
        rt.alias = value

    def set_ids(rt: Any, value: str) -> None:
        rt.link = rt.link.model_copy(update={"id": "l" + value, "commune": "c" + value, "target": "t" + value})

    steps: list[Any] = [lambda: None, lambda: None]
    steps += [lambda s=s: set_alias(rts[0], s) for s in ODD]
    steps += [lambda s=s: setattr(rts[1], "interface", s) for s in ODD]
    steps += [lambda s=s: set_ids(rts[2], s) for s in ODD]
    steps += [
        lambda: rts[0].set_state(LinkState.DOWN, T0 + 100, StateSource.TRAP, "core-givors"),
        lambda: rts[0].set_state(LinkState.UP, T0 + 101, StateSource.TRAP, "core-givors"),
        lambda: setattr(rts[0], "state", LinkState.UNKNOWN),
        lambda: setattr(rts[1], "last_change", 0.0),
        lambda: setattr(rts[1], "last_change", -0.0),
        lambda: setattr(rts[1], "last_change", None),
        lambda: setattr(rts[1], "admin_up", None),
        lambda: setattr(rts[1], "admin_up", False),
        lambda: setattr(rts[3], "speed_bytes_per_s", 7),
        lambda: setattr(rts[3], "link", rts[3].link.model_copy(update={"capacity": 99, "maintenance": True})),
        lambda: setattr(rts[3], "discontinuities", rts[3].discontinuities + 1),
        lambda: setattr(rts[3], "state_changes", rts[3].state_changes + 1),
        lambda: rts[3].totals.__setitem__("receive_errors", 5),
        lambda: rts[3].totals.__setitem__("transmit_discards", 6),
        lambda: monitor.links.pop(next(iter(monitor.links))),
        lambda: monitor.on_poll(core, poll(T0 + 120, 1_700_000, 3_000_000, 52_000, 73_000, uptime=372_000)),
    ]
    for step in steps:
        step()
        check()
    assert len(seen) == len(steps) - 1  # every change but the first repeat changed the page
