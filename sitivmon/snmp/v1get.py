"""SNMPv1 GET of several objects when some may be absent: keep what exists, name what does not.

In SNMPv1 one absent object fails the whole GET (error-status noSuchName, RFC 1157 §4.1.2): the
response carries no value at all, so sysUpTime (which reboot detection needs) vanished along with an
absent scalar. v1 managers answer by asking again without the failing varbind. gufo-snmp 0.13 does
not surface error-status or error-index (its v1 `get_many` returns the response's non-null values:
nothing, for an error), so the failing varbinds are isolated by splitting the request instead. The
OIDs found missing are remembered and asked apart next time, so an agent that always lacks one
object costs two requests per poll, as with the error-index method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence

from sitivmon.snmp.client import Value

Fetch = Callable[[list[str]], Awaitable[dict[str, Value]]]


async def get_v1(
    fetch: Fetch, oids: Sequence[str], known_missing: Collection[str] = ()
) -> tuple[dict[str, Value], set[str], int]:
    """Values of the `oids` the agent has, the set it lacks, and the number of requests made.

    A v1 response either answers every varbind or none (an error), so a response that lacks a
    requested OID means the group holds at least one absent object: the group is split in two and
    each half asked again, down to single OIDs. `known_missing` (last poll's answer) are asked as a
    group of their own, so that the others succeed at the first request.
    """
    values: dict[str, Value] = {}
    missing: set[str] = set()
    requests = 0
    wanted = list(dict.fromkeys(oids))
    groups = [[o for o in wanted if o not in known_missing], [o for o in wanted if o in known_missing]]
    pending = [g for g in groups if g]
    while pending:
        group = pending.pop()
        answer = await fetch(group)
        requests += 1
        if all(o in answer for o in group):
            values.update((o, answer[o]) for o in group)
        elif len(group) == 1:
            missing.add(group[0])
        else:
            half = len(group) // 2
            pending += [group[half:], group[:half]]
    return values, missing, requests
