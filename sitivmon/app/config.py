"""The full configuration: the core sections plus each feature's, and every cross-check.

Each feature owns its section's type and its checks against the core sections; this module only
lists them. Adding a feature's section is a field here and its checks in `cross_check`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from sitivmon.allocation.checks import allocation_problems
from sitivmon.allocation.config import ApiConfig
from sitivmon.config.crossref import Problem, core_problems
from sitivmon.config.loader import ConfigError, parse_document, read_document
from sitivmon.config.model import CoreConfig, Strict
from sitivmon.datacenter.config import AttributionSettings, attribution_problems
from sitivmon.engine.selection import ShardSelector
from sitivmon.leader.config import LeaderSettings, leader_problems
from sitivmon.mqtt.config import MqttConfig
from sitivmon.traps.config import TrapConfig, trap_problems
from sitivmon.usage.checks import interval_problems
from sitivmon.usage.config import UsageSettings

__all__ = [
    "ConfigError",
    "ShardConfig",
    "SitivmonConfig",
    "cross_check",
    "load_config",
    "parse_config",
    "replica_problems",
]


class ShardConfig(Strict):
    """Static sharding (docs/sharding.md): this daemon is shard `index` of `count` and owns the
    targets that rendezvous hashing of their names gives it. `sitivmon run --shard I/N` overrides it."""

    index: int = Field(ge=1)
    count: int = Field(ge=1)

    @model_validator(mode="after")
    def _index_within_count(self) -> ShardConfig:
        if self.index > self.count:
            raise ValueError(f"shard index {self.index} is above the count {self.count} (1 <= index <= count)")
        return self

    def selector(self) -> ShardSelector:
        return ShardSelector(self.index, self.count)


Replica = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{0,7}$")]
"""A replica's name: a lowercase letter then up to 7 lowercase letters or digits (`a`, `b`)."""


class SitivmonConfig(CoreConfig):
    """The whole configuration: the core's sections, then the features'."""

    traps: TrapConfig = TrapConfig()
    mqtt: MqttConfig = MqttConfig()
    usage: UsageSettings = UsageSettings()
    allocation: Path | None = None  # the allocation file (keys and projects), relative to this file
    api: ApiConfig = ApiConfig()
    attribution: AttributionSettings = AttributionSettings()
    leader: LeaderSettings = LeaderSettings()
    """Leader election among daemons sharing a PostgreSQL store (docs/leader.md)."""
    shard: ShardConfig | None = None  # absent: this daemon owns every target
    replica: Replica | None = None
    """This daemon's name in a replica pair (docs/scale.md): two daemons polling the same shard, each
    writing its own buckets to the shared store, which readers merge. `sitivmon run --replica a`
    overrides it."""


RELATIVE_PATHS = ("state_dir", "allocation")


def cross_check(config: SitivmonConfig, base_dir: Path | None = None) -> Iterator[Problem]:
    """The core's references, then each feature's against the core."""
    yield from core_problems(config, base_dir)
    yield from interval_problems(config)
    yield from trap_problems(config.traps, config)
    yield from allocation_problems(config.allocation, config.api, config)
    yield from attribution_problems(config.attribution, config)
    yield from leader_problems(config.leader, config.usage, allocation=config.allocation is not None)
    if config.shard is not None:
        yield from shard_problems(config.shard, config.usage)
    if config.replica is not None:
        yield from replica_problems(config.replica, config.usage)


def shard_problems(shard: ShardConfig, usage: UsageSettings) -> Iterator[Problem]:
    """Several shards share one store: SQLite is one file on one machine with one writer (each
    flush replaces the open buckets as a whole), so more than one shard needs PostgreSQL."""
    if shard.count > 1 and usage.store != "postgresql":
        yield (("shard",), f"{shard.count} shards need a shared usage store: set usage.store to postgresql")


def replica_problems(replica: str, usage: UsageSettings) -> Iterator[Problem]:
    """Replicas merge through the shared store; with SQLite the second daemon would be a second
    writer of one file."""
    if usage.store != "postgresql":
        yield (("replica",), f"replica {replica!r} needs a shared usage store: set usage.store to postgresql")


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> SitivmonConfig:
    """Validate a YAML document; raise ConfigError listing every located problem."""
    return parse_document(
        text, SitivmonConfig, cross_check, source=source, base_dir=base_dir, relative_paths=RELATIVE_PATHS
    )


def load_config(path: Path) -> SitivmonConfig:
    """Read and validate a config file. Relative paths inside it are relative to the file's folder."""
    return parse_config(read_document(path), str(path), path.resolve().parent)
