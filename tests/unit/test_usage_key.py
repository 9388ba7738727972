"""`UsageKey` caches its hash (issue 15): same hash and equality as the generated ones, and a key
rebuilt in another process (pickle) hashes as that process's keys do."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys

from sitivmon.readings import Quantity, UsageKey


def test_hash_and_equality_are_the_fields() -> None:
    k = UsageKey("c1", "link-1", Quantity.TRAFFIC_IN)
    assert hash(k) == hash(("c1", "link-1", Quantity.TRAFFIC_IN))
    assert k == UsageKey("c1", "link-1", Quantity.TRAFFIC_IN)
    assert k != UsageKey("c1", "link-1", Quantity.TRAFFIC_OUT)
    assert {k: 1}[UsageKey("c1", "link-1", Quantity.TRAFFIC_IN)] == 1
    assert repr(k) == "UsageKey(commune='c1', subject='link-1', quantity=<Quantity.TRAFFIC_IN: 'traffic_in'>)"
    moved = dataclasses.replace(k, subject="link-2")
    assert hash(moved) == hash(("c1", "link-2", Quantity.TRAFFIC_IN))


def test_pickled_key_hashes_as_the_receiving_process_does() -> None:
    blob = pickle.dumps(UsageKey("c1", "link-1", Quantity.LINK_UP))
    code = (
        "import pickle, sys; from sitivmon.readings import UsageKey, Quantity; "
        "k = pickle.loads(sys.stdin.buffer.read()); "
        "assert k == UsageKey('c1', 'link-1', Quantity.LINK_UP); "
        "assert hash(k) == hash(('c1', 'link-1', Quantity.LINK_UP)), 'hash carried over from the sender'; "
        "assert {UsageKey('c1', 'link-1', Quantity.LINK_UP): 1}[k] == 1"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another string hash than this process's
    subprocess.run([sys.executable, "-c", code], input=blob, env=env, check=True)
