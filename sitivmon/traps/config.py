"""Configuration of the trap receiver (the `traps:` section of the full config).

Secrets are not held here: communities and USM users *reference* entries of the root `credentials`
map by name, so a password lives in exactly one place. `resolve_trap_auth` turns those references
into the material the receiver needs and fails with a located message when a name is wrong.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from sitivmon.config.crossref import Problem, located
from sitivmon.config.model import CoreConfig, Credential

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def engine_id_hex(value: str) -> str:
    """An SNMP engine ID as lower-case hex without `0x`: 5 to 32 octets (RFC 3411 SnmpEngineID)."""
    h = value.lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(h)
    except ValueError:
        raise ValueError(f"engine id {value!r} is not hexadecimal") from None
    if not 5 <= len(raw) <= 32:
        raise ValueError(f"engine id {value!r} must be 5 to 32 bytes")
    return h


class TrapV3User(BaseModel):
    """An SNMPv3 (USM) user allowed to send traps and informs.

    `engine_ids` (hex) are the authoritative engine IDs of agents that send *traps* with this user
    (traps are authenticated with keys localised to the sender's engine ID, RFC 3414). INFORMs use
    the receiver's own engine ID and need nothing here. With `TrapConfig.learn_engine_ids`, engine IDs
    of allowed sources are learnt from the first message that authenticates with this user's key
    (bounded per source; a forgery leaves nothing behind), which is what most operators expect from
    `snmptrapd`-like receivers.
    """

    model_config = ConfigDict(extra="forbid")

    credential: str
    engine_ids: list[str] = Field(default_factory=list)

    @field_validator("engine_ids")
    @classmethod
    def _hex(cls, values: list[str]) -> list[str]:
        return [engine_id_hex(v) for v in values]


class TrapConfig(BaseModel):
    """Where and how traps are received. Defaults listen on an unprivileged loopback port; deploy uses
    `host: 0.0.0.0`, `port: 162` with CAP_NET_BIND_SERVICE."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9162, ge=0, le=65535)  # 0: any free port (tests)
    rcvbuf_bytes: int = Field(default=8 * 1024 * 1024, ge=65536)
    queue_size: int = Field(default=200_000, ge=100)
    allowed_sources: list[IpNetwork] = Field(default_factory=list)
    """CIDRs allowed to send traps; empty means the addresses of the configured targets."""
    communities: list[str] = Field(default_factory=list)
    """Credential names whose `community` is accepted for v1/v2c traps and informs."""
    v3_users: list[TrapV3User] = Field(default_factory=list)
    engine_id: str | None = None
    """The receiver's own SNMPv3 engine ID (hex) for INFORMs; generated when unset."""
    learn_engine_ids: bool = True
    max_engine_ids_per_source: int = Field(default=4, ge=0)
    rate_limit_per_source: float = Field(default=500.0, gt=0)
    """Accepted traps per second per source beyond which link traps are coalesced per
    (source, ifIndex) to their latest state and other traps are dropped and counted."""
    rate_burst: int = Field(default=2000, ge=1)
    max_pending_coalesced: int = Field(default=100_000, ge=1)

    @field_validator("engine_id")
    @classmethod
    def _engine_id(cls, value: str | None) -> str | None:
        """Checked here, not at start: `bytes.fromhex` in the receiver used to stop the daemon."""
        return None if value is None else engine_id_hex(value)


@dataclass(frozen=True, slots=True)
class CommunityAuth:
    name: str  # credential name: the only thing that may appear in logs and events
    community: SecretStr


@dataclass(frozen=True, slots=True)
class UsmUserAuth:
    name: str  # credential name
    username: str
    auth_protocol: str | None
    auth_password: SecretStr | None
    priv_protocol: str | None
    priv_password: SecretStr | None
    engine_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class TrapAuth:
    communities: tuple[CommunityAuth, ...] = ()
    users: tuple[UsmUserAuth, ...] = field(default_factory=tuple)


def resolve_trap_auth(config: TrapConfig, credentials: Mapping[str, Credential]) -> TrapAuth:
    """Look up the referenced credentials of the core config. Raises ValueError naming the config
    path at fault."""
    communities = []
    for i, name in enumerate(config.communities):
        cred = credentials.get(name)
        if cred is None:
            raise ValueError(f"traps.communities[{i}]: unknown credential {name!r}")
        if cred.community is None:
            raise ValueError(f"traps.communities[{i}]: credential {name!r} has no community")
        communities.append(CommunityAuth(name=name, community=cred.community))
    users = []
    for i, user in enumerate(config.v3_users):
        cred = credentials.get(user.credential)
        if cred is None:
            raise ValueError(f"traps.v3_users[{i}].credential: unknown credential {user.credential!r}")
        if not cred.username:
            raise ValueError(f"traps.v3_users[{i}].credential: {user.credential!r} is not an SNMPv3 user")
        users.append(
            UsmUserAuth(
                name=user.credential,
                username=cred.username,
                auth_protocol=None if cred.auth_protocol is None else cred.auth_protocol.value,
                auth_password=cred.auth_password,
                priv_protocol=None if cred.priv_protocol is None else cred.priv_protocol.value,
                priv_password=cred.priv_password,
                engine_ids=tuple(bytes.fromhex(e) for e in user.engine_ids),
            )
        )
    return TrapAuth(communities=tuple(communities), users=tuple(users))


def trap_problems(config: TrapConfig, core: CoreConfig) -> Iterator[Problem]:
    """The trap section's references into the core `credentials`, located."""
    try:
        resolve_trap_auth(config, core.credentials)
    except ValueError as exc:
        yield located(str(exc))
