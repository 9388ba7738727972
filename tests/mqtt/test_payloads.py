"""Topics and payloads: table tests of the documented wire format."""

from __future__ import annotations

import json

import pytest

from sitivmon.mqtt import payloads
from sitivmon.readings import LinkState, LinkStateEvent, StateSource

T0 = 1_740_816_902.25  # 2025-03-01T08:15:02.250Z


def ev(link: str = "ambert-fibre", state: LinkState = LinkState.DOWN, **kw: object) -> LinkStateEvent:
    base: dict[str, object] = dict(link=link, commune="ambert", target="rtr-ambert", interface="ge-0/0/1",
                                   state=state, previous=LinkState.UP, since=T0, source=StateSource.TRAP,
                                   admin_up=True)  # fmt: skip
    base.update(kw)
    return LinkStateEvent(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fn", "args", "topic"),
    [
        (payloads.state_topic, ("sitivmon", "ambert", "ambert-fibre"), "sitivmon/ambert/links/ambert-fibre/state"),
        (payloads.state_topic, ("x/y", "a+b", "l#1/2"), "x/y/a_b/links/l_1_2/state"),
        (payloads.events_topic, ("sitivmon", "marsac"), "sitivmon/marsac/events"),
        (payloads.summary_topic, ("sitivmon", ""), "sitivmon/_/summary"),
    ],
)
def test_topics(fn: object, args: tuple[str, ...], topic: str) -> None:
    assert fn(*args) == topic  # type: ignore[operator]


def test_state_payload() -> None:
    assert json.loads(payloads.state_payload(ev())) == {
        "v": 1, "commune": "ambert", "link": "ambert-fibre", "state": "down", "since": "2025-03-01T08:15:02.250Z",
        "since_ts": T0, "source": "trap", "target": "rtr-ambert", "interface": "ge-0/0/1", "admin_up": True,
    }  # fmt: skip


def test_event_payload() -> None:
    body = json.loads(payloads.event_payload(ev(state=LinkState.UP, previous=LinkState.DOWN,
                                                 source=StateSource.POLL, admin_up=None)))  # fmt: skip
    assert body == {
        "v": 1, "type": "link_state", "commune": "ambert", "link": "ambert-fibre", "state": "up",
        "previous": "down", "at": "2025-03-01T08:15:02.250Z", "at_ts": T0, "source": "poll",
        "target": "rtr-ambert", "interface": "ge-0/0/1", "admin_up": None,
    }  # fmt: skip


def test_summary_payload_counts_and_extra_cannot_override() -> None:
    states = [ev("a", LinkState.UP), ev("c", LinkState.DOWN), ev("b", LinkState.UNKNOWN)]
    body = json.loads(payloads.summary_payload("ambert", states, T0, {"links": "bogus", "traffic_in_bytes": 5}))
    assert body == {
        "v": 1, "commune": "ambert", "at": "2025-03-01T08:15:02.250Z", "at_ts": T0,
        "links": {"total": 3, "up": 1, "down": 1, "unknown": 1}, "links_not_up": ["b", "c"],
        "traffic_in_bytes": 5,
    }  # fmt: skip


def test_payloads_are_compact_utf8() -> None:
    raw = payloads.state_payload(ev(interface="Gi0/1 — fibre"))
    assert "—".encode() in raw and b", " not in raw


@pytest.mark.parametrize(
    ("attempt", "expected_cap"), [(0, 0.5), (1, 1.0), (3, 4.0), (10, 60.0), (500, 60.0)]
)
def test_backoff_full_jitter_bounds(attempt: int, expected_cap: float) -> None:
    from sitivmon.mqtt.publisher import backoff_delay

    assert backoff_delay(attempt, 0.5, 60.0, lambda lo, hi: hi) == expected_cap
    assert backoff_delay(attempt, 0.5, 60.0, lambda lo, hi: lo) == 0.5
