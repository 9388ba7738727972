"""SNMPv1 GET with absent objects (`sitivmon.snmp.v1get`): the isolation of failing varbinds, table by
table, against an agent that behaves as RFC 1157 says (one absent object fails the whole request)."""

from __future__ import annotations

import asyncio

import pytest

from sitivmon.snmp.client import Value
from sitivmon.snmp.v1get import get_v1


class V1Agent:
    """RFC 1157 §4.1.2 as a function: all the values, or none when one object is absent."""

    def __init__(self, objects: dict[str, Value]) -> None:
        self.objects = objects
        self.requests: list[list[str]] = []

    async def get(self, oids: list[str]) -> dict[str, Value]:
        self.requests.append(list(oids))
        if any(o not in self.objects for o in oids):
            return {}  # noSuchName: gufo returns the error response's (null) values, i.e. nothing
        return {o: self.objects[o] for o in oids}


AGENT = {f"1.3.6.1.2.1.1.{i}.0": i * 10 for i in range(1, 9)}
UPTIME = "1.3.6.1.2.1.1.3.0"


@pytest.mark.parametrize(
    ("asked", "absent", "known", "max_requests"),
    [
        ([UPTIME], [], [], 1),
        (list(AGENT), [], [], 1),
        ([UPTIME, "1.3.6.1.2.1.1.99.0", "1.3.6.1.2.1.1.5.0"], ["1.3.6.1.2.1.1.99.0"], [], 5),
        (["1.3.6.1.2.1.1.99.0"], ["1.3.6.1.2.1.1.99.0"], [], 1),
        ([*AGENT, "1.9.1.0", "1.9.2.0"], ["1.9.1.0", "1.9.2.0"], [], 9),
        (["1.9.1.0", "1.9.2.0", "1.9.3.0"], ["1.9.1.0", "1.9.2.0", "1.9.3.0"], [], 5),
        # last poll's answer: the present ones succeed at once, the absent one costs one request
        ([*AGENT, "1.9.1.0"], ["1.9.1.0"], ["1.9.1.0"], 2),
        # an object that came back is read again
        ([UPTIME, "1.3.6.1.2.1.1.5.0"], [], ["1.3.6.1.2.1.1.5.0"], 2),
    ],
    ids=["one", "all-present", "one-absent", "only-absent", "two-absent", "all-absent", "known", "came-back"],
)
def test_absent_objects_are_isolated_and_the_others_kept(
    asked: list[str], absent: list[str], known: list[str], max_requests: int
) -> None:
    agent = V1Agent(AGENT)
    values, missing, requests = asyncio.run(get_v1(agent.get, asked, known))
    assert values == {o: AGENT[o] for o in asked if o not in absent}
    assert missing == set(absent)
    assert requests == len(agent.requests) <= max_requests
    for request in agent.requests:
        assert len(request) == len(set(request)) and set(request) <= set(asked)
