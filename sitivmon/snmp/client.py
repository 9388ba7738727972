"""The small interface the polling engine uses, and the errors it can raise.

Keeping the engine on this interface (as snmp_exporter keeps its scraper behind one) lets the walk
guards and the engine be tested against scripted agents, and leaves the library swappable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sitivmon.config.model import Credential, PollSettings, Target

Value = None | str | bytes | int | float


class PollErrorReason(StrEnum):
    """The fixed set of reasons a poll fails, used as the `reason` label of sitivmon_poll_errors_total."""

    TIMEOUT = "timeout"
    AUTH = "auth"
    DECODE = "decode"
    NONINCREASING = "nonincreasing"
    VARBIND_CAP = "varbind_cap"
    DEADLINE = "deadline"
    UNREACHABLE = "unreachable"
    NO_SUCH_OBJECT = "nosuchobject"
    RESOLVE = "resolve"
    OTHER = "other"


class PollError(Exception):
    """A poll failed for a reason from the fixed set; `detail` is safe to log (never holds secrets)."""

    def __init__(self, reason: PollErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def is_native_panic(exc: BaseException) -> bool:
    """A Rust panic surfaced by pyo3 (`pyo3_runtime.PanicException`, a BaseException, not an Exception).

    gufo-snmp's BER decoder panics on some malformed responses (a long-form length running past the
    datagram's end): one such datagram from one agent would otherwise end the scheduler's task group,
    and with it the daemon, without a word in the log. The adapter classifies it as a decode failure
    where requests are made; the engine keeps a safety net for any other native panic.
    """
    return type(exc).__module__ == "pyo3_runtime"


class WalkStop(StrEnum):
    """Why a walk ended early on a buggy agent; the rows read until then are kept."""

    NONINCREASING = "nonincreasing"
    VARBIND_CAP = "varbind_cap"


@dataclass(slots=True)
class WalkResult:
    """Rows of one column keyed by the index suffix (`"3"`, `"1.4.192.0.2.1"`)."""

    rows: dict[str, Value] = field(default_factory=dict)
    stopped: WalkStop | None = None
    requests: int = 0


class SnmpClient(Protocol):
    """What the engine needs from an SNMP library: many GETs at once and a guarded column walk."""

    async def get_many(self, oids: Sequence[str]) -> dict[str, Value]: ...

    async def walk(self, column_oid: str, max_varbinds: int) -> WalkResult: ...

    async def close(self) -> None: ...


ClientFactory = Callable[[Target, Credential, PollSettings], SnmpClient]
"""Makes a target's client; the composition root passes the gufo adapter's (`sitivmon.snmp.gufo`),
tests a scripted agent's."""
