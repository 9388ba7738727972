"""Topics and JSON payloads published on MQTT: pure functions, so the wire format is tested and
documented in one place (docs/mqtt.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sitivmon.readings import LinkState, LinkStateEvent

SCHEMA_VERSION = 1
_FORBIDDEN = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def topic_segment(value: str) -> str:
    """One topic level: MQTT wildcards and separators would change the topic's meaning, so they are
    replaced by '_' (ids in the config are normally plain already)."""
    return value.translate(_FORBIDDEN) or "_"


def state_topic(prefix: str, commune: str, link: str) -> str:
    return f"{prefix}/{topic_segment(commune)}/links/{topic_segment(link)}/state"


def events_topic(prefix: str, commune: str) -> str:
    return f"{prefix}/{topic_segment(commune)}/events"


def summary_topic(prefix: str, commune: str) -> str:
    return f"{prefix}/{topic_segment(commune)}/summary"


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2025-03-01T08:15:02.250Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def state_payload(event: LinkStateEvent) -> bytes:
    """Retained current state of one link."""
    return _dump(
        {
            "v": SCHEMA_VERSION,
            "commune": event.commune,
            "link": event.link,
            "state": event.state.value,
            "since": iso(event.since),
            "since_ts": event.since,
            "source": event.source.value,
            "target": event.target,
            "interface": event.interface,
            "admin_up": event.admin_up,
        }
    )


def event_payload(event: LinkStateEvent) -> bytes:
    """One state change, for the commune's event stream."""
    return _dump(
        {
            "v": SCHEMA_VERSION,
            "type": "link_state",
            "commune": event.commune,
            "link": event.link,
            "state": event.state.value,
            "previous": event.previous.value,
            "at": iso(event.since),
            "at_ts": event.since,
            "source": event.source.value,
            "target": event.target,
            "interface": event.interface,
            "admin_up": event.admin_up,
        }
    )


def summary_payload(
    commune: str, states: Iterable[LinkStateEvent], at: float, extra: Mapping[str, Any] | None = None
) -> bytes:
    """Per-commune summary: link counts by state and the links not up. `extra` (e.g. usage figures
    provided by the daemon) is merged under its own keys and cannot override the counts."""
    counts = {s.value: 0 for s in LinkState}
    down: list[str] = []
    total = 0
    for e in states:
        total += 1
        counts[e.state.value] += 1
        if e.state is not LinkState.UP:
            down.append(e.link)
    body: dict[str, Any] = dict(extra or {})
    body.update(
        {
            "v": SCHEMA_VERSION,
            "commune": commune,
            "at": iso(at),
            "at_ts": at,
            "links": {"total": total, **counts},
            "links_not_up": sorted(down),
        }
    )
    return _dump(body)
