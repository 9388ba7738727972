"""Rendezvous-hash sharding: one owner per target, stable across processes, and few moves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sitivmon.app.cli import build_parser
from sitivmon.app.config import ConfigError, parse_config
from sitivmon.app.daemon import per_daemon_client_id
from sitivmon.config.model import Target
from sitivmon.engine.selection import ShardSelector, shard_of
from sitivmon.mqtt.config import MqttConfig
from sitivmon.mqtt.publisher import MqttPublisher
from sitivmon.traps.config import TrapAuth, TrapConfig
from sitivmon.traps.events import TrapEvent
from sitivmon.traps.receiver import TrapReceiver

NAMES = [f"sw-{i:05d}.commune-{i % 97}" for i in range(10_000)]


def _target(name: str) -> Target:
    return Target(name=name, address="192.0.2.1", credentials="c")


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_each_target_has_exactly_one_owner(count: int) -> None:
    owners: dict[str, list[int]] = {n: [] for n in NAMES}
    for index in range(1, count + 1):
        sel = ShardSelector(index, count)
        for n in NAMES:
            if sel.owns(n):
                owners[n].append(index)
    assert all(len(o) == 1 for o in owners.values())
    sizes = [sum(1 for o in owners.values() if o == [i]) for i in range(1, count + 1)]
    # balanced within 10 % of the mean on 10,000 names
    assert max(sizes) - min(sizes) < 0.1 * len(NAMES) / count, sizes


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_n_to_n_plus_1_moves_about_one_in_n_plus_1(n: int) -> None:
    moved = [name for name in NAMES if shard_of(name, n) != shard_of(name, n + 1)]
    fraction = len(moved) / len(NAMES)
    assert abs(fraction - 1 / (n + 1)) < 0.02, fraction
    # and every moved target goes to the new shard: no reshuffle among the old ones
    assert all(shard_of(name, n + 1) == n + 1 for name in moved)


def test_select_keeps_config_order_and_partitions() -> None:
    targets = [_target(f"sw-{i}") for i in range(300)]
    parts = [ShardSelector(i, 3).select(targets) for i in (1, 2, 3)]
    assert sorted(t.name for p in parts for t in p) == sorted(t.name for t in targets)
    for p in parts:
        assert [t.name for t in p] == [t.name for t in targets if t in p]


def test_stable_across_processes() -> None:
    """`hash()` is salted per process; the shard of a name must not be."""
    code = (
        "from sitivmon.engine.selection import shard_of;print(','.join(str(shard_of(f'sw-{i}', 5)) for i in range(50)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    ).stdout.strip()
    assert out == ",".join(str(shard_of(f"sw-{i}", 5)) for i in range(50))


@pytest.mark.parametrize(("index", "count"), [(0, 3), (4, 3), (1, 0), (-1, 2)])
def test_index_outside_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="between 1 and the count"):
        ShardSelector(index, count)


def _rejected(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("sitivmon_traps_rejected_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("other_shard", [True, False])
async def test_traps_from_another_shards_target_are_counted_and_dropped(other_shard: bool) -> None:
    """A configured target owned by another shard: its traps are `other_shard`, before any decoding
    and whatever `allowed_sources` admits (without the filter the same datagram is decoded)."""
    registry = CollectorRegistry()
    events: list[TrapEvent] = []
    config = TrapConfig(host="127.0.0.1", port=0, allowed_sources=["127.0.0.0/8"])
    receiver = TrapReceiver(
        config,
        TrapAuth(),
        events.append,
        registry=registry,
        target_hosts=["192.0.2.1"],
        other_shard_hosts=["127.0.0.1"] if other_shard else [],
    )
    async with receiver:
        receiver.handle_datagram(b"\x30\x03\x02\x01\x01", ("127.0.0.1", 40000), time.monotonic())
    assert events == []
    assert _rejected(registry, "other_shard") == (1 if other_shard else 0)
    assert _rejected(registry, "decode_error") == (0 if other_shard else 1)


_DOC = """
state_dir: state
communes: []
credentials: {}
targets: []
links: []
"""


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("shard: {index: 3, count: 2}", "above the count"),
        ("shard: {index: 0, count: 2}", "shard.index"),
        ("shard: {index: 1, count: 2}", "need a shared usage store"),
    ],
)
def test_shard_section_is_validated(section: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(_DOC + section)
    assert error in str(exc.value) + " ".join(map(str, exc.value.issues))


def test_shard_section_on_postgresql_gives_the_selector() -> None:
    doc = _DOC + "usage: {store: postgresql, dsn: 'postgresql://u@localhost/db'}\nshard: {index: 2, count: 3}\n"
    shard = parse_config(doc).shard
    assert shard is not None and repr(shard.selector()) == "ShardSelector(2, 3)"
    assert parse_config(_DOC).shard is None  # no section: one daemon owns every target


@pytest.mark.parametrize(
    ("text", "ok"), [("2/3", True), ("1/1", True), ("3/2", False), ("0/2", False), ("2", False), ("a/b", False)]
)
def test_shard_on_the_command_line(text: str, ok: bool) -> None:
    parser = build_parser()
    if ok:
        shard = parser.parse_args(["run", "--config", "x.yaml", "--shard", text]).shard
        assert f"{shard.index}/{shard.count}" == text
    else:
        with pytest.raises(SystemExit):
            parser.parse_args(["run", "--config", "x.yaml", "--shard", text])


@pytest.mark.parametrize(
    ("shard", "topic"), [(None, "sitivmon/givors/summary"), ("2", "sitivmon/givors/summary/shard/2")]
)
def test_a_shards_commune_summary_goes_to_its_own_topic(shard: str | None, topic: str) -> None:
    """Each shard sees only its links of a commune: its summary must not overwrite another shard's."""
    publisher = MqttPublisher(MqttConfig(topic_prefix="sitivmon"), registry=CollectorRegistry(), shard=shard)
    publisher.publish_summary("givors")
    assert [(m.kind, m.topic, m.retain) for m in publisher._queue] == [("summary", topic, True)]


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("replica: a", "replicas write to one shared usage store"),  # SQLite: the pair would be two writers of one file
        ("replica: A", "replica"),
        ("replica: ''", "replica"),
        ("replica: a-1", "replica"),
        ("replica: abcdefghi", "replica"),  # 9 characters: at most 8
    ],
)
def test_replica_is_validated(section: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(_DOC + section)
    assert error in str(exc.value) + " ".join(map(str, exc.value.issues))


def test_replica_on_postgresql() -> None:
    doc = _DOC + "usage: {store: postgresql, dsn: 'postgresql://u@localhost/db'}\nreplica: b\n"
    assert parse_config(doc).replica == "b"
    assert parse_config(_DOC).replica is None


@pytest.mark.parametrize(("text", "ok"), [("a", True), ("b2", True), ("B", False), ("", False), ("a/b", False)])
def test_replica_on_the_command_line(text: str, ok: bool) -> None:
    parser = build_parser()
    if ok:
        assert parser.parse_args(["run", "--config", "x.yaml", "--replica", text]).replica == text
    else:
        with pytest.raises(SystemExit):
            parser.parse_args(["run", "--config", "x.yaml", "--replica", text])


def test_run_refuses_a_replica_on_sqlite(tmp_path: Path) -> None:
    """The command line's replica is checked against the store like the config's."""
    config = tmp_path / "sitivmon.yaml"
    config.write_text(_DOC)
    proc = subprocess.run(
        [sys.executable, "-m", "sitivmon", "run", "--config", str(config), "--replica", "a"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "replicas write to one shared usage store" in proc.stderr


@pytest.mark.parametrize(
    ("shard", "replica", "suffix"), [(None, "", ""), ("2", "", "-2"), (None, "b", "-b"), ("3", "a", "-3a")]
)
def test_default_mqtt_client_id_is_one_per_daemon(shard: str | None, replica: str, suffix: str) -> None:
    default = MqttConfig()
    assert per_daemon_client_id(default, shard, replica).client_id == default.client_id + suffix
    long = MqttConfig.model_validate({}).model_copy(update={"client_id": "x" * 64})
    assert len(per_daemon_client_id(long, shard, replica).client_id) == 64
    chosen = MqttConfig(client_id="ops-broker-id")  # set by the operator: kept as it is
    assert per_daemon_client_id(chosen, shard, replica).client_id == "ops-broker-id"
