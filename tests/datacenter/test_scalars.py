"""User-profile scalars, pure: which scalars become samples, under which name, labels and type.

A user profile's scalars were fetched every poll and then dropped, so a profile of scalars only
passed `sitivmon check` and showed nothing. They are now exposed by the rule of the profile's unnamed
numeric columns; the same rule is checked here on the rendered lines, beside a column of that profile.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sitivmon.config.profiles import profile_table
from sitivmon.datacenter.handler import DatacenterHandler, column_family
from sitivmon.datacenter.rows import ScalarSample, extract, table_scalars
from sitivmon.engine.poll import TargetPoll
from sitivmon.profiles.model import Kind
from sitivmon.profiles.user import compile_profile, parse_profiles
from sitivmon.snmp.client import PollError, PollErrorReason, Value
from tests.datacenter.conftest import make_config

SITE = {
    "description": "a site controller's own figures",
    "scalars": [
        {"name": "inletVolts", "oid": "1.3.6.1.4.1.99.9.1.0", "type": "gauge", "scale": "0.1"},
        {"name": "bootCount", "oid": "1.3.6.1.4.1.99.9.2.0", "type": "counter"},
        {"name": "firmware", "oid": "1.3.6.1.4.1.99.9.3.0", "type": "info"},
        {"name": "mode", "oid": "1.3.6.1.4.1.99.9.4.0", "type": "enum"},
        {"name": "fanRpm", "oid": "1.3.6.1.4.1.99.9.5.0", "type": "gauge"},
    ],
}
PROFILE = compile_profile("site", parse_profiles({"site": SITE})["site"])


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        # every numeric scalar, scaled exactly; info and enum scalars give no number (as such columns)
        (
            {"site:inletVolts": 2301, "site:bootCount": 42, "site:firmware": b"1.2", "site:mode": 2,
             "site:fanRpm": 5400},
            [("inletVolts", Kind.GAUGE, Decimal("230.1")), ("bootCount", Kind.COUNTER, Decimal(42)),
             ("fanRpm", Kind.GAUGE, Decimal(5400))],
        ),
        # absent on the device (the poll reports missing_object): no sample, the others still are
        ({"site:bootCount": 7}, [("bootCount", Kind.COUNTER, Decimal(7))]),
        ({}, []),
        # a number served as text is read as a column's would be; text that is no number is left out
        ({"site:inletVolts": b"2299", "site:fanRpm": b"n/a"}, [("inletVolts", Kind.GAUGE, Decimal("229.9"))]),
        # a boolean is not a device number
        ({"site:fanRpm": True}, []),
        # another profile's scalar of the same short name is not this one's
        ({"other:fanRpm": 1, "fanRpm": 2}, []),
    ],
)
def test_table_scalars(read: dict[str, Value], expected: list[tuple[str, Kind, Decimal]]) -> None:
    got = table_scalars(PROFILE, read)
    assert [(s.name, s.kind, s.value) for s in got] == expected
    assert all(s.profile == "site" for s in got)


def test_extract_keeps_scalars_of_a_scalars_only_profile() -> None:
    rows, figures = extract([PROFILE], {}, {"site:bootCount": 3})
    assert rows == []
    assert figures.scalars == [ScalarSample("site", "bootCount", Kind.COUNTER, Decimal(3))]


def test_builtin_scalars_are_not_exposed_twice() -> None:
    """Built-in families read their own scalars into host figures; only user (table) profiles'
    scalars become per-profile samples."""
    table = profile_table(make_config(""))
    _, figures = extract([table["host_resources"]], {}, {"hrSystemUptime": 12_300, "hrSystemProcesses": 90})
    assert figures.scalars == [] and figures.uptime_seconds == 123 and figures.processes == 90


@pytest.mark.parametrize(
    ("profile", "name", "kind", "family"),
    [
        ("site", "inletVolts", Kind.GAUGE, "sitivmon_site_inlet_volts"),
        ("site", "bootCount", Kind.COUNTER, "sitivmon_site_boot_count_total"),
        ("ups_2", "battery-temp", Kind.GAUGE, "sitivmon_ups_2_battery_temp"),
    ],
)
def test_column_family(profile: str, name: str, kind: Kind, family: str) -> None:
    assert column_family(profile, name, kind) == family


def _samples(text: str) -> dict[str, tuple[str, dict[str, str], float]]:
    """family -> (type, labels, value) of its one sample."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[fam.name] = (fam.type, s.labels, s.value)
    return out


def test_scalars_are_exposed_like_the_profiles_columns() -> None:
    """A profile with a one-row table and scalars: the scalar samples carry target and commune (the
    target's, as a row's unattributed extras do not: a scalar has no row to attribute), their name by
    the columns' rule, counters typed and suffixed as counter columns are."""
    config = make_config(
        "profiles:\n"
        "  site:\n"
        "    resource: device\n"
        "    columns:\n"
        "      - {name: doorName, oid: 1.3.6.1.4.1.99.8.1.2, type: info, measure: name}\n"
        "      - {name: doorOpenings, oid: 1.3.6.1.4.1.99.8.1.3, type: counter}\n"
        "    scalars:\n"
        "      - {name: inletVolts, oid: 1.3.6.1.4.1.99.9.1.0, type: gauge, scale: 0.1}\n"
        "      - {name: bootCount, oid: 1.3.6.1.4.1.99.9.2.0, type: counter}\n"
        "targets: [{name: ctl-1, address: 127.0.0.1, credentials: lab, commune: givors, profiles: [site]}]\n"
    )
    handler = DatacenterHandler(config, config.attribution)
    poll = TargetPoll(
        "ctl-1", 1_000.0, 0.1,
        tables={"site:doorName": {"1": b"front"}, "site:doorOpenings": {"1": 17}},
        scalars={"site:inletVolts": 2301, "site:bootCount": 42},
    )
    handler.on_poll(config.targets[0], poll)
    out: list[str] = []
    handler.render(out)
    samples = _samples("".join(out))
    # prometheus_client names a counter family without its `_total`
    assert samples["sitivmon_site_door_openings"] == (
        "counter", {"target": "ctl-1", "device": "front", "commune": "givors"}, 17.0
    )
    assert samples["sitivmon_site_boot_count"] == ("counter", {"target": "ctl-1", "commune": "givors"}, 42.0)
    assert samples["sitivmon_site_inlet_volts"] == ("gauge", {"target": "ctl-1", "commune": "givors"}, 230.1)
    text = "".join(out)
    assert 'sitivmon_site_boot_count_total{target="ctl-1",commune="givors"} 42\n' in text
    assert 'sitivmon_site_inlet_volts{target="ctl-1",commune="givors"} 230.1\n' in text


def test_failed_poll_keeps_the_last_scalars() -> None:
    """As a table's rows: a failed poll does not blank the target's last samples."""
    config = make_config(
        "profiles:\n  site:\n    scalars: [{name: bootCount, oid: 1.3.6.1.4.1.99.9.2.0, type: counter}]\n"
        "targets: [{name: ctl-1, address: 127.0.0.1, credentials: lab, profiles: [site]}]\n"
    )
    handler = DatacenterHandler(config, config.attribution)
    handler.on_poll(config.targets[0], TargetPoll("ctl-1", 1.0, 0.1, scalars={"site:bootCount": 5}))
    handler.on_poll(
        config.targets[0], TargetPoll("ctl-1", 2.0, 0.1, error=PollError(PollErrorReason.TIMEOUT, "no response"))
    )
    out: list[str] = []
    handler.render(out)
    assert 'sitivmon_site_boot_count_total{target="ctl-1",commune="shared"} 5\n' in "".join(out)


def test_help_of_columns_and_scalars() -> None:
    """The profile's `help:` is the family's HELP (on one line, backslashes escaped); without one, a
    plain default."""
    config = make_config(
        "profiles:\n"
        "  site:\n"
        "    columns:\n"
        "      - {name: doorName, oid: 1.3.6.1.4.1.99.8.1.2, type: info, measure: name}\n"
        "      - {name: doorOpenings, oid: 1.3.6.1.4.1.99.8.1.3, type: counter, help: Door openings since boot.}\n"
        "    scalars:\n"
        "      - {name: inletVolts, oid: 1.3.6.1.4.1.99.9.1.0, type: gauge, help: \"Inlet voltage\\non phase\\\\1\"}\n"
        "      - {name: bootCount, oid: 1.3.6.1.4.1.99.9.2.0, type: counter}\n"
        "targets: [{name: ctl-1, address: 127.0.0.1, credentials: lab, profiles: [site]}]\n"
    )
    handler = DatacenterHandler(config, config.attribution)
    poll = TargetPoll(
        "ctl-1", 1.0, 0.1, tables={"site:doorName": {"1": b"front"}, "site:doorOpenings": {"1": 3}},
        scalars={"site:inletVolts": 230, "site:bootCount": 1},
    )
    handler.on_poll(config.targets[0], poll)
    out: list[str] = []
    handler.render(out)
    text = "".join(out)
    assert "# HELP sitivmon_site_door_openings_total Door openings since boot.\n" in text
    assert "# HELP sitivmon_site_inlet_volts Inlet voltage on phase\\\\1\n" in text
    assert "# HELP sitivmon_site_boot_count_total Value of a user profile.\n" in text
    helps = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    assert helps["sitivmon_site_inlet_volts"] == "Inlet voltage on phase\\1"
